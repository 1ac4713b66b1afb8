"""Sign-in safety end to end, with real gateway processes and real client addresses on loopback
(127.0.0.2 ... 127.0.0.9 as source addresses):

- an attacker hammering an account (or a resource's PIN) from several addresses is refused (429,
  Retry-After) per (account, address), while the owner, from a new address and a new browser, still
  gets in, held back by the account-wide pace at most ``max_signin_delay``; a browser that signed in
  to the account before (its device cookie) is not held at all;
- a one-time code is good in the browser it was minted for only, and spent by any try;
- sign-ins in progress (single sign-on, second factor) live in sealed cookies: a flood fills nothing,
  and a second gateway on the same PostgreSQL database finishes them;
- sign-out ends the single sign-on provider's session too when the provider is set so.
"""

from __future__ import annotations

import http.client
import ssl
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

import pyotp
import pytest

from kokoa import store as st
from kokoa.auth._totp import new_totp_secret

from . import test_store_config as store_config
from .browserless import Browser, Response, _Connection
from .harness import Deployment, wait_for
from .identity_config import CLIENT_ID, CLIENT_SECRET, oidc_config
from .test_identity_e2e import PASSWORD, IdentityDeployment, seen_headers

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "auth"))
from oidc_fixtures import USERS, post_login, running_provider

pytestmark = pytest.mark.e2e
postgres_database = store_config.postgres_database  # the fixture: skips without PostgreSQL

CALLBACK = "/.kokoa/auth/callback"
DEVICE = "__Host-kokoa_device"
LOGIN = "__Host-kokoa_login"
CSRF = "__Host-kokoa_csrf"
#: The module's throttle ([auth]): 5 tries per (account, address), then one a minute; per account
#: from unknown browsers 3 at once, then one per 30 s, each beyond held at most DELAY seconds.
PAIR_TRIES = 5
PACE = 30
DELAY = 6.0
#: Slack on top of DELAY for the rest of a held sign-in on a busy machine (an argon2id check takes
#: about a second on two shared cores, and the attackers' checks run at the same time). Generous: it
#: checks that a held attempt is let go after DELAY, where a pace without that cap would hold the
#: owner behind the attackers' turns, PACE seconds each.
MARGIN = 15.0
assert DELAY + MARGIN < PACE
THROTTLE = f"""attempts_per_account_address = {PAIR_TRIES}
account_address_refill_seconds = 60
attempts_per_account = 3
account_refill_seconds = {PACE}
max_signin_delay = {DELAY}
"""
PLAIN_USERS = ({"email": "pat@example.com", "password": "pat's password", "name": "Pat"},)


# ---------------------------------------------------------------- clients from chosen addresses


def browser_from(d: Deployment, source: str, jar: dict | None = None) -> Browser:
    """A browser on ``d``'s HTTPS port from ``source``; ``jar``: another's cookies (the same
    browser, sent to another gateway as a load balancer would)."""
    return Browser(
        d.https_port,
        str(d.data / "tls" / "ca.pem"),
        jar={} if jar is None else jar,
        source=source,
        timeout=60,
    )


def post(browser: Browser, url: str, form: dict) -> tuple[Response, float]:
    """POST a form as a browser does (Origin: the page's), not following a redirect; the answer and
    the seconds it took."""
    parts = urlsplit(url)
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "Origin": f"{parts.scheme}://{parts.netloc}",
    }
    started = time.monotonic()
    response = browser.request("POST", url, urlencode(form).encode(), headers)
    return response, time.monotonic() - started


def csrf_of(browser: Browser, login: str) -> str:
    if CSRF not in browser.jar.get("login.localhost", {}):
        browser.go(f"{login}/login")
    return browser.jar["login.localhost"][CSRF]


def bound_form(browser: Browser, url: str) -> dict[str, str]:
    """Open a protected URL (the resource host sets its nonce cookie and sends the browser to sign
    in): the sign-in form's ``rd`` and ``n`` (the nonce's hash), and its CSRF token."""
    page = browser.go(url)
    assert page.status == 200 and "/login" in page.url, (page.status, page.url, page.text[:300])
    query = parse_qs(urlsplit(page.url).query)
    return {"csrf": browser.jar["login.localhost"][CSRF], "rd": query["rd"][0], "n": query["n"][0]}


