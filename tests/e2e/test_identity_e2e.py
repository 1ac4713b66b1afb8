"""Identity and access end to end: a real gateway, edge and upstream process; users, grants and rules
made through the admin API; sign-in through the login host's pages over real TLS, by a client that
keeps cookies as a browser does (the browser suite drives Chromium through the same pages)."""

from __future__ import annotations

import html
import json
import re
import socket
import ssl
from urllib.parse import parse_qs, quote, urlsplit

import pytest

from .browserless import Browser
from .harness import wait_for
from .test_http_resources import HttpDeployment

pytestmark = pytest.mark.e2e
PASSWORD = "correct horse battery"
#: An internal id of the store (what pages for people never show).
INTERNAL_ID = re.compile(r"\b(?:site|key|res|tgt|share|ses|grant|rule|ecode|user|org|role)_[0-9a-z]{20}\b")


class IdentityDeployment(HttpDeployment):
    def start_all(self) -> None:
        # Every test signs in from 127.0.0.1: the per-address limit is raised so that tests do not
        # trip it for each other (the per-account limit, tested below, stays at its default).
        self.extra_config = "[auth]\nattempts_per_address = 10000\n" + (self.extra_config or "")
        super().start_all()
        self.login = f"https://login.localhost:{self.https_port}"
        org = self.org
        self.roles = {r["name"]: r["id"] for r in self.api("GET", f"/orgs/{org}/roles")["items"]}
        self.ann = self.user("ann@example.com", "Member")
        self.bob = self.user("bob@example.com", "Member")
        self.app = self.add_http("app", "app.localhost", self.upstream_port, public=False)
        self.grant(self.app, role=self.roles["Member"])
        # bob's role holds a grant too: take it away from him by a role of his own
        ops = self.api("POST", f"/orgs/{org}/roles", {"name": "Visitors"})
        self.api("PATCH", f"/orgs/{org}/members/{self.bob}", {"role_id": ops["id"]})
        wait_for(
            lambda: self.status_of("app.localhost", "/ready") == 302, "the app's certificate and protection"
        )

    def status_of(self, host: str, path: str) -> int | None:
        try:
            return self.anonymous(host, path)[0]
        except OSError:  # (ssl errors too) its certificate is being issued
            return None

    def user(self, email: str, role: str) -> str:
        user = self.api("POST", "/users", {"email": email, "password": PASSWORD})
        self.api("POST", f"/orgs/{self.org}/members", {"user_id": user["id"], "role_id": self.roles[role]})
        return user["id"]

    def grant(self, resource: dict, **who) -> None:
        key = "role_id" if "role" in who else "user_id"
        self.api(
            "POST", f"/orgs/{self.org}/resources/{resource['id']}/grants", {key: next(iter(who.values()))}
        )

    def url(self, host: str, path: str = "/") -> str:
        return f"https://{host}:{self.https_port}{path}"

    def browser(self) -> Browser:
        return Browser(self.https_port, str(self.data / "tls" / "ca.pem"))

    def anonymous(self, host: str, path: str, headers: dict | None = None) -> tuple[int, dict, bytes]:
        response = self.browser().request("GET", self.url(host, path), headers=headers)
        return response.status, dict(response.headers), response.body

    def sign_in(self, browser: Browser, url: str, email: str = "ann@example.com", password: str = PASSWORD):
        """Follow a protected URL to the login form, fill it in, and follow the redirects back."""
        form_page = browser.go(url)
        assert form_page.status == 200 and 'id="signin"' in form_page.text, form_page.text[:500]
        rd = re.search(r'name="rd" value="([^"]*)"', form_page.text).group(1)
        csrf = browser.jar["login.localhost"]["__Host-kokoa_csrf"]
        return browser.go(
            f"{self.login}/login",
            "POST",
            {"csrf": csrf, "rd": rd.replace("&amp;", "&"), "email": email, "password": password},
        )


@pytest.fixture(scope="module")
def d(tmp_path_factory):
    deployment = IdentityDeployment(tmp_path_factory.mktemp("identity"))
    try:
        deployment.start_all()
        yield deployment
    finally:
        deployment.stop_all()


def seen_headers(response) -> dict[str, str]:
    return {k.lower(): v for k, v in json.loads(response.body)["headers"]}


# ---------------------------------------------------------------- sign-in and sessions


