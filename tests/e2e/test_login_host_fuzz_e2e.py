"""The login host against hostile input, end to end: one real gateway (with a resource that takes its
own password, PIN and email codes, a real SMTP server and a real OpenID Connect provider), and

- a Hypothesis run over the login host's routes, methods, query arguments, forms and cookies, sent as
  raw requests over TLS by a signed-out and a signed-in browser: never a 5xx, a traceback or a
  framework's page, always ``Server: kokoa``; and nothing logged as an unhandled error;
- plain checks of its own 404 and 405 pages, the headers on every answer, malformed return URLs, and
  the plain-HTTP redirect to HTTPS (which never reflects a ``//host`` path).
"""

from __future__ import annotations

import http.client
import itertools
import re
import socket
import ssl
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, urlencode

import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from .browserless import Browser, _Connection
from .browserless import Response as Answer
from .identity_config import CLIENT_ID, CLIENT_SECRET, mail_config, oidc_config
from .test_identity_e2e import IdentityDeployment

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "auth"))
from oidc_fixtures import running_provider
from smtp_server import SmtpServer

pytestmark = pytest.mark.e2e

LOGIN = "login.localhost"
#: What the gateway's log must never hold.
LOG_ERRORS = ("Unhandled Error", "login page failed", "Traceback")


# ---------------------------------------------------------------- the deployment


@pytest.fixture(scope="module")
def d(tmp_path_factory):
    root = tmp_path_factory.mktemp("login-fuzz")
    deployment = IdentityDeployment(root)
    smtp = SmtpServer().start()
    login = f"https://{LOGIN}:{deployment.https_port}"
    try:
        with running_provider(
            root / "oidc",
            client_id=CLIENT_ID,
            client_secret=CLIENT_SECRET,
            redirect_uri=f"{login}/oidc/x/callback",
        ) as issuer:
            deployment.extra_config = mail_config(smtp) + "\n" + oidc_config("x", issuer, provision=False)
            deployment.start_all()
            # the resource's own ways in, so that /resource/... reach their checks
            deployment.api(
                "PATCH",
                f"/orgs/{deployment.org}/resources/{deployment.app['id']}",
                {
                    "auth_password": "open sesame 1",
                    "auth_pin": "654321",
                    "auth_email_allow": ["@guests.example"],
                },
            )
            yield deployment
    finally:
        deployment.stop_all()
        smtp.stop()


def logged_errors(d) -> list[str]:
    """The gateway log's lines that name an unhandled error, with what follows each."""
    lines = d.gateway.log_text().splitlines()
    return [
        "\n".join(lines[i : i + 30]) for i, line in enumerate(lines) if any(e in line for e in LOG_ERRORS)
    ]


# ---------------------------------------------------------------- raw requests


@dataclass
class Client:
    """A browser's cookie jar (kept as a browser keeps it) and one kept TLS connection to the login host,
    for requests sent as they are: the target is not re-quoted, headers and body are bytes."""

    d: IdentityDeployment
    browser: Browser
    conn: http.client.HTTPConnection | None = None
    sso_state: str = "none"  # the state of its last single sign-on start

    def _connection(self, fresh: bool) -> http.client.HTTPConnection:
        if fresh and self.conn is not None:
            self.conn.close()
            self.conn = None
        if self.conn is None:
            context = ssl.create_default_context(cafile=str(self.d.data / "tls" / "ca.pem"))
            self.conn = _Connection(self.d.https_port, LOGIN, context)
        return self.conn

    def _hand_over(self) -> None:
        """A new connection, handed to the login site by its first request."""
        self.close()
        self.send("GET", "/no-such-page")

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    @property
    def jar(self) -> dict[str, str]:
        return self.browser.jar.setdefault(LOGIN, {})

    def send(
        self,
        method: str,
        target: str,
        headers: dict[str, bytes | str] | None = None,
        body: bytes | None = None,
        *,
        cookies: dict[str, str] | None = None,
        fresh: bool = False,
        host: str | None = None,
    ) -> Answer:
        """``host``: another Host header, sent on a connection the login site reads already (on a new
        one, the HTTP front reads the Host of the first request and hands the connection over only for
        the login host)."""
        if host is not None and (fresh or self.conn is None):
            self._hand_over()
            fresh = False
        jar = {**self.jar, **(cookies or {})}
        sent: dict[str, bytes | str] = {
            "Host": f"{LOGIN}:{self.d.https_port}" if host is None else host,
            "Accept": "text/html",
        }
        if jar:
            sent["Cookie"] = "; ".join(f"{k}={v}" for k, v in jar.items()).encode("utf-8", "surrogatepass")
        sent.update(headers or {})
        for attempt in range(2):
            conn = self._connection(fresh and not attempt)
            try:
                conn.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
                for name, value in sent.items():
                    conn.putheader(name, value)
                if body is not None:
                    conn.putheader("Content-Length", str(len(body)))
                conn.endheaders(body)
                raw = conn.getresponse()
                answer = Answer(raw.status, raw.getheaders(), raw.read(), target)
                break
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                # a kept connection the server closed between requests: once more on a new one
                self.close()
                if attempt or fresh:
                    raise
                if host is not None:
                    self._hand_over()
            except BaseException:
                self.close()
                raise
        if raw.will_close:
            self.close()
        for cookie in answer.all("Set-Cookie"):
            self.browser._store(LOGIN, cookie)  # (asserts Secure and HttpOnly, and __Host- rules)
            if cookie.startswith("__Host-kokoa_sso="):
                state = re.search(r"[?&]state=([^&]+)", answer.header("Location") or "")
                self.sso_state = state.group(1) if state else "none"
        return answer


