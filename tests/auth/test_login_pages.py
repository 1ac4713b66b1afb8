"""The login host's pages as HTML, every one of them (the harness of test_login_steps: the app's own Site
over an in-memory TLS transport, a real SQLite store, a Clock): no inline style or script, the
console's stylesheets, accessible markup (one h1, main, labelled inputs, announced errors), a strict
Content-Security-Policy, no internal id anywhere in what the page shows; the sign-in page names the
resource and organization; the second-factor setup's QR code is the provisioning URI."""

from __future__ import annotations

import base64
import re
from datetime import timedelta
from html import unescape
from html.parser import HTMLParser
from types import SimpleNamespace
from urllib.parse import urlencode

import pyotp
import pytest
import segno
from test_login_steps import EMAIL, PASSWORD, START, Client, SyncStore, sign_in
from twisted.internet.defer import maybeDeferred
from twisted.internet.task import Clock

from kokoa import store as st
from kokoa.auth._gate import AccessGate
from kokoa.auth._pages import STYLESHEETS, page_csp
from kokoa.auth._sealed import new_key
from kokoa.auth._settings import AuthSettings
from kokoa.auth._totp import provisioning_uri
from kokoa.auth.login import LoginApp
from kokoa.http._router import Router

pytestmark = pytest.mark.sans_io

NONCE_HASH = st.token_hash("n" * 43)
#: Any internal id of the store (kokoa.store's new_id: a prefix, "_", 20 of [0-9a-z]).
INTERNAL_ID = re.compile(r"\b(?:site|key|res|tgt|share|ses|grant|rule|ecode|user|org|role)_[0-9a-z]{20}\b")


@pytest.fixture
def world(tmp_path):
    engine, _ = st.open_engine(f"sqlite:///{tmp_path}/kokoa.db")
    store = SyncStore(engine)
    with engine.begin() as conn:
        org = st.create_organization(conn, "Acme <Labs> & Co")
        ann = st.create_user(conn, EMAIL, password=PASSWORD)
        st.add_member(conn, org.id, ann.id, st.get_role_by_name(conn, org.id, "Member").id)
        invited = st.create_user(conn, "new@example.com")
        setup = st.create_user_token(conn, invited.id, "setup", lifetime=timedelta(days=1))
    clock = Clock()
    clock.advance(START)
    gate = AccessGate(AuthSettings(max_signin_delay=5.0), lambda: store, clock, https_port=443)
    resource = SimpleNamespace(
        id="res_" + "a" * 20,
        org_id=org.id,
        name='Wiki "<b>team</b>"',
        hostname="app.example.com",
        enabled=True,
        path_prefix="/",
        auth_methods=("password", "pin", "email"),
    )
    front = SimpleNamespace(router=Router([resource]))
    login = LoginApp(gate, front, clock, clock=clock.seconds, in_thread=maybeDeferred)
    login.set_cookie_key(new_key())
    yield SimpleNamespace(login=login, clock=clock, engine=engine, user=ann, org=org, setup=setup)
    engine.dispose()


def to_app(path: str = "/x") -> str:
    return urlencode({"rd": f"https://app.example.com{path}", "n": NONCE_HASH})


class Page(HTMLParser):
    """What the checks need of a page: its elements with their attributes, and the text it shows."""

    def __init__(self, body: bytes) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str]]] = []
        self.text: list[str] = []
        self._skip = 0
        self.feed(body.decode())
        self.close()

    def handle_starttag(self, tag: str, attrs: list) -> None:
        attributes = {k: v or "" for k, v in attrs}
        self.elements.append((tag, attributes))
        for shown in ("alt", "title", "aria-label", "placeholder"):
            if shown in attributes:
                self.text.append(attributes[shown])
        if tag == "input" and attributes.get("type") != "hidden" and "value" in attributes:
            self.text.append(attributes["value"])

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def all(self, tag: str) -> list[dict[str, str]]:
        return [attributes for name, attributes in self.elements if name == tag]

    @property
    def shown(self) -> str:
        return " ".join(self.text)


