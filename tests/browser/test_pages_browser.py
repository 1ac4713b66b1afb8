"""The login host's server-rendered pages, and the resource hosts' error pages, in Chromium: each one in
the light and the dark theme, with no Content-Security-Policy violation in the console, the console's
stylesheets applied, and no serious or critical axe-core violation; readable at a phone's width; the
second-factor setup's QR code read back by a real QR decoder (zxing-cpp) from Chromium's rendering
of it; kokoa connect's "Allow" reaching its loopback listener under the page's form-action."""

from __future__ import annotations

import http.server
import re
import struct
import threading
import zlib
from collections.abc import Iterator
from urllib.parse import parse_qs, unquote, urlsplit

import pyotp
import pytest
import zxingcpp
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Browser, BrowserContext, Page, expect
from test_signin_browser import arrived, press, sign_in

from e2e.test_identity_e2e import IdentityDeployment

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

#: The page's background in each theme (base.css's --bg; the error pages repeat it).
BACKGROUND = {"light": "rgb(250, 247, 244)", "dark": "rgb(22, 19, 17)"}
AXE = Axe()


class Tour:
    """A browser context in one colour scheme, whose pages report what their console says."""

    def __init__(self, chromium: Browser, scheme: str, **options) -> None:
        self.scheme = scheme
        self.context = chromium.new_context(color_scheme=scheme, **options)
        self.context.set_default_timeout(15_000)
        self.console: list[str] = []
        self.page = self.context.new_page()
        self.page.on("console", lambda m: self.console.append(f"{m.type}: {m.text}"))
        self.page.on("pageerror", lambda e: self.console.append(f"page error: {e}"))
        self.seen: list[str] = []

    def check(self, what: str, status_text: str | None = None) -> None:
        """The page shown now: no CSP violation, styled, one h1 in main, and axe finds nothing serious."""
        page = self.page
        page.wait_for_load_state("load")
        where = f"{what} ({self.scheme}, {page.url})"
        violations = [m for m in self.console if "Content Security Policy" in m or "Refused to" in m]
        assert not violations, f"{where}: {violations}"
        assert page.evaluate("getComputedStyle(document.body).backgroundColor") == BACKGROUND[self.scheme], (
            f"{where}: not styled"
        )
        assert page.locator("h1").count() == 1 and page.locator("main").count() == 1, where
        assert page.evaluate("document.documentElement.lang") == "en", where
        if status_text is not None:
            expect(page.locator("main")).to_contain_text(status_text)
        results = AXE.run(page)
        bad = [v for v in results.response["violations"] if v["impact"] in ("serious", "critical")]
        assert not bad, f"{where}: " + "; ".join(
            f"{v['id']} ({v['impact']}): {[n['html'][:160] for n in v['nodes']]}" for v in bad
        )
        self.seen.append(what)
        self.console.clear()

    def close(self) -> None:
        self.context.close()


@pytest.fixture(params=["light", "dark"])
def tour(request, chromium: Browser) -> Iterator[Tour]:
    t = Tour(chromium, request.param)
    try:
        yield t
    finally:
        t.close()