# ---------------------------------------------------------------- strategies

#: Digits to str.isdigit() that are no ASCII digits (superscripts, Arabic-Indic, mathematical, full-width).
NON_ASCII_DIGITS = [
    "\u00b2",
    "\u00b9\u2070\u00b2\u2074",
    "\u0661\u0660\u0662\u0664",
    "\U0001d7d9\U0001d7d8\U0001d7da\U0001d7dc",
    "\uff11\uff10\uff12\uff14",
]
#: Strings that have broken parsers before: escapes (invalid ones too), return URLs read differently
#: by different parsers, digits that are not ASCII, controls, and markup.
NASTY = [
    "",
    "\x00",
    "a\x00b",
    "%",
    "%%",
    "%zz",
    "%ff",
    "%FF%FE",
    "%c0%ae",
    "%c0%ae%c0%ae/",
    "%00",
    "%0d%0aSet-Cookie:%20x=1",
    "%u0041",
    "%2e%2e%2f",
    "%25",
    "%e2%80%ae",
    "https://[evil",
    "https://[::1]/",
    "https://:@evil\\@app.localhost/",
    "https://evil%2eorg\\.app.localhost/",
    "https://app.localhost:99999/",
    "https://app.localhost:-1/",
    "https://\uff41\uff50\uff50.localhost/",
    "https://xn--/",
    "https://xn--zz.localhost/",
    "https://app.localhost\u00ad/",
    "http://app.localhost/",
    "//evil.example/",
    "/\\evil.example",
    "\\\\evil.example",
    "javascript:alert(1)",
    "data:text/html,<script>alert(1)</script>",
    "https://evil.example/",
    "/" + "a/" * 200,
    "\r\nSet-Cookie: x=1",
    "\t",
    " ",
    "../../etc/passwd",
    *NON_ASCII_DIGITS,
    "1e3",
    "0x400",
    "-1",
    "+1024",
    " 1024",
    "1024 ",
    "1_024",
    "99999999999999999999999999",
    "NaN",
    "\u202e",
    "\ufeff",
    "\U0001f600",
    "é" * 3000,
    "A" * 5000,
    "<script>alert(1)</script>",
    "\"'><img src=x>",
    "{{7*7}}",
    "${jndi:ldap://x}",
    "%s%s%n",
    "null",
    "undefined",
    "[]",
    "{}",
    "ses_00000000000000000000",
    "a" * 64,
    "0" * 64,
    "A" * 43,
]

QUERY_NAMES = ["rd", "n", "state", "code", "port", "token", "error", "path"]
FORM_NAMES = ["rd", "n", "email", "password", "code", "secret", "token", "port", "state", "current"]
COOKIES = ["__Host-kokoa_mfa", "__Host-kokoa_sso", "__Host-kokoa_device", "__Host-kokoa_enrol"]
ROUTES = [
    "/",
    "/account",
    "/static/js/app.js",
    "/static/<name>",
    "/login",
    "/authorize",
    "/login/totp",
    "/logout",
    "/signed-out",
    "/resource/password",
    "/resource/pin",
    "/resource/email",
    "/resource/<name>",
    "/resource-code",
    "/oidc/<name>/start",
    "/oidc/<name>/callback",
    "/cli",
    "/cli/token",
    "/setup",
    "/reset",
    "/invite",
    "/account/password",
    "/account/totp",
    "/account/sessions/<id>/revoke",
]
RANDOM_PREFIXES = [
    "/",
    "/oidc/",
    "/account/",
    "/resource/",
    "/api/v1/",
    "/.kokoa/",
    "/login/",
    "/cli/",
    "/static/",
]
#: Values that come close to what a parameter takes (so that the checks after the first one run).
CLOSE = {
    "rd": [
        "https://[evil",
        "https://:@evil\\@app.localhost/",
        "https://app.localhost/%zz",
        "https://app.localhost/%c0%ae%c0%ae/",
        "https://APP.localhost./",
        "https://app.localhost:0/",
        "/account/totp?%ff",
        "/%2e%2e/%2e%2e/x",
        "/\x00",
    ],
    "n": ["AB" * 32, "g" * 64, "a" * 63, "a" * 65, "\u0661" * 64],
    "port": [
        *NON_ASCII_DIGITS,
        "0",
        "1023",
        "65536",
        "99999",
        "-1",
        "+1024",
        "1e3",
        " 1024",
        "0x400",
        "00080",
    ],
    "state": ["s" * 15, "s" * 101, "\uff53" * 20, "\u00e9" * 20, "-" * 20, "_" * 20, "s" * 19 + "\x00"],
    "code": ["1" * 6, "\u0661" * 6, "12345\x00", " 123 456 ", "x" * 5000],
    "email": ["a@b", "@", "x@guests.example\x00", "\u00e9@guests.example", "a" * 300 + "@guests.example"],
    "token": ["kst_" + "a" * 40, "\x00" * 20],
    "error": ["access_denied", "<b>x</b>", "\x00", "e" * 5000],
    "path": ["/", "//evil", "/\\evil"],
    "secret": ["\x00", "x" * 5000],
    "password": ["\x00" * 12, "x" * 5000, "short"],
    "current": ["\x00", "x" * 5000],
}


