"""The console's files, read once at start-up and served from memory (the request path reads no file).

Each file is kept with its ETag and, where it pays, a gzip copy; answers carry the console's
Content-Security-Policy (scripts and styles from this origin only: no inline script or style).
"""

from __future__ import annotations

import gzip
import hashlib
import mimetypes
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from twisted.web.iweb import IRequest
from twisted.web.resource import Resource

STATIC = Path(__file__).parent / "static"
#: Where the files are served on the login host.
PREFIX = "/static/"
#: Scripts, styles, images and connections to this origin only; nothing may frame the console.
CONSOLE_CSP = (
    b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    b"connect-src 'self'; font-src 'self'; manifest-src 'self'; base-uri 'none'; "
    b"form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    b"content-security-policy": CONSOLE_CSP,
    b"x-frame-options": b"DENY",
    b"x-content-type-options": b"nosniff",
    b"referrer-policy": b"no-referrer",
    b"cross-origin-opener-policy": b"same-origin",
    b"cross-origin-resource-policy": b"same-origin",
}
_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".html": "text/html; charset=utf-8",
    ".svg": "image/svg+xml",
    ".md": "text/markdown; charset=utf-8",
    ".json": "application/json",
}
#: Files smaller than this are sent as they are (gzip would not pay).
GZIP_MIN = 1024


@dataclass(frozen=True, slots=True)
class Asset:
    """One file: its bytes, a gzip copy (None when it would not pay), type and strong ETag."""

    body: bytes
    gzipped: bytes | None
    content_type: bytes
    etag: bytes


def _asset(path: Path) -> Asset:
    body = path.read_bytes()
    kind = _TYPES.get(path.suffix) or mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    packed = gzip.compress(body, 9, mtime=0) if len(body) >= GZIP_MIN else None
    if packed is not None and len(packed) >= len(body):
        packed = None
    etag = b'"' + hashlib.sha256(body).hexdigest()[:32].encode() + b'"'
    return Asset(body, packed, kind.encode(), etag)


def load_assets(root: Path = STATIC) -> dict[str, Asset]:
    """Every file under ``root`` by its path relative to it (``js/app.js``). Called at start-up."""
    return {
        path.relative_to(root).as_posix(): _asset(path)
        for path in sorted(root.rglob("*"))
        if path.is_file() and not path.name.startswith(".")
    }


def _send(request: IRequest, asset: Asset, cache: bytes) -> bytes:
    for name, value in SECURITY_HEADERS.items():
        request.setHeader(name, value)
    request.setHeader(b"content-type", asset.content_type)
    request.setHeader(b"cache-control", cache)
    request.setHeader(b"etag", asset.etag)
    request.setHeader(b"vary", b"accept-encoding")
    if asset.etag in _etags(request.getHeader(b"if-none-match")):
        request.setResponseCode(304)
        return b""
    body = asset.body
    if asset.gzipped is not None and _accepts_gzip(request.getHeader(b"accept-encoding")):
        request.setHeader(b"content-encoding", b"gzip")
        body = asset.gzipped
    request.setHeader(b"content-length", str(len(body)).encode())
    return b"" if request.method == b"HEAD" else body


def _etags(header: bytes | None) -> list[bytes]:
    if not header:
        return []
    return [tag.strip().removeprefix(b"W/") for tag in header.split(b",")]


def _accepts_gzip(header: bytes | None) -> bool:
    for part in (header or b"").lower().split(b","):
        coding, _, params = part.strip().partition(b";")
        if coding.strip() == b"gzip":
            return params.replace(b" ", b"") not in (b"q=0", b"q=0.0", b"q=0.00", b"q=0.000")
    return False


class ConsoleAssets(Resource):
    """``/static/<path>``: the console's files (GET and HEAD), revalidated by ETag."""

    isLeaf = True

    def __init__(self, assets: dict[str, Asset] | None = None) -> None:
        super().__init__()
        self.assets = assets if assets is not None else load_assets()

    def render(self, request: IRequest) -> Any:
        if request.method not in (b"GET", b"HEAD"):
            request.setResponseCode(405)
            request.setHeader(b"allow", b"GET, HEAD")
            return b""
        name = b"/".join(request.postpath).decode("utf-8", "replace")
        asset = self.assets.get(name)
        if asset is None or name == "index.html":
            request.setResponseCode(404)
            request.setHeader(b"content-type", b"text/plain; charset=utf-8")
            for header, value in SECURITY_HEADERS.items():
                request.setHeader(header, value)
            return b"No such file.\n"
        # Not immutable: file names carry no version, so browsers revalidate (a 304 is cheap).
        return _send(request, asset, b"no-cache")


#: Where ``index.html`` takes the browser's CSRF token (the cookie is HttpOnly: scripts cannot read it).
CSRF_SLOT = b"__CSRF_TOKEN__"


def console_shell(request: IRequest, assets: dict[str, Asset], csrf: str) -> bytes:
    """The console's page (``index.html``) with the browser's CSRF token in a ``<meta>`` the scripts
    send back as ``X-CSRF-Token``; never cached, since it is only for a signed-in user."""
    if not csrf.replace("-", "").replace("_", "").isalnum():
        raise ValueError("a CSRF token is URL-safe base64")
    for name, value in SECURITY_HEADERS.items():
        request.setHeader(name, value)
    request.setHeader(b"content-type", b"text/html; charset=utf-8")
    request.setHeader(b"cache-control", b"no-store")
    return assets["index.html"].body.replace(CSRF_SLOT, csrf.encode())
