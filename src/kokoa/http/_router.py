"""Which resource a request is for: host and path normalized once, matched once.

Pure code. The one :class:`Route` made here for a request is what everything after
it uses (forwarding now, access rules later), so no part of the gateway can match a
request differently from another.

Hosts: lowercase, without port and trailing dot; a resource's ``*.example.com``
matches exactly one label more (``a.example.com``, not ``a.b.example.com``), the
same rule TLS certificates follow, and that label must be a DNS label (ASCII letters,
digits and inner hyphens: nothing a browser could read as more than one label, such as
``%2e`` or ``\\``); exact names win over wildcards.

Paths (RFC 3986 section 6): percent-encoded unreserved characters are decoded and
other escapes upper-cased; ``%2F`` stays encoded (an encoded slash is not a
separator); runs of slashes merge; ``.`` and ``..`` segments are removed.
``;parameters`` stay in the forwarded path but are dropped from the path that is
matched, so ``/admin;x/`` is ``/admin/`` to the router and to rules, as it is to
servers that honour path parameters. A prefix matches whole segments: ``/api``
matches ``/api`` and ``/api/x``, never ``/apix``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from kokoa.gateway._model import HTTPResource


class BadTarget(ValueError):
    """The request target or Host cannot be routed; the message says why."""


_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_HEX = frozenset(b"0123456789abcdefABCDEF")
# pchar and "/" of RFC 3986, plus "%" (checked separately): what a path may hold raw.
_PATH_CHARS = re.compile(rb"[A-Za-z0-9\-._~!$&'()*+,;=:@/%]*")
_QUERY_CHARS = re.compile(rb"[A-Za-z0-9\-._~!$&'()*+,;=:@/?%\[\]|{}\"^`<>\\]*")
_HOST_LABEL = re.compile(r"(?!-)[a-z0-9_-]{1,63}(?<!-)")
# The one label a wildcard resource's "*" stands for: a DNS label (no "_").
_WILDCARD_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")


@dataclass(frozen=True, slots=True)
class Target:
    """A request target, normalized: ``path`` to forward, ``match_path`` to route on."""

    path: str
    match_path: str
    query: str  # with its "?", or ""

    @property
    def forwarded(self) -> str:
        return self.path + self.query


def normalize_host(value: str) -> str:
    """The host of a Host header or authority, normalized (raises BadTarget)."""
    if not value.isascii() or any(c < " " or c == "\x7f" for c in value):
        raise BadTarget(f"malformed host {value!r}")
    host = value.strip().lower()
    if host.startswith("["):  # an IPv6 literal, with or without a port
        literal, closed, rest = host.partition("]")
        if not closed or not literal[1:] or not all(c in "0123456789abcdef:." for c in literal[1:]):
            raise BadTarget(f"malformed host {value!r}")
        if rest and not (rest.startswith(":") and _is_port(rest[1:])):
            raise BadTarget(f"malformed port in host {value!r}")
        return literal + "]"
    name, sep, port = host.partition(":")
    if sep and not _is_port(port):
        raise BadTarget(f"malformed port in host {value!r}")
    name = name.removesuffix(".")
    if not name or len(name) > 253 or not all(_HOST_LABEL.fullmatch(label) for label in name.split(".")):
        raise BadTarget(f"malformed host {value!r}")
    return name


def _is_port(text: str) -> bool:
    return text.isascii() and text.isdigit() and len(text) <= 5 and int(text) <= 65535


def normalize_target(raw: bytes) -> Target:
    """Normalize an origin-form request target (``/path?query``); raises BadTarget."""
    if not raw.startswith(b"/"):
        raise BadTarget("the request target must be a path starting with '/'")
    path, _, query = raw.partition(b"?")
    if b"#" in raw:
        raise BadTarget("the request target must not carry a fragment")
    if not _PATH_CHARS.fullmatch(path):
        raise BadTarget("the path holds characters that must be percent-encoded")
    if query and not _QUERY_CHARS.fullmatch(query):
        raise BadTarget("the query holds characters that must be percent-encoded")
    decoded = _decode_unreserved(path)
    segments: list[str] = []
    for segment in decoded.split("/")[1:]:
        bare = segment.split(";", 1)[0]
        if bare in ("", "."):  # "//", "/./" and a parameters-only segment
            continue
        if bare == "..":  # "..;x" too: servers that honour parameters see ".."
            if segments:
                segments.pop()
            continue
        segments.append(segment)
    trailing = decoded.endswith("/") or decoded.endswith("/.") or decoded.endswith("/..")
    normalized = "/" + "/".join(segments)
    if trailing and segments:
        normalized += "/"
    match = "/" + "/".join(s.split(";", 1)[0] for s in segments)
    if trailing and segments:
        match += "/"
    return Target(normalized, match, ("?" + query.decode("ascii")) if query or raw.endswith(b"?") else "")


def _decode_unreserved(path: bytes) -> str:
    """Decode %XX of unreserved characters, upper-case the others; reject broken escapes
    and encoded NUL."""
    out = bytearray()
    i, n = 0, len(path)
    while i < n:
        byte = path[i]
        if byte != 0x25:  # "%"
            out.append(byte)
            i += 1
            continue
        escape = path[i + 1 : i + 3]
        if len(escape) != 2 or not all(c in _HEX for c in escape):
            raise BadTarget("the path holds a malformed percent-escape")
        value = int(escape, 16)
        if value == 0:
            raise BadTarget("the path holds an encoded NUL")
        if value in _UNRESERVED:
            out.append(value)
        else:
            out += b"%" + escape.upper()
        i += 3
    return out.decode("ascii")


def normalize_prefix(prefix: str) -> str:
    """A resource's path prefix in the router's form (no trailing slash but for "/")."""
    target = normalize_target(prefix.encode("ascii"))
    path = target.match_path
    return path.rstrip("/") or "/"


@dataclass(frozen=True, slots=True)
class Route:
    """The one routing decision for a request."""

    resource: HTTPResource
    host: str
    target: Target


class Router:
    """Routes (host, target) to a resource: exact host, else a wildcard one label up; then
    the longest matching path prefix."""

    def __init__(self, resources: list[HTTPResource]) -> None:
        self._hosts: dict[str, list[tuple[str, HTTPResource]]] = {}
        for resource in resources:
            if not resource.enabled:
                continue
            entries = self._hosts.setdefault(resource.hostname.lower().removesuffix("."), [])
            entries.append((normalize_prefix(resource.path_prefix), resource))
        for entries in self._hosts.values():
            entries.sort(key=lambda entry: len(entry[0]), reverse=True)

    def __len__(self) -> int:
        return sum(len(entries) for entries in self._hosts.values())

    def knows_host(self, host: str) -> bool:
        return self._entries(host) is not None

    def route(self, host: str, target: Target) -> Route | None:
        """The resource for a normalized host and target, or None."""
        entries = self._entries(host)
        if entries is None:
            return None
        path = target.match_path
        for prefix, resource in entries:
            if prefix == "/" or path == prefix or path.startswith(prefix + "/"):
                return Route(resource, host, target)
        return None

    def _entries(self, host: str):
        if host.startswith("*"):  # a wildcard pattern is no host
            return None
        entries = self._hosts.get(host)
        if entries is None:
            label, dot, parent = host.partition(".")
            if dot and _WILDCARD_LABEL.fullmatch(label):
                entries = self._hosts.get("*." + parent)
        return entries