@dataclass
class World:
    """What the strategies draw real values from (filled in once the gateway runs): real values of
    the parameters each route takes, the signed-in browser's session ids, real sealed cookies."""

    valid: dict[str, str] = field(default_factory=dict)
    session_ids: list[str] = field(default_factory=list)
    sealed: list[str] = field(default_factory=list)


WORLD = World()
#: The parameters each route takes in the query of a GET, and in the form of a POST (CSRF apart).
GET_TAKES = {
    "/login": ("rd", "n"),
    "/authorize": ("rd", "n"),
    "/resource/password": ("rd", "n"),
    "/resource/pin": ("rd", "n"),
    "/resource/email": ("rd", "n"),
    "/oidc/<name>/start": ("rd", "n"),
    "/oidc/<name>/callback": ("state", "code", "error"),
    "/cli": ("port", "state"),
    "/setup": ("token",),
    "/reset": ("token",),
    "/invite": ("token",),
}
POST_TAKES = {
    "/login": ("rd", "n", "email", "password"),
    "/login/totp": ("code",),
    "/resource/password": ("rd", "n", "secret"),
    "/resource/pin": ("rd", "n", "secret"),
    "/resource/email": ("rd", "n", "email"),
    "/resource-code": ("rd", "n", "email", "code"),
    "/cli": ("port", "state"),
    "/cli/token": ("code",),
    "/setup": ("token", "password"),
    "/reset": ("token", "password"),
    "/invite": ("token", "password"),
    "/account/password": ("current", "password"),
    "/account/totp": ("code",),
}
TAKES = {
    route: tuple(dict.fromkeys(GET_TAKES.get(route, ()) + POST_TAKES.get(route, ())))
    for route in {**GET_TAKES, **POST_TAKES}
}
TAKES["/resource/<name>"] = POST_TAKES["/resource/password"]


def valid(route: str, name: str) -> str:
    """A real value of the parameter ``name`` of ``route``."""
    return WORLD.valid.get(f"{route} {name}", WORLD.valid.get(name, "x"))


def _from(values: list[str]) -> st.SearchStrategy[str]:
    """One of ``values``, a list filled in later (read when drawn)."""
    return st.integers(0, 1 << 16).map(lambda i: values[i % len(values)] if values else "x")


def _text_values() -> st.SearchStrategy[str]:
    return st.one_of(
        # now and then a long one (past the front's 8 KiB request line, some of them)
        st.integers(0, 15).flatmap(
            lambda i: st.integers(1000, 9000).map(lambda n: "x" * n) if i == 0 else st.sampled_from(NASTY)
        ),
        st.text(max_size=30),
        st.text(st.characters(codec="ascii"), max_size=30),
        st.text(st.characters(max_codepoint=0x1F, min_codepoint=0), min_size=1, max_size=5),
        st.lists(
            st.sampled_from(["%", "zz", "ff", "c0", "ae", "%00", "/", "\\", ".", "@", ":", "[", "\u00e9"])
        ).map("".join),
        st.integers(0, 1 << 16).map(lambda i: list(WORLD.valid.values())[i % len(WORLD.valid)]),
    )


def _values(name: str | None = None) -> st.SearchStrategy[str | bytes]:
    """A value (for the parameter ``name``): text, or bytes (which need not be UTF-8)."""
    strategies = [_text_values(), _text_values(), st.binary(max_size=30)]
    if name in CLOSE:
        strategies += [st.sampled_from(CLOSE[name])] * 3
    return st.one_of(strategies)


def _utf8(value: str | bytes) -> bytes:
    return value if isinstance(value, bytes) else value.encode("utf-8", "surrogatepass")


def _raw(value: str | bytes, also: str = "") -> str:
    """Quoted only as much as a request line needs (controls, space, non-ASCII, and the characters in
    ``also`` that would change its structure): ``%`` stays as it is, so malformed escapes arrive."""
    out = []
    for byte in _utf8(value):
        char = chr(byte)
        if byte <= 0x20 or byte >= 0x7F or char in also or char == "#":
            out.append(f"%{byte:02X}")
        else:
            out.append(char)
    return "".join(out)


def _encode(value: str | bytes, exact: bool, also: str) -> str:
    return quote(_utf8(value), safe="") if exact else _raw(value, also)


@st.composite
def segments(draw) -> str:
    value = draw(_values())
    return _encode(value, draw(st.booleans()), "?/")


