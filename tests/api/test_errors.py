"""Bad input everywhere gets a clear 4xx problem document: 400, 404, 405, 409, 413, 415, 422."""

from __future__ import annotations

import base64
import json

import pytest_twisted
from api_support import MAX_BODY, assert_problem, count, make, org_with_site_and_resource
from twisted.internet.defer import Deferred, succeed
from twisted.web.iweb import UNKNOWN_LENGTH, IBodyProducer
from zope.interface import implementer


@pytest_twisted.ensureDeferred
async def test_unknown_paths_and_ids_are_404(api):
    org, site, resource = await org_with_site_and_resource(api)
    for path in (
        "/nothing",
        "/orgs/",
        f"/orgs/{org}/sites/{site}/extra",
        "/orgs/org_nope",
        f"/orgs/{org}/sites/site_nope",
        f"/orgs/{org}/resources/{resource}/targets/tgt_nope",
        f"/orgs/{org}/resources/res_nope/rules",
        f"/orgs/{org}/members/user_nope",
        f"/orgs/{org}/sites/bad%20id",
        f"/orgs/{org}%0A",
        "/users/user_nope",
    ):
        response = await api.get(path)
        assert_problem(response, 404)
    assert_problem(await api.get("/nothing", key=False), 404)  # no route: 404 before authentication
    # An object of another resource is not found under this one.
    _, other_site, other_resource = await org_with_site_and_resource(api, "Other")
    other_org = (await api.get("/orgs")).json["items"][1]["id"]
    target = await make(
        api,
        f"/orgs/{other_org}/resources/{other_resource}/targets",
        {"site_id": other_site, "host": "h", "port": 1},
    )
    assert_problem(await api.get(f"/orgs/{org}/resources/{resource}/targets/{target['id']}"), 404)
    assert_problem(await api.get(f"/orgs/{org}/resources/{other_resource}/targets/{target['id']}"), 404)


@pytest_twisted.ensureDeferred
async def test_a_wrong_method_is_405_with_allow(api):
    response = await api.request("PUT", "/orgs", {"name": "x"})
    assert_problem(response, 405)
    assert set(response.header("allow").split(", ")) == {"GET", "HEAD", "POST"}
    response = await api.request("POST", "/orgs/org_x/resources/res_y/grants/grant_z")
    assert set(assert_problem(response, 405) and response.header("allow").split(", ")) == {
        "GET",
        "HEAD",
        "DELETE",
    }


@pytest_twisted.ensureDeferred
async def test_duplicates_are_409_naming_the_field(api):
    org, site, resource = await org_with_site_and_resource(api)
    for path, body, field in (
        ("/orgs", {"name": "ACME"}, "name"),
        (f"/orgs/{org}/sites", {"name": "Home"}, "name"),
        (f"/orgs/{org}/resources", {"name": "wiki", "kind": "tcp", "public_port": 2000}, "name"),
        (
            f"/orgs/{org}/resources",
            {"name": "wiki2", "kind": "http", "hostname": "wiki.acme.example"},
            "hostname",
        ),
    ):
        response = await api.post(path, body)
        problem = assert_problem(response, 409)
        assert problem["type"] == "urn:kokoa:problem:conflict"
        assert list(response.fields) == [field], problem
    await make(api, f"/orgs/{org}/resources", {"name": "ssh", "kind": "tcp", "public_port": 2222})
    clash = await api.post(f"/orgs/{org}/resources", {"name": "ssh2", "kind": "tcp", "public_port": 2222})
    assert list(clash.fields) == ["public_port"] and clash.status == 409
    target = {"site_id": site, "host": "10.0.0.1", "port": 80}
    await make(api, f"/orgs/{org}/resources/{resource}/targets", target)
    again = await api.post(f"/orgs/{org}/resources/{resource}/targets", target)
    assert again.status == 409 and list(again.fields) == ["port"]


@pytest_twisted.ensureDeferred
async def test_a_port_in_use_on_the_gateway_is_409(api):
    org = (await make(api, "/orgs", {"name": "Acme"}))["id"]
    api.taken_ports.add(("tcp", 2222))
    refused = await api.post(f"/orgs/{org}/resources", {"name": "ssh", "kind": "tcp", "public_port": 2222})
    problem = assert_problem(refused, 409)
    assert problem["type"] == "urn:kokoa:problem:port-in-use"
    assert refused.fields == {"public_port": "port 2222 is already in use on this gateway"}
    # UDP 2222 is another port; a disabled resource does not listen, so the port is not checked...
    udp = await make(api, f"/orgs/{org}/resources", {"name": "dns", "kind": "udp", "public_port": 2222})
    ssh = await make(
        api, f"/orgs/{org}/resources", {"name": "ssh", "kind": "tcp", "public_port": 2222, "enabled": False}
    )
    # ...until it is enabled, or moved to a port in use.
    enable = await api.patch(f"/orgs/{org}/resources/{ssh['id']}", {"enabled": True})
    assert enable.status == 409 and list(enable.fields) == ["public_port"]
    assert (
        await api.patch(f"/orgs/{org}/resources/{ssh['id']}", {"enabled": True, "public_port": 2200})
    ).status == 200
    api.taken_ports.add(("udp", 5353))
    move = await api.patch(f"/orgs/{org}/resources/{udp['id']}", {"public_port": 5353})
    assert move.status == 409 and "5353" in move.json["detail"]
    # A resource keeping its port is not asked about it again.
    api.taken_ports.add(("udp", 2222))
    assert (await api.patch(f"/orgs/{org}/resources/{udp['id']}", {"name": "DNS"})).status == 200
    resources = (await api.get(f"/orgs/{org}/resources")).json["items"]
    assert {(r["name"], r["public_port"], r["enabled"]) for r in resources} == {
        ("DNS", 2222, True),
        ("ssh", 2200, True),
    }


