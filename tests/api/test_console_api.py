"""The console's routes through a real listener (SQLite and PostgreSQL): ``/me``, ``/me/resources``, what a
Member may not read, the organization's overview and live events, the rule tester and access stats.

Console users are signed in as the login host signs them in: a login session in the store, its token in
the ``__Host-kokoa_login`` cookie, and the ``__Host-kokoa_csrf`` cookie echoed in ``X-CSRF-Token`` on
writes (:class:`kokoa.api.SessionCookieAuthenticator` over a real identity cache).
"""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest_twisted
from api_support import Api, assert_problem, make, org_with_site_and_resource, serving
from treq.client import HTTPClient
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.protocol import Protocol
from twisted.internet.task import deferLater
from twisted.web.client import Agent

from kokoa import store as st
from kokoa.api import ApiKeyAuthenticator, SessionCookieAuthenticator, _schemas
from kokoa.api._routes import ROUTES, Route
from kokoa.api._sse import StreamLimits
from kokoa.auth._identities import IdentityCache
from kokoa.gateway._console import ConsoleView
from kokoa.gateway._health import HealthBoard, HealthResult
from kokoa.gateway._model import HTTPResource, HTTPTarget
from kokoa.gateway._registry import TunnelRegistry
from kokoa.gateway._tunnels import TunnelInfo
from kokoa.http._inspector import Inspector

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


class FakeTunnel:
    """What the console reads of a tunnel: its round-trip time."""

    def __init__(self, rtt: float | None) -> None:
        self.rtt = rtt
        self.streams: dict[int, Any] = {}
        self.can_open_stream = True


class FakeGateway:
    """The gateway's parts the console view reads (a real registry and health board; the directory
    and the tunnel handler's notes made up), with edges that connect and drop."""

    def __init__(self, store: st.Store) -> None:
        self.store = store
        self.registry = TunnelRegistry()
        self.health = HealthBoard()
        self.sites: dict[str, tuple[str, str, bool]] = {}  # id -> (org, name, enabled)
        self.info: dict[Any, TunnelInfo] = {}
        self.http: list[HTTPResource] = []
        self.version: int | None = None
        self.view = ConsoleView(
            registry=self.registry,
            tunnels=self,
            health=self.health,
            directory=self,
            store_directory=self,
            store=lambda: store,
            name="gw-test",
            public_host="gw.example",
            https_port=lambda: 8443,
            front=SimpleNamespace(inspector=Inspector(max_watchers=2, max_rate=0)),
        )
        self.health.subscribe(self.view.health_changed)

    # what the view asks
    def tunnel_info(self, tunnel: Any) -> TunnelInfo | None:
        return self.info.get(tunnel)

    def site(self, site_id: str) -> Any:
        found = self.sites.get(site_id)
        return None if found is None else SimpleNamespace(name=found[1], enabled=found[2])

    def site_org(self, site_id: str) -> str | None:
        found = self.sites.get(site_id)
        return None if found is None else found[0]

    def http_resources(self) -> list[HTTPResource]:
        return list(self.http)

    # what the tests do
    async def know(self, org: str) -> None:
        """Learn the organization's sites and HTTP resources from the store (as the directory does)."""
        config = await self.store.run(st.load_org_config, org)
        for site in config.sites:
            self.sites[site.id] = (org, site.name, site.enabled)
        for r in config.resources:
            if r.kind == "http":
                targets = tuple(HTTPTarget(t.id, t.site_id, t.host, t.port) for t in config.targets_of(r.id))
                self.http.append(HTTPResource(r.id, r.name, r.hostname or "", targets=targets, org_id=org))
        self.version = await self.store.run(st.config_version)
        self.view.configuration_changed()

    def connect(self, site_id: str, transport: str = "tls", rtt: float | None = 0.0123) -> FakeTunnel:
        tunnel = FakeTunnel(rtt)
        self.info[tunnel] = TunnelInfo(datetime.now(UTC), transport, "0.9.1")
        self.registry.add(site_id, tunnel)
        self.view.tunnels_changed(site_id)
        return tunnel

    def drop(self, site_id: str, tunnel: FakeTunnel) -> None:
        self.registry.remove(site_id, tunnel)
        self.info.pop(tunnel, None)
        if not self.registry.tunnels(site_id):
            self.health.forget(site_id)
        self.view.tunnels_changed(site_id)


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
        gateway = FakeGateway(store)
        streams = StreamLimits(reactor, max_streams=3, max_buffer=64 * 1024)
        options = {"console": gateway.view, "streams": streams}
        async with serving(store, key, authenticators=authenticators, **options) as served:
            served.__class__ = Console
            served.gateway = gateway  # type: ignore[attr-defined]
            served.streams = streams  # type: ignore[attr-defined]
            yield served  # type: ignore[misc]
            streams.close_all()
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
    reads = [r for r in ORG_ROUTES if r.method == "GET" and r.parameters == ["org"] and not r.stream]
    for route in reads:
        mine = await console.as_user(ada, "GET", _path_of(route, org))
        assert mine.status == 200, (route.path, mine.raw)
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
        "url": "https://mine.acme.example:8443/app",
        "public": False,
    }
    assert by_name["open"]["public"] is True and by_name["team"]["url"] == "https://team.acme.example:8443/"
    assert by_name["wild"]["url"] is None
    assert by_name["ssh"]["address"] == "gw.example:2222" and by_name["ssh"]["public"] is True
    assert ssh["id"] == by_name["ssh"]["id"]
    # an Admin is not let in by the gate without a grant: the launcher lists what the gate would let
    # them open (public ones), not every resource; a user of two organizations sees both
    ada = await console.user(org, "ada@example.com", "Admin")
    await console.join(other, ada, "Member")
    everything = {i["name"] for i in (await console.as_user(ada, "GET", "/me/resources")).json["items"]}
    assert everything == {"open", "ssh"}
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


