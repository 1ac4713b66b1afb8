"""The corpus of return-URL payloads (redirect_payloads.txt; its format is described at its top),
and what "safe" means for a URL that a payload was re-serialized to."""

from __future__ import annotations

import re
from pathlib import Path

from ada_url import URL, HostType

CORPUS = Path(__file__).with_name("redirect_payloads.txt")

LOGIN_HOST = "login.localhost"
RESOURCE_HOSTS = frozenset({"app.localhost"})
WILDCARD_PARENT = "wild.localhost"

_ESCAPE = re.compile(r"\{U\+([0-9A-Fa-f]{4,6})\}")
_DNS_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")


def load(port: int) -> list[str]:
    """The payloads, unescaped, with ``{PORT}`` replaced by ``port``."""
    payloads = []
    for line in CORPUS.read_text(encoding="utf-8").splitlines():
        if not line or line.startswith("#"):
            continue
        payloads.append(_ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), line.replace("{PORT}", str(port))))
    return payloads


def known_host(host: str) -> bool:
    """The test's router: app.localhost, and one DNS label under *.wild.localhost."""
    if host in RESOURCE_HOSTS:
        return True
    label, dot, parent = host.partition(".")
    return bool(dot) and parent == WILDCARD_PARENT and _DNS_LABEL.fullmatch(label) is not None


def allowed_host(host: str) -> bool:
    """Where a browser may be sent: a known resource host or the login host."""
    return host == LOGIN_HOST or known_host(host)


def unsafe_reason(url: str, base: str = f"https://{LOGIN_HOST}/") -> str | None:
    """Why a browser that follows ``Location: url`` (relative to ``base``) would leave the allowed
    hosts, read the WHATWG way (as Chromium reads it); None when it would not."""
    try:
        parsed = URL(url, base)
    except ValueError:
        return f"{url!r} does not parse"
    if parsed.protocol != "https:":
        return f"{url!r} has the scheme {parsed.protocol!r}"
    if parsed.username or parsed.password:
        return f"{url!r} holds userinfo"
    if parsed.host_type != HostType.DEFAULT or not allowed_host(parsed.hostname):
        return f"{url!r} goes to the host {parsed.hostname!r}"
    return None