def test_a_browser_signs_in_and_reaches_the_resource_with_identity_headers(d):
    browser = d.browser()
    first = browser.request("GET", d.url("app.localhost", "/hello?x=1"))
    assert first.status == 302
    location = first.header("Location")
    assert location.startswith(f"{d.login}/authorize?rd=")
    assert parse_qs(urlsplit(location).query)["rd"] == [d.url("app.localhost", "/hello?x=1")]
    done = d.sign_in(browser, d.url("app.localhost", "/hello?x=1"))
    assert done.status == 200, done.text[:300]
    assert json.loads(done.body)["uri"] == "/hello?x=1"
    # the code went through the callback on the resource's host, once
    callbacks = [r for r in browser.history if "/.kokoa/auth/callback" in r.url]
    assert len(callbacks) == 1 and callbacks[0].status == 302
    cookie = callbacks[0].header("Set-Cookie")
    assert cookie.startswith("__Host-kokoa_session=")
    for attribute in ("Path=/", "Secure", "HttpOnly", "SameSite=Lax"):
        assert attribute in cookie
    assert "Domain" not in cookie
    # spoofed identity and forwarding headers from the client are replaced; Kokoa's cookie is not sent on
    again = browser.request(
        "GET",
        d.url("app.localhost", "/x"),
        headers={"Remote-User": "root", "Remote_Groups": "Owner", "X-Forwarded-For": "6.6.6.6"},
    )
    headers = seen_headers(again)
    assert headers["remote-user"] == "ann@example.com" and headers["remote-email"] == "ann@example.com"
    assert headers["remote-groups"] == "Member"
    assert "remote_groups" not in headers and headers["x-forwarded-for"] == "127.0.0.1"
    assert "kokoa" not in headers.get("cookie", "")


def test_a_signed_in_user_without_a_grant_is_denied(d):
    browser = d.browser()
    done = d.sign_in(browser, d.url("app.localhost", "/"), "bob@example.com")
    assert done.status == 403 and "bob@example.com" in done.text
    # the page says why without the user's or roles' ids (the access log has them)
    assert "you hold no grant to this resource" in done.text
    assert not INTERNAL_ID.search(done.text), done.text
    # its inline style is allowed by its hash, and nothing else is
    policy = done.header("Content-Security-Policy")
    assert policy.startswith("default-src 'none'; style-src 'sha256-"), policy
    assert "unsafe" not in policy and "script" not in policy


def test_the_sign_in_page_names_the_resource_and_its_organization(d):
    org = d.api("GET", f"/orgs/{d.org}")["name"]
    form_page = d.browser().go(d.url("app.localhost", "/named"))
    assert form_page.status == 200 and 'id="signin"' in form_page.text
    assert f"Sign in to continue to app ({html.escape(org)})." in form_page.text
    assert not INTERNAL_ID.search(form_page.text)  # names only: no org or resource id
    assert form_page.header("Content-Security-Policy") == (
        "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self' https:; "
        "frame-ancestors 'none'; base-uri 'none'"
    )
    assert '<link rel="stylesheet" href="/static/pages.css">' in form_page.text
    assert "<style" not in form_page.text and "<script" not in form_page.text
    # on the login host itself there is nothing to name
    plain = d.browser().go(f"{d.login}/login")
    assert plain.status == 200 and "Sign in to continue" not in plain.text


def test_a_wrong_password_is_refused_and_attempts_are_limited(d):
    browser = d.browser()
    refused = d.sign_in(browser, d.url("app.localhost", "/"), "carol@example.com", "wrong password")
    assert refused.status == 401 and "Wrong email or password" in refused.text
    statuses = [
        d.sign_in(browser, d.url("app.localhost", "/"), "carol@example.com", "nope nope").status
        for _ in range(6)
    ]
    assert statuses[-1] == 429 and "Try again in" in browser.history[-1].text


def test_session_fixation_a_cookie_the_browser_brings_is_never_the_session(d):
    browser = d.browser()
    planted = "A" * 43
    browser.jar["login.localhost"] = {"__Host-kokoa_login": planted}
    browser.jar["app.localhost"] = {"__Host-kokoa_session": planted}
    assert browser.request("GET", d.url("app.localhost", "/")).status == 302  # not honoured
    d.sign_in(browser, d.url("app.localhost", "/"))
    assert browser.jar["login.localhost"]["__Host-kokoa_login"] != planted
    assert browser.jar["app.localhost"]["__Host-kokoa_session"] != planted
    # the login host's session is no key to a resource's host
    thief = d.browser()
    thief.jar["app.localhost"] = {
        "__Host-kokoa_session": browser.jar["login.localhost"]["__Host-kokoa_login"]
    }
    assert thief.request("GET", d.url("app.localhost", "/")).status == 302


