"""The login host's pages: small HTML documents, every value escaped, no script and no inline style.

They look like the console: ``/static/base.css`` (Kokoa's colours, light and dark, type, forms, buttons,
notices, tables) and ``/static/pages.css`` (a card in the middle of the page under a header with Kokoa's
mark), both served on the login host by :mod:`kokoa.console`. Their Content-Security-Policy
(:func:`page_csp`) therefore allows styles and images from the login host only (and ``data:`` images: the
QR code of the second-factor setup), and no script at all.

Markup: ``<html lang="en">``, one ``<h1>``, the page's content in ``<main>``, every input with its
``<label>``, errors in a ``role="alert"`` notice (announced by screen readers), notes of success in a
``role="status"`` one.
"""

from __future__ import annotations

import base64
import io
from html import escape
from typing import NamedTuple

import segno

#: What every page links, in this order (the console's look, then the pages' layout).
STYLESHEETS = ("/static/base.css", "/static/pages.css")
#: Kokoa's mark, in each page's header and as its icon.
MARK = "/static/kokoa.svg"
#: Where the pages' forms may send the browser (the sign-in flows post to the login host and are
#: redirected to resource hosts over HTTPS, or to a single sign-on provider's sign-out).
FORM_ACTION = "'self' https:"


def page_csp(form_action: str = FORM_ACTION) -> bytes:
    """The pages' Content-Security-Policy: nothing loads but the login host's stylesheets and images
    (and ``data:`` images), no script, no frame; forms go to ``form_action``."""
    return (
        "default-src 'none'; style-src 'self'; img-src 'self' data:; "
        f"form-action {form_action}; frame-ancestors 'none'; base-uri 'none'"
    ).encode("ascii")


def page(title: str, body: str, *, wide: bool = False) -> bytes:
    """A whole page; ``body`` is HTML made with the helpers here (values already escaped). ``wide``:
    a wider card (tables)."""
    links = "".join(f'<link rel="stylesheet" href="{href}">' for href in STYLESHEETS)
    card = "card page wide" if wide else "card page"
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="color-scheme" content="light dark">'
        f"<title>{escape(title)} · Kokoa</title>"
        f'<link rel="icon" href="{MARK}" type="image/svg+xml">{links}</head>'
        '<body class="kokoa-page"><header class="page-header">'
        f'<a class="brand" href="/"><img src="{MARK}" alt="" width="32" height="32">'
        "<span>Kokoa</span></a></header>"
        f'<main class="{card}"><h1>{escape(title)}</h1>{body}</main></body></html>'
    ).encode()


def paragraph(text: str, kind: str = "") -> str:
    """A paragraph of text: ``kind`` ``error`` (a notice screen readers announce at once), ``ok`` (a
    note of success, announced politely), ``note`` (quieter text) or plain."""
    if kind == "error":
        return f'<p class="notice error" role="alert">{escape(text)}</p>'
    if kind == "ok":
        return f'<p class="notice ok" role="status">{escape(text)}</p>'
    cls = f' class="{escape(kind)}"' if kind else ""
    return f"<p{cls}>{escape(text)}</p>"


def link(href: str, text: str, cls: str = "") -> str:
    return f'<a href="{escape(href)}"' + (f' class="{escape(cls)}"' if cls else "") + f">{escape(text)}</a>"


class Field(NamedTuple):
    """One input of a form: its ``name`` (and id), ``label``, input ``kind`` (type), ``autocomplete``
    token, a ``hint`` shown under its label, and an ``inputmode``."""

    name: str
    label: str
    kind: str
    autocomplete: str
    hint: str = ""
    inputmode: str = ""


def form(
    action: str,
    csrf: str,
    fields: list[tuple[str, ...]],
    button: str,
    hidden: dict[str, str] | None = None,
    form_id: str = "",
    *,
    button_class: str = "",
    button_label: str = "",
    username: str | None = None,
) -> str:
    """A POST form: ``fields`` are :class:`Field` s (or tuples of name, label, input type, autocomplete).

    ``button_label``: the button's name for screen readers when its text alone is ambiguous (several
    "End" buttons); ``username``: the account a new or changed password is for, in a hidden username
    field that password managers read (they file the password under it)."""
    parts = [
        f'<form method="post" action="{escape(action)}"'
        + (f' id="{escape(form_id)}"' if form_id else "")
        + ">"
    ]
    parts.append(f'<input type="hidden" name="csrf" value="{escape(csrf)}">')
    for name, value in (hidden or {}).items():
        parts.append(f'<input type="hidden" name="{escape(name)}" value="{escape(value)}">')
    if username is not None:
        parts.append(
            f'<input type="email" name="username" value="{escape(username)}" '
            'autocomplete="username" readonly hidden>'
        )
    for spec in fields:
        field = Field(*spec)
        ident = escape(field.name)
        extra = ""
        if field.kind == "email":
            extra += ' autocapitalize="none" spellcheck="false"'
        if field.inputmode:
            extra += f' inputmode="{escape(field.inputmode)}"'
        hint = ""
        if field.hint:
            hint = f'<p class="hint" id="{ident}-hint">{escape(field.hint)}</p>'
            extra += f' aria-describedby="{ident}-hint"'
        parts.append(
            f'<label for="{ident}">{escape(field.label)}</label>{hint}'
            f'<input id="{ident}" name="{ident}" type="{escape(field.kind)}" '
            f'autocomplete="{escape(field.autocomplete)}"{extra} required>'
        )
    attributes = ' type="submit"'
    if button_class:
        attributes += f' class="{escape(button_class)}"'
    if button_label:
        attributes += f' aria-label="{escape(button_label)}"'
    parts.append(f"<button{attributes}>{escape(button)}</button></form>")
    return "".join(parts)


def qr_code(text: str, alt: str, ident: str = "") -> str:
    """``text`` as a QR code: an SVG made here by segno, in an ``<img>`` of a ``data:`` URI (no request,
    no script). Dark modules on white with the standard quiet zone, whatever the page's theme, so that
    cameras read it in the dark theme too."""
    qr = segno.make(text, error="m", micro=False)
    out = io.BytesIO()
    qr.save(out, kind="svg", scale=5, border=4, dark="#000000", light="#ffffff", xmldecl=False, svgclass=None)
    uri = "data:image/svg+xml;base64," + base64.b64encode(out.getvalue()).decode("ascii")
    size = qr.symbol_size(scale=5, border=4)[0]
    return (
        f'<img class="qr" src="{uri}" alt="{escape(alt)}" width="{size}" height="{size}"'
        + (f' id="{escape(ident)}"' if ident else "")
        + ">"
    )