@implementer(IBodyProducer)
class _Chunks:
    """A request body of unknown length: sent chunked."""

    length = UNKNOWN_LENGTH

    def __init__(self, data: bytes) -> None:
        self.data = data

    def startProducing(self, consumer) -> Deferred:
        for i in range(0, len(self.data), 4096):
            consumer.write(self.data[i : i + 4096])
        return succeed(None)

    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass

    def stopProducing(self) -> None:
        pass


@pytest_twisted.ensureDeferred
async def test_an_oversized_body_is_413_by_length_and_chunked(api):
    big = b'{"name": "' + b"x" * MAX_BODY + b'"}'
    response = await api.post("/orgs", data=big, headers={"Content-Type": "application/json"})
    problem = assert_problem(response, 413)
    assert str(MAX_BODY) in problem["detail"]
    chunked = await api.request(
        "POST",
        "/orgs",
        data=_Chunks(big),
        headers={"Content-Type": "application/json"},  # type: ignore[arg-type]
    )
    assert_problem(chunked, 413)
    # Just under the limit is fine (here: too long a name, so 422).
    fits = b'{"name": "' + b"x" * (MAX_BODY - 20) + b'"}'
    assert (await api.post("/orgs", data=fits, headers={"Content-Type": "application/json"})).status == 422
    assert await count(api, "organizations") == 0
    assert await count(api, "audit_log") == 0


@pytest_twisted.ensureDeferred
async def test_bodies_must_be_json_objects(api):
    org = (await make(api, "/orgs", {"name": "Acme"}))["id"]
    path = f"/orgs/{org}/sites"
    for content_type in (
        "text/plain",
        "application/x-www-form-urlencoded",
        "application/json; charset=latin-1",
    ):
        response = await api.post(path, data=b'{"name": "x"}', headers={"Content-Type": content_type})
        assert_problem(response, 415)
    assert_problem(await api.post(path, data=b'{"name": "x"}'), 415)  # no content type
    assert (
        await api.post(
            path, data=b'{"name": "a"}', headers={"Content-Type": "application/json; charset=UTF-8"}
        )
    ).status == 201
    for raw in (
        b"{",
        b'{"name": "x",}',
        b'{"name": NaN}',
        b'{"name": "a", "name": "b"}',
        b"\xff\xfe",
        b"[" * 10000,
    ):
        response = await api.post(path, data=raw, headers={"Content-Type": "application/json"})
        assert_problem(response, 400)
    for body in ([], "site", 1, None):
        response = await api.post(
            path, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
        )
        assert assert_problem(response, 422)["errors"] == [
            {"field": None, "message": "the body must be a JSON object"}
        ]
    assert_problem(await api.post(path, data=b"", headers={"Content-Type": "application/json"}), 400)