@st.composite
def paths(draw) -> tuple[str, str]:
    """(the route, the path)."""
    if draw(st.integers(0, 9)) == 0:
        prefix = draw(st.sampled_from(RANDOM_PREFIXES))
        parts = draw(st.lists(segments(), min_size=0, max_size=3))
        return prefix, prefix + "/".join(parts)
    route = draw(st.sampled_from(ROUTES))
    path = route
    if "<name>" in path:
        names = ["x", "x", "x", "nope", "password", "pin", "email", "X"]
        name = draw(st.one_of(st.sampled_from(names), st.sampled_from(names), segments()))
        path = path.replace("<name>", name)
    if "<id>" in path:
        path = path.replace("<id>", draw(st.one_of(_from(WORLD.session_ids), segments())))
    return route, path


@st.composite
def parameters(draw, route: str, names: list[str]) -> list[tuple[str | bytes, str | bytes]]:
    """The route's parameters with real values, some of them changed, dropped or doubled, and others."""
    takes = TAKES.get(route, ())
    pairs: list[tuple[str | bytes, str | bytes]] = []
    if takes and draw(st.integers(0, 3)):
        pairs = [(name, valid(route, name)) for name in takes]
    for _ in range(draw(st.integers(0, 3))):
        op = draw(st.sampled_from(["change", "change", "change", "drop", "add", "double"]))
        if op in ("change", "drop", "double") and pairs:
            i = draw(st.integers(0, len(pairs) - 1))
            name = pairs[i][0]
            if op == "drop":
                del pairs[i]
            elif op == "change":
                pairs[i] = (name, draw(_values(name if isinstance(name, str) else None)))
            else:
                pairs.insert(draw(st.integers(0, len(pairs))), (name, draw(_values())))
        else:
            name = draw(st.one_of(st.sampled_from(names), _values()))
            pairs.append((name, draw(_values(name if isinstance(name, str) else None))))
    return pairs


def _join(pairs: list[tuple[str | bytes, str | bytes]], exact: bool) -> str:
    return "&".join(f"{_encode(k, exact, '&=+')}={_encode(v, exact, '&+')}" for k, v in pairs)


@dataclass(frozen=True)
class Fuzzed:
    signed_in: bool
    fresh: bool
    method: str
    target: str
    headers: dict
    body: bytes | None
    cookies: dict
    host: str | None = None


#: Host headers werkzeug, Klein or IDNA may choke on (sent on a connection handed to the login site).
HOSTS = [
    "a" * 64 + ".localhost",
    "a..b",
    "",
    ".",
    "login.localhost:x",
    "login.localhost:99999999",
    "[",
    "[::1",
    ":::",
    "xn--",
    "xn--zz",
    "\xe9",
    "\xff\xfe",
    "app.localhost",
    "LOGIN.LOCALHOST",
    "login.localhost.",
    "evil.example",
    "a b",
    "login.localhost/x",
    "login.localhost@evil",
]
#: Placeholders for the browser's real CSRF token in a drawn form (it changes when a cookie does), and
#: for the ``state`` of the browser's last single sign-on start (whose sealed cookie it holds).
VALID_CSRF = "csrf=VALID-CSRF"
SSO_STATE = "STATEOFTHISBROWSERSSO"


@st.composite
def requests(draw) -> Fuzzed:
    signed_in = draw(st.booleans())
    method = draw(st.sampled_from(["GET", "POST"] * 20 + ["HEAD", "PUT", "DELETE", "OPTIONS", "PATCH"]))
    route, target = draw(paths())
    in_query = method != "POST" or draw(st.integers(0, 3)) == 0
    query = _join(draw(parameters(route if in_query else "", QUERY_NAMES)), draw(st.booleans()))
    if draw(st.integers(0, 9)) == 0:
        query += draw(st.sampled_from(["&", "&&", "=", "==x", "&=&", ";rd=/x", "rd", "%", "?"]))
    if query or draw(st.integers(0, 9)) == 0:
        target += "?" + query
    headers: dict = {}
    body = None
    if method in ("POST", "PUT", "PATCH"):
        fields = _join(draw(parameters(route, FORM_NAMES)), draw(st.booleans()))
        csrf = draw(st.sampled_from(["valid"] * 4 + ["wrong", "missing", "twice", "empty"]))
        token = {"valid": VALID_CSRF, "wrong": "csrf=" + "x" * 43, "empty": "csrf=", "missing": ""}
        if csrf == "twice":
            extra = _encode(draw(_values()), draw(st.booleans()), "&+")
            token["twice"] = draw(
                st.sampled_from([f"{VALID_CSRF}&csrf={extra}", f"csrf={extra}&{VALID_CSRF}"])
            )
        parts = [p for p in (token[csrf], fields) if p]
        if draw(st.booleans()):
            parts.reverse()
        if draw(st.integers(0, 7)) == 0:
            parts.append("&".join(f"f{i}=v" for i in range(draw(st.integers(21, 60)))))
        body = "&".join(parts).encode()
        if draw(st.integers(0, 7)) == 0:
            body += b"&" + draw(st.sampled_from([b"x=\xff\xfe", b"\xc0\xae=1", b"email=\xe9", b"\x80"]))
        if draw(st.integers(0, 19)) == 0:
            body = draw(st.binary(max_size=200))
        content_type = draw(
            st.sampled_from(
                ["application/x-www-form-urlencoded"] * 8
                + [
                    None,
                    "application/x-www-form-urlencoded; charset=latin-1",
                    "multipart/form-data; boundary=xyz",
                    "multipart/form-data",
                    "application/json",
                    "text/plain",
                    "",
                ]
            )
        )
        if content_type is not None:
            headers["Content-Type"] = content_type
        origin = draw(
            st.sampled_from(
                [None, None, None, "login", "login", "null", "https://evil.example", "", "https://[evil"]
            )
        )
        if origin is not None:
            headers["Origin"] = origin
    cookies = {}
    for name in draw(
        st.lists(st.sampled_from([*COOKIES, "__Host-kokoa_login", "__Host-kokoa_csrf"]), max_size=3)
    ):
        cookies[name] = draw(
            st.one_of(
                _from(WORLD.sealed),
                _from(WORLD.sealed),
                # cookie-octets (RFC 6265), and sometimes anything but CR and LF
                st.text(
                    st.characters(codec="ascii", min_codepoint=0x21, exclude_characters='";,\\\x7f'),
                    max_size=300,
                ),
                st.text(st.characters(exclude_characters="\r\n;", codec="utf-8"), max_size=100),
                st.sampled_from(["", "A" * 43, "A" * 4000, "%00", "a=b", '"quoted"', "v1.x.y"]),
            )
        )
    host = None
    if draw(st.integers(0, 9)) == 0:
        latin1 = st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f")
        host = draw(st.one_of(st.sampled_from(HOSTS), st.text(latin1, max_size=80)))
    return Fuzzed(signed_in, draw(st.integers(0, 3)) == 0, method, target, headers, body, cookies, host)