def test_every_page_in_both_themes_has_no_csp_violation_and_no_serious_axe_violation(
    d: IdentityDeployment, tour: Tour
) -> None:
    page, scheme = tour.page, tour.scheme
    email = f"pages-{scheme}@example.com"
    user = d.user(email, "Member")
    org = d.api("GET", f"/orgs/{d.org}")["name"]
    resource = f"/orgs/{d.org}/resources/{d.app['id']}"
    d.api("PATCH", resource, {"auth_password": "open sesame 2"})
    try:
        page.goto(d.url("app.localhost", "/tour"))
        expect(page.locator("#destination")).to_have_text(f"Sign in to continue to app ({org}).")
        tour.check("sign-in page")
        sign_in(page, email, "not the password")
        expect(page.locator("[role=alert]")).to_have_text("Wrong email or password.")
        tour.check("wrong password")
        page.get_by_role("link", name="its password").click()
        expect(page.locator("form#resource-secret")).to_be_visible()
        tour.check("a resource's own password")
    finally:
        d.api("PATCH", resource, {"auth_password": None})

    page.goto(d.url("app.localhost", "/tour"))
    sign_in(page, email)
    arrived(page, d.url("app.localhost", "/tour"))

    page.goto(f"{d.login}/account")
    tour.check("account")
    expect(page.get_by_role("link", name="Open the console")).to_have_attribute("href", "/")
    page.goto(f"{d.login}/account/totp")
    tour.check("second-factor setup")
    key = page.locator("#totp-secret").inner_text().replace(" ", "")
    page.get_by_label("Code").fill("000000")
    press(page, "Turn on", "totp-setup")
    tour.check("wrong setup code", "That code is not right")
    page.get_by_label("Code").fill(pyotp.TOTP(key).now())
    press(page, "Turn on", "totp-setup")
    expect(page.locator("#backup-codes li")).to_have_count(10)
    tour.check("backup codes")

    page.goto(f"{d.login}/cli?port=45678&state=" + "s" * 24)
    tour.check("kokoa connect")
    page.goto(f"{d.login}/account")
    press(page, "Sign out", "signout")
    expect(page.locator("main")).to_contain_text("You are signed out.")
    tour.check("signed out")

    page.goto(d.url("app.localhost", "/tour"))
    sign_in(page, email)
    arrived(page, f"{d.login}/login/totp")
    expect(page.locator("#destination")).to_have_text(f"Sign in to continue to app ({org}).")
    tour.check("second factor")
    page.get_by_label("Code").fill("000000")
    press(page, "Continue", "totp")
    expect(page.locator("[role=alert]")).to_have_text("That code is not right. Try again.")
    tour.check("wrong second-factor code")

    reset = d.api("POST", f"/orgs/{d.org}/users/{user}/password-reset")["path"]
    page.goto(d.login + reset)
    expect(page.locator("form#set-password")).to_be_visible()
    tour.check("password link")
    page.goto(f"{d.login}/reset?token=stale")
    tour.check("stale link", "unknown, used or expired")
    page.goto(f"{d.login}/no/such/page")
    tour.check("404", "There is no such page here")

    # The resource hosts' own error pages (their inline style allowed by its hash).
    page.goto(d.url("app.localhost", "/.kokoa/auth/callback?code=stale"))
    tour.check("a resource host's 400", "unknown, used or expired")
    page.goto(f"http://nothing.localhost:{d.http_port}/")
    tour.check("an unknown host's 404", "No resource is configured for the host nothing.localhost")


def test_a_denial_on_the_resource_host_names_no_ids_in_both_themes(d: IdentityDeployment, tour: Tour) -> None:
    page = tour.page
    page.goto(d.url("app.localhost", "/denied"))
    sign_in(page, "bob@example.com")
    arrived(page, d.url("app.localhost", "/denied"))
    tour.check("a resource host's 403", "you hold no grant to this resource")
    shown = page.locator("body").inner_text()
    assert not re.search(r"\b(?:user|role|res|org|ses|grant|rule)_[0-9a-z]{20}\b", shown), shown


# ---------------------------------------------------------------------- the QR code


