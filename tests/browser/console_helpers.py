"""Helpers of the console's browser tests: sign in to the console, open its pages, check them with
axe-core, save screenshots (``KOKOA_SCREENSHOTS=<dir>``), and read what the API says behind them."""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path
from typing import NoReturn

import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import BrowserContext, Page, expect

from e2e.harness import Process
from e2e.test_identity_e2e import PASSWORD, IdentityDeployment

#: Debian's Chromium, as the suite's conftest uses it (imported from there by name would be fragile:
#: tests/conftest.py is a module called conftest too).
CHROMIUM = "/usr/bin/chromium"
#: axe-core impacts that fail a test (moderate and minor ones are reported by axe but tolerated).
BLOCKING = ("serious", "critical")
_axe = Axe()


def unavailable(reason: str) -> NoReturn:
    """Skip: no browser here; but fail when CI says one must be (KOKOA_REQUIRE_BROWSER=1)."""
    if os.environ.get("KOKOA_REQUIRE_BROWSER") == "1":
        pytest.fail(f"{reason} (KOKOA_REQUIRE_BROWSER=1)", pytrace=False)
    pytest.skip(reason)


def owner(d: IdentityDeployment, email: str = "owner@example.com", role: str = "Owner") -> str:
    """The id of a user with a password and ``role`` in the deployment's organization (made once per
    deployment; the deployment's own users, such as ann, are found instead)."""
    made = getattr(d, "_console_users", None)
    if made is None:
        made = d._console_users = {"ann@example.com": d.ann, "bob@example.com": d.bob}
    if email not in made:
        made[email] = d.user(email, role)
    return made[email]


def sign_in(
    page: Page, d: IdentityDeployment, email: str = "owner@example.com", password: str = PASSWORD
) -> None:
    """Sign in on the login host's form and land on the console (``/``)."""
    page.goto(f"{d.login}/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    with page.expect_navigation():
        page.locator("form#signin").get_by_role("button", name="Sign in").click()
    page.goto(f"{d.login}/")
    expect(page.locator("#page-title")).to_be_visible()


def console(context: BrowserContext, d: IdentityDeployment, email: str = "owner@example.com") -> Page:
    """A new tab of ``context``, signed in to the console as ``email`` (an Owner unless made otherwise)."""
    owner(d, email)
    page = context.new_page()
    watch_errors(page)
    sign_in(page, d, email)
    return page


def watch_errors(page: Page) -> list[str]:
    """Collect the page's script errors and Content-Security-Policy violations (checked() fails on them)."""
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(f"uncaught: {error}"))
    page.on(
        "console",
        lambda m: (
            errors.append(m.text)
            if m.type == "error" and ("Content Security Policy" in m.text or "Uncaught" in m.text)
            else None
        ),
    )
    page._kokoa_errors = errors  # type: ignore[attr-defined]
    return errors


def no_errors(page: Page) -> None:
    errors = getattr(page, "_kokoa_errors", [])
    assert not errors, "the page logged errors:\n" + "\n".join(errors)


def open_page(page: Page, d: IdentityDeployment, *parts: str, title: str | None = None) -> None:
    """Go to ``#/<org>/<parts...>`` and wait for its heading (``title``, if given)."""
    url = f"{d.login}/#/{'/'.join((d.org, *parts))}"
    if page.url.startswith(f"{d.login}/#/"):  # the console is open: follow the link in it
        page.evaluate("hash => { location.hash = hash }", url.partition("#")[2])
    else:
        page.goto(url)
    expect(page).to_have_url(url)
    heading = page.locator("#page-title")
    if title is not None:
        expect(heading).to_have_text(title)
    else:
        expect(heading).to_be_visible()


def nav(page: Page, label: str) -> None:
    """Follow a link of the console's navigation, as a user does."""
    page.get_by_role("navigation", name="Console").get_by_role("link", name=label, exact=True).click()


def check_accessibility(page: Page, what: str) -> None:
    """axe-core on the page as it is: no serious or critical violation (the message lists them)."""
    results = _axe.run(page)
    bad = [v for v in results.response["violations"] if v.get("impact") in BLOCKING]
    lines = [
        f"{v['impact']}: {v['id']} ({v['help']}) at {', '.join(str(n['target']) for n in v['nodes'][:5])}"
        for v in bad
    ]
    assert not bad, f"axe-core on {what}:\n" + "\n".join(lines)


def screenshot(page: Page, name: str) -> None:
    """Under KOKOA_SCREENSHOTS=<dir>, save the page as console-<name>.png and, in the dark theme,
    console-<name>-dark.png (the docs show them)."""
    folder = os.environ.get("KOKOA_SCREENSHOTS")
    if not folder:
        return
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    page.wait_for_timeout(300)  # let live views settle
    page.screenshot(path=str(out / f"console-{name}.png"), full_page=True)
    page.emulate_media(color_scheme="dark")
    try:
        page.screenshot(path=str(out / f"console-{name}-dark.png"), full_page=True)
    finally:
        page.emulate_media(color_scheme="light")


def checked(page: Page, what: str, name: str | None = None) -> None:
    """No script error or CSP violation so far, axe-core on the page, then (maybe) its screenshots:
    what every test does on each page it shows."""
    no_errors(page)
    check_accessibility(page, what)
    if name:
        screenshot(page, name)


def field_error(page: Page, label: str) -> str:
    """The error shown for the field labelled ``label``, found through its aria-describedby (as a
    screen reader would), after checking that the field is marked invalid."""
    control = page.get_by_label(label, exact=True)
    expect(control).to_have_attribute("aria-invalid", "true")
    ids = (control.get_attribute("aria-describedby") or "").split()
    texts = [page.locator(f'[id="{i}"]').inner_text() for i in ids]
    errors = [t for i, t in zip(ids, texts, strict=True) if i.endswith("-error")]
    assert errors, f"no error described for {label!r}"
    return errors[0]


def clipboard(page: Page) -> str:
    """What the page copied (the context must have been granted clipboard-read)."""
    return page.evaluate("navigator.clipboard.readText()")


def allow_clipboard(context: BrowserContext, d: IdentityDeployment) -> None:
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=d.login)


def run_copied_edge(d: IdentityDeployment, command: str) -> Process:
    """Start the edge command a page copied, as a user pastes it into a shell: its environment
    assignment (the site's secret) and twistd's arguments as they are. Only the program is adjusted:
    ``twistd`` is the virtual environment's, with its log sent to a file (the harness's Process)."""
    words = shlex.split(command)
    env = {}
    while words and re.fullmatch(r"[A-Z_]+=.*", words[0]):
        name, _, value = words.pop(0).partition("=")
        env[name] = value
    assert words[0] == "twistd", command
    n = len(d.edges)
    edge = Process(f"edge{n}", words[1:], d.root / f"edge{n}.log", env).start()
    d.edges.append(edge)
    return edge