# ---------------------------------------------------------------- browsers


@pytest.fixture(scope="module")
def browsers(d):
    """A signed-out and a signed-in browser (made once; the signed-in one signs in again whenever a
    request signs it out), and the real values the strategies draw from."""
    counter = itertools.count()
    out = Client(d, d.browser())
    out.send("GET", "/login")  # its CSRF cookie
    signed = Client(d, d.browser())

    def sign_in() -> None:
        email = f"fuzz{next(counter)}@example.com"
        d.user(email, "Member")
        signed.close()
        signed.browser.jar.pop(LOGIN, None)
        done = d.sign_in(signed.browser, f"{d.login}/login?rd=%2Faccount", email)
        assert done.status == 200 and "Signed in as" in done.text, done.text[:300]
        WORLD.session_ids[:] = re.findall(r"/account/sessions/(ses_[a-z0-9]+)/revoke", done.text)
        signed.send("GET", "/account/totp")  # a second factor's set-up in progress (its sealed cookie)

    sign_in()
    signed.sign_in = sign_in  # type: ignore[attr-defined]
    WORLD.valid.clear()
    WORLD.valid.update(
        rd=d.url("app.localhost", "/x?y=1"),
        n="ab" * 32,  # the form of a nonce's hash (this one is no browser's)
        port="4242",
        state="state-0123456789abcdef",
        code="123456",
        token="kst_" + "0" * 40,
        error="access_denied",
        path="/x",
        email="guest@guests.example",
        password="a new password 1",
        secret="654321",
        current="correct horse battery",
        **{"/oidc/<name>/callback state": SSO_STATE},
    )
    WORLD.sealed[:] = [v for k, v in signed.jar.items() if k in COOKIES]
    try:
        yield out, signed
    finally:
        out.close()
        signed.close()


# ---------------------------------------------------------------- the fuzz run


def answered_before_the_login_host(answer: Answer) -> bool:
    """An answer given before the login host's pages saw the request: the HTTP front's refusal of a
    connection's first request it cannot read (a problem document, before it knows the host), or
    twisted.web's bare ``400 Bad Request`` (no header at all) for a later one on the login host's
    connection. Neither names a server or a version."""
    if answer.status not in (400, 413, 414, 431) or answer.all("Server"):
        return False
    return not answer.headers or answer.header("Content-Type") == "application/problem+json"


def check_answer(answer: Answer, what: str) -> None:
    assert answer.status < 500, f"{what}: {answer.status}\n{answer.text[:2000]}"
    for marker in (b"Traceback", b"Werkzeug", b'File "'):
        assert marker not in answer.body, f"{what}: {marker!r} in the body\n{answer.text[:2000]}"
    if not answered_before_the_login_host(answer):
        assert answer.all("Server") == ["kokoa"], f"{what}: Server {answer.all('Server')}"
        assert answer.header("Strict-Transport-Security") == "max-age=31536000", what
        assert answer.header("X-Content-Type-Options") == "nosniff", what