# -- Server-Sent Events: a client that reads them -------------------------------------------------------


class EventReader(Protocol):
    """Reads a text/event-stream body: each event as (event, data, id), and the comments."""

    def __init__(self) -> None:
        self.buffer = b""
        self.events: list[tuple[str, Any, str | None]] = []
        self.comments: list[str] = []
        self.raw = b""
        self.ended: Deferred[None] = Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.raw += data
        self.buffer += data
        while b"\n\n" in self.buffer:
            block, self.buffer = self.buffer.split(b"\n\n", 1)
            fields: dict[str, str] = {}
            for line in block.decode("utf-8").split("\n"):
                if line.startswith(":"):
                    self.comments.append(line[1:].strip())
                    continue
                name, _, value = line.partition(": ")
                fields[name] = value
            if "data" in fields:
                self.events.append(
                    (fields.get("event", "message"), json.loads(fields["data"]), fields.get("id"))
                )

    def connectionLost(self, reason: Any = None) -> None:
        if not self.ended.called:
            self.ended.callback(None)

    async def next(self, name: str, *, within: float = 5.0, after: int = 0) -> Any:
        """The data of the first event ``name`` at or after index ``after``, waiting up to ``within``."""
        deadline = reactor.seconds() + within
        while True:
            for event, data, _ in self.events[after:]:
                if event == name:
                    return data
            if reactor.seconds() > deadline:
                raise AssertionError(f"no {name!r} event within {within}s; got {self.events}")
            await deferLater(reactor, 0.01)

    def close(self) -> None:
        self.transport.stopProducing()  # type: ignore[attr-defined]


async def open_events(api: Console, path: str, user: User | None = None, key: str | None = None) -> Any:
    """GET ``path`` as a stream (its own connection): (status, headers, reader or the problem)."""
    headers = user.headers(csrf=False) if user is not None else {}
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    client = HTTPClient(Agent(reactor))
    response = await client.get(api.base + "/api/v1" + path, headers={k: [v] for k, v in headers.items()})
    if response.code != 200:
        return response.code, response.headers, json.loads(await response.content())
    reader = EventReader()
    response.deliverBody(reader)
    return response.code, response.headers, reader


async def eventually(predicate: Any, what: str, within: float = 5.0) -> None:
    deadline = reactor.seconds() + within
    while not predicate():
        if reactor.seconds() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await deferLater(reactor, 0.01)


