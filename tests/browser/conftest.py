"""Fixtures of the browser suite: one identity deployment and one headless Chromium (Debian's, driven by
Playwright) per module, a fresh browser context (no cookies) per test.

Chromium must trust the gateway's development CA. The gateway sends only the leaf certificate, and
Chromium's ``--ignore-certificate-errors-spki-list`` matches only the certificates the server sends, so
a pin of the CA's key would not do: each host's leaf is fetched here, verified against the dev CA
(``ca.pem``) by Python's ssl module, and only then its key is pinned. Any other certificate error
(an unknown key, a wrong name) still fails the page load.
"""

from __future__ import annotations

import base64
import hashlib
import os
import socket
import ssl
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from playwright.sync_api import Browser, BrowserContext, Error, Page, Playwright, sync_playwright

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: the `e2e` package
from e2e.test_identity_e2e import IdentityDeployment

CHROMIUM = "/usr/bin/chromium"
#: The hosts the tests open in Chromium (each has its own leaf certificate).
HOSTS = ("login.localhost", "app.localhost")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "browser: tests that drive a real browser (Chromium via Playwright)")


def unavailable(reason: str) -> NoReturn:
    """Skip: no browser here; but fail when CI says one must be (KOKOA_REQUIRE_BROWSER=1)."""
    if os.environ.get("KOKOA_REQUIRE_BROWSER") == "1":
        pytest.fail(f"{reason} (KOKOA_REQUIRE_BROWSER=1)", pytrace=False)
    pytest.skip(reason)


def spki_pin(port: int, host: str, ca_file: Path) -> str:
    """Base64 SHA-256 of the SubjectPublicKeyInfo of ``host``'s certificate, once verified by the CA."""
    context = ssl.create_default_context(cafile=str(ca_file))
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=host) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    key = x509.load_der_x509_certificate(der).public_key()
    spki = key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(spki).digest()).decode()


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    """Playwright, once Chromium is known to be here (checked before any deployment starts)."""
    if not os.access(CHROMIUM, os.X_OK):
        unavailable(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def d(playwright: Playwright, tmp_path_factory: pytest.TempPathFactory) -> Iterator[IdentityDeployment]:
    deployment = IdentityDeployment(tmp_path_factory.mktemp("browser"))
    try:
        deployment.start_all()
        yield deployment
    finally:
        deployment.stop_all()


@pytest.fixture(scope="module")
def chromium(playwright: Playwright, d: IdentityDeployment) -> Iterator[Browser]:
    """Headless Chromium that trusts the deployment's certificates (and resolves ``*.localhost``
    to loopback by itself)."""
    ca_file = d.data / "tls" / "ca.pem"
    pins = ",".join(spki_pin(d.https_port, host, ca_file) for host in HOSTS)
    try:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=[f"--ignore-certificate-errors-spki-list={pins}"]
        )
    except Error as e:  # the binary is there but does not start
        unavailable(f"Chromium at {CHROMIUM} does not start: {str(e).splitlines()[0]}")
    try:
        yield browser
    finally:
        browser.close()


@pytest.fixture
def context(chromium: Browser) -> Iterator[BrowserContext]:
    """A new browser profile: no cookies, no cache."""
    ctx = chromium.new_context()
    ctx.set_default_timeout(15_000)
    try:
        yield ctx
    finally:
        ctx.close()


@pytest.fixture
def page(context: BrowserContext) -> Page:
    return context.new_page()