def check_page(answer: tuple, csp: bytes = page_csp()) -> Page:
    """The checks every page passes; returns it parsed."""
    status, headers, body, _ = answer
    assert headers["content-type"] == ["text/html; charset=utf-8"], (status, body[:300])
    assert headers["content-security-policy"] == [csp.decode()]
    assert headers["x-frame-options"] == ["DENY"] and headers["cache-control"] == ["no-store"]
    text = body.decode()
    assert "<script" not in text.lower() and "<style" not in text.lower()
    assert not re.search(r"\sstyle\s*=", text, re.I), "an inline style attribute"
    assert not re.search(r"\son[a-z]+\s*=", text, re.I), "an inline event handler"
    assert "javascript:" not in text.lower()
    page = Page(body)
    assert page.all("html") == [{"lang": "en"}]
    sheets = [link["href"] for link in page.all("link") if link.get("rel") == "stylesheet"]
    assert sheets == list(STYLESHEETS)
    assert len(page.all("h1")) == 1 and len(page.all("main")) == 1
    viewport = [m for m in page.all("meta") if m.get("name") == "viewport"]
    assert viewport and "width=device-width" in viewport[0]["content"]
    labels = {label["for"] for label in page.all("label")}
    ids = [a["id"] for _, a in page.elements if "id" in a]
    assert len(ids) == len(set(ids)), f"duplicate ids: {ids}"
    for field in page.all("input"):
        if field.get("type") == "hidden" or "hidden" in field:
            continue
        assert field.get("id") in labels, f"an input without its label: {field}"
        assert field.get("autocomplete"), f"an input without autocomplete: {field}"
    for image in page.all("img"):
        assert "alt" in image, image
    for button in page.all("button"):
        assert button.get("type") == "submit"
    if status >= 400:
        assert any(p.get("role") == "alert" for p in page.all("p")), "an error page says so to screen readers"
    found = INTERNAL_ID.findall(page.shown)
    assert not found, f"internal ids shown: {found}"
    return page


def signed_in(world) -> Client:
    client = Client(world.login)
    assert sign_in(client)[0] == 302
    return client


def test_every_page_links_the_stylesheets_and_has_no_inline_style_or_script(world):
    """Each page of the login host, in each of its states."""
    anonymous = Client(world.login)
    pages = {
        "sign-in": anonymous.request("GET", "/login"),
        "sign-in for a resource": anonymous.request("GET", "/authorize?" + to_app()),
        "wrong password": sign_in(Client(world.login), "wrong password"),
        "resource password": anonymous.request("GET", "/resource/password?" + to_app()),
        "resource PIN": anonymous.request("GET", "/resource/pin?" + to_app()),
        "resource email": anonymous.request("GET", "/resource/email?" + to_app()),
        "setup link": anonymous.request("GET", "/setup?token=" + world.setup),
        "stale reset link": anonymous.request("GET", "/reset?token=nope"),
        "signed out": anonymous.request("GET", "/signed-out"),
        "404": anonymous.request("GET", "/no/such/page"),
        "405": anonymous.request("PUT", "/login", {"a": "b"}),
        "bad return URL": anonymous.request(
            "GET", "/authorize?" + urlencode({"rd": "https://evil.example/"})
        ),
        "no such resource sign-in": anonymous.request("GET", "/resource/bogus?" + to_app()),
        "bad kokoa connect link": anonymous.request("GET", "/cli?port=1&state=x"),
    }
    user = signed_in(world)
    csrf = user.form_csrf()
    allow = user.request("GET", "/cli?port=4321&state=" + "s" * 20)
    assert allow[0] == 200
    # its form's answer sends the browser to kokoa connect's loopback listener, over plain HTTP
    check_page(allow, page_csp("'self' http://127.0.0.1:*"))
    pages["account"] = user.request("GET", "/account")
    pages["wrong current password"] = user.request(
        "POST", "/account/password", {"csrf": csrf, "current": "nope", "password": "a new password"}
    )
    pages["short new password"] = user.request(
        "POST", "/account/password", {"csrf": csrf, "current": PASSWORD, "password": "short"}
    )
    pages["password changed"] = user.request(
        "POST", "/account/password", {"csrf": csrf, "current": PASSWORD, "password": "a new password"}
    )
    pages["second-factor setup"] = user.request("GET", "/account/totp")
    pages["wrong setup code"] = user.request("POST", "/account/totp", {"csrf": csrf, "code": "000000"})
    secret = re.search(rb'id="totp-secret">([A-Z2-7 ]+)<', pages["second-factor setup"][2])
    code = pyotp.TOTP(secret.group(1).decode().replace(" ", "")).at(world.clock.seconds())
    pages["backup codes"] = user.request("POST", "/account/totp", {"csrf": csrf, "code": code})
    pages["end a session not theirs"] = user.request(
        "POST", "/account/sessions/ses_00000000000000000000/revoke", {"csrf": csrf}
    )
    pages["stale form"] = user.request("POST", "/account/password", {"csrf": "x" * 43})
    two = Client(world.login)
    sign_in(two, "a new password", rd="https://app.example.com/x", n=NONCE_HASH)
    pages["second factor"] = two.request("GET", "/login/totp")
    pages["wrong second factor"] = two.request("POST", "/login/totp", {"csrf": two.form_csrf(), "code": "1"})

    statuses = {name: answer[0] for name, answer in pages.items()}
    assert statuses == {
        "sign-in": 200,
        "sign-in for a resource": 200,
        "wrong password": 401,
        "resource password": 200,
        "resource PIN": 200,
        "resource email": 200,
        "setup link": 200,
        "stale reset link": 404,
        "signed out": 200,
        "404": 404,
        "405": 405,
        "bad return URL": 400,
        "no such resource sign-in": 404,
        "bad kokoa connect link": 400,
        "account": 200,
        "wrong current password": 401,
        "short new password": 400,
        "password changed": 200,
        "second-factor setup": 200,
        "wrong setup code": 400,
        "backup codes": 200,
        "end a session not theirs": 404,
        "stale form": 403,
        "second factor": 200,
        "wrong second factor": 401,
    }
    for name, answer in pages.items():
        try:
            check_page(answer)
        except AssertionError as e:
            raise AssertionError(f"{name}: {e}") from None