# -- the overview -----------------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_the_overview_shows_tunnels_health_the_last_hour_and_signins(console):
    org, site, wiki = await org_with_site_and_resource(console, "Acme")
    idle = await make(console, f"/orgs/{org}/sites", {"name": "idle"})
    ssh = await make(console, f"/orgs/{org}/resources", {"name": "ssh", "kind": "tcp", "public_port": 2222})
    target = await make(
        console,
        f"/orgs/{org}/resources/{wiki}/targets",
        {"site_id": site, "host": "10.0.0.5", "port": 8080, "health_check": {"enabled": True}},
    )
    unchecked = await make(
        console,
        f"/orgs/{org}/resources/{wiki}/targets",
        {"site_id": site, "host": "::1", "port": 80},
    )
    ada = await console.user(org, "ada@example.com", "Admin")
    gateway = console.gateway
    await gateway.know(org)
    gateway.connect(site, "tls", 0.0123)
    gateway.connect(site, "wss", None)
    gateway.health.report(site, [HealthResult(target["id"], False, "connection refused")])
    other, other_site, other_wiki = await org_with_site_and_resource(console, "Globex")
    now = datetime.now(UTC)
    rows = [
        {"kind": "request", "outcome": "allow", "org_id": org, "resource_id": wiki, "count": 40},
        {"kind": "request", "outcome": "deny", "org_id": org, "resource_id": wiki, "reason": "rule 1"},
        {"kind": "request", "outcome": "authenticate", "org_id": org, "resource_id": wiki},
        {"kind": "connect", "outcome": "allow", "org_id": org, "resource_id": ssh["id"]},
        {
            "kind": "request",
            "outcome": "deny",
            "org_id": org,
            "resource_id": wiki,
            "at": now - timedelta(hours=2),
        },
        {"kind": "request", "outcome": "allow", "org_id": other, "resource_id": other_wiki, "count": 7},
        {
            "kind": "signin",
            "outcome": "success",
            "user_id": ada.id,
            "subject": ada.email,
            "reason": "password",
        },
        {
            "kind": "signin",
            "outcome": "failure",
            "subject": "ADA@example.com",
            "reason": "wrong email or password",
        },
        {"kind": "signin", "outcome": "failure", "subject": "eve@elsewhere.example", "reason": "wrong"},
        {"kind": "signin", "outcome": "success", "org_id": other, "reason": "resource password"},
    ]
    await console.store.run(st.append_access, [{"reason": "", **row} for row in rows])
    answer = await console.as_user(ada, "GET", f"/orgs/{org}/overview")
    assert answer.status == 200, answer.raw
    overview = answer.json
    sites = {s["name"]: s for s in overview["sites"]}
    assert sites["idle"] == {
        "id": idle["site"]["id"],
        "name": "idle",
        "enabled": True,
        "online": False,
        "tunnels": [],
    }
    home = sites["home"]
    assert home["online"] is True and [t["transport"] for t in home["tunnels"]] == ["tls", "wss"]
    first = home["tunnels"][0]
    assert first["gateway"] == "gw-test" and first["rtt_ms"] == 12.3 and first["edge_version"] == "0.9.1"
    assert datetime.fromisoformat(first["since"]) <= datetime.now(UTC)
    assert home["tunnels"][1]["rtt_ms"] is None
    resources = {r["name"]: r for r in overview["resources"]}
    assert resources["ssh"] == {
        "id": ssh["id"],
        "name": "ssh",
        "kind": "tcp",
        "enabled": True,
        "listen": 2222,
        "targets": [],
    }
    assert resources["wiki"]["hostname"] == "wiki.acme.example" and resources["wiki"]["path_prefix"] == "/"
    targets = {t["id"]: t for t in resources["wiki"]["targets"]}
    assert targets[target["id"]] == {
        "id": target["id"],
        "site_id": site,
        "target": "10.0.0.5:8080",
        "enabled": True,
        "online": True,
        "healthy": False,
        "detail": "connection refused",
    }
    assert targets[unchecked["id"]]["target"] == "[::1]:80" and targets[unchecked["id"]]["healthy"] is None
    assert overview["last_hour"] == {
        "requests": 43,
        "denials": 1,
        "by_resource": sorted(
            [
                {"resource_id": wiki, "requests": 42, "denials": 1},
                {"resource_id": ssh["id"], "requests": 1, "denials": 0},
            ],
            key=lambda item: item["resource_id"],
        ),
    }
    signins = overview["signins"]
    assert [(s["outcome"], s["subject"]) for s in signins] == [
        ("failure", "ADA@example.com"),
        ("success", "ada@example.com"),
    ]
    assert signins[0]["id"] > signins[1]["id"] and signins[0]["kind"] == "signin"
    # another organization's overview is refused; ids of another organization appear nowhere
    assert_problem(await console.as_user(ada, "GET", f"/orgs/{other}/overview"), 403)
    assert other_site not in answer.raw.decode() and other_wiki not in answer.raw.decode()


@pytest_twisted.ensureDeferred
async def test_without_a_gateway_the_live_routes_answer_503(api):
    org, _, _ = await org_with_site_and_resource(api, "Acme")
    for path in (f"/orgs/{org}/overview", f"/orgs/{org}/events"):
        problem = assert_problem(await api.get(path), 503)
        assert problem["detail"] == "not available on this listener: there is no gateway behind it"


