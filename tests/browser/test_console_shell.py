"""The console's shell in Chromium: signed out it sends to the sign-in page; an Owner lands on the
dashboard and switches organizations; a Member sees only the launcher (and their account); sign out
ends the session. Every page is checked with axe-core and must log no script error or CSP violation."""

from __future__ import annotations

import re

import pytest
from console_helpers import checked, console, nav, open_page, owner, watch_errors
from playwright.sync_api import BrowserContext, Page, expect

from e2e.test_identity_e2e import IdentityDeployment

pytestmark = [pytest.mark.e2e, pytest.mark.browser]


def test_signed_out_the_console_sends_to_the_sign_in_page(d: IdentityDeployment, page: Page) -> None:
    page.goto(f"{d.login}/#/{d.org}/sites")
    expect(page).to_have_url(re.compile(re.escape(f"{d.login}/login")))
    expect(page.locator("form#signin")).to_be_visible()


def test_a_member_sees_the_launcher_only(d: IdentityDeployment, context: BrowserContext) -> None:
    page = console(context, d, "ann@example.com")  # a Member, granted the app through her role
    expect(page).to_have_url(f"{d.login}/#/{d.org}/launcher")
    expect(page.locator("#page-title")).to_have_text("Your resources")
    links = page.get_by_role("navigation", name="Console").get_by_role("link")
    expect(links).to_have_text(["Your resources", "Account"])
    opener = page.get_by_role("link", name="Open app")
    expect(opener).to_have_attribute("href", d.url("app.localhost", "/"))
    checked(page, "the launcher of a member", "launcher")
    # the pages of Owners and Admins send her back to the launcher (the API would refuse her anyway)
    for hidden in ("dashboard", "sites", "resources", "people", "logs", "inspector"):
        page.goto(f"{d.login}/#/{d.org}/{hidden}")
        expect(page).to_have_url(f"{d.login}/#/{d.org}/launcher")
    # and she opens the resource from it (signed in to the login host already: no password asked)
    with context.expect_page() as opened:
        opener.click()
    tab = opened.value
    tab.wait_for_load_state()
    expect(tab).to_have_url(d.url("app.localhost", "/"))
    assert '"uri": "/"' in tab.content()


def test_an_owner_lands_on_the_dashboard_and_switches_organizations(
    d: IdentityDeployment, context: BrowserContext
) -> None:
    page = console(context, d)
    expect(page).to_have_url(f"{d.login}/#/{d.org}/dashboard")
    expect(page.locator("#page-title")).to_have_text("Dashboard")
    checked(page, "the dashboard")
    nav(page, "Sites")
    expect(page).to_have_url(f"{d.login}/#/{d.org}/sites")
    expect(page.locator("#page-title")).to_be_focused()  # focus follows the navigation
    # a second organization where the owner is an Owner too
    second = d.api("POST", "/orgs", {"name": "second"})["id"]
    roles = {r["name"]: r["id"] for r in d.api("GET", f"/orgs/{second}/roles")["items"]}
    d.api("POST", f"/orgs/{second}/members", {"user_id": owner(d), "role_id": roles["Owner"]})
    page.reload()
    switch = page.get_by_label("Organization")
    expect(switch).to_have_value(d.org)
    switch.select_option(label="second (Owner)")
    expect(page).to_have_url(f"{d.login}/#/{second}/sites")
    expect(page.get_by_text("No site yet")).to_be_visible()
    expect(page.locator("[data-site]")).to_have_count(0)  # the first organization's site is not shown
    open_page(page, d, "nowhere", title="Not found")
    checked(page, "the not-found page")


def test_sign_out_ends_the_console_session(d: IdentityDeployment, context: BrowserContext) -> None:
    page = console(context, d)
    watch_errors(page)
    with page.expect_navigation():
        page.get_by_role("button", name="Sign out").click()
    expect(page.locator("body")).to_contain_text("signed out")
    page.goto(f"{d.login}/")
    expect(page).to_have_url(re.compile(re.escape(f"{d.login}/login")))