def test_sign_out_ends_the_session_everywhere(d):
    browser = d.browser()
    assert d.sign_in(browser, d.url("app.localhost", "/")).status == 200
    out = browser.go(d.url("app.localhost", "/.kokoa/auth/signout"))
    assert out.status == 200 and "signed out" in out.text
    assert "__Host-kokoa_session" not in browser.jar.get("app.localhost", {})
    assert browser.request("GET", d.url("app.localhost", "/")).status == 302


def test_a_code_is_good_once_and_on_its_own_host_only(d):
    browser = d.browser()
    d.sign_in(browser, d.url("app.localhost", "/"))
    code_url = next(r.url for r in browser.history if "/.kokoa/auth/callback" in r.url)
    replay = d.browser().request("GET", code_url)
    assert replay.status == 400 and "unknown, used or expired" in replay.text


def test_csrf_and_open_redirects_are_refused(d):
    browser = d.browser()
    browser.go(f"{d.login}/login")
    csrf = browser.jar["login.localhost"]["__Host-kokoa_csrf"]
    form = {"email": "ann@example.com", "password": PASSWORD, "rd": "/"}
    assert browser.go(f"{d.login}/login", "POST", form).status == 403  # no token
    wrong = browser.request(
        "POST",
        f"{d.login}/login",
        f"csrf={csrf}&email=ann%40example.com&password=x&rd=/".encode(),
        {"Content-Type": "application/x-www-form-urlencoded", "Origin": "https://evil.example"},
    )
    assert wrong.status == 403 and "another site" in wrong.text
    for rd in (
        "https://evil.example.com/",
        "//evil.example.com/",
        "/\\evil.example.com",
        "javascript:alert(1)",
    ):
        page = browser.request("GET", f"{d.login}/authorize?rd={quote(rd, safe='')}")
        assert page.status == 400, rd
    # a known resource's address with no nonce: first to that host for the browser's nonce cookie
    bounce = browser.request("GET", f"{d.login}/authorize?rd=" + quote(d.url("app.localhost", "/x?y=1")))
    assert bounce.status == 302
    assert bounce.header("Location") == d.url("app.localhost", "/.kokoa/auth/start?path=%2Fx%3Fy%3D1")
    back = browser.go(bounce.header("Location"))
    assert back.status == 200 and back.url.startswith(f"{d.login}/authorize?rd=")
    # forms are small: a larger one is refused before it is parsed, a huge one before it is read
    form_headers = {"Content-Type": "application/x-www-form-urlencoded"}
    big = browser.request("POST", f"{d.login}/login", b"csrf=" + b"x" * 20_000, form_headers)
    assert big.status == 413
    # (announced, not sent: the answer comes before the body would be read)
    context = ssl.create_default_context(cafile=str(d.data / "tls" / "ca.pem"))
    raw = socket.create_connection(("127.0.0.1", d.https_port), timeout=30)
    with context.wrap_socket(raw, server_hostname="login.localhost") as tls:
        tls.sendall(
            b"POST /login HTTP/1.1\r\nHost: login.localhost\r\nContent-Length: 2097152\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\n\r\n"
        )
        assert tls.recv(100).startswith(b"HTTP/1.1 413 ")


def test_programs_get_401_and_use_api_keys_as_bearer_tokens(d):
    status, headers, body = d.anonymous("app.localhost", "/", headers={"Accept": "application/json"})
    assert status == 401 and headers["WWW-Authenticate"] == 'Bearer realm="kokoa"'
    assert json.loads(body)["status"] == 401
    key = d.api("POST", f"/orgs/{d.org}/api-keys", {"name": "robot", "scopes": ["read"], "user_id": d.ann})[
        "key"
    ]
    browser = d.browser()
    ok = browser.request("GET", d.url("app.localhost", "/robot"), headers={"Authorization": f"Bearer {key}"})
    assert ok.status == 200
    headers = seen_headers(ok)
    assert headers["remote-user"] == "ann@example.com" and "authorization" not in headers
    bad = browser.request(
        "GET", d.url("app.localhost", "/"), headers={"Authorization": "Bearer kk_nothing_x"}
    )
    assert bad.status == 401
    # the upstream's own credentials pass untouched
    basic = browser.request("GET", d.url("app.localhost", "/"), headers={"Authorization": "Basic dTpw"})
    assert basic.status == 302


