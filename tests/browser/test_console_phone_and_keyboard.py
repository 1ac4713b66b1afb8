"""The console at phone width (375 px) and in the dark theme, and by keyboard alone: every page fits the
screen (tables scroll or stack inside it), passes axe-core in both themes, and can be reached and used
without a mouse."""

from __future__ import annotations

import pytest
from console_helpers import check_accessibility, console, no_errors, open_page, screenshot
from playwright.sync_api import Browser, Page, expect

from e2e.test_identity_e2e import IdentityDeployment

pytestmark = [pytest.mark.e2e, pytest.mark.browser]
PAGES = [
    ("dashboard", "Dashboard"),
    ("sites", "Sites"),
    ("resources", "Resources"),
    ("resources/new", "Add a resource"),
    ("people", "People"),
    ("logs", "Logs"),
    ("logs/audit", "Logs"),
    ("logs/charts", "Logs"),
    ("inspector", "Inspector"),
    ("launcher", "Your resources"),
]
#: The dark theme's background (base.css --bg), as the browser computes it.
DARK_BG = "rgb(22, 19, 17)"


def fits(page: Page) -> None:
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 375, f"{page.url} is {width}px wide at a 375px screen"


def test_every_page_fits_a_phone_in_both_themes(d: IdentityDeployment, chromium: Browser) -> None:
    context = chromium.new_context(viewport={"width": 375, "height": 812}, color_scheme="dark")
    context.set_default_timeout(15_000)
    try:
        page = console(context, d)
        assert page.evaluate("getComputedStyle(document.body).backgroundColor") == DARK_BG
        app = next(r for r in d.api("GET", f"/orgs/{d.org}/resources")["items"] if r["name"] == "app")
        for path, title in [
            *PAGES,
            (f"resources/{app['id']}", "app"),
            (f"resources/{app['id']}/access", "app"),
        ]:
            open_page(page, d, *path.split("/"), title=title)
            page.wait_for_timeout(200)  # lists load after the heading
            fits(page)
            check_accessibility(page, f"{path} at phone width, dark")
            page.emulate_media(color_scheme="light")
            check_accessibility(page, f"{path} at phone width, light")
            page.emulate_media(color_scheme="dark")
        open_page(page, d, "dashboard", title="Dashboard")
        screenshot(page, "phone-dashboard")
        no_errors(page)
    finally:
        context.close()


def test_the_console_by_keyboard_alone(d: IdentityDeployment, chromium: Browser) -> None:
    context = chromium.new_context()
    context.set_default_timeout(15_000)
    try:
        page = console(context, d)
        open_page(page, d, "dashboard", title="Dashboard")
        page.reload()  # a fresh load: the keyboard starts at the top of the page
        expect(page.locator("#page-title")).to_have_text("Dashboard")
        page.keyboard.press("Tab")
        expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
        page.keyboard.press("Enter")
        expect(page.locator("main#main")).to_be_focused()
        # to the navigation, and along it to Sites
        page.locator("body").focus()
        for _ in range(12):
            page.keyboard.press("Tab")
            if page.evaluate("document.activeElement.textContent") == "Sites":
                break
        page.keyboard.press("Enter")
        expect(page.locator("#page-title")).to_have_text("Sites")
        expect(page.locator("#page-title")).to_be_focused()
        # add a site with the keyboard: tab to the field, type, submit with Enter
        for _ in range(6):
            page.keyboard.press("Tab")
            if page.evaluate("document.activeElement.name") == "name":
                break
        page.keyboard.type("keyboard-site")
        page.keyboard.press("Enter")
        expect(page.get_by_role("region", name="Site keyboard-site created")).to_be_visible()
        # a confirmation dialog: focus goes in, Escape cancels and nothing is deleted
        row = page.locator("tr[data-site]").filter(has_text="keyboard-site")
        row.get_by_role("button", name="Delete keyboard-site").focus()
        page.keyboard.press("Enter")
        dialog = page.get_by_role("dialog", name="Delete keyboard-site?")
        expect(dialog.get_by_role("button", name="Cancel")).to_be_focused()
        page.keyboard.press("Escape")
        expect(dialog).to_be_hidden()
        expect(row).to_have_count(1)
        no_errors(page)
    finally:
        context.close()
