"""The request inspector in the HTTP front: real HTTP requests through a real listener, a real
AccessGate, a real tunnel and edge, to real upstreams (a twisted.web echo and a scripted raw one),
while a test watches the resource through ``front.inspector``.

Each case checks every field of the entry, and that no secret (an API key, a share token, a cookie, a
nonce) appears anywhere in it: allowed, bypassed, denied by a rule, sign-in required (redirect and
401), the upstream refusing, the upstream gone mid-response, the client gone before and during the
response, a refused body, an upgrade; and that an unwatched resource costs no Inspection at all.
"""

from __future__ import annotations

import json
import re
import socket
from datetime import UTC, datetime, timedelta

import pytest_twisted as pt
from http_rig import Echo, deferLater, http_resource, listen_upstream, parse_responses, start_rig, target
from twisted.internet import defer, endpoints, reactor, threads
from twisted.internet.protocol import Factory, Protocol

from kokoa.auth._gate import AccessGate
from kokoa.auth._settings import AuthSettings
from kokoa.http._front import FrontSettings
from kokoa.http._inspector import REDACTED, Inspector
from kokoa.policy import Identity, PolicySet

KEY = "kk_0123456789abcdef_0123456789abcdefghij"
SHARE = "kks_0123456789abcdefghijklmnopqrstuv"
COOKIE_SECRET = "s3cr3t-cookie-value"
SECRETS = (KEY, SHARE, COOKIE_SECRET, "kk_", "kks_")
ANN = Identity("usr_ann", "ann@example.com", frozenset({"rol_member"}))
#: (A client that said "Connection: close" is not read any more, so its leaving is not seen at once.)
CLOSE = b"Connection: close\r\n"
ISO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


class FakeStore:
    """What the gate's identity cache asks: one API key is Ann's; nothing else is known."""

    def run(self, fn, token, *args):
        if token == KEY:
            expires = datetime.now(UTC) + timedelta(hours=1)
            return defer.succeed((ANN, expires, None, None, "Ann", None, ()))
        return defer.succeed(None)


def make_gate() -> AccessGate:
    store = FakeStore()
    gate = AccessGate(AuthSettings(), lambda: store, reactor, https_port=None)
    rules = [
        {"id": "rul_deny", "resource_id": "res_app", "priority": 1, "action": "deny", "path": "/admin"},
        {"id": "rul_pub", "resource_id": "res_app", "priority": 2, "action": "bypass", "path": "/public"},
    ]
    grants = [{"resource_id": r, "user_id": "usr_ann"} for r in ("res_app", "res_raw", "res_dead")]
    gate.reload(PolicySet.build(rules, grants, resources=["res_app", "res_raw", "res_dead"]))
    return gate


class Scripted(Protocol):
    """A raw upstream that answers by the request's path: /hang (never), /partial (a head and part
    of the body, then waits), /cut (a head and part of the body, then closes), /upgrade (101)."""

    def connectionMade(self) -> None:
        self.factory.open.append(self)

    def connectionLost(self, reason=None) -> None:
        self.factory.open.remove(self)

    def dataReceived(self, data: bytes) -> None:
        path = data.split(b" ", 2)[1]
        head = b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\nSet-Cookie: up=" + COOKIE_SECRET.encode()
        if path == b"/partial":
            self.transport.write(head + b"\r\nX-Up: 1\r\n\r\n" + b"x" * 10)
        elif path == b"/cut":
            self.transport.write(head + b"\r\n\r\n" + b"x" * 10)
            self.transport.loseConnection()
        elif path == b"/upgrade":
            self.transport.write(
                b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: raw\r\n\r\n"
            )


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pt.async_yield_fixture
async def rig():
    echo = Echo()
    scripted = Factory.forProtocol(Scripted)
    scripted.open = []

    async def resources(rig):
        port, number = await listen_upstream(echo)
        raw = await endpoints.TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(scripted)
        rig.ports += [port, raw]
        return [
            http_resource("app", "app.test", target("a", number)),
            http_resource("raw", "raw.test", target("r", raw.getHost().port)),
            http_resource("dead", "dead.test", target("d", closed_port())),
        ]

    rig = await start_rig(lambda rig: defer.ensureDeferred(resources(rig)), FrontSettings(max_body=1000))
    rig.front.gate = make_gate()
    yield rig
    for protocol in list(scripted.open):
        protocol.transport.abortConnection()
    await rig.stop()


@pt.async_yield_fixture
async def watched(rig):
    """Watch every resource; yields resource id -> the entries its watcher got."""
    seen: dict[str, list[dict]] = {"res_app": [], "res_raw": [], "res_dead": []}
    stops = [rig.front.inspector.watch(r, seen[r].append) for r in seen]
    yield seen
    for stop in stops:
        stop()