# ---------------------------------------------------------------- rules


def test_rules_by_path_method_and_address_with_normalized_paths(d):
    rules = f"/orgs/{d.org}/resources/{d.app['id']}/rules"
    d.api("POST", rules, {"priority": 10, "action": "deny", "path": "/admin*"})
    d.api("POST", rules, {"priority": 20, "action": "bypass", "path": "/public*"})
    d.api("POST", rules, {"priority": 30, "action": "deny", "method": "DELETE"})
    d.api("POST", rules, {"priority": 40, "action": "deny", "cidr": "10.0.0.0/8"})
    wait_for(lambda: d.status_of("app.localhost", "/public/x") == 200, "the rules to apply")
    browser = d.browser()
    d.sign_in(browser, d.url("app.localhost", "/"))
    for path in (
        "/admin",
        "/admin/users",
        "//admin",
        "/%61dmin",
        "/x/../admin",
        "/admin;x=1",
        "/public/..%2Fadmin",
    ):
        assert browser.request("GET", d.url("app.localhost", path)).status == 403, path
    assert browser.request("DELETE", d.url("app.localhost", "/thing")).status == 403
    assert browser.request("GET", d.url("app.localhost", "/thing")).status == 200
    assert d.anonymous("app.localhost", "/public/page")[0] == 200  # bypass: no sign-in
    assert d.anonymous("app.localhost", "/private")[0] == 302

    def denied_by_rule() -> bool:
        log = d.api("GET", f"/orgs/{d.org}/access-log?outcome=deny&resource_id={d.app['id']}")["items"]
        return any("denied by rule" in entry["reason"] for entry in log)

    wait_for(denied_by_rule, "the refusals in the access log")
    for rule in d.api("GET", rules)["items"]:
        d.api("DELETE", f"{rules}/{rule['id']}")


def test_tcp_resources_follow_their_address_rules(d):
    import threading

    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def echo():
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                conn.sendall(conn.recv(100))

    threading.Thread(target=echo, daemon=True).start()
    from .harness import free_port

    public_port = free_port()
    resource = d.api(
        "POST", f"/orgs/{d.org}/resources", {"name": "echo", "kind": "tcp", "public_port": public_port}
    )
    d.api(
        "POST",
        f"/orgs/{d.org}/resources/{resource['id']}/targets",
        {"site_id": d.site, "host": "127.0.0.1", "port": port, "scheme": "tcp"},
    )

    def talk() -> bytes:
        try:
            with socket.create_connection(("127.0.0.1", public_port), timeout=5) as s:
                s.sendall(b"ping")
                return s.recv(100)
        except OSError:
            return b""

    wait_for(lambda: talk() == b"ping", "the TCP resource")
    d.api(
        "POST",
        f"/orgs/{d.org}/resources/{resource['id']}/rules",
        {"priority": 1, "action": "deny", "cidr": "127.0.0.0/8"},
    )
    wait_for(lambda: talk() == b"", "the deny rule")
    d.api("DELETE", f"/orgs/{d.org}/resources/{resource['id']}")
    listener.close()


# ---------------------------------------------------------------- a resource's own credentials


