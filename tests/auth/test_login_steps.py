"""The login host's sign-in steps without a reactor: the app's own twisted.web Site fed bytes over an
in-memory TLS-marked transport, a store whose calls run at once on SQLite, a ``Clock`` for time
(TOTP, sealed cookies' expiry, the throttle's delays) and no threads (argon2 runs inline).

What runs for real: the Site and its HTTP parsing, Klein's routing, every page module, the store's
functions on a real database, argon2, TOTP, AES-GCM. What is stood in for: the reactor (a ``Clock``)
and the HTTP front (its router only)."""

from __future__ import annotations

from http.cookies import SimpleCookie
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pyotp
import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.defer import maybeDeferred, succeed
from twisted.internet.interfaces import ISSLTransport
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from zope.interface import classImplements

from kokoa import store as st
from kokoa.auth._gate import AccessGate
from kokoa.auth._sealed import new_key
from kokoa.auth._settings import AuthSettings
from kokoa.auth.login import LoginApp
from kokoa.http._router import Router

pytestmark = pytest.mark.sans_io

EMAIL = "ann@example.com"
PASSWORD = "correct horse battery"
START = 1_800_000_000.0  # the Clock's Unix time


class TLSTransport(StringTransport):
    """An in-memory transport that says it is TLS (what the front hands the login host over HTTPS)."""

    def setTcpNoDelay(self, enabled: bool) -> None:
        pass


classImplements(TLSTransport, ISSLTransport)


