"""A one-time code is redeemed only in the browser it was minted for, in Chromium.

Signing in to a resource host ends with a redirect to ``/.kokoa/auth/callback?code=...`` on that host.
The code is bound to the browser's nonce cookie there (``__Host-kokoa_nonce``, host-only; the login
host knows only its SHA-256): redeemed without that cookie it is refused, and any attempt spends it.
So a code lifted from a URL (a log, a shared screenshot) is worthless to whoever holds it, and a code
an attacker minted for their own account cannot sign a victim's browser in as them (login CSRF).

A code is had here as the gate would get one: browser A, signed in, opens the login host's
``/authorize?rd=<app>&n=<its nonce's hash>``, and the 302 to the callback is stopped before A follows
it. (Playwright's ``context.request`` cannot do it: it runs in Node, which does not resolve
``*.localhost``; nor can ``page.route``, which does not see redirect hops. Chromium's own request
interception does: the Fetch domain, at the response stage.)
"""

from __future__ import annotations

import hashlib
import json
import re
from urllib.parse import quote

import pytest
from playwright.sync_api import Browser, BrowserContext, Error, Page, expect

from e2e.test_identity_e2e import PASSWORD, IdentityDeployment

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

SESSION = "__Host-kokoa_session"
NONCE = "__Host-kokoa_nonce"
REFUSED = "This sign-in link is unknown, used or expired."


def sign_in(d: IdentityDeployment, page: Page, email: str) -> None:
    """Open the app, sign in on the login host's form, and be back on the app."""
    page.goto(d.url("app.localhost", "/"))
    expect(page.locator("form#signin")).to_be_visible()
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    with page.expect_navigation():
        page.locator("form#signin").get_by_role("button", name="Sign in").click()
    assert page.url == d.url("app.localhost", "/"), page.url
    assert signed_in_as(page) == email


def signed_in_as(page: Page) -> str | None:
    """Who the upstream was told is asking (the page shows its JSON echo of the request)."""
    seen = json.loads(page.locator("pre").first.inner_text())
    return {name.lower(): value for name, value in seen["headers"]}.get("remote-user")


def cookie(context: BrowserContext, name: str, domain: str = "app.localhost") -> str | None:
    return next((c["value"] for c in context.cookies() if c["name"] == name and c["domain"] == domain), None)


def code_for(d: IdentityDeployment, context: BrowserContext) -> str:
    """The callback URL with a fresh code minted for ``context``'s browser: it asks the login host
    (with its own cookies) for the app, with the hash of its nonce cookie on the app's host, and the
    login host's 302 is stopped before it is followed."""
    nonce = cookie(context, NONCE)
    assert nonce, "the browser has no nonce cookie on app.localhost"
    n = hashlib.sha256(nonce.encode()).hexdigest()
    page = context.new_page()
    cdp = context.new_cdp_session(page)
    answers: list[tuple[int | None, str | None]] = []

    def paused(event: dict) -> None:
        headers = {h["name"].lower(): h["value"] for h in event.get("responseHeaders") or []}
        answers.append((event.get("responseStatusCode"), headers.get("location")))
        cdp.send("Fetch.failRequest", {"requestId": event["requestId"], "errorReason": "Aborted"})

    cdp.on("Fetch.requestPaused", paused)
    cdp.send("Fetch.enable", {"patterns": [{"urlPattern": "*/authorize?*", "requestStage": "Response"}]})
    try:
        with pytest.raises(Error, match="ERR_ABORTED"):
            page.goto(f"{d.login}/authorize?rd={quote(d.url('app.localhost', '/'), safe='')}&n={n}")
    finally:  # the tab is left to the context's end: a close racing a navigation can hang
        cdp.detach()
    assert len(answers) == 1, answers
    status, location = answers[0]
    callback = re.escape(d.url("app.localhost", "/.kokoa/auth/callback?code=")) + r"[A-Za-z0-9_-]{20,}"
    assert status == 302 and location and re.fullmatch(callback, location), answers
    return location


