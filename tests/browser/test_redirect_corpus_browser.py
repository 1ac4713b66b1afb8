"""Every return-URL payload of tests/auth/redirect_payloads.txt, in a real browser, through every
page that takes a return URL: Chromium opens each payload at each entry point, follows every
redirect the gateway sends, and must never be sent to a host other than the login host,
app.localhost, or one label under the wildcard resource ``*.wild.localhost`` (nor by another scheme
than https, nor with userinfo in the URL: a re-serialized URL has none).

The entry points (about 4.5 minutes in all on an idle machine, most of it Chromium's ~40 ms a
navigation: 507 payloads x 5 entry points x 2 modes, and the POSTed sample):

- :data:`ENTRIES`, signed out and signed in: ``rd`` in the query of the login host's
  ``/authorize``, ``/login``, ``/resource/password`` (the app has a password for this module, so
  the page and the sign-in form's link to it exist; without ``n`` an accepted resource URL bounces
  for its nonce first, and a login-host one is a 404: no such resource) and ``/oidc/corp/start``
  (no provider is set up: the page checks the return URL first, a 400 page for a bad one or the
  bounce through the resource host for a good one without ``n``, then 404 for the unknown
  provider), and ``path`` in the query of ``/.kokoa/auth/start`` on the resource host (the bounce
  that gives the browser its nonce cookie: it must only ever send it on to the login host);
- :data:`POSTED`, signed in: ``rd`` POSTed with the sign-in form of ``/login``, for a sample
  (:func:`posted_sample`): the real return URLs of the corpus's first section and every payload
  with userinfo or a backslash. The form is opened, its hidden ``rd``, email and password set and
  its button pressed by script (one call; Playwright's evaluate is not subject to the page's CSP),
  with the right password each time: a refused ``rd`` is a 400 page before any password check; an
  accepted one is a real sign-in (argon2, about a second), which clears the throttle's count, and
  the browser's device cookie (from its first sign-in) spares it the account-wide pace. The login
  cookie is dropped before each so that ``/login`` shows its form again.

Chromium, not a Python parser, decides where a ``Location`` leads: that is the point of this test.
Every request the browser makes is seen (``context.on("request")``, redirect hops included), traced
back through its redirects to the opening that started it (the entry point, and the payload from its
query or its POSTed form), and judged by the WHATWG reading (ada). A failure names the entry point
and the payload. One tab serves while its navigations end well; a failed navigation (a refused
connection, an escape stopped by the proxy) gets a new tab, since its late error page would cut the
next one short.

Nothing leaves the machine: ``page.route`` cannot stop a redirect hop (Playwright routes only the
first request of a navigation), so the browser context sends every host but ``*.localhost`` to a
proxy address where nothing listens; such a request is seen, fails at once, and costs no lookup.
"""

from __future__ import annotations

import re
import socket
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, quote, urlsplit

import pytest
from playwright.sync_api import Browser, BrowserContext, Error, Request, expect

from e2e.harness import wait_for
from e2e.test_identity_e2e import PASSWORD, IdentityDeployment

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "auth"))  # the corpus and its judge
from redirect_corpus import CORPUS, LOGIN_HOST, load, unsafe_reason

pytestmark = [pytest.mark.e2e, pytest.mark.browser]


@dataclass(frozen=True)
class Entry:
    """A page that takes a return URL: where it is, and the parameter that carries the payload."""

    host: str
    path: str
    param: str = "rd"
    method: str = "GET"

    @property
    def name(self) -> str:
        """How a report names it: ``GET login.localhost/authorize?rd=``, ``POST ...login rd=``."""
        sep = "?" if self.method == "GET" else " "
        return f"{self.method} {self.host}{self.path}{sep}{self.param}="

    def url(self, d: IdentityDeployment, payload: str = "") -> str:
        base = d.url(self.host, self.path)
        return f"{base}?{self.param}={quote(payload, safe='')}" if self.method == "GET" else base