# -- live events ------------------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_events_stream_the_overview_then_edges_health_changes_and_access(console):
    org, site, wiki = await org_with_site_and_resource(console, "Acme")
    target = await make(
        console,
        f"/orgs/{org}/resources/{wiki}/targets",
        {"site_id": site, "host": "10.0.0.5", "port": 8080, "health_check": {"enabled": True}},
    )
    other, other_site, _ = await org_with_site_and_resource(console, "Globex")
    ada = await console.user(org, "ada@example.com", "Admin")
    gateway = console.gateway
    await gateway.know(org)
    await gateway.know(other)
    status, headers, events = await open_events(console, f"/orgs/{org}/events", ada)
    assert status == 200
    assert headers.getRawHeaders(b"content-type") == [b"text/event-stream; charset=utf-8"]
    assert headers.getRawHeaders(b"cache-control") == [b"no-store"]
    assert headers.getRawHeaders(b"x-accel-buffering") == [b"no"]
    first = await events.next("overview")
    assert [s["id"] for s in first["sites"]] == [site] and first["sites"][0]["online"] is False
    assert events.raw.startswith(b"retry: 2000\n\n")
    # an edge connects, then drops: each is on the stream at once (well within a second)
    began = reactor.seconds()
    tunnel = gateway.connect(site, "wss")
    up = await events.next("site", within=1.0)
    assert up["id"] == site and up["online"] is True and up["tunnels"][0]["transport"] == "wss"
    gateway.health.report(site, [HealthResult(target["id"], False, "timeout")])
    health = await events.next("health", within=1.0)
    assert health == {
        "resource_id": wiki,
        "id": target["id"],
        "site_id": site,
        "target": "10.0.0.5:8080",
        "online": True,
        "healthy": False,
        "detail": "timeout",
    }
    seen = len(events.events)
    gateway.drop(site, tunnel)
    down = await events.next("site", within=1.0, after=seen)
    assert down == {"id": site, "name": "home", "enabled": True, "online": False, "tunnels": []}
    assert (await events.next("health", after=seen))["healthy"] is None  # nobody vouches for it now
    assert reactor.seconds() - began < 1.0
    # the organization's configuration changes
    made = await make(console, f"/orgs/{org}/sites", {"name": "branch"})
    await gateway.know(org)
    changed = await events.next("changed")
    assert changed == {"kind": "site", "id": made["site"]["id"], "op": "create"}
    # access log rows, rendered as the access-log API renders them
    gateway.view.access_row(
        {
            "at": datetime.now(UTC),
            "org_id": org,
            "resource_id": wiki,
            "kind": "request",
            "outcome": "deny",
            "reason": "denied by rule 1",
            "path": "/admin",
            "count": 1,
        }
    )
    access = await events.next("access")
    assert access["outcome"] == "deny" and access["path"] == "/admin" and access["id"] is None
    assert set(access) == set(_schemas.SCHEMAS["AccessEntry"]["properties"])
    # another organization's events never reach this stream
    seen = len(events.events)
    gateway.connect(other_site)
    gateway.view.access_row({"org_id": other, "kind": "request", "outcome": "deny", "reason": "x"})
    await make(console, f"/orgs/{other}/sites", {"name": "theirs"})
    await gateway.know(other)
    await deferLater(reactor, 0.2)
    assert events.events[seen:] == []
    ids = [int(i) for _, _, i in events.events if i is not None]
    assert ids == sorted(ids) and len(ids) == len(events.events) - 1  # all but the overview have ids
    events.close()
    await eventually(lambda: not console.streams.open, "the stream to end on the server")
    assert gateway.view.events.watchers() == 0  # unsubscribed


@pytest_twisted.ensureDeferred
async def test_events_are_for_owners_and_admins_of_the_organization(console):
    org, _, _ = await org_with_site_and_resource(console, "Acme")
    other, _, _ = await org_with_site_and_resource(console, "Globex")
    mel = await console.user(org, "mel@example.com", "Member")
    ada = await console.user(other, "ada@example.com", "Admin")
    status, _, problem = await open_events(console, f"/orgs/{org}/events", mel)
    assert status == 403 and "(Member)" in problem["detail"]
    status, _, problem = await open_events(console, f"/orgs/{org}/events", ada)
    assert status == 403 and problem["detail"] == "you are not a member of this organization"
    status, _, _ = await open_events(console, f"/orgs/{org}/events")
    assert status == 401
    key = await console.create_key(other, ["read"])
    status, _, problem = await open_events(console, f"/orgs/{org}/events", key=key)
    assert status == 403
    status, _, problem = await open_events(console, "/orgs/org_doesnotexist/events", key=console.key)
    assert status == 404
    assert not console.streams.open and console.gateway.view.events.watchers() == 0


