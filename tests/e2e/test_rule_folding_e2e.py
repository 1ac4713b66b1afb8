"""Rule paths are not bypassed by case and trailing characters, end to end: a real gateway, edge and
upstream process, rules made through the admin API, requests sent as clients spell them.

Many upstreams (Windows/IIS, case-insensitive routers, servers that trim a trailing dot or space)
serve ``/ADMIN``, ``/admin.`` and ``/admin%20`` as ``/admin``: a deny rule on ``/admin`` refuses them
all, and a bypass rule on ``/public`` opens ``/public`` as written only.
"""

from __future__ import annotations

import json

import pytest

from .harness import wait_for
from .test_http_resources import HttpDeployment

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def d(tmp_path_factory):
    deployment = HttpDeployment(tmp_path_factory.mktemp("folding"))
    try:
        deployment.start_all()
        deployment.pub = deployment.add_http("pub", "pub.test", deployment.upstream_port)
        deployment.prot = deployment.add_http("prot", "prot.test", deployment.upstream_port, public=False)
        yield deployment
    finally:
        deployment.stop_all()


def rule(d, resource: dict, **fields) -> dict:
    return d.api("POST", f"/orgs/{d.org}/resources/{resource['id']}/rules", fields)


def status(d, host: str, path: str, accept: str = "application/json") -> int:
    return d.get(host, path, headers={"Accept": accept})[0]


DENIED_VARIANTS = [
    "/ADMIN",
    "/%41DMIN",
    "/admin.",
    "/admin%20",
    "/Admin/x",
    "/admin./x",
    "/aDmIn%09",
    "/admin.%20./users",
    "/x/../ADMIN",
    "/public/..%2FAdmin",
]


def test_a_deny_rule_refuses_case_and_trailing_variants(d):
    # before the rule: everything reaches the upstream
    assert status(d, "pub.test", "/ADMIN") == 200
    assert status(d, "pub.test", "/administrator") == 200
    rule(d, d.pub, priority=10, action="deny", path="/admin")
    wait_for(lambda: status(d, "pub.test", "/admin") == 403, "the deny rule")
    for path in DENIED_VARIANTS:
        got, _, body = d.get("pub.test", path, headers={"Accept": "application/json"})
        assert got == 403, (path, body[:200])
    # a different segment behaves as before: through to the upstream, as spelled
    for path in ("/administrator", "/Administrator.", "/admin-x", "/x/admin", "/adm"):
        got, _, body = d.get("pub.test", path)
        assert got == 200, path
        assert json.loads(body)["uri"] == path

    def logged() -> bool:
        entries = d.api("GET", f"/orgs/{d.org}/access-log?outcome=deny&resource_id={d.pub['id']}")["items"]
        return any("without case and trailing dots or spaces" in e["reason"] for e in entries)

    wait_for(logged, "the refusal of a folded path in the access log, with its reason")


def test_a_bypass_rule_opens_only_its_exact_spelling(d):
    assert status(d, "prot.test", "/public") == 401  # a protected resource: sign in first
    rule(d, d.prot, priority=10, action="bypass", path="/public")
    wait_for(lambda: status(d, "prot.test", "/public") == 200, "the bypass rule")
    for path in ("/public", "/public/", "/public/x.css", "/public/a/b"):
        assert status(d, "prot.test", path) == 200, path
    for path in ("/PUBLIC", "/Public/x", "/public.", "/public%20", "/%50ublic", "/public/..%20/admin"):
        assert status(d, "prot.test", path) == 401, path  # treated as protected: sign-in needed
        got, headers, _ = d.get("prot.test", path, headers={"Accept": "text/html"})
        assert got == 302 and "/authorize?" in headers["Location"], path  # browsers go to sign in