def test_the_pages_csp_is_strict():
    csp = page_csp().decode()
    directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
    assert directives == {
        "default-src": "'none'",
        "style-src": "'self'",
        "img-src": "'self' data:",
        "form-action": "'self' https:",
        "frame-ancestors": "'none'",
        "base-uri": "'none'",
    }
    assert "unsafe" not in csp and "script-src" not in csp  # default-src 'none': no script at all


def test_the_sign_in_page_names_the_resource_and_its_organization_escaped(world):
    client = Client(world.login)
    for target in ("/authorize?" + to_app(), "/login?" + to_app(), "/resource/pin?" + to_app()):
        answer = client.request("GET", target)
        page, body = check_page(answer), answer[2]
        lead = re.search(rb'<p class="lead" id="destination">(.*?)</p>', body).group(1).decode()
        assert lead == (
            "Sign in to continue to Wiki &quot;&lt;b&gt;team&lt;/b&gt;&quot; (Acme &lt;Labs&gt; &amp; Co)."
        ), target
        assert 'Sign in to continue to Wiki "<b>team</b>" (Acme <Labs> & Co).' in page.shown
        assert world.org.id.encode() not in body and b"res_" not in body, target
    # After the password, the second-factor step says it too.
    with world.engine.begin() as conn:
        st.enable_totp(conn, world.user.id, pyotp.random_base32(), 0, [])
    sign_in(client, rd="https://app.example.com/x", n=NONCE_HASH)
    status, _, body, _ = client.request("GET", "/login/totp")
    assert status == 200 and b"Sign in to continue to Wiki" in body
    # On the login host itself: no such line.
    status, _, body, _ = Client(world.login).request("GET", "/login")
    assert status == 200 and b'id="destination"' not in body


def test_the_sign_in_page_of_a_resource_without_an_organization_names_the_resource(world):
    """A resource of the configuration file has no organization."""
    resource = world.login.front.router.route("app.example.com", _target("/")).resource
    world.login.front.router = Router([SimpleNamespace(**{**vars(resource), "org_id": None})])
    status, _, body, _ = Client(world.login).request("GET", "/authorize?" + to_app())
    assert status == 200
    assert b"Sign in to continue to Wiki &quot;&lt;b&gt;team&lt;/b&gt;&quot;.</p>" in body


def _target(path: str):
    from kokoa.http._router import normalize_target

    return normalize_target(path.encode())


def _qr_matrix(svg: bytes) -> list[list[bool]]:
    """The dark modules a segno SVG draws: a path of horizontal runs (``M``/``m`` moves, ``h`` runs)
    on rows at y + 0.5, in module units, the quiet zone included."""
    path = re.search(rb' d="([^"]+)"', svg[svg.index(b"qrline") :]).group(1).decode()
    x = y = 0.0
    dark: set[tuple[int, int]] = set()
    for command, numbers in re.findall(r"([MmHhz])([^MmHhz]*)", path):
        values = [float(n) for n in numbers.replace(",", " ").split()]
        if command == "M":
            x, y = values
        elif command == "m":
            x, y = x + values[0], y + values[1]
        elif command == "h":
            dark.update((int(y), int(x) + i) for i in range(int(values[0])))
            x += values[0]
        elif command == "H":
            dark.update((int(y), c) for c in range(int(x), int(values[0])))
            x = values[0]
    rows = max(r for r, _ in dark) + 1
    cols = max(c for _, c in dark) + 1
    return [[(r, c) in dark for c in range(cols)] for r in range(rows)]


