"""The sign-in pages in a real browser: Debian's Chromium, driven by Playwright, against a real gateway,
edge and upstream (the deployment of tests/e2e/test_identity_e2e.py). Each test checks what the user
sees and which cookies the browser keeps."""

from __future__ import annotations

import json
import re
import time

import pyotp
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from e2e.test_identity_e2e import PASSWORD, IdentityDeployment

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

SESSION = "__Host-kokoa_session"
LOGIN = "__Host-kokoa_login"


def login_page(d: IdentityDeployment) -> re.Pattern[str]:
    """Where a browser that must sign in is sent: the login host's form, with where it was going."""
    return re.compile(re.escape(f"{d.login}/authorize?rd="))


def press(page: Page, button: str, form: str) -> None:
    """Press a form's button and wait for the page it leads to (after every redirect)."""
    with page.expect_navigation():
        page.locator(f"form#{form}").get_by_role("button", name=button).click()


def arrived(page: Page, url: str) -> None:
    """The browser shows ``url``; if not, the failure says what it shows instead."""
    assert page.url == url, f"the browser shows {page.url}: {page.locator('body').inner_text()[:300]!r}"


def sign_in(page: Page, email: str, password: str = PASSWORD) -> None:
    """On the login page: fill in the form and press Sign in, as a user does."""
    expect(page.locator("form#signin")).to_be_visible()
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    press(page, "Sign in", "signin")


def enter_code(page: Page, code: str) -> None:
    """On the two-factor page: type a code and press Continue."""
    expect(page.locator("form#totp")).to_be_visible()
    page.get_by_label("Code").fill(code)
    press(page, "Continue", "totp")


def upstream_answer(page: Page) -> dict:
    """The upstream's JSON echo of the request as the page shows it, headers by lower-case name."""
    seen = json.loads(page.locator("pre").first.inner_text())
    seen["headers"] = {name.lower(): value for name, value in seen["headers"]}
    return seen


def cookies(context: BrowserContext) -> dict[tuple[str, str], dict]:
    """The browser's cookies by (domain, name)."""
    return {(c["domain"], c["name"]): c for c in context.cookies()}


def assert_host_only_and_hidden(cookie: dict, host: str) -> None:
    """A ``__Host-`` cookie as it should be: this host only, HTTPS only, no script access, Lax."""
    assert cookie["domain"] == host  # a Domain attribute would show as ".host" (and reach subdomains)
    assert cookie["path"] == "/"
    assert cookie["httpOnly"] and cookie["secure"]
    assert cookie["sameSite"] == "Lax"


def test_sign_in_lands_on_the_page_asked_for_with_hidden_host_only_cookies(
    d: IdentityDeployment, context: BrowserContext, page: Page
) -> None:
    page.goto(d.url("app.localhost", "/some/path"))
    expect(page).to_have_url(login_page(d))
    sign_in(page, "ann@example.com")
    arrived(page, d.url("app.localhost", "/some/path"))
    seen = upstream_answer(page)
    assert seen["uri"] == "/some/path"
    assert seen["headers"]["remote-user"] == "ann@example.com"
    assert "kokoa" not in seen["headers"].get("cookie", "")  # Kokoa's cookies stay with Kokoa

    jar = cookies(context)
    assert_host_only_and_hidden(jar["app.localhost", SESSION], "app.localhost")
    assert_host_only_and_hidden(jar["login.localhost", LOGIN], "login.localhost")
    assert [c["domain"] for c in context.cookies() if c["name"] == SESSION] == ["app.localhost"]
    assert [c["domain"] for c in context.cookies() if c["name"] == LOGIN] == ["login.localhost"]
    assert "kokoa" not in page.evaluate("document.cookie")

    # the login host knows who signed in; its pages cannot read the cookie either
    page.goto(f"{d.login}/account")
    expect(page.locator("body")).to_contain_text("Signed in as ann@example.com.")
    assert "kokoa" not in page.evaluate("document.cookie")


def test_a_wrong_password_shows_the_error_and_sets_no_session(
    d: IdentityDeployment, context: BrowserContext, page: Page
) -> None:
    page.goto(d.url("app.localhost", "/"))
    sign_in(page, "ann@example.com", "not the password")
    expect(page.locator(".error")).to_have_text("Wrong email or password.")
    expect(page.locator("form#signin")).to_be_visible()  # the form again, to try once more
    assert page.url.startswith(f"{d.login}/")
    names = {name for _, name in cookies(context)}
    assert SESSION not in names and LOGIN not in names


