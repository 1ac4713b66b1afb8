"""The console's routes through a real listener (SQLite and PostgreSQL): ``/me``, ``/me/resources``, what a
Member may not read, the organization's overview and live events, the rule tester and access stats.

Console users are signed in as the login host signs them in: a login session in the store, its token in
the ``__Host-kokoa_login`` cookie, and the ``__Host-kokoa_csrf`` cookie echoed in ``X-CSRF-Token`` on
writes (:class:`kokoa.api.SessionCookieAuthenticator` over a real identity cache).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import pytest_twisted
from api_support import Api, assert_problem, make, org_with_site_and_resource, serving
from twisted.internet import reactor

from kokoa import store as st
from kokoa.api import ApiKeyAuthenticator, SessionCookieAuthenticator
from kokoa.api._routes import ROUTES, Route
from kokoa.auth._identities import IdentityCache

CSRF = "c" * 43


@dataclass
class User:
    """A console user: their id, and the cookies of their login session."""

    id: str
    email: str
    token: str

    def headers(self, *, csrf: bool = True) -> dict[str, str]:
        headers = {"Cookie": f"__Host-kokoa_login={self.token}; __Host-kokoa_csrf={CSRF}"}
        if csrf:
            headers["X-CSRF-Token"] = CSRF
        return headers


class Console(Api):
    """The API with console sign-ins (the login host's authenticators) besides the instance key."""

    async def as_user(self, user: User, method: str, path: str, body: Any = None, **kw: Any) -> Any:
        headers = {**user.headers(csrf=kw.pop("csrf", True)), **kw.pop("headers", {})}
        return await self.request(method, path, body, key=False, headers=headers, **kw)

    async def user(self, org: str, email: str, role: str, *, name: str | None = None) -> User:
        """A new user with ``role`` in ``org`` (made through the API), signed in."""
        made = await make(self, "/users", {"email": email, "display_name": name})
        roles = {r["name"]: r["id"] for r in (await self.get(f"/orgs/{org}/roles")).json["items"]}
        await make(self, f"/orgs/{org}/members", {"user_id": made["id"], "role_id": roles[role]})
        return await self.sign_in(made["id"], email)

    async def sign_in(self, user_id: str, email: str) -> User:
        _, token = await self.store.run(
            st.create_session, method="password", lifetime=timedelta(hours=1), user_id=user_id
        )
        return User(user_id, email, token)

    async def join(self, org: str, user: User, role: str) -> None:
        roles = {r["name"]: r["id"] for r in (await self.get(f"/orgs/{org}/roles")).json["items"]}
        await make(self, f"/orgs/{org}/members", {"user_id": user.id, "role_id": roles[role]})


@pytest_twisted.async_yield_fixture
async def console(url: str) -> AsyncIterator[Console]:
    store = await st.Store.open(url, reactor)
    try:
        _, key = await store.run(st.create_api_key, "admin", org_id=None, scopes=["*"])
        gate = SimpleNamespace(
            identities=IdentityCache(lambda: store, reactor.seconds, idle_timeout=3600),
            login_origin="https://login.test",
        )
        authenticators = [ApiKeyAuthenticator(store), SessionCookieAuthenticator(store, gate)]
        async with serving(store, key, authenticators=authenticators) as served:
            served.__class__ = Console
            yield served  # type: ignore[misc]
    finally:
        await store.close()


# -- /me ------------------------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_me_for_a_user_lists_their_organizations_and_roles(console):
    acme, _, _ = await org_with_site_and_resource(console, "Acme")
    globex, _, _ = await org_with_site_and_resource(console, "Globex")
    await org_with_site_and_resource(console, "Initech")  # not theirs
    ann = await console.user(acme, "ann@example.com", "Admin", name="Ann A.")
    await console.join(globex, ann, "Member")
    me = await console.as_user(ann, "GET", "/me")
    assert me.status == 200, me.raw
    assert me.json == {
        "kind": "user",
        "user": {"id": ann.id, "email": "ann@example.com", "name": "Ann A."},
        "orgs": [
            {"id": acme, "name": "Acme", "role": "Admin"},
            {"id": globex, "name": "Globex", "role": "Member"},
        ],
    }
    # a GET needs no CSRF header; an unknown or missing cookie is a 401
    assert (await console.as_user(ann, "GET", "/me", csrf=False)).status == 200
    stranger = User("usr_x", "x@example.com", "not-a-token")
    assert_problem(await console.as_user(stranger, "GET", "/me"), 401)
    assert_problem(await console.get("/me", key=False), 401)


@pytest_twisted.ensureDeferred
async def test_me_for_api_keys(console):
    acme, _, _ = await org_with_site_and_resource(console, "Acme")
    globex, _, _ = await org_with_site_and_resource(console, "Globex")
    org_key = await console.create_key(acme, ["read"])
    me = await console.get("/me", key=org_key)
    assert me.status == 200
    assert me.json == {
        "kind": "api_key",
        "key": {"prefix": org_key[:11], "org_id": acme},
        "orgs": [{"id": acme, "name": "Acme", "role": None}],
    }
    instance = (await console.get("/me")).json
    assert instance["kind"] == "api_key" and instance["key"]["org_id"] is None
    assert [o["id"] for o in instance["orgs"]] == [acme, globex]


# -- what a Member may call -----------------------------------------------------------------------------


def _path_of(route: Route, org: str) -> str:
    """The route's path with ``org``, and a made-up id for every other parameter."""
    path = route.path.replace("{org}", org)
    for name in route.parameters:
        path = path.replace("{" + name + "}", f"{name}_0000000000")
    return path


ORG_ROUTES = [r for r in ROUTES if "{org}" in r.path]


@pytest_twisted.ensureDeferred
async def test_a_member_may_see_the_organization_and_nothing_of_its_configuration(console):
    org, _, _ = await org_with_site_and_resource(console, "Acme")
    mel = await console.user(org, "mel@example.com", "Member")
    custom = await make(console, f"/orgs/{org}/roles", {"name": "Auditors"})
    cleo = await console.user(org, "cleo@example.com", "Member")
    await console.patch(f"/orgs/{org}/members/{cleo.id}", {"role_id": custom["id"]})
    cleo = await console.sign_in(cleo.id, cleo.email)  # a fresh session: the role is read at sign-in
    allowed = {(r.method, r.path) for r in ROUTES if r.members}
    assert allowed == {("GET", "/me"), ("GET", "/me/resources"), ("GET", "/orgs"), ("GET", "/orgs/{org}")}
    for user, role in ((mel, "Member"), (cleo, "Auditors")):
        for route in ORG_ROUTES:
            body = {} if route.body and route.method != "GET" else None
            answer = await console.as_user(user, route.method, _path_of(route, org), body)
            if route.members:
                assert answer.status == 200, (route.method, route.path, answer.raw)
                continue
            problem = assert_problem(answer, 403)
            if route.instance_only:
                assert problem["detail"] == "only an instance-wide API key may do this"
                continue
            assert f"({role})" in problem["detail"] and "Owner or Admin" in problem["detail"], problem
        assert (await console.as_user(user, "GET", "/orgs")).json["items"][0]["id"] == org


@pytest_twisted.ensureDeferred
async def test_owners_and_admins_read_everything_of_their_organization_only(console):
    org, _, resource = await org_with_site_and_resource(console, "Acme")
    other, other_site, other_resource = await org_with_site_and_resource(console, "Globex")
    ada = await console.user(org, "ada@example.com", "Admin")
    reads = [r for r in ORG_ROUTES if r.method == "GET" and r.parameters == ["org"]]
    for route in reads:
        mine = await console.as_user(ada, "GET", _path_of(route, org))
        assert mine.status in (200, 503), (route.path, mine.raw)  # 503: no gateway behind this API
        theirs = await console.as_user(ada, "GET", _path_of(route, other))
        assert assert_problem(theirs, 403)["detail"] == "you are not a member of this organization"
    # another organization's objects under one's own organization are not found
    assert_problem(await console.as_user(ada, "GET", f"/orgs/{org}/resources/{other_resource}"), 404)
    assert_problem(await console.as_user(ada, "GET", f"/orgs/{org}/sites/{other_site}"), 404)
    assert (await console.as_user(ada, "GET", f"/orgs/{org}/resources/{resource}")).status == 200


@pytest_twisted.ensureDeferred
async def test_writes_need_the_csrf_header_whatever_the_role(console):
    org, _, _ = await org_with_site_and_resource(console, "Acme")
    owner = await console.user(org, "olga@example.com", "Owner")
    sites = f"/orgs/{org}/sites"
    refused = await console.as_user(owner, "POST", sites, {"name": "branch"}, csrf=False)
    assert "X-CSRF-Token" in assert_problem(refused, 403)["detail"]
    wrong = await console.as_user(owner, "POST", sites, {"name": "branch"}, headers={"X-CSRF-Token": "x"})
    assert_problem(wrong, 403)
    assert (await console.as_user(owner, "POST", sites, {"name": "branch"})).status == 201


# -- /me/resources: the launcher ------------------------------------------------------------------------


async def _resource(api: Console, org: str, name: str, **fields: Any) -> str:
    body = {"name": name, "kind": "http", "hostname": f"{name}.acme.example", **fields}
    return (await make(api, f"/orgs/{org}/resources", body))["id"]


@pytest_twisted.ensureDeferred
async def test_the_launcher_lists_what_the_policy_engine_lets_the_user_open(console):
    org, _, wiki = await org_with_site_and_resource(console, "Acme")  # wiki.acme.example: no grant
    mel = await console.user(org, "mel@example.com", "Member")
    roles = {r["name"]: r["id"] for r in (await console.get(f"/orgs/{org}/roles")).json["items"]}
    mine = await _resource(console, org, "mine", path_prefix="/app")
    by_role = await _resource(console, org, "team")
    public = await _resource(console, org, "open", public=True)
    assert public
    off = await _resource(console, org, "off", enabled=False)
    walled = await _resource(console, org, "walled")
    wild = await _resource(console, org, "wild", hostname="*.apps.acme.example")
    ssh = await make(console, f"/orgs/{org}/resources", {"name": "ssh", "kind": "tcp", "public_port": 2222})
    for resource in (mine, off, walled, wild):
        await make(console, f"/orgs/{org}/resources/{resource}/grants", {"user_id": mel.id})
    await make(console, f"/orgs/{org}/resources/{by_role}/grants", {"role_id": roles["Member"]})
    # a rule that shuts out the caller's own address: the gateway would refuse, so the launcher hides it
    await make(
        console,
        f"/orgs/{org}/resources/{walled}/rules",
        {"priority": 1, "action": "deny", "cidr": "127.0.0.0/8"},
    )
    # another organization's resources are never listed, granted or not
    other, _, theirs = await org_with_site_and_resource(console, "Globex")
    listed = await console.as_user(mel, "GET", "/me/resources")
    assert listed.status == 200, listed.raw
    by_name = {item["name"]: item for item in listed.json["items"]}
    assert set(by_name) == {"mine", "team", "open", "wild", "ssh"}
    assert by_name["mine"] == {
        "org_id": org,
        "org_name": "Acme",
        "id": mine,
        "name": "mine",
        "kind": "http",
        "url": "https://mine.acme.example/app",
        "public": False,
    }
    assert by_name["open"]["public"] is True and by_name["team"]["url"] == "https://team.acme.example/"
    assert by_name["wild"]["url"] is None
    assert by_name["ssh"]["address"] == "127.0.0.1:2222" and by_name["ssh"]["public"] is True
    assert ssh["id"] == by_name["ssh"]["id"]
    # an Admin sees every enabled resource of the organization; a user of two organizations both
    ada = await console.user(org, "ada@example.com", "Admin")
    await console.join(other, ada, "Member")
    everything = {i["name"] for i in (await console.as_user(ada, "GET", "/me/resources")).json["items"]}
    assert everything == {"wiki", "mine", "team", "open", "walled", "wild", "ssh"}
    await make(console, f"/orgs/{other}/resources/{theirs}/grants", {"user_id": ada.id})
    items = (await console.as_user(ada, "GET", "/me/resources")).json["items"]
    assert {(i["org_name"], i["name"]) for i in items if i["org_id"] == other} == {("Globex", "wiki")}
    assert wiki not in [i["id"] for i in (await console.as_user(mel, "GET", "/me/resources")).json["items"]]


@pytest_twisted.ensureDeferred
async def test_the_launcher_of_api_keys(console):
    org, _, wiki = await org_with_site_and_resource(console, "Acme")
    mel = await console.user(org, "mel@example.com", "Member")
    await make(console, f"/orgs/{org}/resources/{wiki}/grants", {"user_id": mel.id})
    made = await make(
        console, f"/orgs/{org}/api-keys", {"name": "mel's", "scopes": ["read"], "user_id": mel.id}
    )
    as_mel = (await console.get("/me/resources", key=made["key"])).json["items"]
    assert [i["id"] for i in as_mel] == [wiki]
    plain = await console.create_key(org, ["read"])
    assert (await console.get("/me/resources", key=plain)).json == {"items": []}
    assert (await console.get("/me/resources")).json == {"items": []}  # the instance key is nobody