#: The pages opened with each payload in their query, signed out and signed in.
ENTRIES = (
    Entry(LOGIN_HOST, "/authorize"),
    Entry(LOGIN_HOST, "/login"),
    Entry(LOGIN_HOST, "/resource/password"),
    Entry(LOGIN_HOST, "/oidc/corp/start"),
    Entry("app.localhost", "/.kokoa/auth/start", "path"),
)
#: The sign-in form, with the payload POSTed as its ``rd``.
POSTED = Entry(LOGIN_HOST, "/login", method="POST")
LOGIN = "__Host-kokoa_login"
#: How long one payload may take to settle (it normally takes a few tens of milliseconds; a
#: POSTed sign-in about a second).
NAVIGATION_TIMEOUT_MS = 5_000
SIGN_IN_TIMEOUT_MS = 15_000
#: Tries of one opening whose navigation is cut short by another (not expected on a fresh tab).
TRIES = 3
#: The resource password the app has in this module.
APP_PASSWORD = "corpus sesame 7"
#: Sets the sign-in form's hidden rd, email and password, and presses its button.
FILL_AND_SEND = """(form, [rd, email, password]) => {
    form.elements.rd.value = rd;
    form.elements.email.value = email;
    form.elements.password.value = password;
    form.querySelector("button").click();
}"""
_NASTY = re.compile(r"@|\\|%40|%5c", re.IGNORECASE)


def real_return_urls(payloads: list[str]) -> list[str]:
    """The corpus's first section: the gateway's own return URLs, which it accepts."""
    lines = CORPUS.read_text(encoding="utf-8").splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith("# ---- ")]
    return payloads[: sum(1 for line in lines[starts[0] : starts[1]] if line and not line.startswith("#"))]


def posted_sample(payloads: list[str]) -> list[str]:
    """The payloads POSTed: the real return URLs (each a real sign-in) and every other payload with
    userinfo or a backslash, raw or percent-encoded."""
    real = real_return_urls(payloads)
    return real + [p for p in payloads[len(real) :] if _NASTY.search(p)]


@pytest.fixture(scope="module")
def wild(d: IdentityDeployment) -> str:
    """A wildcard resource, ``*.wild.localhost``: one label under it is a host the router knows."""
    d.add_http("wild", "*.wild.localhost", d.upstream_port)
    wait_for(
        lambda: d.get("x.wild.localhost", "/ready")[0] not in (404, 503), "*.wild.localhost to be routable"
    )
    return "wild.localhost"


@pytest.fixture(scope="module")
def app_password(d: IdentityDeployment) -> Iterator[str]:
    """The app has a password of its own for this module (its page exists); taken away at the end."""
    resource = f"/orgs/{d.org}/resources/{d.app['id']}"
    d.api("PATCH", resource, {"auth_password": APP_PASSWORD})
    form = f"{d.login}/resource/password?rd={quote(d.url('app.localhost', '/'), safe='')}&n={'0' * 64}"
    wait_for(lambda: d.browser().request("GET", form).status == 200, "the app's password page")
    try:
        yield APP_PASSWORD
    finally:
        d.api("PATCH", resource, {"auth_password": None})


