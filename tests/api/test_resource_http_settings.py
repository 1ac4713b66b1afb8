"""HTTP resources' settings and their targets' TLS and health-check settings through the API: created,
read, changed, refused with the field named (on SQLite and PostgreSQL)."""

from __future__ import annotations

import pytest_twisted
from api_support import assert_problem, make, org_with_site_and_resource

HTTP_DEFAULTS = {"lb_method": "round_robin", "sticky": False, "redirect_https": False, "hsts_max_age": 0}


def _settings(resource: dict) -> dict:
    return {k: resource[k] for k in HTTP_DEFAULTS}


@pytest_twisted.ensureDeferred
async def test_http_settings_of_resources(api):
    org, _, wiki = await org_with_site_and_resource(api)
    assert _settings((await api.get(f"/orgs/{org}/resources/{wiki}")).json) == HTTP_DEFAULTS
    chosen = {
        "lb_method": "least_connections",
        "sticky": True,
        "redirect_https": True,
        "hsts_max_age": 31536000,
    }
    app = await make(
        api,
        f"/orgs/{org}/resources",
        {"name": "app", "kind": "http", "hostname": "app.example.com", **chosen},
    )
    assert _settings(app) == chosen
    changed = await api.patch(f"/orgs/{org}/resources/{app['id']}", {"sticky": False, "hsts_max_age": 0})
    assert changed.status == 200
    assert _settings(changed.json) == chosen | {"sticky": False, "hsts_max_age": 0}
    (entry, *_) = await api.audit(org, object_id=app["id"])
    assert (entry["before"]["sticky"], entry["after"]["sticky"]) == (True, False)

    bad = await api.patch(f"/orgs/{org}/resources/{app['id']}", {"lb_method": "random"})
    assert "lb_method" in assert_problem(bad, 422)["detail"] and "lb_method" in bad.fields
    bad = await api.patch(f"/orgs/{org}/resources/{app['id']}", {"hsts_max_age": 63072001})
    assert_problem(bad, 422)
    assert bad.fields["hsts_max_age"].startswith("must be from 0 to 63072000")


@pytest_twisted.ensureDeferred
async def test_tcp_resources_refuse_http_settings_as_they_refuse_a_hostname(api):
    org, _, _ = await org_with_site_and_resource(api)
    base = f"/orgs/{org}/resources"
    for field, value in (("sticky", True), ("lb_method", "least_connections"), ("hsts_max_age", 60)):
        refused = await api.post(base, {"name": "ssh", "kind": "tcp", "public_port": 2222, field: value})
        assert_problem(refused, 422)
        assert (
            refused.fields == {field: refused.fields[field]}
            and "only HTTP resources" in refused.fields[field]
        )
    refused = await api.post(
        base, {"name": "ssh", "kind": "tcp", "public_port": 2222, "hostname": "a.example"}
    )
    assert "only HTTP resources" in refused.fields["hostname"]
    # The defaults, as a TCP resource reads back, may be written back.
    ssh = await make(api, base, {"name": "ssh", "kind": "tcp", "public_port": 2222, **HTTP_DEFAULTS})
    assert _settings(ssh) == HTTP_DEFAULTS
    again = await api.patch(f"{base}/{ssh['id']}", {"sticky": False, "redirect_https": False})
    assert again.status == 200
    refused = await api.patch(f"{base}/{ssh['id']}", {"redirect_https": True})
    assert_problem(refused, 422)
    assert "redirect_https" in refused.fields


@pytest_twisted.ensureDeferred
async def test_tls_and_health_check_settings_of_targets(api):
    org, site, wiki = await org_with_site_and_resource(api)
    base = f"/orgs/{org}/resources/{wiki}/targets"
    plain = await make(api, base, {"site_id": site, "host": "10.0.0.5", "port": 80})
    assert (plain["tls_verify"], plain["tls_server_name"]) == (True, None)
    assert plain["health_check"]["expected_status"] == "200-399"

    secure = await make(
        api,
        base,
        {
            "site_id": site,
            "host": "10.0.0.6",
            "port": 443,
            "scheme": "https",
            "tls_verify": False,
            "tls_server_name": "Wiki.Internal",
            "health_check": {"enabled": True, "path": "/healthz", "expected_status": "200, 204"},
        },
    )
    assert (secure["tls_verify"], secure["tls_server_name"]) == (False, "wiki.internal")
    assert secure["health_check"]["expected_status"] == "200,204"

    # Health-check settings left out keep their value; so does the expected status.
    changed = await api.patch(
        f"{base}/{secure['id']}", {"health_check": {"interval": 10}, "tls_server_name": None}
    )
    assert changed.status == 200
    assert (changed.json["health_check"]["expected_status"], changed.json["health_check"]["interval"]) == (
        "200,204",
        10,
    )
    assert changed.json["tls_server_name"] is None and changed.json["tls_verify"] is False
    # Moving off https resets the TLS settings.
    moved = await api.patch(f"{base}/{secure['id']}", {"scheme": "http"})
    assert (moved.json["scheme"], moved.json["tls_verify"]) == ("http", True)

    for body, field in (
        ({"tls_verify": False}, "tls_verify"),
        ({"tls_server_name": "b.internal"}, "tls_server_name"),
        ({"health_check": {"expected_status": "2xx"}}, "health_check.expected_status"),
        ({"health_check": {"expected_status": "600"}}, "health_check.expected_status"),
        ({"health_check": {"expected_status": "2" * 65}}, "health_check.expected_status"),
        ({"tls_verify": "no"}, "tls_verify"),
    ):
        refused = await api.patch(f"{base}/{plain['id']}", body)
        assert_problem(refused, 422)
        assert field in refused.fields, (body, refused.fields)
    assert (await api.get(f"{base}/{plain['id']}")).json == plain


@pytest_twisted.ensureDeferred
async def test_tcp_targets_refuse_tls_settings(api):
    org, site, _ = await org_with_site_and_resource(api)
    ssh = await make(api, f"/orgs/{org}/resources", {"name": "ssh", "kind": "tcp", "public_port": 2222})
    base = f"/orgs/{org}/resources/{ssh['id']}/targets"
    refused = await api.post(
        base, {"site_id": site, "host": "10.0.0.5", "port": 22, "tls_server_name": "a.b"}
    )
    assert_problem(refused, 422)
    assert "only https targets" in refused.fields["tls_server_name"]
    refused = await api.post(
        base, {"site_id": site, "host": "10.0.0.5", "port": 22, "health_check": {"expected_status": "200"}}
    )
    assert "health_check.expected_status" in refused.fields
    target = await make(api, base, {"site_id": site, "host": "10.0.0.5", "port": 22, "tls_verify": True})
    assert (target["tls_verify"], target["health_check"]["path"]) == (True, None)