@pytest_twisted.ensureDeferred
async def test_at_most_max_streams_are_open_and_the_next_gets_503_with_retry_after(console):
    org, _, _ = await org_with_site_and_resource(console, "Acme")
    ada = await console.user(org, "ada@example.com", "Admin")
    readers = []
    for _ in range(console.streams.max_streams):
        status, _, reader = await open_events(console, f"/orgs/{org}/events", ada)
        assert status == 200
        await reader.next("overview")
        readers.append(reader)
    status, headers, problem = await open_events(console, f"/orgs/{org}/events", ada)
    assert status == 503 and headers.getRawHeaders(b"retry-after") == [b"5"]
    assert "at most 3" in problem["detail"] and "max_streams" in problem["detail"]
    assert console.gateway.view.events.watchers() == 3  # the refused one never subscribed
    readers.pop().close()
    await eventually(lambda: len(console.streams.open) == 2, "a stream to close")
    status, _, reader = await open_events(console, f"/orgs/{org}/events", ada)
    assert status == 200
    readers.append(reader)
    # the gateway stops: every stream ends (the browsers would reconnect elsewhere)
    console.streams.close_all()
    for reader in readers:
        await reader.ended
    status, _, problem = await open_events(console, f"/orgs/{org}/events", ada)
    assert status == 503 and problem["detail"] == "the gateway is stopping"


@pytest_twisted.ensureDeferred
async def test_a_client_that_does_not_read_is_cut_off_past_max_buffer(console):
    org, _, _ = await org_with_site_and_resource(console, "Acme")
    ada = await console.user(org, "ada@example.com", "Admin")
    await console.gateway.know(org)
    slow = socket.socket()
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    slow.setblocking(False)
    try:
        try:
            slow.connect(("127.0.0.1", console.port))
        except BlockingIOError:
            pass
        await deferLater(reactor, 0.05)
        cookies = ada.headers(csrf=False)["Cookie"]
        slow.send(f"GET /api/v1/orgs/{org}/events HTTP/1.1\r\nHost: x\r\nCookie: {cookies}\r\n\r\n".encode())
        await eventually(lambda: console.gateway.view.events.watchers() == 1, "the stream to open")
        big = {"note": "x" * 4000}
        for _ in range(2000):  # 8 MB of events, never read
            console.gateway.view.events.publish(org, "site", big)
            if not console.streams.open:
                break
        await eventually(lambda: console.streams.overflows == 1, "the stream to be cut off")
        assert not console.streams.open and console.gateway.view.events.watchers() == 0

        def closed() -> bool:
            try:
                while slow.recv(65536):
                    pass
                return True  # end of stream
            except BlockingIOError:
                return False
            except ConnectionResetError:
                return True

        await eventually(closed, "the connection to be dropped")
    finally:
        slow.close()
    # the others are not affected
    status, _, reader = await open_events(console, f"/orgs/{org}/events", ada)
    assert status == 200
    await reader.next("overview")
    reader.close()


@pytest_twisted.ensureDeferred
async def test_a_keepalive_comment_every_interval(console):
    org, _, _ = await org_with_site_and_resource(console, "Acme")
    ada = await console.user(org, "ada@example.com", "Admin")
    console.streams.keepalive = 0.1
    _, _, reader = await open_events(console, f"/orgs/{org}/events", ada)
    await eventually(lambda: reader.comments.count("keepalive") >= 2, "two keepalives", within=3)
    reader.close()


