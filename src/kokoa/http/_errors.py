"""Error pages that say what happened: HTML for browsers, problem+json for programs."""

from __future__ import annotations

import base64
import hashlib
import html
import json
from http import HTTPStatus

#: The page's own style: the look of the login host's pages (kokoa/console/static/base.css and
#: pages.css, whose colours it repeats, light and dark), inline since a resource's host serves no
#: stylesheet of Kokoa's. The Content-Security-Policy below allows this style (by its hash) and nothing
#: else: no script, no other style, images from ``data:`` only (the mark).
_STYLE = (
    ":root{color-scheme:light dark;--bg:#faf7f4;--surface:#fff;--text:#221a15;--muted:#6a5d54;"
    "--border:#ddd2c8;--accent:#8a4b22;font:15px/1.5 system-ui,-apple-system,'Segoe UI',Roboto,"
    "'Noto Sans',sans-serif}"
    "@media (prefers-color-scheme:dark){:root{--bg:#161311;--surface:#201c19;--text:#f1e9e2;"
    "--muted:#b3a69b;--border:#3d3530;--accent:#e19a62}}"
    "*{box-sizing:border-box}html,body{margin:0;background:var(--bg);color:var(--text)}"
    "body{display:flex;flex-direction:column;align-items:center;padding:0 1rem 3rem}"
    "header{width:100%;max-width:32rem;display:flex;align-items:center;gap:.55rem;padding:1.6rem 0 1rem;"
    "font-weight:700;font-size:1.15rem}header img{display:block}"
    "main{width:100%;max-width:32rem;background:var(--surface);border:1px solid var(--border);"
    "border-radius:8px;padding:1.4rem 1.5rem}"
    "h1{font-size:1.5rem;margin:0 0 .8rem;line-height:1.25}p{margin:.5rem 0;overflow-wrap:anywhere}"
    "a{color:var(--accent)}small{color:var(--muted)}"
)
#: Kokoa's mark (kokoa/console/static/kokoa.svg), as a data: URI.
_MARK = "data:image/svg+xml;base64," + base64.b64encode(
    b'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32"><rect width="32" height="32" rx="7" '
    b'fill="#6b3f26"/><path d="M9 8v16M9 16l9-8M12 14l7 10" stroke="#f5e6d8" stroke-width="3" fill="none" '
    b'stroke-linecap="round" stroke-linejoin="round"/><circle cx="23" cy="10" r="2.5" fill="#e9a66b"/></svg>'
).decode("ascii")
#: The HTML error pages' Content-Security-Policy (they had none: this only takes away).
PAGE_CSP = (
    "default-src 'none'; style-src 'sha256-"
    + base64.b64encode(hashlib.sha256(_STYLE.encode()).digest()).decode("ascii")
    + "'; img-src data:; base-uri 'none'; form-action 'none'"
).encode("ascii")
_PAGE = (
    "<!doctype html>\n"
    '<html lang="en"><head><meta charset="utf-8">'
    '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
    "<title>{status} {title}</title><style>"
    + _STYLE.replace("{", "{{").replace("}", "}}")
    + "</style></head>\n"
    '<body><header><img src="' + _MARK + '" alt="" width="32" height="32"><span>Kokoa</span></header>'
    "<main><h1>{title}</h1><p>{detail}</p><p><small>{status} &middot; Kokoa gateway</small></p></main>"
    "</body></html>\n"
)


def wants_html(accept: bytes | None) -> bool:
    """Browsers ask for text/html; everything else gets JSON."""
    return accept is not None and b"text/html" in accept.lower()


def error_body(status: int, title: str, detail: str, accept: bytes | None) -> tuple[bytes, bytes]:
    """(content type, body) of an error page."""
    if wants_html(accept):
        page = _PAGE.format(status=status, title=html.escape(title), detail=html.escape(detail))
        return b"text/html; charset=utf-8", page.encode()
    problem = {"type": "about:blank", "title": title, "status": status, "detail": detail}
    return b"application/problem+json", json.dumps(problem).encode()


def error_response(
    status: int,
    detail: str,
    accept: bytes | None = None,
    *,
    title: str | None = None,
    close: bool = False,
    head: bool = False,
    headers: tuple[tuple[bytes, bytes], ...] = (),
) -> bytes:
    """A whole HTTP/1.1 response for an error."""
    title = title or HTTPStatus(status).phrase
    content_type, body = error_body(status, title, detail, accept)
    lines = [
        b"HTTP/1.1 %d %s" % (status, HTTPStatus(status).phrase.encode()),
        b"Content-Type: " + content_type,
        b"Content-Length: %d" % len(body),
        b"Cache-Control: no-store",
        b"X-Content-Type-Options: nosniff",
    ]
    if content_type.startswith(b"text/html"):
        lines.append(b"Content-Security-Policy: " + PAGE_CSP)
    lines += [name + b": " + value for name, value in headers]
    if close:
        lines.append(b"Connection: close")
    return b"\r\n".join(lines) + b"\r\n\r\n" + (b"" if head else body)