def closed_port() -> int:
    """A loopback port where nothing listens (it was free a moment ago)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def context(chromium: Browser) -> Iterator[BrowserContext]:
    """A new browser profile whose requests for any host but ``*.localhost`` go nowhere."""
    ctx = chromium.new_context(
        proxy={"server": f"http://127.0.0.1:{closed_port()}", "bypass": "localhost,*.localhost"}
    )
    ctx.set_default_timeout(15_000)
    try:
        yield ctx
    finally:
        ctx.close()


class Watch:
    """Judges every request of a browser context, by the opening (entry point and payload) that led
    to it."""

    def __init__(self, context: BrowserContext, entries: tuple[Entry, ...]) -> None:
        self.entries = entries
        self.escapes: dict[tuple[str, str], list[str]] = {}  # (entry's name, payload) -> what happened
        self.unsettled: list[str] = []
        context.on("request", self._seen)

    def opening(self, first: Request) -> tuple[str, str]:
        """The entry point and payload of the request that started a chain of redirects."""
        opened = urlsplit(first.url)
        for entry in self.entries:
            if (opened.hostname, opened.path, first.method) == (entry.host, entry.path, entry.method):
                sent = opened.query if entry.method == "GET" else first.post_data or ""
                value = parse_qs(sent, keep_blank_values=True).get(entry.param)
                if value:
                    return entry.name, value[0]
        return "(not a payload's opening)", f"{first.method} {first.url}"

    def _seen(self, request: Request) -> None:
        if request.url.startswith(("chrome-error:", "about:")):
            return
        reason = unsafe_reason(request.url)
        if reason is None:
            return
        first = request
        while first.redirected_from is not None:
            first = first.redirected_from
        kind = "navigation" if request.is_navigation_request() else request.resource_type
        self.escapes.setdefault(self.opening(first), []).append(f"{kind} to {request.url!r}: {reason}")

    def report(self, mode: str, openings: int, payloads: int) -> str:
        lines = [
            f"{entry}{payload!r}: {'; '.join(what)}"
            for (entry, payload), what in list(self.escapes.items())[:40]
        ]
        distinct = {payload for _, payload in self.escapes}
        by_entry = Counter(entry for entry, _ in self.escapes)
        return (
            f"{mode}: {len(self.escapes)} of {openings} openings ({len(distinct)} of {payloads} payloads; "
            f"by entry point: {dict(by_entry)}) sent the browser to another host or scheme, or with a "
            "user name in the URL:\n" + "\n".join(lines)
        )


class Tab:
    """One tab, reused while its navigations end well. A navigation that fails commits Chromium's
    error page a moment after ``goto`` has returned, and that late commit would cut the next
    navigation short: after a failure a new tab is opened instead. The old one is left open (the
    context's end closes it): ``page.close()`` racing that commit can hang for ever (Chromium
    acknowledges the close and drops it: microsoft/playwright#42068, crbug 536385539)."""

    def __init__(self, context: BrowserContext, watch: Watch) -> None:
        self.context, self.watch = context, watch
        self.page = context.new_page()

    def _failed(self, e: Error, what: str) -> str:
        self.page = self.context.new_page()
        message = str(e).splitlines()[0]
        if "Timeout" in message:
            self.watch.unsettled.append(f"{what}: {message}")
        return message

    def open(self, url: str, what: str) -> Error | None:
        """Open ``url`` and follow its redirects to the end; the error if a request failed."""
        for _ in range(TRIES):
            try:
                self.page.goto(url, wait_until="commit", timeout=NAVIGATION_TIMEOUT_MS)
                return None
            except Error as e:
                if "interrupted by another navigation" in self._failed(e, what):
                    continue  # not expected on a fresh tab; open it again there
                return e  # a failed request: the watch has seen where it went
        self.watch.unsettled.append(f"{what}: interrupted {TRIES} times")
        return None

    def sign_in_with(self, d: IdentityDeployment, payload: str, what: str) -> int | str:
        """Open the sign-in form (without a login session), set its hidden ``rd`` to ``payload``,
        sign in with the right password and follow the redirects to the end: the final page's
        status, or the error's first line if a request failed."""
        for _ in range(TRIES):
            self.context.clear_cookies(name=LOGIN, domain=LOGIN_HOST)
            try:
                self.page.goto(
                    f"{d.login}/login", wait_until="domcontentloaded", timeout=NAVIGATION_TIMEOUT_MS
                )
                with self.page.expect_navigation(wait_until="commit", timeout=SIGN_IN_TIMEOUT_MS) as sent:
                    # the form as served, filled in and its button pressed: one call, not four
                    self.page.locator("form#signin").evaluate(
                        FILL_AND_SEND, [payload, "ann@example.com", PASSWORD]
                    )
                response = sent.value
                if response is None:
                    return "no response"
                if response.status == 400:  # the refusal of the return URL (or of a NUL in the form)
                    shown = self.page.locator(".error").inner_text()
                    refusal = "return to after signing in" in shown or shown == "The form is not valid text."
                    return 400 if refusal else f"400: {shown}"
                return response.status
            except Error as e:
                message = self._failed(e, what)
                if "interrupted by another navigation" in message:
                    continue
                return message
        self.watch.unsettled.append(f"{what}: interrupted {TRIES} times")
        return "interrupted"


def sign_in(d: IdentityDeployment, context: BrowserContext) -> None:
    """Sign in once in ``context``, as a user does (the browser keeps a device cookie too)."""
    page = context.new_page()
    page.goto(d.url("app.localhost", "/"))
    expect(page.locator("form#signin")).to_be_visible()
    page.get_by_label("Email").fill("ann@example.com")
    page.get_by_label("Password").fill(PASSWORD)
    with page.expect_navigation():
        page.locator("form#signin").get_by_role("button", name="Sign in").click()
    assert page.url == d.url("app.localhost", "/"), page.url
    page.close()


def canary(tab: Tab) -> None:
    """The watch and the proxy work: a navigation elsewhere is seen, and fails at once."""
    failed = tab.open("https://canary.example/", "the canary")
    assert failed is not None and "ERR_PROXY_CONNECTION_FAILED" in str(failed), failed
    assert any("canary.example" in " ".join(what) for what in tab.watch.escapes.values()), tab.watch.escapes
    tab.watch.escapes.clear()


def run_corpus(
    d: IdentityDeployment, context: BrowserContext, mode: str, entries: tuple[Entry, ...]
) -> tuple[Watch, int]:
    """Every payload at every entry point in one context: the watch of what its requests did, and
    the number of openings."""
    payloads = load(d.https_port)
    assert len(payloads) >= 300
    watch = Watch(context, entries)
    tab = Tab(context, watch)
    canary(tab)
    spent: Counter[str] = Counter()
    for payload in payloads:
        for entry in entries:
            started = time.monotonic()
            tab.open(entry.url(d, payload), f"{entry.name}{payload!r}")
            spent[entry.name] += time.monotonic() - started
    openings = len(payloads) * len(entries)
    times = ", ".join(f"{name} {seconds:.0f} s" for name, seconds in spent.items())
    print(
        f"\n{mode}: {len(payloads)} payloads x {len(entries)} entry points in {spent.total():.1f} s ({times})"
    )
    if watch.escapes:
        print(watch.report(mode, openings, len(payloads)))
    return watch, openings


def still_signed_in(d: IdentityDeployment, context: BrowserContext) -> None:
    last = context.new_page()
    last.goto(f"{d.login}/account")
    expect(last.locator("body")).to_contain_text("Signed in as ann@example.com.")
    last.close()


def test_no_payload_sends_a_signed_out_browser_to_another_host(
    d: IdentityDeployment, wild: str, app_password: str, context: BrowserContext
) -> None:
    watch, openings = run_corpus(d, context, "signed out", ENTRIES)
    assert not watch.escapes, watch.report("signed out", openings, len(load(d.https_port)))
    assert not watch.unsettled, "\n".join(watch.unsettled[:20])


def test_no_payload_sends_a_signed_in_browser_to_another_host(
    d: IdentityDeployment, wild: str, app_password: str, context: BrowserContext
) -> None:
    sign_in(d, context)
    watch, openings = run_corpus(d, context, "signed in", ENTRIES)
    still_signed_in(d, context)  # every payload was tried with a session
    assert not watch.escapes, watch.report("signed in", openings, len(load(d.https_port)))
    assert not watch.unsettled, "\n".join(watch.unsettled[:20])


def test_no_posted_return_url_sends_a_browser_that_signs_in_to_another_host(
    d: IdentityDeployment, wild: str, app_password: str, context: BrowserContext
) -> None:
    sign_in(d, context)  # a returning user: the browser has a device cookie
    payloads = load(d.https_port)
    sample = posted_sample(payloads)
    assert len(sample) >= 40
    watch = Watch(context, (POSTED,))
    tab = Tab(context, watch)
    canary(tab)
    started = time.monotonic()
    outcomes: dict[str, int | str] = {}
    for payload in sample:
        outcomes[payload] = tab.sign_in_with(d, payload, f"{POSTED.name}{payload!r}")
    tally = Counter(outcomes.values())
    print(
        f"\nPOSTed: {len(sample)} payloads in {time.monotonic() - started:.1f} s; final pages: {dict(tally)}"
    )
    if watch.escapes:
        print(watch.report("POSTed, signing in", len(sample), len(sample)))
    still_signed_in(d, context)
    assert not watch.escapes, watch.report("POSTed, signing in", len(sample), len(sample))
    assert not watch.unsettled, "\n".join(watch.unsettled[:20])
    # every attempt was answered: a sign-in that went where its rd said (a page of ours, or a failed
    # connection to an allowed host that does not listen there, e.g. port 443), or the refusal of its
    # rd (400); never throttled, never an error of the gateway (either would hide where it goes)
    odd = {p: o for p, o in outcomes.items() if isinstance(o, str) and not o.startswith("Page.")}
    odd |= {p: o for p, o in outcomes.items() if isinstance(o, int) and o not in (200, 400, 404)}
    assert not odd, odd
    # the gateway's own return URLs (the corpus's first section) were sign-ins, not refusals
    refused = [p for p in real_return_urls(payloads) if outcomes[p] == 400]
    assert not refused, refused
