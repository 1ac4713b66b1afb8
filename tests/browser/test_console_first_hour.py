"""A newcomer's first hour, in the browser only, on a fresh `kokoa init`: set the password from the setup
link `kokoa init` printed, add a site, run the edge command copied from the page, watch the site turn
online without a reload, add an HTTP resource, grant it, open it from the launcher, and see the request
in the inspector.

What the test adjusts for its environment, and only that:

- the gateway listens on random loopback ports, so on the Sites page the newcomer types where edges
  reach it (``tls:127.0.0.1:<port>``) and where the gateway's development CA is on the edge (the data
  directory's ``tls/ca.pem``); the copied command is then run as it is, with the virtual environment's
  ``twistd`` and its log sent to a file;
- Chromium must trust the development CA's certificates for ``login.localhost`` and the new resource's
  host: both are issued before the gateway starts (it reuses them) and their keys pinned, as the other
  browser tests do for theirs; a user would install the CA instead.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from console_helpers import (
    CHROMIUM,
    check_accessibility,
    clipboard,
    no_errors,
    run_copied_edge,
    unavailable,
    watch_errors,
)
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from playwright.sync_api import Browser, BrowserContext, Error, Page, Playwright, expect

from e2e.harness import KOKOA, Deployment, wait_for
from e2e.test_http_resources import UPSTREAM, Command
from kokoa.pki import ensure_dev_host_cert

pytestmark = [pytest.mark.e2e, pytest.mark.browser]
EMAIL = "newcomer@example.com"
PASSWORD = "my first hour at Kokoa"
HOST = "hello.localhost"


class FreshDeployment(Deployment):
    """A gateway on a store `kokoa init` just made (no site, no resource), and an upstream to reach."""

    def start_all(self) -> None:
        self.login = f"https://login.localhost:{self.https_port}"
        printed = subprocess.run(
            [KOKOA, "-d", str(self.data), "init", "--email", EMAIL, "--login-url", self.login],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        self.setup_link = re.search(r"https://\S+/setup\?token=\S+", printed).group(0)
        self.pins = [
            pin_of(ensure_dev_host_cert(self.data, host).cert_path) for host in ("login.localhost", HOST)
        ]
        port_file = self.root / "upstream.port"
        self.upstream = Command(
            "upstream", [sys.executable, str(UPSTREAM), str(port_file)], self.root / "upstream.log"
        )
        self.upstream.start()
        wait_for(port_file.exists, "the upstream to listen", logs=[self.upstream.log])
        self.upstream_port = int(port_file.read_text())
        self.start_gateway()

    def stop_all(self) -> None:
        self.upstream.stop()
        self.stop()


def pin_of(pem_path: str) -> str:
    cert = x509.load_pem_x509_certificate(Path(pem_path).read_bytes())
    spki = cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(spki).digest()).decode()


@pytest.fixture(scope="module")
def fresh(playwright: Playwright, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FreshDeployment]:
    deployment = FreshDeployment(tmp_path_factory.mktemp("first-hour"))
    try:
        deployment.start_all()
        yield deployment
    finally:
        deployment.stop_all()


@pytest.fixture(scope="module")
def browser(playwright: Playwright, fresh: FreshDeployment) -> Iterator[Browser]:
    try:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM, args=[f"--ignore-certificate-errors-spki-list={','.join(fresh.pins)}"]
        )
    except Error as e:
        unavailable(f"Chromium at {CHROMIUM} does not start: {str(e).splitlines()[0]}")
    try:
        yield launched
    finally:
        launched.close()


@pytest.fixture
def newcomer(browser: Browser, fresh: FreshDeployment) -> Iterator[BrowserContext]:
    ctx = browser.new_context()
    ctx.set_default_timeout(15_000)
    ctx.grant_permissions(["clipboard-read", "clipboard-write"], origin=fresh.login)
    try:
        yield ctx
    finally:
        ctx.close()


def go(page: Page, link: str, heading: str) -> None:
    """Follow a link of the console's navigation and wait for the page's heading."""
    page.get_by_role("navigation", name="Console").get_by_role("link", name=link, exact=True).click()
    expect(page.locator("#page-title")).to_have_text(heading)


def test_a_newcomers_first_hour(fresh: FreshDeployment, newcomer: BrowserContext) -> None:
    page = newcomer.new_page()
    watch_errors(page)

    # 1. The setup link kokoa init printed: choose a password, and land on the console, signed in.
    page.goto(fresh.setup_link)
    page.get_by_label("New password").fill(PASSWORD)
    page.get_by_role("button", name="Set the password").click()
    expect(page.locator("#page-title")).to_have_text("Dashboard")
    expect(page.get_by_text("No site yet.")).to_be_visible()
    check_accessibility(page, "the first dashboard")

    # 2. Add a site.
    page.get_by_role("link", name="Add a site").click()
    expect(page.locator("#page-title")).to_have_text("Sites")
    page.get_by_label("Name", exact=True).fill("home")
    page.get_by_role("button", name="Add site").click()
    expect(page.get_by_role("region", name="Site home created")).to_be_visible()
    page.get_by_text("Where edges reach this gateway").click()
    page.get_by_label("Tunnel address (TLS)").fill(f"tls:127.0.0.1:{fresh.tunnel_port}")
    page.get_by_label("The gateway's CA file on the edge").fill(str(fresh.data / "tls" / "ca.pem"))

    # 3. Run the edge command copied from the page; the site turns online without a reload.
    page.get_by_role("button", name="Copy the edge command (TLS)").click()
    run_copied_edge(fresh, clipboard(page))
    expect(page.get_by_text("Its edge is connected.")).to_be_visible(timeout=20_000)
    expect(page.locator("tr[data-site]")).to_contain_text("online")
    page.get_by_role("button", name="Done: hide the secret").click()

    # 4. Add an HTTP resource reached through that site.
    go(page, "Resources", "Resources")
    page.get_by_role("link", name="Add a resource").click()
    page.get_by_label("Name", exact=True).fill("hello")
    page.get_by_label("Hostname").fill(HOST)
    page.get_by_label("Site").select_option(label="home")
    page.get_by_label("Target host").fill("127.0.0.1")
    page.get_by_label("Target port").fill(str(fresh.upstream_port))
    page.get_by_role("button", name="Create resource").click()
    expect(page.locator("#page-title")).to_have_text("hello")
    expect(page.locator("[data-target]")).to_contain_text("site online")

    # 5. Grant it (an Owner manages everything but opens only what a grant allows).
    page.get_by_role("link", name="Access").click()
    page.get_by_label("Role or member").select_option(label=f"Member: {EMAIL} (you)")
    page.get_by_role("button", name="Give access").click()
    expect(page.locator("[data-grant]")).to_contain_text(EMAIL)

    # 6. Open it from the launcher, in a new tab (signed in already: no password asked).
    go(page, "Launcher", "Your resources")
    with newcomer.expect_page() as opened:
        page.get_by_role("link", name="Open hello").click()
    tab = opened.value
    expect(tab).to_have_url(f"https://{HOST}:{fresh.https_port}/")
    seen = json.loads(tab.locator("pre").first.inner_text())
    headers = {name.lower(): value for name, value in seen["headers"]}
    assert headers["remote-user"] == EMAIL

    # 7. Back in the console's tab, watch it in the inspector; a request made in the other tab shows.
    page.bring_to_front()
    go(page, "Inspector", "Inspector")
    page.get_by_role("navigation", name="HTTP resources").get_by_role("link", name="hello").click()
    expect(page.get_by_text("Watching", exact=True)).to_be_visible()
    tab.goto(f"https://{HOST}:{fresh.https_port}/my-first-request?hour=1")
    expect(tab.locator("pre").first).to_contain_text("/my-first-request?hour=1")
    expect(page.locator("#page-title")).to_have_text("Inspector: hello")
    row = page.locator("[data-request]").filter(has_text="GET /my-first-request?hour=1")
    expect(row).to_have_count(1, timeout=10_000)
    expect(row).to_contain_text(EMAIL)
    expect(row).to_contain_text(f"127.0.0.1:{fresh.upstream_port}")
    check_accessibility(page, "the inspector after the first request")
    no_errors(page)  # no script error, no CSP violation, from the first page to the last