def test_signing_out_on_the_resource_host_ends_the_sign_in(
    d: IdentityDeployment, context: BrowserContext, page: Page
) -> None:
    page.goto(d.url("app.localhost", "/"))
    sign_in(page, "ann@example.com")
    arrived(page, d.url("app.localhost", "/"))
    page.goto(d.url("app.localhost", "/.kokoa/auth/signout"))
    expect(page).to_have_url(f"{d.login}/signed-out")
    expect(page.locator("body")).to_contain_text("You are signed out.")
    names = {name for _, name in cookies(context)}
    assert SESSION not in names and LOGIN not in names
    page.goto(d.url("app.localhost", "/"))
    expect(page).to_have_url(login_page(d))
    expect(page.locator("form#signin")).to_be_visible()


def test_two_factor_sign_in_with_an_authenticator_code_or_a_backup_code(
    d: IdentityDeployment, chromium: Browser, page: Page
) -> None:
    email = "two-factor@example.com"
    d.user(email, "Member")
    app = d.url("app.localhost", "/mfa")
    page.goto(app)
    sign_in(page, email)
    arrived(page, app)

    # turn it on: the key from the page into the "authenticator", its code back into the page
    page.goto(f"{d.login}/account/totp")
    key = page.locator("#totp-secret").inner_text().replace(" ", "")  # shown in groups of four
    authenticator = pyotp.TOTP(key)
    enrolled_at = time.time()
    enrolment_code = authenticator.at(enrolled_at)
    page.get_by_label("Code").fill(enrolment_code)
    press(page, "Turn on", "totp-setup")
    expect(page.locator("#backup-codes li")).to_have_count(10)
    backup_codes = page.locator("#backup-codes li").all_inner_texts()

    page.goto(d.url("app.localhost", "/.kokoa/auth/signout"))
    expect(page.locator("body")).to_contain_text("You are signed out.")
    page.goto(app)
    sign_in(page, email)
    arrived(page, f"{d.login}/login/totp")
    assert ("login.localhost", LOGIN) not in cookies(page.context)  # not signed in before the code
    enter_code(page, enrolment_code)  # a code is good once
    expect(page.locator(".error")).to_have_text("That code is not right. Try again.")
    step = int(enrolled_at // authenticator.interval)
    while int(time.time() // authenticator.interval) <= step:  # the authenticator's next code
        time.sleep(0.2)
    enter_code(page, authenticator.now())
    arrived(page, app)
    assert upstream_answer(page)["headers"]["remote-user"] == email

    other = chromium.new_context()  # another browser, where the phone is not at hand
    try:
        elsewhere = other.new_page()
        elsewhere.goto(app)
        sign_in(elsewhere, email)
        enter_code(elsewhere, backup_codes[0])
        arrived(elsewhere, app)
        assert upstream_answer(elsewhere)["headers"]["remote-user"] == email
        assert ("app.localhost", SESSION) in cookies(other)
    finally:
        other.close()


def test_a_resource_password_lets_a_visitor_in_to_that_resource(
    d: IdentityDeployment, context: BrowserContext, page: Page
) -> None:
    resource = f"/orgs/{d.org}/resources/{d.app['id']}"
    d.api("PATCH", resource, {"auth_password": "open sesame 2"})
    try:
        page.goto(d.url("app.localhost", "/pw"))
        expect(page).to_have_url(login_page(d))
        page.get_by_role("link", name="its password").click()
        expect(page.locator("form#resource-secret")).to_be_visible()
        page.get_by_label("Password").fill("not it")
        press(page, "Continue", "resource-secret")
        expect(page.locator(".error")).to_have_text("Wrong password.")
        page.get_by_label("Password").fill("open sesame 2")
        press(page, "Continue", "resource-secret")
        arrived(page, d.url("app.localhost", "/pw"))
        seen = upstream_answer(page)
        assert seen["uri"] == "/pw"
        assert "remote-groups" not in seen["headers"]  # a visitor, not a member
        jar = cookies(context)
        assert_host_only_and_hidden(jar["app.localhost", SESSION], "app.localhost")
        assert ("login.localhost", LOGIN) not in jar  # this resource only: no sign-in to the gateway
    finally:
        d.api("PATCH", resource, {"auth_password": None})