def test_a_resource_password_and_pin_let_visitors_in_to_that_resource_only(d):
    d.api(
        "PATCH",
        f"/orgs/{d.org}/resources/{d.app['id']}",
        {"auth_password": "open sesame 1", "auth_pin": "654321"},
    )
    browser = d.browser()
    form_page = browser.go(d.url("app.localhost", "/pw"))
    assert "/resource/password" in form_page.text and "/resource/pin" in form_page.text
    rd = d.url("app.localhost", "/pw")
    nonce = parse_qs(urlsplit(form_page.url).query)["n"][0]  # the hash of this browser's nonce on app
    page = browser.go(f"{d.login}/resource/password?rd={quote(rd, safe='')}&n={nonce}")
    csrf = browser.jar["login.localhost"]["__Host-kokoa_csrf"]
    form = {"csrf": csrf, "rd": rd, "n": nonce}
    wrong = browser.go(f"{d.login}/resource/password", "POST", {**form, "secret": "nope"})
    assert wrong.status == 401 and page.status == 200
    # without the nonce's hash, the form is stale (a code must be bound to a browser)
    stale = browser.go(f"{d.login}/resource/password", "POST", {"csrf": csrf, "rd": rd, "secret": "x"})
    assert stale.status == 400
    done = browser.go(f"{d.login}/resource/password", "POST", {**form, "secret": "open sesame 1"})
    assert done.status == 200 and json.loads(done.body)["uri"] == "/pw"
    assert "remote-groups" not in seen_headers(done)
    pin = d.browser()
    nonce = parse_qs(urlsplit(pin.go(rd).url).query)["n"][0]
    csrf = pin.jar["login.localhost"]["__Host-kokoa_csrf"]
    form = {"csrf": csrf, "rd": rd, "n": nonce}
    wrong_pin = pin.go(f"{d.login}/resource/pin", "POST", {**form, "secret": "123456"})
    assert wrong_pin.status == 401 and "Wrong PIN" in wrong_pin.text
    assert pin.go(f"{d.login}/resource/pin", "POST", {**form, "secret": "654321"}).status == 200
    # a visitor let in by one resource's password is no one on another resource of the same host
    other = d.add_http("other", "app.localhost", d.upstream_port, public=False, path_prefix="/other")
    wait_for(lambda: d.status_of("app.localhost", "/other/x") == 302, "the other resource")
    assert browser.request("GET", d.url("app.localhost", "/pw")).status == 200
    refused = browser.request("GET", d.url("app.localhost", "/other/x"))
    assert refused.status == 403 and "no grant" in refused.text
    d.api("DELETE", f"/orgs/{d.org}/resources/{other['id']}")
    d.api("PATCH", f"/orgs/{d.org}/resources/{d.app['id']}", {"auth_password": None, "auth_pin": None})


def test_share_links_open_the_resource_until_revoked(d):
    links = f"/orgs/{d.org}/resources/{d.app['id']}/share-links"
    made = d.api("POST", links, {"name": "for the auditor", "max_uses": 5})
    token = made["token"]
    browser = d.browser()
    opened = browser.go(d.url("app.localhost", f"/.kokoa/share/{token}"))
    assert opened.status == 200 and json.loads(opened.body)["uri"] == "/"

    def as_bearer(token: str) -> int:
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        return d.browser().request("GET", d.url("app.localhost", "/api"), headers=headers).status

    # a link with a use count opens in a browser only (a bearer token cannot be counted per visit)
    assert as_bearer(token) == 401
    for_programs = d.api("POST", links, {"name": "for a script"})
    assert as_bearer(for_programs["token"]) == 200
    d.api("POST", f"{links}/{made['share_link']['id']}/revoke")
    d.api("POST", f"{links}/{for_programs['share_link']['id']}/revoke")
    wait_for(lambda: browser.request("GET", d.url("app.localhost", "/")).status == 302, "the revocation")
    assert d.browser().go(d.url("app.localhost", f"/.kokoa/share/{token}")).status == 403
    assert as_bearer(for_programs["token"]) == 401


def test_the_admin_api_on_the_login_host_takes_the_session_cookie_with_a_csrf_header(d):
    api = f"{d.login}/api/v1"
    anonymous = d.browser().request("GET", f"{api}/orgs", headers={"Accept": "application/json"})
    assert anonymous.status == 401
    member = d.browser()
    d.sign_in(member, d.url("app.localhost", "/"))
    listed = member.request("GET", f"{api}/orgs", headers={"Accept": "application/json"})
    assert listed.status == 200 and [o["id"] for o in json.loads(listed.body)["items"]] == [d.org]
    csrf = member.jar["login.localhost"]["__Host-kokoa_csrf"]
    body = json.dumps({"name": "from-the-console"}).encode()
    json_headers = {"Content-Type": "application/json", "Accept": "application/json"}
    sites = f"{api}/orgs/{d.org}/sites"
    assert member.request("POST", sites, body, json_headers).status == 403  # no CSRF header
    refused = member.request("POST", sites, body, {**json_headers, "X-CSRF-Token": csrf})
    assert refused.status == 403 and "Member" in json.loads(refused.body)["detail"]  # Members only read
    admin_id = d.user("adam@example.com", "Admin")
    admin = d.browser()
    d.sign_in(admin, d.url("app.localhost", "/"), "adam@example.com")
    csrf = admin.jar["login.localhost"]["__Host-kokoa_csrf"]
    wrong = admin.request("POST", sites, body, {**json_headers, "X-CSRF-Token": "x" * 43})
    assert wrong.status == 403
    other_site = admin.request(
        "POST", sites, body, {**json_headers, "X-CSRF-Token": csrf, "Origin": "https://evil.example"}
    )
    assert other_site.status == 403
    made = admin.request("POST", sites, body, {**json_headers, "X-CSRF-Token": csrf})
    assert made.status == 201, made.text
    audit = d.api("GET", f"/orgs/{d.org}/audit?action=site.create")["items"]
    assert any(entry["actor"] == f"user:{admin_id}" for entry in audit)
    assert admin.request("GET", f"{api}/users", headers={"Accept": "application/json"}).status == 403