# -- which rule decides a request ------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_the_rule_tester_decides_as_the_gateway_with_the_current_rules(console):
    org, _, wiki = await org_with_site_and_resource(console, "Acme")
    ada = await console.user(org, "ada@example.com", "Admin")
    rules = f"/orgs/{org}/resources/{wiki}/rules"
    deny = await make(console, rules, {"priority": 10, "action": "deny", "path": "/admin"})
    bypass = await make(console, rules, {"priority": 20, "action": "bypass", "path": "/public"})
    office = await make(
        console, rules, {"priority": 30, "action": "allow", "cidr": "10.0.0.0/8", "method": "POST"}
    )
    await make(console, rules, {"priority": 40, "action": "deny", "path": "/off", "enabled": False})
    test = f"{rules}/test"

    async def decide(method: str, path: str, address: str = "192.0.2.7") -> dict[str, Any]:
        body = {"method": method, "path": path, "client_address": address}
        answer = await console.as_user(ada, "POST", test, body)
        assert answer.status == 200, answer.raw
        return answer.json

    denied = await decide("GET", "/admin/users")
    assert denied["decision"] == "deny" and denied["rule"]["id"] == deny["id"] and denied["rule"] == deny
    assert "denied by rule 10" in denied["reason"]
    # the router's normalization and the engine's folding, exactly as for a real request
    for sneaky in ("/ADMIN", "/x/../admin", "/%61dmin", "/admin.", "/public/..%2Fadmin"):
        assert (await decide("GET", sneaky))["decision"] == "deny", sneaky
    assert (await decide("GET", "/public/x?y=1"))["decision"] == "bypass"
    assert (await decide("GET", "/PUBLIC/x"))["decision"] == "authenticate"  # bypass never folds
    posted = await decide("post", "/form", "10.1.2.3")
    assert posted["decision"] == "authenticate" and posted["rule"]["id"] == office["id"]
    default = await decide("GET", "/off")  # a disabled rule does not count
    assert default == {
        "decision": "authenticate",
        "rule": None,
        "reason": "no rule matches and the resource is not public: signing in is required",
    }
    assert (await decide("GET", "/.kokoa/auth/start"))["decision"] == "internal"
    # changes apply at once: the tester reads the store, not a copy
    await console.patch(f"{rules}/{deny['id']}", {"enabled": False})
    await console.patch(f"/orgs/{org}/resources/{wiki}", {"public": True})
    assert (await decide("GET", "/admin"))["decision"] == "allow"
    # a resource under a prefix; a TCP resource (a connection: no one can sign in on a raw port)
    app = await make(
        console,
        f"/orgs/{org}/resources",
        {"name": "app", "kind": "http", "hostname": "app.acme.example", "path_prefix": "/app"},
    )
    outside = (
        await console.as_user(
            ada,
            "POST",
            f"/orgs/{org}/resources/{app['id']}/rules/test",
            {"method": "GET", "path": "/other", "client_address": "::1"},
        )
    ).json
    assert outside["decision"] == "not_routed" and outside["rule"] is None
    ssh = await make(
        console,
        f"/orgs/{org}/resources",
        {"name": "ssh", "kind": "tcp", "public_port": 2222, "public": False},
    )
    tcp = (
        await console.as_user(
            ada,
            "POST",
            f"/orgs/{org}/resources/{ssh['id']}/rules/test",
            {"method": "GET", "path": "/", "client_address": "::ffff:10.0.0.1"},
        )
    ).json
    assert tcp["decision"] == "deny" and "raw TCP port cannot sign anyone in" in tcp["reason"]
    assert bypass


@pytest_twisted.ensureDeferred
async def test_the_rule_tester_refuses_bad_input_other_orgs_members_and_missing_csrf(console):
    org, _, wiki = await org_with_site_and_resource(console, "Acme")
    other, _, theirs = await org_with_site_and_resource(console, "Globex")
    ada = await console.user(org, "ada@example.com", "Admin")
    mel = await console.user(org, "mel@example.com", "Member")
    test = f"/orgs/{org}/resources/{wiki}/rules/test"
    good = {"method": "GET", "path": "/", "client_address": "192.0.2.1"}
    for bad, field in (
        ({**good, "method": "GE T"}, "method"),
        ({**good, "method": ""}, "method"),
        ({**good, "method": "X" * 33}, "method"),
        ({**good, "path": "admin"}, "path"),
        ({**good, "path": "/" + "a" * 2000}, "path"),
        ({**good, "path": "/é"}, "path"),
        ({**good, "path": "/a%zz"}, "path"),
        ({**good, "path": "/a#frag"}, "path"),
        ({**good, "client_address": "10.0.0.0/8"}, "client_address"),
        ({**good, "client_address": "localhost"}, "client_address"),
        ({**good, "client_address": "1.2.3.4\x00"}, "client_address"),
        ({"method": "GET", "path": "/"}, "client_address"),
        ({**good, "extra": 1}, "extra"),
    ):
        answer = await console.as_user(ada, "POST", test, bad)
        assert field in assert_problem(answer, 422)["detail"] or field in answer.fields, (bad, answer.raw)
    assert_problem(await console.as_user(ada, "POST", test, good, csrf=False), 403)
    assert_problem(await console.as_user(mel, "POST", test, good), 403)
    assert_problem(
        await console.as_user(ada, "POST", f"/orgs/{other}/resources/{theirs}/rules/test", good), 403
    )
    # another organization's resource under one's own organization is not found
    assert_problem(
        await console.as_user(ada, "POST", f"/orgs/{org}/resources/{theirs}/rules/test", good), 404
    )
    # GET .../rules/test is the rule named "test" (none)
    assert_problem(await console.as_user(ada, "GET", test), 404)


