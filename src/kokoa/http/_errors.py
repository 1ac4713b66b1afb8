"""Error pages that say what happened: HTML for browsers, problem+json for programs."""

from __future__ import annotations

import html
import json
from http import HTTPStatus

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>{status} {title}</title>
<style>body{{font:16px/1.5 system-ui,sans-serif;max-width:40em;margin:4em auto;padding:0 1em;color:#222}}
h1{{font-size:1.4em}}small{{color:#777}}</style></head>
<body><h1>{title}</h1><p>{detail}</p><p><small>{status} &middot; Kokoa gateway</small></p></body></html>
"""


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
    lines += [name + b": " + value for name, value in headers]
    if close:
        lines.append(b"Connection: close")
    return b"\r\n".join(lines) + b"\r\n\r\n" + (b"" if head else body)
