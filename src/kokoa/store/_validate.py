"""Checks and normalization of input values; each failure is an :class:`Invalid` naming the field."""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import idna

from . import _schema as s
from ._errors import Invalid

_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_LABEL_UNDERSCORE = re.compile(r"^(?!-)[a-z0-9_-]{1,63}(?<!-)$")
_EMAIL_LOCAL = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}$")
_PATH_CHARS = re.compile(r"^(?:[A-Za-z0-9._~!$&'()+,;=:@/-]|%[0-9A-Fa-f]{2})*$")
_METHOD = re.compile(r"^[A-Z][A-Z0-9-]{0,15}$")
_SCOPE = re.compile(r"^(?:\*|[a-z][a-z0-9_-]{0,31}(?::(?:\*|[a-z][a-z0-9_-]{0,31}))*)$")

#: Passwords: at least this long (NIST SP 800-63B), and a cap so hashing stays cheap.
PASSWORD_MIN = 8
PASSWORD_MAX = 1024


def name(value: Any, field: str = "name", max_length: int = s.NAME_LENGTH) -> str:
    """A display name: 1..max_length characters, no control characters, no outer spaces."""
    if not isinstance(value, str):
        raise Invalid(field, "must be a string")
    value = value.strip()
    if not value:
        raise Invalid(field, "must not be empty")
    if len(value) > max_length:
        raise Invalid(field, f"must be at most {max_length} characters")
    if any(unicodedata.category(c).startswith("C") for c in value):
        raise Invalid(field, "must not contain control characters")
    return value


def text(value: Any, field: str, max_length: int) -> str:
    """Free text (a description): may be empty."""
    if not isinstance(value, str):
        raise Invalid(field, "must be a string")
    if len(value) > max_length:
        raise Invalid(field, f"must be at most {max_length} characters")
    return value


def boolean(value: Any, field: str) -> bool:
    if not isinstance(value, bool):
        raise Invalid(field, "must be true or false")
    return value