# -- access stats ------------------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_access_stats_sum_allowed_and_denied_per_resource_and_bucket(console):
    org, _, wiki = await org_with_site_and_resource(console, "Acme")
    ssh = await make(console, f"/orgs/{org}/resources", {"name": "ssh", "kind": "tcp", "public_port": 2222})
    gone = await make(console, f"/orgs/{org}/resources", {"name": "gone", "kind": "tcp", "public_port": 2223})
    other, _, theirs = await org_with_site_and_resource(console, "Globex")
    ada = await console.user(org, "ada@example.com", "Admin")
    base = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)  # a multiple of 300 seconds since the epoch
    seconds = timedelta(seconds=1)

    def row(resource: str, outcome: str, at: int, count: int = 1, kind: str = "request", org_id: str = org):
        return {
            "kind": kind,
            "outcome": outcome,
            "reason": "",
            "org_id": org_id,
            "resource_id": resource,
            "at": base + at * seconds,
            "count": count,
        }

    await console.store.run(
        st.append_access,
        [
            row(wiki, "allow", 10, 5),
            row(wiki, "deny", 20),
            row(wiki, "deny", 299),
            row(wiki, "allow", 310, 2),
            row(wiki, "authenticate", 320),  # neither allowed nor denied
            row(ssh["id"], "allow", 30, kind="connect"),
            row(gone["id"], "deny", 40, kind="connect"),
            row(wiki, "allow", -1),  # before since
            row(wiki, "allow", 3600),  # at until: excluded
            row(theirs, "allow", 50, 9, org_id=other),  # another organization's
            {"kind": "signin", "outcome": "success", "reason": "", "org_id": org, "at": base + 60 * seconds},
        ],
    )
    await console.delete(f"/orgs/{org}/resources/{gone['id']}")
    since, until = base.isoformat(), (base + 3600 * seconds).isoformat()
    query = f"since={since.replace('+00:00', 'Z')}&until={until.replace('+00:00', 'Z')}"
    answer = await console.as_user(ada, "GET", f"/orgs/{org}/access-stats?{query}")
    assert answer.status == 200, answer.raw
    five = (base + 300 * seconds).isoformat()
    assert answer.json == {
        "bucket_seconds": 300,
        "series": [
            {"resource_id": ssh["id"], "name": "ssh", "points": [[base.isoformat(), 1, 0]]},
            {"resource_id": wiki, "name": "wiki", "points": [[base.isoformat(), 5, 2], [five, 2, 0]]},
            {"resource_id": gone["id"], "name": None, "points": [[base.isoformat(), 0, 1]]},
        ],
    }
    hourly = await console.as_user(ada, "GET", f"/orgs/{org}/access-stats?{query}&bucket=3600")
    wiki_points = next(s["points"] for s in hourly.json["series"] if s["resource_id"] == wiki)
    assert hourly.json["bucket_seconds"] == 3600 and wiki_points == [[base.isoformat(), 7, 2]]
    # the defaults: the last hour, 5-minute buckets (nothing there yet)
    assert (await console.as_user(ada, "GET", f"/orgs/{org}/access-stats")).json == {
        "bucket_seconds": 300,
        "series": [],
    }


@pytest_twisted.ensureDeferred
async def test_access_stats_refuse_odd_and_huge_queries(console):
    org, _, _ = await org_with_site_and_resource(console, "Acme")
    other, _, _ = await org_with_site_and_resource(console, "Globex")
    ada = await console.user(org, "ada@example.com", "Admin")
    mel = await console.user(org, "mel@example.com", "Member")
    stats = f"/orgs/{org}/access-stats"
    for query, field in (
        ("bucket=59", "bucket"),
        ("bucket=86401", "bucket"),
        ("bucket=abc", "bucket"),
        ("bucket=1.5", "bucket"),
        ("bucket=99999999999999999999999", "bucket"),
        ("bucket=-300", "bucket"),
        ("bucket=60&since=2030-01-01T00:00:00Z&until=2030-01-02T00:00:00Z", "bucket"),  # 1440 buckets
        ("since=0001-01-01T00:00:00Z&until=9999-12-31T23:59:59Z&bucket=86400", "since"),
        ("since=1969-12-31T23:00:00Z&until=1970-01-01T01:00:00Z", "since"),
        ("since=2030-01-02T00:00:00Z&until=2030-01-01T00:00:00Z", "since"),
        ("since=2030-01-01T00:00:00Z&until=2030-01-01T00:00:00Z", "since"),
        ("since=yesterday", "since"),
        ("since=2030-13-01T00:00:00Z", "since"),
        ("until=2030-01-01T00:00:00", "until"),  # no offset
        ("since=%00", "since"),
        ("until=" + "9" * 5000, "until"),
    ):
        answer = await console.as_user(ada, "GET", f"{stats}?{query}")
        problem = assert_problem(answer, 422)
        assert field in answer.fields or problem["detail"].startswith(field), (query, answer.raw)
    far = await console.as_user(
        ada, "GET", f"{stats}?since=9999-12-31T00:00:00Z&until=9999-12-31T23:59:59Z&bucket=86400"
    )
    assert far.status == 200 and far.json["series"] == []
    assert_problem(await console.as_user(mel, "GET", stats), 403)
    assert_problem(await console.as_user(ada, "GET", f"/orgs/{other}/access-stats"), 403)


