"""The console's files as served from memory: types, ETag revalidation, gzip, methods, the CSP, and
the shell's CSRF slot (twisted.web's DummyRequest: no socket needed for what is decided here)."""

from __future__ import annotations

import gzip

import pytest
from twisted.web.test.requesthelper import DummyRequest

from kokoa.console import CONSOLE_CSP, ConsoleAssets, console_shell, load_assets

ASSETS = load_assets()


def get(path: str, method: bytes = b"GET", headers: dict[bytes, bytes] | None = None):
    request = DummyRequest([part.encode() for part in path.split("/")])
    request.method = method
    for name, value in (headers or {}).items():
        request.requestHeaders.setRawHeaders(name, [value])
    body = ConsoleAssets(ASSETS).render(request)
    return request, body


def header(request, name: bytes) -> bytes | None:
    values = request.responseHeaders.getRawHeaders(name)
    return values[0] if values else None


def test_a_script_is_served_with_its_type_etag_and_the_csp():
    request, body = get("js/app.js")
    assert request.responseCode in (None, 200)
    assert body == ASSETS["js/app.js"].body
    assert header(request, b"content-type") == b"text/javascript; charset=utf-8"
    assert header(request, b"content-security-policy") == CONSOLE_CSP
    assert b"script-src 'self';" in CONSOLE_CSP and b"unsafe" not in CONSOLE_CSP
    assert header(request, b"etag") == ASSETS["js/app.js"].etag
    assert header(request, b"cache-control") == b"no-cache"


def test_a_matching_etag_is_a_304_without_a_body():
    etag = ASSETS["base.css"].etag
    for sent in (etag, b"W/" + etag, b'"other", ' + etag):
        request, body = get("base.css", headers={b"if-none-match": sent})
        assert request.responseCode == 304 and body == b"", sent
    request, body = get("base.css", headers={b"if-none-match": b'"other"'})
    assert request.responseCode in (None, 200) and body


def test_gzip_only_when_the_browser_takes_it():
    name = "vendor/uPlot.esm.js"  # large: worth compressing
    request, body = get(name, headers={b"accept-encoding": b"gzip, br"})
    assert header(request, b"content-encoding") == b"gzip"
    assert gzip.decompress(body) == ASSETS[name].body
    for refused in (b"gzip;q=0", b"identity", b""):
        request, body = get(name, headers={b"accept-encoding": refused})
        assert header(request, b"content-encoding") is None and body == ASSETS[name].body, refused


def test_head_has_no_body_and_other_methods_are_405():
    request, body = get("base.css", method=b"HEAD")
    assert body == b"" and header(request, b"content-length") == str(len(ASSETS["base.css"].body)).encode()
    request, body = get("base.css", method=b"POST")
    assert request.responseCode == 405 and header(request, b"allow") == b"GET, HEAD"


@pytest.mark.parametrize("path", ["nope.js", "index.html", "../__init__.py", "js/../../_assets.py", ""])
def test_unknown_files_and_the_shell_itself_are_404(path):
    request, body = get(path)
    assert request.responseCode == 404 and body == b"No such file.\n"
    assert header(request, b"content-security-policy") == CONSOLE_CSP


def test_the_shell_carries_the_csrf_token_and_is_never_cached():
    request = DummyRequest([b""])
    page = console_shell(request, ASSETS, "abc_DEF-123")
    assert b'<meta name="kokoa-csrf" content="abc_DEF-123">' in page
    assert header(request, b"cache-control") == b"no-store"
    assert header(request, b"content-security-policy") == CONSOLE_CSP
    with pytest.raises(ValueError):
        console_shell(DummyRequest([b""]), ASSETS, '"><script>')
