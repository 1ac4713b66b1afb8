"""The login host's pages: small HTML documents, every value escaped, no script."""

from __future__ import annotations

from html import escape

_STYLE = """body{font:16px/1.5 system-ui,sans-serif;max-width:26em;margin:4em auto;padding:0 1em;color:#222}
h1{font-size:1.4em}label{display:block;margin:.8em 0 .2em}input{width:100%;padding:.4em;box-sizing:border-box}
button{margin-top:1em;padding:.5em 1.2em}.error{color:#a00}.note{color:#555}hr{margin:2em 0}
table{border-collapse:collapse}td{padding:.2em .6em .2em 0}code{word-break:break-all}"""


def page(title: str, body: str) -> bytes:
    """A whole page; ``body`` is HTML made with the helpers here (values already escaped)."""
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width">'
        f"<title>{escape(title)} · Kokoa</title><style>{_STYLE}</style></head>"
        f"<body><h1>{escape(title)}</h1>{body}</body></html>"
    ).encode()


def paragraph(text: str, kind: str = "") -> str:
    cls = f' class="{kind}"' if kind else ""
    return f"<p{cls}>{escape(text)}</p>"


def link(href: str, text: str) -> str:
    return f'<a href="{escape(href)}">{escape(text)}</a>'


def form(
    action: str,
    csrf: str,
    fields: list[tuple[str, str, str, str]],
    button: str,
    hidden: dict[str, str] | None = None,
    form_id: str = "",
) -> str:
    """A POST form: ``fields`` are (name, label, input type, autocomplete)."""
    parts = [
        f'<form method="post" action="{escape(action)}"'
        + (f' id="{escape(form_id)}"' if form_id else "")
        + ">"
    ]
    parts.append(f'<input type="hidden" name="csrf" value="{escape(csrf)}">')
    for name, value in (hidden or {}).items():
        parts.append(f'<input type="hidden" name="{escape(name)}" value="{escape(value)}">')
    for name, label, kind, autocomplete in fields:
        parts.append(
            f'<label for="{escape(name)}">{escape(label)}</label>'
            f'<input id="{escape(name)}" name="{escape(name)}" type="{escape(kind)}" '
            f'autocomplete="{escape(autocomplete)}" required>'
        )
    parts.append(f'<button type="submit">{escape(button)}</button></form>')
    return "".join(parts)