def test_the_second_factor_setup_shows_a_qr_code_of_the_provisioning_uri(world):
    """The page's QR code is segno's symbol of the very URI (and key) the page shows, drawn module for
    module (the browser suite decodes the rendered image with a real QR reader)."""
    client = signed_in(world)
    answer = client.request("GET", "/account/totp")
    page = check_page(answer)
    body = answer[2].decode()
    secret = re.search(r'id="totp-secret">([A-Z2-7 ]+)<', body).group(1).replace(" ", "")
    uri = unescape(re.search(r'id="totp-uri">([^<]+)<', body).group(1))
    assert uri == provisioning_uri(secret, EMAIL)
    (qr,) = [img for img in page.all("img") if img.get("id") == "totp-qr"]
    assert qr["alt"] and qr["src"].startswith("data:image/svg+xml;base64,")
    svg = base64.b64decode(qr["src"].split(",", 1)[1])
    assert b"<script" not in svg and b"href" not in svg  # an image, nothing it could load or run
    drawn = _qr_matrix(svg)
    expected = segno.make(uri, error="m", micro=False)
    want = [[bool(v) for v in row] for row in expected.matrix]
    border = 4
    assert len(drawn) <= len(want) + border  # (trailing light rows/columns are not drawn)
    inner = [row[border : border + len(want)] for row in drawn[border : border + len(want)]]
    inner = [row + [False] * (len(want) - len(row)) for row in inner]
    assert inner == want
    # a new key on each setup (until one is turned on): its code is another
    again = signed_in(world).request("GET", "/account/totp")[2].decode()
    assert re.search(r'id="totp-secret">([A-Z2-7 ]+)<', again).group(1).replace(" ", "") != secret


def test_the_account_page_links_the_console_and_names_sessions_without_ids(world):
    client = signed_in(world)
    Client(world.login, "198.51.100.9").request("GET", "/login")
    sign_in(Client(world.login, "198.51.100.9"))
    answer = client.request("GET", "/account")
    page = check_page(answer)
    assert any(a.get("href") == "/" for a in page.all("a") if "button" in a.get("class", ""))
    assert "Open the console" in page.shown
    rows = re.findall(r"<tr><td>(.*?)</td><td>(.*?)</td>", answer[2].decode())
    assert sorted(rows) == [
        ("Password", "198.51.100.9"),
        ('Password <span class="badge ok">this one</span>', "192.0.2.10"),
    ]
    # each End button is named for its session, for screen readers
    ends = [b["aria-label"] for b in page.all("button") if b.get("aria-label", "").startswith("End ")]
    assert len(ends) == 2 and all("Password from" in e for e in ends)
    # the password forms carry the account for password managers
    (username,) = [i for i in page.all("input") if i.get("name") == "username"]
    assert username["value"] == EMAIL and username["autocomplete"] == "username"


def test_every_form_field_has_the_right_autocomplete(world):
    anonymous = Client(world.login)
    expected = {
        "/login": {"email": "username", "password": "current-password"},
        "/resource/password?" + to_app(): {"secret": "current-password"},
        "/resource/pin?" + to_app(): {"secret": "off"},
        "/resource/email?" + to_app(): {"email": "email"},
        "/setup?token=" + world.setup: {"username": "username", "password": "new-password"},
    }
    for target, fields in expected.items():
        page = Page(anonymous.request("GET", target)[2])
        got = {i["name"]: i["autocomplete"] for i in page.all("input") if i.get("type") != "hidden"}
        got |= {i["name"]: i["autocomplete"] for i in page.all("input") if i.get("name") == "username"}
        assert got == fields, target
    user = signed_in(world)
    page = Page(user.request("GET", "/account/totp")[2])
    (code,) = [i for i in page.all("input") if i.get("name") == "code"]
    assert code["autocomplete"] == "one-time-code" and code["inputmode"] == "numeric"


def test_a_denial_names_no_internal_id():
    """The resource host's 403 says why without the ids the access log's reason holds."""
    from kokoa.auth._gate import denial
    from kokoa.policy import Identity, ResourcePolicy, Rule, decide

    user = Identity("user_" + "u" * 20, "bob@example.com", {"role_" + "r" * 20})
    res = "res_" + "a" * 20
    grant_rule = Rule("rule_" + "1" * 20, 1, "allow", path="/admin")
    deny_rule = Rule("rule_" + "2" * 20, 2, "deny", path="/secret")
    policy = ResourcePolicy(res, (grant_rule, deny_rule), grants_roles=frozenset({"role_" + "x" * 20}))
    cases = {
        "/page": "you hold no grant to this resource (neither you nor any of your roles)",
        "/admin": "rule 1 (allow /admin) requires a grant to this resource, and you hold none",
        "/secret": "denied by rule 2 (deny /secret)",
    }
    for path, said in cases.items():
        decision = decide(policy, path, "GET", "192.0.2.1", user)
        assert decision.outcome == "deny"
        assert INTERNAL_ID.search(decision.reason) or path == "/secret"  # the log's reason has them
        assert denial(decision) == said, path
    broken = ResourcePolicy(res, error="grant 'grant_" + "g" * 20 + "' names no role or user, or both")
    decision = decide(broken, "/", "GET", "192.0.2.1", user)
    assert not INTERNAL_ID.search(denial(decision)) and "broken" in denial(decision)