def code_url(browser: Browser, url: str) -> str:
    """Follow redirects from ``url`` up to the login host's redirect to a resource host's callback
    with a one-time code; that URL, not opened."""
    for _ in range(6):
        response = browser.request("GET", url)
        assert response.status == 302, (response.status, response.text[:300])
        url = urljoin(url, response.header("Location"))
        if urlsplit(url).path == CALLBACK:
            return url
    raise AssertionError(f"no callback with a code after {url}")


# ---------------------------------------------------------------- attackers


@dataclass
class Attempt:
    address: str
    status: int  # 0: the request failed
    retry_after: str | None
    seconds: float
    text: str


class Hammer:
    """Attacker threads (``per_address`` for each address), each making attempts until stopped or
    ``bound`` attempts, a short pause between them; every answer recorded.

    The pause keeps the attack to tens of requests a second (each on a new TLS connection): enough to
    keep the throttle busy, not so many that two shared cores are all the timings measure."""

    def __init__(
        self,
        addresses: list[str],
        attacker: Callable[[str], Callable[[int], tuple[Response, float]]],
        per_address: int = 2,
        pause: float = 0.2,
        bound: int = 2000,
    ) -> None:
        self.addresses = addresses
        self.attacker = attacker
        self.pause = pause
        self.bound = bound
        self.attempts: list[Attempt] = []
        self.errors: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.started = time.monotonic()
        self._threads = [
            threading.Thread(target=self._run, args=(address,), daemon=True)
            for address in addresses
            for _ in range(per_address)
        ]

    def __enter__(self) -> Hammer:
        self.started = time.monotonic()
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)
        assert not any(t.is_alive() for t in self._threads), "an attacker thread did not stop"

    def _run(self, address: str) -> None:
        try:
            attempt = self.attacker(address)
        except Exception as e:  # recorded: the test fails on it
            with self._lock:
                self.errors.append(f"{address}: setting up: {e!r}")
            return
        for i in range(self.bound):
            if self._stop.is_set():
                return
            try:
                response, seconds = attempt(i)
                record = Attempt(
                    address, response.status, response.header("Retry-After"), seconds, response.text[:2000]
                )
            except Exception as e:
                record = Attempt(address, 0, None, 0.0, repr(e))
                with self._lock:
                    self.errors.append(f"{address}: {e!r}")
            with self._lock:
                self.attempts.append(record)
            self._stop.wait(self.pause)

    def snapshot(self) -> list[Attempt]:
        with self._lock:
            return list(self.attempts)

    def held(self) -> bool:
        """Whether an attempt was held back by the account-wide pace (checked after about DELAY)."""
        return any(a.status == 401 and a.seconds >= DELAY - 0.5 for a in self.snapshot())

    def refused_everywhere(self) -> bool:
        refused = {a.address for a in self.snapshot() if a.status == 429}
        return refused >= set(self.addresses)

    def wait(self, predicate: Callable[[], bool], what: str, timeout: float = 90.0) -> None:
        wait_for(lambda: predicate() or self.errors, what, timeout)
        assert not self.errors, self.errors[:5]

    def check_refused(self) -> None:
        """Every attempt failed; each address was refused (429, Retry-After) after its tries for
        the account from that address, and no attempt beyond them was checked."""
        attempts = self.snapshot()
        assert not self.errors, self.errors[:5]
        assert {a.status for a in attempts} <= {401, 429}, {a.status for a in attempts}
        refills = int((time.monotonic() - self.started) // 60)  # one try back a minute
        for address in self.addresses:
            mine = [a for a in attempts if a.address == address]
            checked = [a for a in mine if a.status == 401]
            refused = [a for a in mine if a.status == 429]
            assert len(checked) <= PAIR_TRIES + refills, (address, len(checked))
            assert refused, f"{address} was never refused"
            for a in refused:
                assert a.retry_after is not None and 1 <= int(a.retry_after) <= 60, a.retry_after
                assert "Too many sign-in attempts" in a.text


# ---------------------------------------------------------------- one gateway, two providers


@pytest.fixture(scope="module")
def d(tmp_path_factory):
    root = tmp_path_factory.mktemp("safety")
    deployment = IdentityDeployment(root)
    login = f"https://login.localhost:{deployment.https_port}"
    try:
        with (
            running_provider(
                root / "corp",
                client_id=CLIENT_ID,
                client_secret=CLIENT_SECRET,
                redirect_uri=f"{login}/oidc/corp/callback",
            ) as corp,
            running_provider(
                root / "plain",
                PLAIN_USERS,
                client_id=CLIENT_ID,
                client_secret=CLIENT_SECRET,
                redirect_uri=f"{login}/oidc/plain/callback",
            ) as plain,
        ):
            # (IdentityDeployment opens [auth]; these keys go in it, the providers after.)
            deployment.extra_config = "\n".join(
                [
                    THROTTLE,
                    oidc_config("corp", corp, end_session=True),
                    oidc_config("plain", plain, end_session=False),
                ]
            )
            deployment.start_all()
            deployment.issuers = {"corp": corp, "plain": plain}
            yield deployment
    finally:
        deployment.stop_all()


# ---------------------------------------------------------------- the owner gets in


def test_the_owner_gets_in_from_a_new_address_while_attackers_hammer_the_account(d):
    email = "owner@example.com"
    d.user(email, "Member")
    # A laptop that signed in before: its device cookie vouches for the account (signing out keeps it).
    laptop = browser_from(d, "127.0.0.7")
    assert d.sign_in(laptop, d.url("app.localhost", "/laptop"), email).status == 200
    assert DEVICE in laptop.jar["login.localhost"]
    laptop.go(d.url("app.localhost", "/.kokoa/auth/signout"))
    assert laptop.request("GET", d.url("app.localhost", "/")).status == 302
    assert DEVICE in laptop.jar["login.localhost"]

    def wrong_passwords(address: str) -> Callable[[int], tuple[Response, float]]:
        browser = browser_from(d, address)
        csrf = csrf_of(browser, d.login)

        def attempt(i: int) -> tuple[Response, float]:
            form = {"csrf": csrf, "rd": "/", "email": email, "password": f"guess {address} {i}"}
            return post(browser, f"{d.login}/login", form)

        return attempt

    attackers = [f"127.0.0.{n}" for n in range(2, 7)]
    with Hammer(attackers, wrong_passwords) as hammer:
        # The attackers used the account's burst: their attempts are held now.
        hammer.wait(hammer.held, "an attacker's attempt to be held by the account-wide pace")

        # The owner, meanwhile: a new browser (no device cookie), a new address, the right password.
        owner = browser_from(d, "127.0.0.9")
        form = bound_form(owner, d.url("app.localhost", "/owner"))
        answer, seconds = post(owner, f"{d.login}/login", {**form, "email": email, "password": PASSWORD})
        assert answer.status == 302, (answer.status, answer.text[:300])  # never 429
        location = answer.header("Location")
        assert urlsplit(location).path == CALLBACK
        # held by the pace (the attackers keep it busy), for max_signin_delay at most
        assert DELAY - 0.5 <= seconds <= DELAY + MARGIN, seconds
        done = owner.go(location)
        assert done.status == 200 and seen_headers(done)["remote-user"] == email
        assert DEVICE in owner.jar["login.localhost"]

        # Every attacker address is refused now (429, and no password check: the machine is quiet
        # enough to tell a held attempt from one that is not); the attack goes on.
        hammer.wait(hammer.refused_everywhere, "every attacker address to be refused")

        # The laptop signs in again: its device cookie exempts it from the pace, so it is not held
        # (well under the DELAY that every attempt from an unknown browser still waits) ...
        form = bound_form(laptop, d.url("app.localhost", "/laptop"))
        answer, seconds = post(laptop, f"{d.login}/login", {**form, "email": email, "password": PASSWORD})
        assert answer.status == 302 and urlsplit(answer.header("Location")).path == CALLBACK
        assert seconds < DELAY / 2, seconds
        assert laptop.go(answer.header("Location")).status == 200

        # ... while a new browser still is held, right after.
        late = browser_from(d, "127.0.0.8")
        form = bound_form(late, d.url("app.localhost", "/late"))
        answer, seconds = post(late, f"{d.login}/login", {**form, "email": email, "password": PASSWORD})
        assert answer.status == 302 and DELAY - 0.5 <= seconds <= DELAY + MARGIN, (answer.status, seconds)
    hammer.check_refused()


# ---------------------------------------------------------------- a resource's PIN


def test_a_resource_pin_hammered_from_one_address_still_lets_a_visitor_in(d):
    resource = f"/orgs/{d.org}/resources/{d.app['id']}"
    d.api("PATCH", resource, {"auth_pin": "246810"})
    try:
        rd = d.url("app.localhost", "/pin")
        wait_for(lambda: "/resource/pin" in d.browser().go(rd).text, "the PIN to be offered")

        def wrong_pins(address: str) -> Callable[[int], tuple[Response, float]]:
            browser = browser_from(d, address)
            form = bound_form(browser, rd)

            def attempt(i: int) -> tuple[Response, float]:
                return post(browser, f"{d.login}/resource/pin", {**form, "secret": f"{100000 + i:06d}"})

            return attempt

        with Hammer(["127.0.0.3"], wrong_pins) as hammer:
            hammer.wait(hammer.held, "an attempt on the PIN to be held by the resource-wide pace")
            hammer.wait(hammer.refused_everywhere, "the attacker's address to be refused")
            visitor = browser_from(d, "127.0.0.4")
            form = bound_form(visitor, rd)
            answer, seconds = post(visitor, f"{d.login}/resource/pin", {**form, "secret": "246810"})
            assert answer.status == 302, (answer.status, answer.text[:300])
            assert urlsplit(answer.header("Location")).path == CALLBACK
            assert seconds <= DELAY + MARGIN
            done = visitor.go(answer.header("Location"))
            assert done.status == 200 and done.url == d.url("app.localhost", "/pin")
            # still refused from the attacker's address, with the right PIN too
            attacker = browser_from(d, "127.0.0.3")
            form = bound_form(attacker, rd)
            again, _ = post(attacker, f"{d.login}/resource/pin", {**form, "secret": "246810"})
            assert again.status == 429 and again.header("Retry-After")
        hammer.check_refused()
        assert "Wrong PIN" in next(a.text for a in hammer.attempts if a.status == 401)
    finally:
        d.api("PATCH", resource, {"auth_pin": None})


# ---------------------------------------------------------------- codes bound to the browser


def test_a_code_works_only_in_the_browser_it_was_minted_for_and_is_spent_by_any_try(d):
    app = d.url("app.localhost", "/code")
    victim = d.browser()
    form = bound_form(victim, app)
    answer, _ = post(victim, f"{d.login}/login", {**form, "email": "ann@example.com", "password": PASSWORD})
    assert answer.status == 302
    lifted = answer.header("Location")  # the victim's callback URL, not followed yet
    assert urlsplit(lifted).path == CALLBACK and "code=" in lifted

    # Another browser with a nonce cookie of its own on the resource's host: refused.
    thief = d.browser()
    thief.go(app)
    assert "__Host-kokoa_nonce" in thief.jar["app.localhost"]
    stolen = thief.request("GET", lifted)
    assert stolen.status == 400 and "unknown, used or expired" in stolen.text
    assert "__Host-kokoa_session" not in thief.jar.get("app.localhost", {})
    # ... and the try spent it: the victim's own browser cannot use it either.
    assert victim.request("GET", lifted).status == 400
    assert victim.request("GET", app).status == 302  # not signed in at the resource

    # A browser without any nonce cookie: refused too, and spent.
    lifted = code_url(victim, app)  # signed in at the login host: straight to a new code
    bare = d.browser()
    assert bare.request("GET", lifted).status == 400
    assert victim.request("GET", lifted).status == 400

    # The victim's browser following its own code gets in.
    done = victim.go(code_url(victim, app))
    assert done.status == 200 and seen_headers(done)["remote-user"] == "ann@example.com"


def test_login_csrf_an_attackers_code_does_not_sign_the_victim_in_as_the_attacker(d):
    d.user("mallory@example.com", "Member")
    app = d.url("app.localhost", "/csrf")
    mallory = d.browser()
    form = bound_form(mallory, app)
    answer, _ = post(
        mallory, f"{d.login}/login", {**form, "email": "mallory@example.com", "password": PASSWORD}
    )
    assert answer.status == 302 and urlsplit(answer.header("Location")).path == CALLBACK
    planted = answer.header("Location")

    # A victim who is not signed in opens the attacker's link (it has its own nonce cookie there).
    victim = d.browser()
    victim.go(app)
    refused = victim.request("GET", planted)
    assert refused.status == 400 and "__Host-kokoa_session" not in victim.jar["app.localhost"]
    assert victim.request("GET", app).status == 302  # signed in as nobody

    # A victim signed in as herself stays herself.
    assert d.sign_in(victim, app).status == 200
    planted = code_url(mallory, app)
    assert victim.request("GET", planted).status == 400
    assert seen_headers(victim.request("GET", app))["remote-user"] == "ann@example.com"


# ---------------------------------------------------------------- sign-out and the provider


def sso_sign_in(d, browser: Browser, name: str, email: str, password: str) -> None:
    """Single sign-on with provider ``name`` for the login host itself (rd=/)."""
    start = browser.request("GET", f"{d.login}/oidc/{name}/start?rd=%2F")
    assert start.status == 302 and start.header("Location").startswith(d.issuers[name] + "/authorize?")
    status, back = post_login(start.header("Location"), email, password)
    assert status == 302 and back.startswith(f"{d.login}/oidc/{name}/callback?"), (status, back)
    home = browser.go(back)  # the console
    assert home.status == 200 and 'name="kokoa-csrf"' in home.text, home.text[:300]
    account = browser.go(f"{d.login}/account")
    assert account.status == 200 and f"Signed in as {email}" in account.text, account.text[:300]


def test_sign_out_ends_the_providers_session_too_when_it_is_set_so(d):
    browser = d.browser()
    sso_sign_in(d, browser, "corp", USERS[0]["email"], USERS[0]["password"])
    out, _ = post(browser, f"{d.login}/logout", {"csrf": csrf_of(browser, d.login)})
    assert out.status == 302
    location = out.header("Location")
    parts = urlsplit(location)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == d.issuers["corp"] + "/logout"
    query = parse_qs(parts.query)
    assert query["client_id"] == [CLIENT_ID]
    assert query["post_logout_redirect_uri"] == [f"{d.login}/signed-out"]
    assert LOGIN not in browser.jar["login.localhost"]
    # the provider ends its session and sends the browser back to the login host
    back = browser.go(location)
    assert back.status == 200 and back.url == f"{d.login}/signed-out" and "You are signed out" in back.text
    assert browser.request("GET", f"{d.login}/").status == 302  # the session has ended here too


def test_sign_out_stays_on_the_login_host_when_the_provider_is_not_set_so(d):
    browser = d.browser()
    sso_sign_in(d, browser, "plain", PLAIN_USERS[0]["email"], PLAIN_USERS[0]["password"])
    out, _ = post(browser, f"{d.login}/logout", {"csrf": csrf_of(browser, d.login)})
    assert out.status == 302 and out.header("Location") == "/signed-out"
    assert browser.go(f"{d.login}/signed-out").status == 200
    assert browser.request("GET", f"{d.login}/").status == 302
    # and a password sign-in's sign-out goes nowhere else either, with a provider set so around
    assert d.sign_in(browser, d.url("app.localhost", "/")).status == 200
    out, _ = post(browser, f"{d.login}/logout", {"csrf": csrf_of(browser, d.login)})
    assert out.status == 302 and out.header("Location") == "/signed-out"


# ---------------------------------------------------------------- two gateways, one database


class KeepAlive:
    """One client address's keep-alive connection to a gateway's login host (connecting again
    whenever the server closes it)."""

    def __init__(self, d: Deployment, source: str, host: str) -> None:
        self.port = d.https_port
        self.context = ssl.create_default_context(cafile=str(d.data / "tls" / "ca.pem"))
        self.source = source
        self.host = host
        self.conn: _Connection | None = None

    def get(self, path: str) -> http.client.HTTPResponse:
        for again in (False, True):
            if self.conn is None:
                self.conn = _Connection(self.port, "login.localhost", self.context, self.source, 60)
            try:
                self.conn.request("GET", path, headers={"Host": self.host, "Accept": "text/html"})
                response = self.conn.getresponse()
                response.read()
            except (http.client.RemoteDisconnected, ConnectionError):
                self.close()
                if again:
                    raise
                continue
            if response.will_close:
                self.close()
            return response
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def test_pending_sign_ins_survive_a_flood_and_finish_on_a_second_gateway(tmp_path, postgres_database):
    gateways = [Deployment(tmp_path / "a"), Deployment(tmp_path / "b")]
    a, b = gateways
    login = f"https://login.localhost:{a.https_port}"  # one login URL for both (a load balancer's)
    try:
        with running_provider(
            tmp_path / "oidc",
            client_id=CLIENT_ID,
            client_secret=CLIENT_SECRET,
            redirect_uri=f"{login}/oidc/corp/callback",
        ) as issuer:
            for n, gw in enumerate(gateways):
                gw.root.mkdir()
                gw.database = postgres_database
                gw.extra_config = "\n".join(
                    [
                        "[auth]",
                        f'login_url = "{login}"',
                        "attempts_per_account = 3",
                        "max_signin_delay = 2",
                        oidc_config("corp", issuer, end_session=False),
                    ]
                )
                if n:  # the store is initialized: share its admin key
                    gw.data.mkdir(mode=0o700)
                    (gw.data / "admin.key").write_text(a.admin_key)
                gw.start_gateway()
                wait_for(lambda gw=gw: login_page_up(gw, login), "the login host", logs=[gw.gateway.log])
            # tia has a password and a second factor (turned on in the shared store)
            url = st.database_url(tmp_path, postgres_database)
            tia = a.api("POST", "/users", {"email": "tia@example.com", "password": PASSWORD})["id"]
            secret = new_totp_secret()
            store_config.write(url, st.enable_totp, tia, secret, 0, [])
            totp = pyotp.TOTP(secret)

            # Two sign-ins start on gateway A, from 127.0.0.9: single sign-on (off to the provider),
            # and tia's password (her second factor pending).
            ada = browser_from(a, "127.0.0.9")
            start = ada.request("GET", f"{login}/oidc/corp/start?rd=%2F")
            assert start.status == 302 and start.header("Location").startswith(issuer + "/authorize?")
            owner = browser_from(a, "127.0.0.9")
            form = {
                "csrf": csrf_of(owner, login),
                "rd": "/",
                "email": "tia@example.com",
                "password": PASSWORD,
            }
            pending, _ = post(owner, f"{login}/login", form)
            assert pending.status == 302 and pending.header("Location") == "/login/totp"

            # The flood, on both gateways from five addresses: 2,000 single sign-on starts ...
            started = time.monotonic()
            starts = flood_starts(gateways, login, [f"127.0.0.{n}" for n in range(2, 7)], 2000)
            seconds = time.monotonic() - started
            assert len(starts) == 2000
            assert {s for s, _ in starts} <= {302, 429}, {s for s, _ in starts}
            # per gateway and address: 20 at once, then one per 3 s
            assert sum(s == 302 for s, _ in starts) <= 2 * 5 * (20 + seconds / 3 + 1)
            assert 429 in {s for s, _ in starts} and all(retry for s, retry in starts if s == 429)
            # ... and wrong second-factor codes, by attackers who know tia's password.
            wrong = flood_totp(gateways, login, totp, [f"127.0.0.{n}" for n in range(2, 7)])
            assert {s for s, _ in wrong} <= {302, 401, 429}, {s for s, _ in wrong}
            assert {loc for s, loc in wrong if s == 302} <= {"/login"}
            assert 401 in {s for s, _ in wrong} and 429 in {s for s, _ in wrong}

            # Single sign-on: the provider's redirect back is delivered to gateway B.
            status, back = post_login(start.header("Location"), "ada@example.com", "correct horse")
            assert status == 302 and back.startswith(f"{login}/oidc/corp/callback?")
            ada_b = browser_from(b, "127.0.0.9", jar=ada.jar)
            landed = ada_b.request("GET", back)
            assert landed.status == 302 and landed.header("Location") == "/", landed.text[:300]
            assert "Signed in as ada@example.com" in ada_b.go(f"{login}/account").text
            assert "Signed in as ada@example.com" in ada.go(f"{login}/account").text  # valid on A too

            # The second factor: its code goes to gateway B.
            owner_b = browser_from(b, "127.0.0.9", jar=owner.jar)
            asked = owner_b.go(f"{login}/login/totp")
            assert asked.status == 200 and 'id="totp"' in asked.text
            done, _ = post(
                owner_b, f"{login}/login/totp", {"csrf": csrf_of(owner_b, login), "code": totp.now()}
            )
            assert done.status == 302 and done.header("Location") == "/", (done.status, done.text[:300])
            assert "Signed in as tia@example.com" in owner_b.go(f"{login}/account").text
            assert "Signed in as tia@example.com" in owner.go(f"{login}/account").text
    finally:
        for gw in gateways:
            gw.stop()


def login_page_up(gw: Deployment, login: str) -> bool:
    try:
        return browser_from(gw, "127.0.0.1").request("GET", f"{login}/login").status == 200
    except OSError:
        return False


def flood_starts(gateways: list[Deployment], login: str, addresses: list[str], total: int) -> list:
    """``total`` GET /oidc/corp/start, spread over the gateways and addresses, on keep-alive
    connections: (status, Retry-After) of each."""
    host = urlsplit(login).netloc
    results: list = []
    lock = threading.Lock()
    per_thread = total // (len(gateways) * len(addresses))

    def run(gw: Deployment, address: str) -> None:
        client = KeepAlive(gw, address, host)
        mine = []
        try:
            for _ in range(per_thread):
                response = client.get("/oidc/corp/start?rd=%2F")
                mine.append((response.status, response.getheader("Retry-After")))
        finally:
            client.close()
            with lock:
                results.extend(mine)

    threads = [
        threading.Thread(target=run, args=(gw, ip), daemon=True) for gw in gateways for ip in addresses
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not any(t.is_alive() for t in threads), "the flood did not end"
    return results


def flood_totp(gateways: list[Deployment], login: str, totp: pyotp.TOTP, addresses: list[str]) -> list:
    """From each address: tia's password on gateway A (an attacker who knows it), then wrong codes to
    both gateways in turn, 20 of them; (status, Location) of each code."""
    now = time.time()
    right = {totp.at(now + k * 30) for k in range(-4, 5)}
    code = next(c for c in (f"{n:06d}" for n in range(123456, 999999, 111)) if c not in right)
    results: list = []
    lock = threading.Lock()
    errors: list[str] = []

    def run(address: str) -> None:
        try:
            browsers = [browser_from(gw, address) for gw in gateways]
            jar = browsers[0].jar
            for browser in browsers[1:]:
                browser.jar = jar
            form = {"csrf": csrf_of(browsers[0], login), "rd": "/", "email": "tia@example.com"}
            asked, _ = post(browsers[0], f"{login}/login", {**form, "password": PASSWORD})
            assert asked.status == 302 and asked.header("Location") == "/login/totp", asked.status
            mine = []
            for i in range(20):
                answer, _ = post(browsers[i % 2], f"{login}/login/totp", {"csrf": form["csrf"], "code": code})
                mine.append((answer.status, answer.header("Location")))
            assert LOGIN not in jar.get("login.localhost", {})
            with lock:
                results.extend(mine)
        except Exception as e:
            with lock:
                errors.append(f"{address}: {e!r}")

    threads = [threading.Thread(target=run, args=(ip,), daemon=True) for ip in addresses]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not any(t.is_alive() for t in threads), "the wrong codes did not end"
    assert not errors, errors
    return results