# -- the request inspector ---------------------------------------------------------------------------------


def _request(path: str, status: int = 200) -> dict[str, Any]:
    return {
        "time": "2030-01-01T00:00:00.000Z",
        "method": "GET",
        "path": path,
        "status": status,
        "duration_ms": 1.5,
        "bytes_in": 0,
        "bytes_out": 12,
        "user": "ada@example.com",
        "client_address": "192.0.2.1",
        "decision": "allow",
        "rule": None,
        "target": None,
        "request_headers": [["cookie", "__Host-kokoa_session=secret"], ["accept", "*/*"]],
        "response_headers": [["content-type", "text/plain"]],
    }


@pytest_twisted.ensureDeferred
async def test_the_inspector_streams_the_ring_then_each_request_and_stops_watching(console):
    org, _, wiki = await org_with_site_and_resource(console, "Acme")
    ada = await console.user(org, "ada@example.com", "Admin")
    inspector = console.gateway.view.inspector
    path = f"/orgs/{org}/resources/{wiki}/inspect"
    inspector.record(wiki, _request("/before"))  # nobody watches: not kept
    status, headers, first = await open_events(console, path, ada)
    assert status == 200 and headers.getRawHeaders(b"content-type") == [b"text/event-stream; charset=utf-8"]
    await eventually(lambda: inspector.watching(wiki), "the watch")
    inspector.record(wiki, _request("/one"))
    one = await first.next("request")
    assert one["path"] == "/one" and one["status"] == 200
    assert one["request_headers"] == [["cookie", "[redacted]"], ["accept", "*/*"]]
    # a second watcher gets the ring first, then what comes, like the first
    _, _, second = await open_events(console, path, ada)
    assert (await second.next("request"))["path"] == "/one"
    inspector.record(wiki, _request("/two", 404))
    assert (await second.next("request", after=1))["path"] == "/two"
    assert (await first.next("request", after=1))["status"] == 404
    assert [e[2] for e in first.events] == [one["id"], (await first.next("request", after=1))["id"]]
    first.close()
    second.close()
    await eventually(lambda: not inspector.watching(wiki) and inspector.watchers == 0, "the unwatch")
    assert not console.streams.open


@pytest_twisted.ensureDeferred
async def test_the_inspector_is_for_admins_of_the_resources_organization_and_bounded(console):
    org, _, wiki = await org_with_site_and_resource(console, "Acme")
    other, _, theirs = await org_with_site_and_resource(console, "Globex")
    ssh = await make(console, f"/orgs/{org}/resources", {"name": "ssh", "kind": "tcp", "public_port": 2222})
    ada = await console.user(org, "ada@example.com", "Admin")
    mel = await console.user(org, "mel@example.com", "Member")
    inspector = console.gateway.view.inspector
    path = f"/orgs/{org}/resources/{wiki}/inspect"
    status, _, problem = await open_events(console, path, mel)
    assert status == 403 and "(Member)" in problem["detail"]
    status, _, _ = await open_events(console, f"/orgs/{other}/resources/{theirs}/inspect", ada)
    assert status == 403
    status, _, problem = await open_events(console, f"/orgs/{org}/resources/{theirs}/inspect", ada)
    assert status == 404
    status, _, problem = await open_events(console, f"/orgs/{org}/resources/{ssh['id']}/inspect", ada)
    assert status == 404 and "HTTP" in problem["detail"]
    status, _, _ = await open_events(console, f"/orgs/{org}/resources/res_nothere/inspect", ada)
    assert status == 404
    assert inspector.watchers == 0 and not console.streams.open
    # the inspector's own bound (max_watchers 2 here): 503 with Retry-After, nothing left open
    readers = [(await open_events(console, path, ada))[2] for _ in range(2)]
    await eventually(lambda: inspector.watchers == 2, "two watchers")
    status, headers, problem = await open_events(console, path, ada)
    assert status == 503 and headers.getRawHeaders(b"retry-after") == [b"5"]
    assert "inspector is busy" in problem["detail"]
    assert len(console.streams.open) == 2 and inspector.watchers == 2
    for reader in readers:
        reader.close()
    await eventually(lambda: inspector.watchers == 0 and not console.streams.open, "the watchers to go")
