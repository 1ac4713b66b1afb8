"""Nothing is half-written: a write that fails leaves neither its rows nor an audit entry."""

from __future__ import annotations

import pytest_twisted
from api_support import assert_problem, count, make, org_with_site_and_resource

from kokoa.api import _call


@pytest_twisted.ensureDeferred
async def test_refused_writes_leave_no_row_and_no_audit_entry(api):
    org, site, resource = await org_with_site_and_resource(api)
    api.taken_ports.add(("tcp", 2222))
    before = {t: await count(api, t) for t in ("sites", "resources", "targets", "audit_log", "changes")}
    refused = [
        await api.post(f"/orgs/{org}/sites", {"name": "HOME"}),  # 409 duplicate
        await api.post(f"/orgs/{org}/resources", {"name": "x", "kind": "http", "hostname": "-bad-"}),  # 422
        await api.post(
            f"/orgs/{org}/resources", {"name": "ssh", "kind": "tcp", "public_port": 2222}
        ),  # 409 port
        await api.post(
            f"/orgs/{org}/resources/{resource}/targets", {"site_id": site, "host": "h", "port": 0}
        ),
        await api.patch(f"/orgs/{org}/resources/{resource}", {"name": "renamed", "path_prefix": "/a/../b"}),
        await api.delete(f"/orgs/{org}/sites/site_nope"),
    ]
    assert [r.status for r in refused] == [409, 422, 409, 422, 422, 404]
    assert {t: await count(api, t) for t in before} == before
    assert (await api.get(f"/orgs/{org}/resources/{resource}")).json["name"] == "wiki"


@pytest_twisted.ensureDeferred
async def test_a_write_in_several_steps_fails_whole(api):
    user = await make(api, "/users", {"email": "ada@example.com"})
    audited = await count(api, "audit_log")
    # The e-mail change is written first, then the password is refused: both are rolled back.
    response = await api.patch(f"/users/{user['id']}", {"email": "ada@new.example", "password": "x" * 2000})
    assert response.status == 422 and list(response.fields) == ["password"]
    assert (await api.get(f"/users/{user['id']}")).json == user
    assert await count(api, "audit_log") == audited


@pytest_twisted.ensureDeferred
async def test_a_write_whose_audit_entry_fails_is_not_kept(api, monkeypatch, expect_logged_errors):
    org = (await make(api, "/orgs", {"name": "Acme"}))["id"]
    audited = await count(api, "audit_log")

    def broken(*args, **kw):
        raise RuntimeError("the audit log is broken")

    monkeypatch.setattr(_call, "append_audit", broken)
    response = await api.post(f"/orgs/{org}/sites", {"name": "home"}, check=False)  # 500: undocumented
    problem = assert_problem(response, 500)
    assert "broken" not in problem["detail"]  # no internals in the answer: they are in the log
    assert any("the audit log is broken" in e for e in expect_logged_errors)
    expect_logged_errors.clear()
    monkeypatch.undo()
    assert await count(api, "sites") == 0 and await count(api, "audit_log") == audited