def test_users_see_and_end_their_own_sessions_and_change_their_password(d):
    d.user("sam@example.com", "Member")
    laptop, phone = d.browser(), d.browser()
    assert d.sign_in(laptop, d.url("app.localhost", "/"), "sam@example.com").status == 200
    assert d.sign_in(phone, d.url("app.localhost", "/"), "sam@example.com").status == 200
    page = laptop.go(f"{d.login}/account")
    ends = re.findall(r'action="(/account/sessions/(ses_[a-z0-9]+)/revoke)"', page.text)
    assert len(ends) == 2 and ">this one</span>" in page.text
    mine = re.search(
        r'<tr><td>Password <span class="badge ok">this one</span></td>'
        r".*?/account/sessions/(ses_[a-z0-9]+)/revoke",
        page.text,
    )
    other = next(path for path, session in ends if session != mine.group(1))
    csrf = laptop.jar["login.localhost"]["__Host-kokoa_csrf"]
    assert laptop.go(f"{d.login}{other}", "POST", {"csrf": csrf}).status == 200
    wait_for(
        lambda: phone.request("GET", d.url("app.localhost", "/")).status == 302, "the phone's session to end"
    )
    assert laptop.request("GET", d.url("app.localhost", "/")).status == 200
    # someone else's session id is not theirs to end
    assert (
        laptop.go(
            f"{d.login}/account/sessions/ses_00000000000000000000/revoke", "POST", {"csrf": csrf}
        ).status
        == 404
    )
    wrong = laptop.go(
        f"{d.login}/account/password", "POST", {"csrf": csrf, "current": "nope", "password": "new one here"}
    )
    assert wrong.status == 401 and "current password is wrong" in wrong.text
    changed = laptop.go(
        f"{d.login}/account/password", "POST", {"csrf": csrf, "current": PASSWORD, "password": "new one here"}
    )
    assert changed.status == 200 and "Password changed" in changed.text
    assert (
        d.sign_in(d.browser(), d.url("app.localhost", "/"), "sam@example.com", "new one here").status == 200
    )
    assert laptop.request("GET", d.url("app.localhost", "/")).status == 200  # this session goes on


def test_an_organizations_key_and_groups_stay_in_that_organization(d):
    other = d.api("POST", "/orgs", {"name": "Other Co"})["id"]
    owner = {r["name"]: r["id"] for r in d.api("GET", f"/orgs/{other}/roles")["items"]}["Owner"]
    d.api("POST", f"/orgs/{other}/members", {"user_id": d.ann, "role_id": owner})
    resource = d.api(
        "POST", f"/orgs/{other}/resources", {"name": "theirs", "kind": "http", "hostname": "theirs.localhost"}
    )
    d.api("POST", f"/orgs/{other}/resources/{resource['id']}/grants", {"user_id": d.ann})
    wait_for(lambda: d.status_of("theirs.localhost", "/") == 302, "the other organization's resource")
    # ann's key of the first organization is nobody there, though ann is the other's Owner
    key = d.api("POST", f"/orgs/{d.org}/api-keys", {"name": "a-only", "scopes": ["read"], "user_id": d.ann})[
        "key"
    ]
    headers = {"Authorization": f"Bearer {key}", "Accept": "application/json"}
    assert d.browser().request("GET", d.url("theirs.localhost", "/"), headers=headers).status == 401
    assert d.browser().request("GET", d.url("app.localhost", "/"), headers=headers).status == 200
    # ann herself reaches it (no target is up there: 503), and the first organization's upstream
    # hears her role there only
    browser = d.browser()
    d.sign_in(browser, d.url("app.localhost", "/"))
    assert seen_headers(browser.request("GET", d.url("app.localhost", "/g")))["remote-groups"] == "Member"
    theirs = browser.go(d.url("theirs.localhost", "/"))  # signed in already: straight through
    assert theirs.status == 503 and "has no targets" in theirs.text
    d.api("DELETE", f"/orgs/{other}")
