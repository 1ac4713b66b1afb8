"""Every return-URL payload of tests/auth/redirect_payloads.txt, in a real browser: Chromium opens
``/authorize?rd=<payload>`` and ``/login?rd=<payload>`` on the login host, signed out and signed in,
follows every redirect the gateway sends, and must never be sent to a host other than the login host,
app.localhost, or one label under the wildcard resource ``*.wild.localhost`` (nor by another scheme
than https, nor with userinfo in the URL: a re-serialized URL has none).

Chromium, not a Python parser, decides where a ``Location`` leads: that is the point of this test.
Every request the browser makes is seen (``context.on("request")``, redirect hops included), traced
back through its redirects to the payload that started it, and judged by the WHATWG reading (ada).
One tab serves while its navigations end well; a failed navigation (a refused connection, an
escape stopped by the proxy) gets a new tab, since its late error page would cut the next one short.

Nothing leaves the machine: ``page.route`` cannot stop a redirect hop (Playwright routes only the
first request of a navigation), so the browser context sends every host but ``*.localhost`` to a
proxy address where nothing listens; such a request is seen, fails at once, and costs no lookup.
"""

from __future__ import annotations

import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, quote, urlsplit

import pytest
from playwright.sync_api import Browser, BrowserContext, Error, Page, Request, expect

from e2e.harness import wait_for
from e2e.test_identity_e2e import PASSWORD, IdentityDeployment

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "auth"))  # the corpus and its judge
from redirect_corpus import load, unsafe_reason

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

#: The login host's pages that take ``rd`` from the query.
ENTRY_PATHS = ("/authorize", "/login")
#: How long one payload may take to settle (it normally takes a few tens of milliseconds).
NAVIGATION_TIMEOUT_MS = 5_000
#: Tries of one opening whose navigation is cut short by another (not expected on a fresh tab).
TRIES = 3


@pytest.fixture(scope="module")
def wild(d: IdentityDeployment) -> str:
    """A wildcard resource, ``*.wild.localhost``: one label under it is a host the router knows."""
    d.add_http("wild", "*.wild.localhost", d.upstream_port)
    wait_for(
        lambda: d.get("x.wild.localhost", "/ready")[0] not in (404, 503), "*.wild.localhost to be routable"
    )
    return "wild.localhost"


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
    """Judges every request of a browser context, by the payload whose opening led to it."""

    def __init__(self, context: BrowserContext) -> None:
        self.escapes: dict[tuple[str, str], list[str]] = {}  # (entry path, payload) -> what happened
        self.unsettled: list[str] = []
        context.on("request", self._seen)

    def _seen(self, request: Request) -> None:
        if request.url.startswith(("chrome-error:", "about:")):
            return
        reason = unsafe_reason(request.url)
        if reason is None:
            return
        first = request
        while first.redirected_from is not None:
            first = first.redirected_from
        opened = urlsplit(first.url)
        payload = parse_qs(opened.query).get("rd", ["(not a payload's opening: " + first.url + ")"])[0]
        kind = "navigation" if request.is_navigation_request() else request.resource_type
        self.escapes.setdefault((opened.path, payload), []).append(f"{kind} to {request.url!r}: {reason}")

    def report(self, mode: str, payloads: list[str]) -> str:
        lines = [
            f"{entry}?rd={payload!r}: {'; '.join(what)}"
            for (entry, payload), what in list(self.escapes.items())[:40]
        ]
        distinct = {payload for _, payload in self.escapes}
        return (
            f"{mode}: {len(self.escapes)} of {len(payloads) * len(ENTRY_PATHS)} openings "
            f"({len(distinct)} of {len(payloads)} payloads) sent the browser to another host or "
            "scheme, or with a user name in the URL:\n" + "\n".join(lines)
        )


class Tab:
    """One tab, reused while its navigations end well. A navigation that fails commits Chromium's
    error page a moment after ``goto`` has returned, and that late commit would cut the next
    navigation short: after a failure the tab is closed and a new one opened instead."""

    def __init__(self, context: BrowserContext, watch: Watch) -> None:
        self.context, self.watch = context, watch
        self.page = context.new_page()

    def open(self, url: str, what: str) -> Error | None:
        """Open ``url`` and follow its redirects to the end; the error if a request failed."""
        for _ in range(TRIES):
            try:
                self.page.goto(url, wait_until="commit", timeout=NAVIGATION_TIMEOUT_MS)
                return None
            except Error as e:
                self.page.close()
                self.page = self.context.new_page()
                message = str(e).splitlines()[0]
                if "interrupted by another navigation" in message:
                    continue  # not expected on a fresh tab; open it again there
                if "Timeout" in message:
                    self.watch.unsettled.append(f"{what}: {message}")
                return e  # a failed request: the watch has seen where it went
        self.watch.unsettled.append(f"{what}: interrupted {TRIES} times")
        return None


def run_corpus(d: IdentityDeployment, context: BrowserContext, mode: str) -> Watch:
    """Every payload at every entry path in one context; the watch of what its requests did."""
    payloads = load(d.https_port)
    assert len(payloads) >= 300
    watch = Watch(context)
    tab = Tab(context, watch)
    # the watch and the proxy work: a navigation elsewhere is seen, and fails at once
    failed = tab.open("https://canary.example/", "the canary")
    assert failed is not None and "ERR_PROXY_CONNECTION_FAILED" in str(failed), failed
    assert any("canary.example" in " ".join(what) for what in watch.escapes.values()), watch.escapes
    watch.escapes.clear()

    started = time.monotonic()
    for payload in payloads:
        for entry in ENTRY_PATHS:
            tab.open(f"{d.login}{entry}?rd={quote(payload, safe='')}", f"{entry}?rd={payload!r}")
    print(f"\n{mode}: {len(payloads)} payloads x {len(ENTRY_PATHS)} in {time.monotonic() - started:.1f} s")
    if watch.escapes:
        print(watch.report(mode, payloads))
    tab.page.close()
    return watch


def test_no_payload_sends_a_signed_out_browser_to_another_host(
    d: IdentityDeployment, wild: str, context: BrowserContext
) -> None:
    watch = run_corpus(d, context, "signed out")
    assert not watch.escapes, watch.report("signed out", load(d.https_port))
    assert not watch.unsettled, "\n".join(watch.unsettled[:20])


def test_no_payload_sends_a_signed_in_browser_to_another_host(
    d: IdentityDeployment, wild: str, context: BrowserContext, page: Page
) -> None:
    page.goto(d.url("app.localhost", "/"))  # sign in once, as a user does
    expect(page.locator("form#signin")).to_be_visible()
    page.get_by_label("Email").fill("ann@example.com")
    page.get_by_label("Password").fill(PASSWORD)
    with page.expect_navigation():
        page.locator("form#signin").get_by_role("button", name="Sign in").click()
    assert page.url == d.url("app.localhost", "/"), page.url
    page.close()

    watch = run_corpus(d, context, "signed in")
    # still signed in at the end: every payload was tried with a session
    last = context.new_page()
    last.goto(f"{d.login}/")
    expect(last.locator("body")).to_contain_text("Signed in as ann@example.com.")
    assert not watch.escapes, watch.report("signed in", load(d.https_port))
    assert not watch.unsettled, "\n".join(watch.unsettled[:20])