def test_fuzzed_requests_to_the_login_host_never_get_a_5xx(d, browsers):
    out, signed = browsers
    seen: dict[int, int] = {}
    early: dict[int, int] = {}  # answers without a Server header, from the front or twisted.web
    started = time.monotonic()

    @settings(
        max_examples=300,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    )
    @given(batch=st.lists(requests(), min_size=1, max_size=4))
    def run(batch: list[Fuzzed]) -> None:
        for fuzzed in batch:
            send(fuzzed)

    def send(fuzzed: Fuzzed) -> None:
        client = signed if fuzzed.signed_in else out
        target = fuzzed.target.replace(SSO_STATE, client.sso_state)
        body = fuzzed.body
        if body is not None:
            real = "csrf=" + client.jar.get("__Host-kokoa_csrf", "")
            body = body.replace(VALID_CSRF.encode(), real.encode()).replace(
                SSO_STATE.encode(), client.sso_state.encode()
            )
        headers = dict(fuzzed.headers)
        if headers.get("Origin") == "login":
            headers["Origin"] = d.login
        who = "signed in" if fuzzed.signed_in else "signed out"
        what = f"{fuzzed.method} {target[:300]} (Host {fuzzed.host!r}, {who})"
        note(f"{fuzzed!r}\nbody sent: {body!r}")
        # A request line longer than twisted.web's line limit (16 KiB) on a connection the login site
        # already reads is never answered (reported; twisted's LineReceiver drops the connection without
        # unregistering the channel as its producer): such targets go on a new connection, whose
        # first request the HTTP front reads (and refuses past its own limit, 8 KiB, with a 414).
        # (Another Host goes on the login site's connection, so not with such a target.)
        long = len(target) > 8 * 1024
        host = None if long else fuzzed.host
        answer = client.send(
            fuzzed.method,
            target,
            headers,
            body,
            cookies=fuzzed.cookies,
            fresh=fuzzed.fresh or long,
            host=host,
        )
        seen[answer.status] = seen.get(answer.status, 0) + 1
        if answered_before_the_login_host(answer):
            early[answer.status] = early.get(answer.status, 0) + 1
        check_answer(answer, what)
        if fuzzed.signed_in and "__Host-kokoa_login" not in signed.jar:
            signed.sign_in()  # signed out by this request (sign-out, or its own session ended)
        out.jar.pop("__Host-kokoa_login", None)

    run()
    print(
        f"\n{sum(seen.values())} requests in {time.monotonic() - started:.1f}s: {dict(sorted(seen.items()))}"
        f"; answered before the login host: {dict(sorted(early.items()))}"
    )
    errors = logged_errors(d)
    assert not errors, f"the gateway logged {len(errors)} error(s); the first:\n{errors[0]}"


#: What any parameter may meet, besides the values close to what it takes (CLOSE).
GENERIC = ["", "\x00", "%zz", "%ff", "%c0%ae", "https://[evil", "\u00e9" * 10, "\U0001f600", "x" * 4000]


def test_every_parameter_of_every_route_one_value_off_at_a_time(d, browsers):
    """A sweep next to the random run: every parameter of every route, one at a time, given each value
    close to what it takes (and a few any may meet) while the others are real, so that each of these
    values reaches each check past the first at least once: no 5xx, nothing logged."""
    _, signed = browsers
    sent = 0
    started = time.monotonic()
    for method, table in (("GET", GET_TAKES), ("POST", POST_TAKES)):
        for route, takes in table.items():
            path = route.replace("<name>", "x")
            for name in takes:
                for value in dict.fromkeys([*CLOSE.get(name, ()), *GENERIC]):
                    for exact in (True, False) if "%" in value else (True,):
                        encoded = _join([(k, value if k == name else valid(route, k)) for k in takes], exact)
                        encoded = encoded.replace(SSO_STATE, signed.sso_state)
                        if method == "GET":
                            target, body, headers = f"{path}?{encoded}", None, {}
                        else:
                            csrf = signed.jar.get("__Host-kokoa_csrf", "")
                            target, body = path, f"csrf={csrf}&{encoded}".encode()
                            headers = {"Content-Type": "application/x-www-form-urlencoded", "Origin": d.login}
                        answer = signed.send(method, target, headers, body, fresh=len(target) > 8 * 1024)
                        check_answer(answer, f"{method} {target[:300]} {body!r:.300}")
                        sent += 1
                        if "__Host-kokoa_login" not in signed.jar:
                            signed.sign_in()
    print(f"\n{sent} requests in {time.monotonic() - started:.1f}s")
    errors = logged_errors(d)
    assert not errors, f"the gateway logged {len(errors)} error(s); the first:\n{errors[0]}"


# ---------------------------------------------------------------- plain checks


def https(d, method: str, target: str, body: bytes | None = None, headers: dict | None = None) -> Answer:
    client = Client(d, d.browser())
    try:
        return client.send(method, target, headers, body)
    finally:
        client.close()


def plain_http(d, target: str) -> Answer:
    """A request for the login host over plain HTTP, its target sent as it is."""
    conn = http.client.HTTPConnection("127.0.0.1", d.http_port, timeout=30)
    try:
        conn.putrequest("GET", target, skip_host=True, skip_accept_encoding=True)
        conn.putheader("Host", LOGIN)
        conn.endheaders()
        raw = conn.getresponse()
        return Answer(raw.status, raw.getheaders(), raw.read(), target)
    finally:
        conn.close()


def test_an_unknown_path_gets_our_404_page(d):
    for target in ("/nope", "/login/nope", "/oidc/x", "/account/sessions//revoke", "/%7a%7a", "/.env"):
        answer = https(d, "GET", target)
        assert answer.status == 404, target
        assert answer.header("Content-Type") == "text/html; charset=utf-8", target
        assert "There is no such page here" in answer.text, target
        assert "Werkzeug" not in answer.text and "Not Found</h1>" not in answer.text, target
        assert "The requested URL was not found" not in answer.text, target