def integer(value: Any, field: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise Invalid(field, "must be an integer")
    if not low <= value <= high:
        raise Invalid(field, f"must be from {low} to {high}")
    return value


def port(value: Any, field: str = "port") -> int:
    return integer(value, field, 1, 65535)


def one_of(value: Any, field: str, allowed: Iterable[str]) -> str:
    allowed = tuple(allowed)
    if value not in allowed:
        raise Invalid(field, f"must be one of {', '.join(allowed)}")
    return value


def hostname(value: Any, field: str = "hostname", wildcard: bool = False, underscore: bool = False) -> str:
    """A DNS name in its ASCII (IDNA) form, lowercase; ``*.example.com`` if ``wildcard``;
    ``underscore`` allows '_' in labels (container names on a private network)."""
    if not isinstance(value, str) or not value:
        raise Invalid(field, "must be a non-empty string")
    host = value.strip().rstrip(".").lower()
    star = host.startswith("*.")
    if star:
        if not wildcard:
            raise Invalid(field, "wildcards are allowed only in HTTP resource hostnames")
        host = host[2:]
    if "*" in host:
        raise Invalid(field, "a wildcard must be the whole first label, as in *.example.com")
    try:
        if not host.isascii():
            host = idna.encode(host, uts46=True).decode("ascii")
        elif "xn--" in host:
            idna.decode(host)  # a punycode label must decode to a valid name
    except (idna.IDNAError, UnicodeError) as e:
        raise Invalid(field, f"{value!r} is not a valid hostname ({e})") from None
    labels = host.split(".")
    label = _LABEL_UNDERSCORE if underscore else _LABEL
    if not all(label.match(part) for part in labels):
        raise Invalid(field, f"{value!r} is not a valid hostname")
    if star and len(labels) < 2:
        raise Invalid(field, "a wildcard needs at least two labels after it, as in *.example.com")
    if labels[-1].isdigit():
        raise Invalid(field, f"{value!r} is not a hostname (an IP address is not allowed here)")
    result = ("*." if star else "") + host
    if len(result) > s.HOSTNAME_LENGTH:
        raise Invalid(field, f"must be at most {s.HOSTNAME_LENGTH} characters")
    return result


def host(value: Any, field: str = "host") -> str:
    """A target host: an IPv4/IPv6 address (normalized, no brackets) or a DNS name."""
    if not isinstance(value, str) or not value.strip():
        raise Invalid(field, "must be a non-empty string")
    candidate = value.strip()
    if candidate.startswith("[") and candidate.endswith("]"):
        candidate = candidate[1:-1]
    try:
        return str(ipaddress.ip_address(candidate))
    except ValueError:
        pass
    if re.fullmatch(r"[0-9.]+", candidate) or ":" in candidate:
        raise Invalid(field, f"{value!r} is not a valid IP address")
    return hostname(candidate, field, underscore=True)


def path(value: Any, field: str, allow_glob: bool = False) -> str:
    """An absolute URL path: starts with '/', no '.', '..' or empty segments, no query or fragment."""
    if not isinstance(value, str) or not value.startswith("/"):
        raise Invalid(field, "must be a path starting with '/'")
    if len(value) > s.PATH_LENGTH:
        raise Invalid(field, f"must be at most {s.PATH_LENGTH} characters")
    checked = value.replace("*", "") if allow_glob else value
    if not _PATH_CHARS.match(checked):
        raise Invalid(field, "may hold only URL path characters (no spaces, '?', '#' or bad %-escapes)")
    segments = value.split("/")[1:]
    inner = segments[:-1]  # a trailing '/' leaves one empty last segment, which is fine
    if any(seg in (".", "..") for seg in segments) or any(seg == "" for seg in inner):
        raise Invalid(field, "must be normalized: no '.', '..' or empty ('//') segments")
    return value


_STATUS_ITEM = re.compile(r"([0-9]{3})(?:-([0-9]{3}))?")


def expected_status(value: Any, field: str = "health_check.expected_status") -> str:
    """HTTP statuses a health check accepts: codes and ranges of codes from 100 to 599, separated by
    commas, such as ``200-399`` or ``200,204``; normalized without spaces."""
    if not isinstance(value, str):
        raise Invalid(field, "must be a string such as '200-399' or '200,204'")
    items = [item.strip() for item in value.split(",")]
    if not value.strip() or any(not item for item in items):
        raise Invalid(field, "must list status codes or ranges separated by commas, such as '200,204'")
    for item in items:
        m = _STATUS_ITEM.fullmatch(item)
        if m is None:
            raise Invalid(field, f"{item!r} is not a status code or a range such as '200-399'")
        low = int(m[1])
        high = low if m[2] is None else int(m[2])
        if not 100 <= low <= 599 or not 100 <= high <= 599:
            raise Invalid(field, f"{item!r}: status codes are from 100 to 599")
        if low > high:
            raise Invalid(field, f"{item!r}: a range goes from the lower code to the higher")
    result = ",".join(items)
    if len(result) > s.EXPECTED_STATUS_LENGTH:
        raise Invalid(field, f"must be at most {s.EXPECTED_STATUS_LENGTH} characters")
    return result


def email(value: Any, field: str = "email") -> str:
    """An email address, lowercased, its domain in IDNA form."""
    if not isinstance(value, str) or value.count("@") != 1:
        raise Invalid(field, "must be an email address like name@example.com")
    local, _, domain = value.strip().partition("@")
    if not _EMAIL_LOCAL.match(local) or local.startswith(".") or local.endswith(".") or ".." in local:
        raise Invalid(field, f"{value!r} is not a valid email address")
    try:
        domain = hostname(domain, field)
    except Invalid:
        raise Invalid(field, f"{value!r} is not a valid email address (bad domain)") from None
    result = f"{local}@{domain}".lower()
    if len(result) > s.EMAIL_LENGTH:
        raise Invalid(field, f"must be at most {s.EMAIL_LENGTH} characters")
    return result


def password(value: Any, field: str = "password") -> str:
    if not isinstance(value, str):
        raise Invalid(field, "must be a string")
    if len(value) < PASSWORD_MIN:
        raise Invalid(field, f"must be at least {PASSWORD_MIN} characters")
    if len(value) > PASSWORD_MAX:
        raise Invalid(field, f"must be at most {PASSWORD_MAX} characters")
    return value


def cidr(value: Any, field: str = "cidr") -> str:
    """An IPv4 or IPv6 network such as ``10.0.0.0/8`` (a bare address means a single host)."""
    if not isinstance(value, str):
        raise Invalid(field, "must be a string")
    try:
        return str(ipaddress.ip_network(value.strip(), strict=True))
    except ValueError as e:
        try:
            hint = f"; did you mean {ipaddress.ip_network(value.strip(), strict=False)}?"
        except ValueError:
            hint = ""
        raise Invalid(field, f"{value!r} is not a network ({e}){hint}") from None


def method(value: Any, field: str = "method") -> str:
    if not isinstance(value, str) or not _METHOD.match(value.upper()):
        raise Invalid(field, "must be an HTTP method such as GET or POST")
    return value.upper()


def scopes(value: Any, field: str = "scopes") -> tuple[str, ...]:
    """API key scopes: ``*``, or names such as ``sites:read`` (deduplicated, order kept)."""
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise Invalid(field, "must be a list of scope names")
    result: list[str] = []
    for scope in value:
        if not isinstance(scope, str) or not _SCOPE.match(scope):
            raise Invalid(field, f"{scope!r} is not a scope name (like 'sites:read' or '*')")
        if scope not in result:
            result.append(scope)
    return tuple(result)


def aware(value: Any, field: str) -> datetime:
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise Invalid(field, "must be a timezone-aware datetime")
    return value


def ip_address(value: Any, field: str) -> str:
    if not isinstance(value, str):
        raise Invalid(field, "must be a string")
    try:
        return str(ipaddress.ip_address(value.strip().strip("[]")))
    except ValueError:
        raise Invalid(field, f"{value!r} is not an IP address") from None