def png_gray(png: bytes) -> tuple[int, int, bytes]:
    """(width, height, 8-bit grey pixels) of an 8-bit, non-interlaced PNG (what Chromium's
    screenshots are): enough of a decoder for the QR reader."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    pos, data, header = 8, b"", None
    while pos < len(png):
        (length,) = struct.unpack(">I", png[pos : pos + 4])
        kind, chunk = png[pos + 4 : pos + 8], png[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", chunk)
        elif kind == b"IDAT":
            data += chunk
        pos += 12 + length
    width, height, depth, colour, _, _, interlace = header
    assert depth == 8 and interlace == 0 and colour in (0, 2, 4, 6), header
    channels = {0: 1, 2: 3, 4: 2, 6: 4}[colour]
    raw, stride = zlib.decompress(data), width * channels
    rows: list[bytearray] = []
    previous = bytearray(stride)
    for y in range(height):
        start = y * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        for i in range(stride):
            left = line[i - channels] if i >= channels else 0
            up, corner = previous[i], previous[i - channels] if i >= channels else 0
            if kind == 1:
                line[i] = (line[i] + left) & 255
            elif kind == 2:
                line[i] = (line[i] + up) & 255
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 255
            elif kind == 4:
                p = left + up - corner
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                line[i] = (line[i] + (left if pa <= pb and pa <= pc else up if pb <= pc else corner)) & 255
        rows.append(line)
        previous = line
    gray = bytearray()
    for line in rows:
        if channels == 1:
            gray += line
        else:
            for x in range(width):
                px = line[x * channels : x * channels + 3] if channels >= 3 else line[x * 2 : x * 2 + 1] * 3
                gray.append((px[0] * 299 + px[1] * 587 + px[2] * 114) // 1000)
    return width, height, bytes(gray)


def test_the_qr_code_reads_back_as_the_provisioning_uri_in_both_themes(
    d: IdentityDeployment, tour: Tour
) -> None:
    """Chromium renders the page's QR code; zxing-cpp reads the rendered pixels: the URI the page
    shows, with the key the page shows (a phone's camera would read the same)."""
    page = tour.page
    email = f"qr-{tour.scheme}@example.com"
    d.user(email, "Member")
    page.goto(f"{d.login}/login")
    sign_in(page, email)
    page.goto(f"{d.login}/account/totp")
    tour.check("second-factor setup")
    image = page.locator("#totp-qr")
    expect(image).to_be_visible()
    assert image.evaluate("img => img.complete && img.naturalWidth > 0")
    width, height, gray = png_gray(image.screenshot())
    found = zxingcpp.read_barcodes(memoryview(gray).cast("B", (height, width)))
    assert [b.format for b in found] == [zxingcpp.BarcodeFormat.QRCode], found
    uri = found[0].text
    key = page.locator("#totp-secret").inner_text().replace(" ", "")
    assert uri == page.locator("#totp-uri").text_content()  # (in a closed <details>)
    query = parse_qs(urlsplit(uri).query)
    assert uri.startswith("otpauth://totp/") and query["secret"] == [key] and query["issuer"] == ["Kokoa"]
    assert unquote(urlsplit(uri).path) == f"/Kokoa:{email}"
    # and it works: the code of the key read from the image turns two-factor sign-in on
    page.get_by_label("Code").fill(pyotp.TOTP(query["secret"][0]).now())
    press(page, "Turn on", "totp-setup")
    expect(page.locator("#backup-codes li")).to_have_count(10)


# ---------------------------------------------------------------------- phone width, kokoa connect


def test_the_pages_fit_a_phone_width(d: IdentityDeployment, chromium: Browser) -> None:
    tour = Tour(chromium, "light", viewport={"width": 375, "height": 740})
    try:
        page = tour.page
        email = "narrow-screen-with-a-long-address@example.com"
        d.user(email, "Member")
        for what, go in (
            ("sign-in page", lambda: page.goto(d.url("app.localhost", "/narrow"))),
            ("account", lambda: (sign_in(page, email), page.goto(f"{d.login}/account"))),
            ("second-factor setup", lambda: page.goto(f"{d.login}/account/totp")),
            ("an unknown host's 404", lambda: page.goto(f"http://nothing.localhost:{d.http_port}/")),
        ):
            go()
            tour.check(what)
            overflow = page.evaluate("document.documentElement.scrollWidth")
            assert overflow <= 375, f"{what}: {overflow} px wide at 375"
            box = page.locator("main").bounding_box()
            assert box["x"] >= 0 and box["x"] + box["width"] <= 375, (what, box)
    finally:
        tour.close()


class _Loopback(http.server.BaseHTTPRequestHandler):
    """kokoa connect's listener, standing in: it notes what the browser brings."""

    seen: list[str] = []

    def do_GET(self) -> None:
        _Loopback.seen.append(self.path)
        body = b"<!doctype html><title>done</title><p>You may close this tab.</p>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


def test_allowing_kokoa_connect_reaches_its_loopback_listener(
    d: IdentityDeployment, context: BrowserContext, page: Page
) -> None:
    """The Allow form's answer is a redirect to http://127.0.0.1:<port>/callback: the page's
    form-action must let it through (a form-action of 'self' https: alone blocks it in Chromium)."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Loopback)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    console: list[str] = []
    page.on("console", lambda m: console.append(m.text))
    try:
        port = server.server_address[1]
        page.goto(f"{d.login}/login")
        sign_in(page, "ann@example.com")
        state = "k" * 32
        page.goto(f"{d.login}/cli?port={port}&state={state}")
        press(page, "Allow", "cli-allow")
        assert page.url.startswith(f"http://127.0.0.1:{port}/callback?"), (page.url, console)
        # (Chromium also asks the listener for /favicon.ico, before or after: only the callback counts.)
        callbacks = [path for path in _Loopback.seen if path.startswith("/callback?")]
        assert len(callbacks) == 1, _Loopback.seen
        query = parse_qs(urlsplit(callbacks[0]).query)
        assert query["state"] == [state] and query["code"][0]
        assert not [m for m in console if "Content Security Policy" in m], console
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