def test_a_wrong_method_gets_405_with_allow(d):
    for method, target, allowed in (
        ("PUT", "/login", {"GET", "POST"}),
        ("DELETE", "/login", {"GET", "POST"}),
        ("POST", "/authorize", {"GET"}),
        ("GET", "/logout", {"POST"}),
        ("GET", "/cli/token", {"POST"}),
        ("POST", "/signed-out", {"GET"}),
    ):
        answer = https(d, method, target, b"" if method in ("POST", "PUT") else None)
        assert answer.status == 405, (method, target, answer.status)
        allow = {m.strip() for m in (answer.header("Allow") or "").split(",")}
        assert allowed <= allow, (method, target, allow)
        assert "does not take that method" in answer.text
        assert "Werkzeug" not in answer.text and "Method Not Allowed</h1>" not in answer.text


#: The Content-Security-Policy of the login host's pages (kokoa.auth._pages.page_csp).
PAGES_CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self' https:; "
    "frame-ancestors 'none'; base-uri 'none'"
)


def test_every_https_answer_carries_the_security_headers(d):
    signed = Client(d, d.browser())
    d.sign_in(signed.browser, f"{d.login}/login", "ann@example.com")
    answers = {
        "sign-in page": https(d, "GET", "/login"),
        "authorize page": https(d, "GET", "/authorize?rd=%2Faccount%2Ftotp"),
        "redirect home": https(d, "GET", "/"),
        "redirect to the resource host": https(
            d, "GET", "/authorize?rd=" + quote(d.url("app.localhost", "/"))
        ),
        "404": https(d, "GET", "/nope"),
        "405": https(d, "PUT", "/login", b""),
        "400": https(d, "GET", "/authorize?rd=https%3A%2F%2F%5Bevil"),
        "403 form": https(
            d, "POST", "/login", b"csrf=x", {"Content-Type": "application/x-www-form-urlencoded"}
        ),
        "signed out": https(d, "GET", "/signed-out"),
        "api 401": https(d, "GET", "/api/v1/orgs", headers={"Accept": "application/json"}),
        "api 404": https(d, "GET", "/api/v1/nope", headers={"Accept": "application/json"}),
        "cli token": https(
            d, "POST", "/cli/token", b"code=x", {"Content-Type": "application/x-www-form-urlencoded"}
        ),
        "console": signed.send("GET", "/"),
        "console script": signed.send("GET", "/static/js/app.js"),
        "no such console file": signed.send("GET", "/static/nope.js"),
        "account page": signed.send("GET", "/account"),
        "api 200": signed.send("GET", "/api/v1/orgs", {"Accept": "application/json"}),
    }
    signed.close()
    assert answers["account page"].status == 200 and answers["api 200"].status == 200
    assert answers["console"].status == answers["console script"].status == 200
    assert answers["no such console file"].status == 404
    for what in ("console", "console script", "no such console file"):
        policy = answers[what].header("Content-Security-Policy")
        assert "script-src 'self';" in policy and "frame-ancestors 'none'" in policy, what
    assert answers["redirect home"].status == 302 and answers["400"].status == 400
    # the server-rendered pages: the console's stylesheets from this origin, no script, nothing inline
    for what in ("sign-in page", "404", "405", "400", "403 form", "signed out", "account page"):
        assert answers[what].header("Content-Security-Policy") == PAGES_CSP, what
        assert answers[what].header("X-Frame-Options") == "DENY", what
    for what, answer in answers.items():
        assert answer.header("Strict-Transport-Security") == "max-age=31536000", what
        assert answer.header("X-Content-Type-Options") == "nosniff", what
        assert answer.all("Server") == ["kokoa"], what
        assert "Traceback" not in answer.text, what
    for what in (
        "sign-in page",
        "authorize page",
        "redirect home",
        "redirect to the resource host",
        "signed out",
    ):
        assert answers[what].header("Referrer-Policy") == "no-referrer", what


@pytest.mark.parametrize(
    "rd", ["https://[evil", "https://:@evil\\@app.localhost/", "https://[::1]/", "https://%zz/"]
)
def test_a_malformed_return_url_is_a_400_not_a_500(d, rd):
    for path in ("/authorize", "/login", "/oidc/x/start", "/resource/password"):
        answer = https(d, "GET", f"{path}?rd={quote(rd, safe='')}")
        assert answer.status == 400, (path, rd, answer.status, answer.text[:300])
        assert "return to after signing in" in answer.text, (path, answer.text[:300])
    client = Client(d, d.browser())
    client.send("GET", "/login")
    csrf = client.jar["__Host-kokoa_csrf"]
    form = urlencode({"csrf": csrf, "rd": rd, "email": "nobody@example.com", "password": "x"}).encode()
    posted = client.send("POST", "/login", {"Content-Type": "application/x-www-form-urlencoded"}, form)
    client.close()
    assert posted.status == 400 and "return to after signing in" in posted.text