class SyncStore:
    """A store whose ``run`` runs at once, in a transaction, and returns a fired Deferred."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine

    def run(self, fn: Any, *args: Any, **kw: Any) -> Any:
        with self.engine.begin() as conn:
            return succeed(fn(conn, *args, **kw))


class Client:
    """A browser of sorts: a cookie jar and raw HTTP/1.1 requests to the login host's Site."""

    def __init__(self, login: LoginApp, address: str = "192.0.2.10") -> None:
        self.login = login
        self.address = address
        self.site = login.site()
        self.jar: dict[str, str] = {}

    def request(self, method: str, target: str, form: dict | None = None) -> tuple[int, dict, bytes, Any]:
        """Send one request; returns (status, headers, body, the finished Deferred's holder)."""
        protocol = self.site.buildProtocol(IPv4Address("TCP", self.address, 40000))
        protocol.callLater = self.login.reactor.callLater
        transport = TLSTransport(peerAddress=IPv4Address("TCP", self.address, 40000))
        protocol.makeConnection(transport)
        body = urlencode(form).encode() if form is not None else b""
        head = [f"{method} {target} HTTP/1.1", "Host: login.localhost", "Connection: close"]
        if self.jar:
            head.append("Cookie: " + "; ".join(f"{k}={v}" for k, v in self.jar.items()))
        if form is not None:
            head += ["Content-Type: application/x-www-form-urlencoded", f"Content-Length: {len(body)}"]
        protocol.dataReceived(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        return self._read(transport)

    def _read(self, transport: StringTransport) -> tuple[int, dict, bytes, StringTransport]:
        raw = transport.value()
        if not raw:
            return 0, {}, b"", transport  # not answered yet (held)
        head, _, body = raw.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers: dict[str, list[str]] = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers.setdefault(name.strip().lower(), []).append(value.strip())
        for cookie in headers.get("set-cookie", []):
            parsed = SimpleCookie()
            parsed.load(cookie)
            for name, morsel in parsed.items():
                if morsel["max-age"] == "0" or not morsel.value:
                    self.jar.pop(name, None)
                else:
                    self.jar[name] = morsel.value
        return status, headers, _unchunk(body, headers), transport

    def form_csrf(self) -> str:
        if "__Host-kokoa_csrf" not in self.jar:
            self.request("GET", "/login")
        return self.jar["__Host-kokoa_csrf"]


def _unchunk(body: bytes, headers: dict) -> bytes:
    if headers.get("transfer-encoding") != ["chunked"]:
        return body
    out = b""
    while body:
        size, _, rest = body.partition(b"\r\n")
        n = int(size, 16)
        if n == 0:
            break
        out += rest[:n]
        body = rest[n + 2 :]
    return out


@pytest.fixture
def world(tmp_path):
    engine, _ = st.open_engine(f"sqlite:///{tmp_path}/kokoa.db")
    store = SyncStore(engine)
    with engine.begin() as conn:
        org = st.create_organization(conn, "Acme")
        ann = st.create_user(conn, EMAIL, password=PASSWORD)
        st.add_member(conn, org.id, ann.id, st.get_role_by_name(conn, org.id, "Member").id)
    clock = Clock()
    clock.advance(START)
    gate = AccessGate(AuthSettings(max_signin_delay=5.0), lambda: store, clock, https_port=443)
    resource = SimpleNamespace(
        id="res_1",
        org_id=org.id,
        name="app",
        hostname="app.example.com",
        enabled=True,
        path_prefix="/",
        auth_methods=(),
    )
    front = SimpleNamespace(router=Router([resource]))
    login = LoginApp(gate, front, clock, clock=clock.seconds, in_thread=maybeDeferred)
    login.set_cookie_key(new_key())
    yield SimpleNamespace(login=login, clock=clock, store=store, engine=engine, user=ann)
    engine.dispose()


def sign_in(client: Client, password: str = PASSWORD, **extra: str) -> tuple[int, dict, bytes, Any]:
    form = {"csrf": client.form_csrf(), "email": EMAIL, "password": password, "rd": "/", **extra}
    return client.request("POST", "/login", form)


def test_a_password_signs_in_and_a_second_factor_is_asked_for_and_expires(world):
    client = Client(world.login)
    status, headers, _, _ = sign_in(client)
    assert status == 302 and headers["location"] == ["/"]
    assert "__Host-kokoa_login" in client.jar and "__Host-kokoa_device" in client.jar

    secret = pyotp.random_base32()
    with world.engine.begin() as conn:
        st.enable_totp(conn, world.user.id, secret, 0, [])
    other = Client(world.login)
    status, headers, _, _ = sign_in(other)
    assert status == 302 and headers["location"] == ["/login/totp"]
    assert "__Host-kokoa_login" not in other.jar  # not signed in before the second factor
    code = pyotp.TOTP(secret).at(world.clock.seconds())
    # The pending sign-in lives in the browser's sealed cookie, for 5 minutes of the Clock's time.
    world.clock.advance(301)
    status, headers, _, _ = other.request("POST", "/login/totp", {"csrf": other.form_csrf(), "code": code})
    assert status == 302 and headers["location"] == ["/login"]
    sign_in(other)
    code = pyotp.TOTP(secret).at(world.clock.seconds())
    status, headers, _, _ = other.request("POST", "/login/totp", {"csrf": other.form_csrf(), "code": code})
    assert status == 302 and headers["location"] == ["/"] and "__Host-kokoa_login" in other.jar


def test_the_account_wide_pace_holds_an_attempt_until_the_clock_says(world):
    """Beyond the burst, an attempt from an unknown browser waits (on the Clock), then is checked;
    the owner's known browser is not held."""
    owner = Client(world.login, "198.51.100.1")
    assert sign_in(owner)[0] == 302  # the owner's browser now has a device cookie for the account
    for i in range(9):  # the rest of the account-wide burst of 10, spent by guessers from nine addresses
        assert sign_in(Client(world.login, f"203.0.113.{i}"), "wrong")[0] == 401
    held = Client(world.login, "203.0.113.99")
    status, _, _, transport = sign_in(held, "wrong")
    assert status == 0  # no answer yet: held by the pace
    known = sign_in(owner)
    assert known[0] == 302  # the owner's known browser is not held
    world.clock.advance(5.0)  # max_signin_delay
    assert held._read(transport)[0] == 401
    # A fresh browser of the owner's is held too, and then gets in: delayed, never refused.
    fresh = Client(world.login, "198.51.100.2")
    status, _, _, transport = sign_in(fresh)
    assert status == 0
    world.clock.advance(5.0)
    status, headers, _, _ = fresh._read(transport)
    assert status == 302 and headers["location"] == ["/"]


def test_one_address_is_refused_after_five_tries_with_retry_after(world):
    guesser = Client(world.login, "203.0.113.7")
    for _ in range(5):
        assert sign_in(guesser, "wrong")[0] == 401
    status, headers, body, _ = sign_in(guesser, "wrong")
    assert status == 429 and int(headers["retry-after"][0]) > 0 and b"Try again" in body
    # The right password from that address waits too; from another address it goes through.
    assert sign_in(guesser)[0] == 429
    assert sign_in(Client(world.login, "198.51.100.3"))[0] == 302
    world.clock.advance(60)
    assert sign_in(guesser)[0] == 302


def test_return_urls_are_checked_and_bound(world):
    client = Client(world.login)
    # Not a resource of this gateway, or one whose browser reading may differ: 400, never 5xx.
    for rd in ("https://evil.example/", "https://:@evil.example\\@app.example.com/", "https://[evil"):
        status, _, body, _ = client.request("GET", "/authorize?" + urlencode({"rd": rd}))
        assert status == 400 and b"Something went wrong" in body, rd
    # A resource without the nonce's hash: first to that host for the nonce cookie.
    status, headers, _, _ = client.request(
        "GET", "/authorize?" + urlencode({"rd": "https://app.example.com/x"})
    )
    assert status == 302 and headers["location"] == ["https://app.example.com/.kokoa/auth/start?path=%2Fx"]
    # With it, after sign-in: a code bound to that hash.
    nonce_hash = st.token_hash("n" * 43)
    status, headers, _, _ = sign_in(client, rd="https://app.example.com/x?y=1", n=nonce_hash)
    location = urlsplit(headers["location"][0])
    assert (location.scheme, location.netloc, location.path) == (
        "https",
        "app.example.com",
        "/.kokoa/auth/callback",
    )
    code = parse_qs(location.query)["code"][0]
    with world.engine.begin() as conn:
        redeemed = st.redeem_auth_code(
            conn,
            code,
            "app.example.com",
            lifetime=st.AUTH_CODE_LIFETIME,
            idle_timeout=st.AUTH_CODE_LIFETIME,
            nonce="n" * 43,
        )
    assert redeemed is not None and redeemed[2] == "/x?y=1"


def test_unknown_pages_and_methods_are_ours(world):
    client = Client(world.login)
    status, headers, body, _ = client.request("GET", "/no/such/page")
    assert status == 404 and b"There is no such page here" in body and b"Werkzeug" not in body
    assert headers["server"] == ["kokoa"] and headers["x-content-type-options"] == ["nosniff"]
    assert headers["strict-transport-security"] == ["max-age=31536000"]
    status, headers, _, _ = client.request("PUT", "/login", {"a": "b"})
    assert status == 405 and "POST" in headers["allow"][0]


def test_nul_in_any_value_is_a_400_before_any_store_work(world):
    """PostgreSQL refuses NUL in text: a value holding one must never get that far (a 500 there)."""
    client = Client(world.login)
    assert client.request("GET", "/authorize?rd=%2F%00x")[0] == 400
    assert sign_in(client, "x\x00y")[0] == 400
    assert client.request("POST", "/account/sessions/%00/revoke", {"csrf": client.form_csrf()})[0] == 404


def test_an_oversized_request_line_is_answered_at_once(world):
    """Not held until the 60 s timeout: 431 and the connection closed."""
    client = Client(world.login)
    status, headers, _, transport = client.request("GET", "/login?x=" + "a" * 20_000)
    assert status == 431 and headers["connection"] == ["close"] and transport.disconnecting