def refused(page: Page, url: str) -> None:
    """Opening ``url`` gets the gateway's 400 page for a code it will not redeem."""
    response = page.goto(url)
    assert response is not None and response.status == 400, response and response.status
    expect(page.locator("body")).to_contain_text(REFUSED)


def test_a_code_is_redeemed_only_with_its_nonce_cookie_and_is_spent_by_any_try(
    d: IdentityDeployment, chromium: Browser, context: BrowserContext, page: Page
) -> None:
    sign_in(d, page, "ann@example.com")  # browser A
    first_session = cookie(context, SESSION)
    assert first_session

    lifted = code_for(d, context)
    other = chromium.new_context()  # browser B: another profile, no nonce cookie on the app's host
    try:
        elsewhere = other.new_page()
        refused(elsewhere, lifted)
        assert cookie(other, SESSION) is None and cookie(other, NONCE) is None
        elsewhere.goto(d.url("app.localhost", "/"))  # B is not signed in: off to sign in
        expect(elsewhere).to_have_url(re.compile(re.escape(f"{d.login}/authorize?rd=")))
        expect(elsewhere.locator("form#signin")).to_be_visible()
    finally:
        other.close()

    refused(page, lifted)  # B's try spent it: A's own browser cannot use it either
    assert cookie(context, SESSION) == first_session  # no new session came of it

    fresh = code_for(d, context)
    response = page.goto(fresh)  # with its nonce cookie: A is signed in (a new host session)
    assert response is not None and response.status == 200, response and response.status
    assert page.url == d.url("app.localhost", "/")
    assert signed_in_as(page) == "ann@example.com"
    assert cookie(context, SESSION) not in (None, first_session)
    refused(page, fresh)  # and it is good once

    # the control: what B lacked is the nonce cookie, nothing else (a browser given A's nonce, as
    # only A's own browser has it, redeems A's code)
    twin = chromium.new_context()
    try:
        twin.add_cookies(
            [{"name": NONCE, "value": cookie(context, NONCE), "url": d.url("app.localhost", "/")}]
        )
        tab = twin.new_page()
        response = tab.goto(code_for(d, context))
        assert response is not None and response.status == 200, response and response.status
        assert signed_in_as(tab) == "ann@example.com"
    finally:
        twin.close()


def test_a_code_minted_for_another_browser_does_not_sign_in_the_one_that_opens_it(
    d: IdentityDeployment, chromium: Browser, context: BrowserContext, page: Page
) -> None:
    """Login CSRF: an attacker (A) mints a code for their own account and makes a victim's browser
    (C, signed in as itself, with a nonce cookie of its own) open the callback."""
    d.user("carol@example.com", "Member")
    sign_in(d, page, "ann@example.com")  # the attacker's browser
    planted = code_for(d, context)

    victim = chromium.new_context()
    try:
        tab = victim.new_page()
        sign_in(d, tab, "carol@example.com")
        own_session = cookie(victim, SESSION)
        refused(tab, planted)
        assert cookie(victim, SESSION) == own_session  # no session was set for the attacker's account
        tab.goto(d.url("app.localhost", "/"))
        assert signed_in_as(tab) == "carol@example.com"  # still the victim, never the attacker
    finally:
        victim.close()

    bystander = chromium.new_context()  # nor is a browser signed in nowhere, with a nonce of its own
    try:
        page_b = bystander.new_page()
        page_b.goto(d.url("app.localhost", "/"))  # the gate gives it a nonce cookie on the app's host
        assert cookie(bystander, NONCE) is not None
        refused(page_b, code_for(d, context))
        assert cookie(bystander, SESSION) is None
        page_b.goto(d.url("app.localhost", "/"))
        expect(page_b.locator("form#signin")).to_be_visible()
    finally:
        bystander.close()

    refused(page, planted)  # the victim's try spent it