def test_cli_refuses_a_port_of_digits_that_are_not_ascii(d):
    """``"²".isdigit()`` is true but ``int("²")`` raises: the port is checked as ASCII digits (was a 500)."""
    signed = Client(d, d.browser())
    d.sign_in(signed.browser, f"{d.login}/login", "ann@example.com")
    state = "s" * 20
    for port in NON_ASCII_DIGITS:
        for client in (signed, Client(d, d.browser())):
            answer = client.send("GET", f"/cli?port={quote(port)}&state={state}")
            assert answer.status == 400 and "broken (port)" in answer.text, (port, answer.status)
        csrf = signed.jar["__Host-kokoa_csrf"]
        form = urlencode({"csrf": csrf, "port": port, "state": state}).encode()
        posted = signed.send("POST", "/cli", {"Content-Type": "application/x-www-form-urlencoded"}, form)
        assert posted.status == 400 and "broken (port)" in posted.text, (port, posted.status)
    signed.close()


@pytest.mark.parametrize("host", ["a" * 64 + ".localhost", "a..b", ".", "\xff", "\xe9.localhost"])
def test_a_later_request_with_a_host_the_routes_cannot_bind_gets_our_400(d, host):
    """The front reads the Host of a connection's first request only; on the login site's connection a
    later one reached werkzeug's route binding (BadHost, a 500 with a logged traceback) or Klein's
    UTF-8 check (its own page and a logged traceback). Now: our 400 page, nothing logged."""
    client = Client(d, d.browser())
    answer = client.send("GET", "/login", host=host)
    client.close()
    assert answer.status == 400, (host, answer.status, answer.text[:300])
    assert "This request&#x27;s address is not valid." in answer.text
    assert answer.header("Content-Security-Policy") and answer.all("Server") == ["kokoa"]
    assert not logged_errors(d) and "Invalid encoding" not in d.gateway.log_text()


def test_a_path_that_is_not_utf8_gets_our_400(d):
    client = Client(d, d.browser())
    for target in ("/account/sessions/%FF%FE/revoke", "/oidc/%c0%ae/start", "/%ff"):
        method = "POST" if target.endswith("revoke") else "GET"
        answer = client.send(method, target, body=b"" if method == "POST" else None)
        assert answer.status == 400 and "address is not valid" in answer.text, (target, answer.status)
        assert "Non-UTF-8" not in answer.text
    client.close()
    assert not logged_errors(d) and "Invalid encoding" not in d.gateway.log_text()


@pytest.mark.parametrize(
    "target",
    [
        "//evil.example/x",
        "/\\evil.example",
        "//evil.example",
        "///evil.example/login",
        "//evil.example/login",
        "/%2F%2Fevil.example",
        "/%5Cevil.example",
        "/\\/evil.example/",
    ],
)
def test_plain_http_never_sends_the_browser_off_the_login_origin(d, target):
    """Over plain HTTP a page of the login host redirects to it over HTTPS; a path that is none of its
    pages gets a 404 (ours), one the front cannot read a 400 (the front's): never a Location elsewhere,
    nor one a browser would read as ``//host``."""
    answer = plain_http(d, target)
    location = answer.header("Location")
    if answer.status in (301, 302, 303, 307, 308):
        assert location is not None and location.startswith(f"{d.login}/"), (target, location)
        assert not location[len(d.login) :].startswith(("//", "/\\")), (target, location)
        assert "\\" not in location, location
    else:
        assert answer.status in (400, 404) and location is None, (target, answer.status, location)
    assert all("evil.example" not in v for k, v in answer.headers), answer.headers


def test_plain_http_redirects_a_page_with_a_doubled_slash_to_the_login_origin(d):
    answer = plain_http(d, "//login")  # the page /login, read from a target that starts with //
    assert answer.status == 302 and answer.header("Location") == f"{d.login}/"


def test_plain_http_keeps_the_path_of_an_ordinary_request(d):
    answer = plain_http(d, "/login?rd=%2Faccount")
    assert answer.status in (301, 302, 307, 308)
    assert answer.header("Location") == f"{d.login}/login?rd=%2Faccount"


def test_a_request_line_the_front_cannot_read_gets_no_traceback(d):
    context = ssl.create_default_context(cafile=str(d.data / "tls" / "ca.pem"))
    for line in (b"GET /login\x00 HTTP/1.1", b"GET " + b"/" * 20000 + b" HTTP/1.1", b"G\xffT / HTTP/1.1"):
        raw = socket.create_connection(("127.0.0.1", d.https_port), timeout=30)
        with context.wrap_socket(raw, server_hostname=LOGIN) as tls:
            tls.sendall(line + b"\r\nHost: " + LOGIN.encode() + b"\r\n\r\n")
            received = b""
            try:
                while chunk := tls.recv(65536):
                    received += chunk
            except (ConnectionResetError, ssl.SSLError):
                pass
        assert b"Traceback" not in received and not received.startswith(b"HTTP/1.1 5"), (
            line[:40],
            received[:300],
        )


def test_the_gateway_logged_no_unhandled_error(d):
    errors = logged_errors(d)
    assert not errors, f"the gateway logged {len(errors)} error(s); the first:\n{errors[0]}"