def send(port: int, request: bytes, *, read: str = "close", timeout: float = 10.0) -> bytes:
    """Send a request; read until the server closes ("close"), or only up to the response head and
    then close the socket ("head"), or close at once after sending ("none")."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(request)
        got = b""
        if read == "none":
            return got
        while True:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:  # the gateway aborts a truncated response (a reset)
                return got
            if not chunk:
                return got
            got += chunk
            if read == "head" and b"\r\n\r\n" in got:
                return got


def request(
    method: str, path: str, host: str = "app.test", *headers: tuple[str, str], body: bytes = b""
) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in headers]
    if body:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def wait_for(entries: list[dict], n: int = 1) -> list[dict]:
    for _ in range(500):
        if len(entries) >= n:
            return entries
        await deferLater(0.01)
    raise AssertionError(f"{len(entries)} entries, waited for {n}")


def check_common(entry: dict, method: str, path: str) -> None:
    assert set(entry) == {
        "id",
        "time",
        "method",
        "path",
        "status",
        "duration_ms",
        "bytes_in",
        "bytes_out",
        "user",
        "client_address",
        "decision",
        "rule",
        "target",
        "ended",
        "skipped",
        "request_headers",
        "response_headers",
    }
    assert entry["id"].isdigit()
    assert ISO.fullmatch(entry["time"])
    started = datetime.fromisoformat(entry["time"].replace("Z", "+00:00"))
    assert abs((datetime.now(UTC) - started).total_seconds()) < 60
    assert (entry["method"], entry["path"]) == (method, path)
    assert isinstance(entry["duration_ms"], float) and entry["duration_ms"] >= 0
    assert entry["client_address"] == "127.0.0.1"
    for name, _ in entry["request_headers"] + entry["response_headers"]:
        assert name == name.lower()
    text = json.dumps(entry)
    for secret in SECRETS:
        assert secret not in text, secret


def headers_of(pairs: list[list[str]]) -> dict[str, str]:
    return dict(pairs)


APP_TARGET = {"id": "tgt_a", "site_id": "home", "target": None}


def app_target(rig) -> dict:
    (resource,) = [r for r in rig.directory.http if r.id == "res_app"]
    return {"id": "tgt_a", "site_id": "home", "target": resource.targets[0].target}


# ------------------------------------------------------------------------------------- decisions


@pt.ensureDeferred
async def test_an_allowed_request(rig, watched):
    body = b"hello=world"
    raw = await threads.deferToThread(
        send,
        rig.http_port,
        request(
            "POST",
            "/x?q=1",
            "app.test",
            ("Authorization", f"Bearer {KEY}"),
            ("Cookie", f"theme=dark; other={COOKIE_SECRET}"),
            ("X-Kokoa-Trace", COOKIE_SECRET),
            ("X-Auth-Request-Email", "mallory@example.com"),  # [auth] strip_headers by default
            ("Referer", f"https://app.test/?share={SHARE}"),
            ("Accept", "application/json"),
            body=body,
        ),
    )
    ((status, _, answer),) = parse_responses(raw)
    assert status == 200
    (entry,) = await wait_for(watched["res_app"])
    check_common(entry, "POST", "/x?q=1")
    assert entry["status"] == 200
    assert (entry["bytes_in"], entry["bytes_out"]) == (len(body), len(answer))
    assert (entry["user"], entry["decision"], entry["rule"]) == ("ann@example.com", "allow", None)
    assert entry["target"] == app_target(rig)
    assert entry["ended"] == "complete"
    sent = headers_of(entry["request_headers"])
    assert sent["host"] == "app.test" and sent["accept"] == "application/json"
    assert sent["content-length"] == str(len(body))
    for name in ("authorization", "cookie", "x-kokoa-trace", "x-auth-request-email", "referer"):
        assert sent[name] == REDACTED, name
    got = headers_of(entry["response_headers"])
    assert got["content-type"] == "application/json"
    assert got["content-length"] == str(len(answer))
    assert watched["res_raw"] == [] and watched["res_dead"] == []
    assert rig.front.inspector.recent("res_app") == [entry]


@pt.ensureDeferred
async def test_a_bypass_rule(rig, watched):
    raw = await threads.deferToThread(send, rig.http_port, request("GET", "/public/a.css"))
    ((status, _, answer),) = parse_responses(raw)
    assert status == 200
    (entry,) = await wait_for(watched["res_app"])
    check_common(entry, "GET", "/public/a.css")
    assert (entry["decision"], entry["user"], entry["status"]) == ("bypass", None, 200)
    assert entry["rule"]["id"] == "rul_pub" and entry["rule"]["action"] == "bypass"
    assert entry["rule"]["path"] == "/public" and "bypass" in entry["rule"]["pattern"]
    assert entry["target"] == app_target(rig)
    assert (entry["bytes_in"], entry["bytes_out"]) == (0, len(answer))


@pt.ensureDeferred
async def test_denied_by_a_rule(rig, watched):
    echo_before = len(rig.upstreams.get("echo", Echo()).requests)
    raw = await threads.deferToThread(
        send, rig.http_port, request("GET", "/admin/users", "app.test", ("Authorization", f"Bearer {KEY}"))
    )
    ((status, headers, answer),) = parse_responses(raw)
    assert status == 403
    (entry,) = await wait_for(watched["res_app"])
    check_common(entry, "GET", "/admin/users")
    assert (entry["status"], entry["decision"], entry["user"]) == (403, "deny", "ann@example.com")
    assert entry["rule"] == {
        "id": "rul_deny",
        "priority": 1,
        "action": "deny",
        "method": None,
        "path": "/admin",
        "cidr": None,
        "pattern": "rule 1 (deny /admin)",
    }
    assert entry["target"] is None
    assert entry["bytes_out"] == len(answer)
    assert headers_of(entry["response_headers"])["content-type"] == headers["content-type"]
    assert headers_of(entry["request_headers"])["authorization"] == REDACTED
    assert len(rig.upstreams.get("echo", Echo()).requests) == echo_before


@pt.ensureDeferred
async def test_sign_in_required(rig, watched):
    # A browser is sent to the login host (with a nonce cookie); a program gets 401.
    raw = await threads.deferToThread(
        send, rig.http_port, request("GET", "/page?a=b", "app.test", ("Accept", "text/html"))
    )
    ((status, headers, _),) = parse_responses(raw)
    assert status == 302 and "set-cookie" in headers
    raw = await threads.deferToThread(
        send, rig.http_port, request("GET", "/api", "app.test", ("Authorization", "Bearer kk_unknown"))
    )
    ((status, _, answer),) = parse_responses(raw)
    assert status == 401
    browser, program = await wait_for(watched["res_app"], 2)
    check_common(browser, "GET", "/page?a=b")
    assert (browser["status"], browser["decision"], browser["rule"], browser["user"]) == (
        302,
        "authenticate",
        None,
        None,
    )
    assert browser["target"] is None and browser["bytes_in"] == 0
    got = headers_of(browser["response_headers"])
    assert got["set-cookie"] == REDACTED
    assert got["location"].startswith("https://login.localhost/authorize?")
    check_common(program, "GET", "/api")
    assert (program["status"], program["decision"]) == (401, "authenticate")
    assert headers_of(program["request_headers"])["authorization"] == REDACTED
    assert headers_of(program["response_headers"])["www-authenticate"] == 'Bearer realm="kokoa"'
    assert program["bytes_out"] == len(answer)
    assert int(browser["id"]) < int(program["id"])


# --------------------------------------------------------------------------------- upstream side


@pt.ensureDeferred
async def test_the_upstream_refuses(rig, watched):
    raw = await threads.deferToThread(
        send, rig.http_port, request("GET", "/", "dead.test", ("Authorization", f"Bearer {KEY}"))
    )
    ((status, _, answer),) = parse_responses(raw)
    assert status == 502
    (entry,) = await wait_for(watched["res_dead"])
    check_common(entry, "GET", "/")
    assert (entry["status"], entry["decision"], entry["ended"]) == (502, "allow", "complete")
    (resource,) = [r for r in rig.directory.http if r.id == "res_dead"]
    assert entry["target"] == {"id": "tgt_d", "site_id": "home", "target": resource.targets[0].target}
    assert entry["bytes_out"] == len(answer)
    assert watched["res_app"] == []


@pt.ensureDeferred
async def test_the_upstream_goes_away_mid_response(rig, watched):
    raw = await threads.deferToThread(
        send, rig.http_port, request("GET", "/cut", "raw.test", ("Authorization", f"Bearer {KEY}"))
    )
    assert raw == b"" or raw.startswith(b"HTTP/1.1 200")  # (a reset may overtake what was sent)
    (entry,) = await wait_for(watched["res_raw"])
    check_common(entry, "GET", "/cut")
    assert (entry["status"], entry["ended"], entry["bytes_out"]) == (200, "upstream_gone", 10)
    assert headers_of(entry["response_headers"])["set-cookie"] == REDACTED


@pt.ensureDeferred
async def test_the_client_goes_away_mid_response(rig, watched):
    raw = await threads.deferToThread(
        send,
        rig.http_port,
        request("GET", "/partial", "raw.test", ("Authorization", f"Bearer {KEY}")).replace(CLOSE, b""),
        read="head",
    )
    assert raw.startswith(b"HTTP/1.1 200")
    (entry,) = await wait_for(watched["res_raw"])
    check_common(entry, "GET", "/partial")
    assert (entry["status"], entry["ended"]) == (200, "client_gone")
    assert entry["bytes_out"] in (0, 10)  # the part read before the client went, if it arrived yet
    got = headers_of(entry["response_headers"])
    assert (got["x-up"], got["content-length"], got["set-cookie"]) == ("1", "100000", REDACTED)


@pt.ensureDeferred
async def test_the_client_goes_away_before_the_response(rig, watched):
    await threads.deferToThread(
        send,
        rig.http_port,
        request("GET", "/hang", "raw.test", ("Authorization", f"Bearer {KEY}")).replace(CLOSE, b""),
        read="none",
    )
    (entry,) = await wait_for(watched["res_raw"])
    check_common(entry, "GET", "/hang")
    assert (entry["status"], entry["ended"], entry["response_headers"]) == (None, "client_gone", [])
    assert entry["decision"] == "allow" and entry["target"]["id"] == "tgt_r"


@pt.ensureDeferred
async def test_an_upgrade_is_recorded_at_its_101(rig, watched):
    upgrade = request("GET", "/upgrade", "raw.test", ("Authorization", f"Bearer {KEY}"))
    upgrade = upgrade.replace(b"Connection: close", b"Connection: upgrade\r\nUpgrade: raw")
    raw = await threads.deferToThread(send, rig.http_port, upgrade, read="head")
    assert raw.startswith(b"HTTP/1.1 101")
    (entry,) = await wait_for(watched["res_raw"])
    check_common(entry, "GET", "/upgrade")
    assert (entry["status"], entry["ended"]) == (101, "upgraded")
    assert headers_of(entry["response_headers"])["upgrade"] == "raw"


@pt.ensureDeferred
async def test_a_body_over_max_body_is_refused_and_recorded(rig, watched):
    head = (
        "POST /up HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\n"
        f"Authorization: Bearer {KEY}\r\n\r\n"
    ).encode()
    chunks = b"".join(b"%x\r\n%s\r\n" % (300, b"y" * 300) for _ in range(5))
    raw = await threads.deferToThread(send, rig.http_port, head + chunks + b"0\r\n\r\n")
    assert raw.startswith(b"HTTP/1.1 413")
    (entry,) = await wait_for(watched["res_app"])
    check_common(entry, "POST", "/up")
    assert (entry["status"], entry["decision"]) == (413, "allow")
    assert 1000 < entry["bytes_in"] <= 1500


# ------------------------------------------------------------------------------------ watching


@pt.ensureDeferred
async def test_nobody_watching_costs_no_inspection(rig, monkeypatch):
    def no(*args, **kw):
        raise AssertionError("an Inspection was made for an unwatched resource")

    monkeypatch.setattr(Inspector, "begin", no)
    watching = []
    original = rig.front.inspector.watching

    def counted(resource_id: str) -> bool:
        watching.append(resource_id)
        return original(resource_id)

    monkeypatch.setattr(rig.front.inspector, "watching", counted)
    for path in ("/x", "/admin", "/public/x"):
        raw = await threads.deferToThread(
            send, rig.http_port, request("GET", path, "app.test", ("Authorization", f"Bearer {KEY}"))
        )
        assert parse_responses(raw)
    assert watching == ["res_app"] * 3  # one question per request, and nothing more
    assert rig.front.inspector.recent("res_app") == []


@pt.ensureDeferred
async def test_the_ring_and_unwatch(rig):
    inspector = rig.front.inspector
    inspector.ring_size = 3  # (read when a watch starts a ring)
    seen: list[dict] = []
    stop = inspector.watch("res_app", seen.append)
    for n in range(5):
        raw = await threads.deferToThread(send, rig.http_port, request("GET", f"/public/{n}"))
        assert parse_responses(raw)[0][0] == 200
    await wait_for(seen, 5)
    assert [e["path"] for e in inspector.recent("res_app")] == ["/public/2", "/public/3", "/public/4"]
    stop()
    assert inspector.recent("res_app") == [] and not inspector.watching("res_app")
    raw = await threads.deferToThread(send, rig.http_port, request("GET", "/public/5"))
    assert parse_responses(raw)[0][0] == 200
    await deferLater(0.05)
    assert len(seen) == 5