@pytest_twisted.ensureDeferred
async def test_invalid_fields_are_422_each_named(api):
    org, site, resource = await org_with_site_and_resource(api)
    cases = [
        ("/orgs", {"name": "x", "colour": "red"}, {"colour": "is not a known field"}),
        ("/orgs", {}, {"name": "is required"}),
        ("/orgs", {"name": 42}, {"name": "must be a string"}),
        ("/orgs", {"name": "   "}, {"name": "must not be empty"}),
        ("/orgs", {"name": "a\x00b"}, {"name": "must not contain NUL characters"}),
        (f"/orgs/{org}/sites", {"name": "x", "enabled": "yes"}, {"enabled": "must be true or false"}),
        (
            f"/orgs/{org}/resources",
            {"name": "r", "kind": "http", "hostname": "bad host!"},
            {"hostname": "'bad host!' is not a valid hostname"},
        ),
        (
            f"/orgs/{org}/resources",
            {"name": "r", "kind": "tcp", "public_port": 70000},
            {"public_port": "must be from 1 to 65535"},
        ),
        (
            f"/orgs/{org}/resources",
            {"name": "r", "kind": "tcp", "public_port": 0},
            {"public_port": "must be from 1 to 65535"},
        ),
        (
            f"/orgs/{org}/resources",
            {"name": "r", "kind": "tcp", "public_port": 22.0},
            {"public_port": "must be an integer"},
        ),
        (
            f"/orgs/{org}/resources",
            {"name": "r", "kind": "tcp"},
            {"public_port": "is required for TCP resources"},
        ),
        (
            f"/orgs/{org}/resources",
            {"name": "r", "kind": "ftp", "public_port": 21},
            {"kind": "must be one of http, tcp, udp"},
        ),
        (
            f"/orgs/{org}/resources/{resource}/targets",
            {"site_id": "site_nope", "host": "h", "port": 1},
            {"site_id": "no site with id 'site_nope'"},
        ),
        (
            f"/orgs/{org}/resources/{resource}/targets",
            {"site_id": site, "host": "h", "port": 1, "health_check": {"interval": 0, "bogus": 1}},
            {"health_check.interval": "must be from 1 to 3600", "health_check.bogus": "is not a known field"},
        ),
        (
            f"/orgs/{org}/resources/{resource}/rules",
            {"priority": 1, "action": "allow", "cidr": "10.0.0.1/8"},
            None,
        ),
        (
            f"/orgs/{org}/api-keys",
            {"name": "k", "scopes": ["admin"]},
            {"scopes[0]": "must be one of read, write, *"},
        ),
        (f"/orgs/{org}/api-keys", {"name": "k", "scopes": ["read"], "expires_at": "tomorrow"}, None),
        (
            f"/orgs/{org}/api-keys",
            {"name": "k", "scopes": ["read"], "expires_at": "2000-01-01T00:00:00Z"},
            {"expires_at": "must be in the future"},
        ),
        (f"/orgs/{org}/members", {"user_id": "user_nope", "role_id": "role_nope"}, None),
        ("/users", {"email": "not-an-email"}, None),
        (
            "/users",
            {"email": "a@example.com", "password": "short"},
            {"password": "must be at least 8 characters"},
        ),
        (f"/orgs/{org}/roles", {"name": "r", "description": "\udc80"}, None),
    ]
    for path, body, expected in cases:
        response = await api.post(path, body)
        problem = assert_problem(response, 422)
        assert problem["type"] == "urn:kokoa:problem:validation" and problem["errors"]
        if expected is not None:
            assert response.fields == expected, (path, body, problem)
        else:
            assert all(e["field"] for e in problem["errors"]), problem
    for query in ("limit=0", "limit=1001", "limit=ten", "limit=1.5", "cursor=@@@", "cursor=bm9wZQ"):
        response = await api.get(f"/orgs?{query}")
        assert list(response.fields) == [query.split("=")[0]], (query, response.json)
    assert (await api.get(f"/orgs/{org}/audit?since=yesterday")).fields == {
        "since": "must be an RFC 3339 date-time such as 2030-01-02T03:04:05Z"
    }
    assert list((await api.get(f"/orgs/{org}/resources/{resource}/rules?cursor=eA")).fields) == ["cursor"]
    assert list((await api.get(f"/orgs/{org}/resources?kind=ftp")).fields) == ["kind"]


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


@pytest_twisted.ensureDeferred
async def test_hostile_cursors_and_dates_are_422_not_500(api):
    org = (await make(api, "/orgs", {"name": "Acme"}))["id"]
    nul = await api.get("/orgs?cursor=" + _b64("2030-01-01T00:00:00+00:00\nab\x00c"))
    assert nul.status == 422  # no cursor of ours holds a NUL (and PostgreSQL text cannot)
    for path in (
        "/orgs?cursor=" + _b64("0001-01-01T00:00:00+01:00\nabc"),  # year 0 in UTC
        "/orgs?cursor=a+b",
        f"/orgs/{org}/audit?cursor=" + _b64("9" * 30),  # beyond 64-bit integers
        f"/orgs/{org}/audit?since=0001-01-01T00:00:00%2B01:00",
        f"/orgs/{org}/audit?until=9999-12-31T23:59:59-01:00",
    ):
        response = await api.get(path)
        assert response.status == 422, (path, response.raw)
        assert list(response.fields) == [path.split("?")[1].split("=")[0]]
    expires = {"name": "k", "scopes": ["read"], "expires_at": "9999-12-31T23:59:59-01:00"}
    assert list((await api.post(f"/orgs/{org}/api-keys", expires)).fields) == ["expires_at"]


@pytest_twisted.ensureDeferred
async def test_urls_that_are_not_utf8(api):
    path = assert_problem(await api.get("/orgs/%FF%FE", check=False), 400)  # no route reached
    assert "UTF-8" in path["detail"]
    query = await api.get("/orgs?cursor=%FF")
    assert query.fields == {"cursor": "must be UTF-8 text"}


@pytest_twisted.ensureDeferred
async def test_a_host_the_routes_cannot_bind_is_a_400(api):
    # werkzeug binds the routes to the Host's IDNA form: a label over 63 characters, or an empty one,
    # raised BadHost, which Klein turned into a 500 and a logged traceback.
    for host in ("a" * 64 + ".localhost", "a..b", "."):
        problem = assert_problem(await api.get("/orgs", headers={"Host": host}, check=False), 400)
        assert "Host" in problem["detail"]
    assert (await api.get("/orgs", headers={"Host": "a" * 63 + ".localhost"})).status == 200
