"""One access rule, parsed once: its path pattern normalized as the router normalizes paths, its
network an :mod:`ipaddress` object, its method upper case. Matching a request is then string and
integer comparisons only.

Conditions (each optional; a rule with none matches every request):

path
    Normalized with the router's own :func:`~kokoa.http._router.normalize_prefix` (``%61`` is ``a``,
    ``//`` and ``.``/``..`` segments and ``;parameters`` are gone, no trailing slash but for ``/``), so
    it is compared with the request's ``match_path`` exactly as the router compared the resource's
    prefix. It matches whole segments: ``/admin`` (or ``/admin/``) matches ``/admin``, ``/admin/`` and
    ``/admin/x``, never ``/administrator``. Paths are case-sensitive. ``*`` (the store's glob) matches
    any run of characters, ``/`` included, and the pattern still matches whole segments: ``/admin*``
    matches ``/admin``, ``/administrator`` and ``/admin/x``; ``/*.php`` matches ``/a.php``,
    ``/d/a.php`` and ``/a.php/x``, not ``/a.phpx``. ``%2A`` in a rule is a literal ``*``.

    Many upstreams read paths more loosely than the router: Windows and IIS, macOS file systems,
    case-insensitive routers, servers that trim a trailing dot or space. So a ``deny`` or ``allow``
    rule is also matched against the *folded* path (:func:`fold_path`, applied alike to the rule and
    the request), and the engine keeps the stricter decision: ``deny /admin`` also denies
    ``/ADMIN``, ``/%41dmin``, ``/admin.``, ``/admin%20`` and ``/Admin./x``. A ``bypass`` rule never
    matches more by folding: it matches a path only when the exact path is under it and the folded
    path is still under its folded form (``bypass /public`` does not open ``/PUBLIC``, nor
    ``/public/..%20/admin``, which an upstream that trims spaces reads as ``/admin``).
cidr
    An IPv4 or IPv6 network; a bare address is a single host. IPv4-mapped IPv6 addresses
    (``::ffff:1.2.3.4``), on either side, are their IPv4 address.
method
    An HTTP method token, compared case-insensitively. ``GET`` also matches ``HEAD``: servers answer
    ``HEAD`` as a ``GET`` without the body, so a rule on ``GET`` covers what ``HEAD`` reveals.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from kokoa.http._router import BadTarget, normalize_prefix

Action = Literal["allow", "deny", "bypass"]
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

ACTIONS: tuple[str, ...] = ("allow", "deny", "bypass")

# RFC 9110 token characters.
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,32}")
_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")


class PolicyError(ValueError):
    """A rule or policy that cannot be enforced as given; the message says why."""


@dataclass(frozen=True, slots=True)
class Rule:
    """A rule of one resource. Build it with strings (``cidr="10.0.0.0/8"``, ``path="/%61dmin/"``,
    ``method="post"``): it is parsed and normalized here, once, and raises :class:`PolicyError` if it
    cannot be. Afterwards ``cidr`` is a network object, ``path`` the normalized pattern and
    ``method`` upper case."""

    id: str
    priority: int
    action: Action
    cidr: Network | None = None
    path: str | None = None
    method: str | None = None
    # Derived once: the compiled pattern of a glob path, the methods matched, a label for reasons.
    _glob: re.Pattern[str] | None = field(default=None, init=False, repr=False, compare=False)
    # The folded pattern (fold_path of the path) and its compiled glob.
    folded: str | None = field(default=None, init=False, repr=False, compare=False)
    _folded_glob: re.Pattern[str] | None = field(default=None, init=False, repr=False, compare=False)
    _methods: frozenset[str] = field(default=frozenset(), init=False, repr=False, compare=False)
    label: str = field(default="", init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        if not isinstance(self.id, str):
            raise PolicyError(f"rule id {self.id!r} is not a string")
        if isinstance(self.priority, bool) or not isinstance(self.priority, int):
            raise PolicyError(f"rule {self.id}: priority {self.priority!r} is not an integer")
        if self.action not in ACTIONS:
            raise PolicyError(f"rule {self.id}: action {self.action!r} is not one of {', '.join(ACTIONS)}")
        set_(self, "cidr", None if self.cidr is None else parse_network(self.cidr, self.id))
        if self.path is not None:
            path = normalize_rule_path(self.path, self.id)
            set_(self, "path", path)
            set_(self, "_glob", glob_pattern(path) if "*" in path else None)
            folded = fold_path(path).rstrip("/") or "/"
            set_(self, "folded", folded)
            set_(self, "_folded_glob", glob_pattern(folded) if "*" in folded else None)
        if self.method is not None:
            if not isinstance(self.method, str) or not _TOKEN.fullmatch(self.method.strip()):
                raise PolicyError(f"rule {self.id}: {self.method!r} is not an HTTP method")
            method = self.method.strip().upper()
            set_(self, "method", method)
            set_(self, "_methods", frozenset({"GET", "HEAD"}) if method == "GET" else frozenset({method}))
        set_(self, "label", _label(self))

    # -- matching (the request side is already normalized: no parsing here) --------------------------

    def path_matches(self, match_path: str) -> bool:
        """Whether ``match_path`` (a router ``Target.match_path``) is under this rule's path."""
        pattern = self.path
        if pattern is None or pattern == "/":
            return True
        if self._glob is not None:
            return self._glob.match(match_path) is not None
        return match_path == pattern or match_path.startswith(pattern + "/")

    def folded_path_matches(self, folded_path: str) -> bool:
        """Whether ``folded_path`` (:func:`fold_path` of a ``match_path``) is under this rule's folded
        path."""
        pattern = self.folded
        if pattern is None or pattern == "/":
            return True
        if self._folded_glob is not None:
            return self._folded_glob.match(folded_path) is not None
        return folded_path == pattern or folded_path.startswith(pattern + "/")

    def method_matches(self, method: str) -> bool:
        return self.method is None or method.upper() in self._methods

    def address_matches(self, address: Address) -> bool:
        network = self.cidr
        return network is None or (address.version == network.version and address in network)


def parse_network(value: Any, rule_id: str = "?") -> Network:
    """A network from its text (or an ipaddress network); IPv4-mapped IPv6 networks become IPv4."""
    if isinstance(value, ipaddress.IPv4Network | ipaddress.IPv6Network):
        network = value
    elif isinstance(value, str):
        try:
            network = ipaddress.ip_network(value.strip(), strict=True)
        except ValueError as e:
            raise PolicyError(f"rule {rule_id}: {value!r} is not a network ({e})") from None
    else:
        raise PolicyError(f"rule {rule_id}: {value!r} is not a network")
    if network.version == 6 and network.prefixlen >= 96 and network.subnet_of(_MAPPED):
        address = ipaddress.IPv4Address(int(network.network_address) & 0xFFFFFFFF)
        network = ipaddress.IPv4Network((address, network.prefixlen - 96))
    return network


def parse_address(value: Any) -> Address | None:
    """A client address from text (``1.2.3.4``, ``::1``, ``[::1]``, ``fe80::1%eth0``) or an
    ipaddress object; IPv4-mapped IPv6 becomes IPv4. None if it is not an address."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("[") and text.endswith("]"):
            text = text[1:-1]
        try:
            address: Address = ipaddress.ip_address(text)
        except ValueError:
            return None
    elif isinstance(value, ipaddress.IPv4Address | ipaddress.IPv6Address):
        address = value
    else:
        return None
    if address.version == 6 and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def normalize_rule_path(value: Any, rule_id: str = "?") -> str:
    """A rule's path in the router's form (see the module's docstring)."""
    if not isinstance(value, str) or not value.startswith("/"):
        raise PolicyError(f"rule {rule_id}: path {value!r} must start with '/'")
    if "?" in value or "#" in value:
        raise PolicyError(f"rule {rule_id}: path {value!r} must not hold a query or fragment")
    try:
        path = normalize_prefix(value)
    except (BadTarget, UnicodeError) as e:
        raise PolicyError(f"rule {rule_id}: path {value!r} is not a URL path ({e})") from None
    return re.sub(r"\*+", "*", path)


#: What a segment may end with that some servers drop: dots, whitespace (raw, as Unicode after
#: decoding, or percent-encoded ASCII whitespace: space, tab, LF, VT, FF, CR).
_TRAILING = re.compile(r"(?:[.\s]|%(?:20|09|0a|0b|0c|0d|2e))+\Z", re.IGNORECASE)
#: A run of percent-escapes of bytes 0x80-0xFF (UTF-8 of non-ASCII characters, maybe).
_NON_ASCII_RUN = re.compile(r"(?:%[89a-f][0-9a-f])+", re.IGNORECASE)
#: What sends a path down the slow way (an ASCII path without these only needs lower-casing):
#: an escape, whitespace, a dot that ends a segment, an empty segment.
_NOT_PLAIN = re.compile(r"[%\s]|\.(?=/|\Z)|//")


def fold_path(match_path: str) -> str:
    """The folded form of a normalized path, for matching ``deny`` and ``allow`` rules the way the
    loosest common upstreams read paths (see the module's docstring). Folded once per request, and
    once per rule when the rule is built; only compared, never forwarded.

    - percent-escapes of UTF-8 non-ASCII characters are decoded (``%C3%89`` is ``É``); other escapes
      stay as they are (``%2F`` is no separator, ``%2A`` no glob);
    - the whole path is case-folded (:meth:`str.casefold`: ``/ADMIN`` and ``/Admin`` are ``/admin``,
      ``É`` is ``é``, ``ß`` is ``ss``); escapes that stay encoded become lower case on both sides;
    - each segment loses its trailing dots and whitespace (``admin.``, ``admin%20``, ``admin.%09.``
      are ``admin``; Unicode whitespace such as ``%C2%A0`` too); leading ones stay;
    - then, as the router does, a segment left empty or ``.`` goes, and ``..`` removes the segment
      before it; a segment of dots and whitespace only that starts with ``..`` (``..%20``, ``...``)
      is a ``..``. A trailing slash stays.

    Not folded: Unicode compatibility forms (full-width letters), NTFS streams (``::$DATA``) and
    8.3 short names; rules on such upstreams need their own patterns."""
    if match_path.startswith("/") and match_path.isascii() and _NOT_PLAIN.search(match_path) is None:
        return match_path.lower()  # the common case: nothing to trim, nothing to decode
    return _fold_segments(match_path)


def _fold_segments(match_path: str) -> str:
    """fold_path the long way, segment by segment."""
    if "%" in match_path:
        match_path = _NON_ASCII_RUN.sub(_decode_utf8, match_path)
    segments: list[str] = []
    for segment in match_path.casefold().split("/"):
        if segment and (segment[-1] == "." or segment[-1].isspace() or segment[-3:-2] == "%"):
            trimmed = _TRAILING.sub("", segment)
            # "..%20" and "...": nothing but dots and spaces, read as ".." (as a server trimming
            # the spaces would, and old Windows did "..."), never as an empty segment
            segment = trimmed or (".." if segment.startswith("..") else "")
        if segment in ("", "."):
            continue
        if segment == "..":
            if segments:
                segments.pop()
            continue
        segments.append(segment)
    folded = "/" + "/".join(segments)
    if segments and match_path.endswith("/"):
        folded += "/"
    return folded


def _decode_utf8(escapes: re.Match[str]) -> str:
    text = escapes.group()
    try:
        return bytes.fromhex(text.replace("%", "")).decode("utf-8")
    except UnicodeDecodeError:
        return text  # not UTF-8: left encoded


def glob_pattern(path: str) -> re.Pattern[str]:
    """A regular expression for a glob path matching whole segments: the pattern, then nothing or
    "/..." after it.

    Each ``*`` but the last is an atomic lazy group (``(?>.*?literal)``): the leftmost place of each
    literal is always the right one when another ``*`` follows it, so there is no backtracking
    across stars and matching stays linear in the path for each star (no catastrophic patterns)."""
    chunks = path.split("*")
    parts = [re.escape(chunks[0])]
    parts += [f"(?>.*?{re.escape(chunk)})" for chunk in chunks[1:-1]]
    parts.append(f".*{re.escape(chunks[-1])}")
    return re.compile("".join(parts) + r"(?:/.*)?\Z", re.DOTALL)


def _label(rule: Rule) -> str:
    conditions = []
    if rule.method is not None:
        conditions.append(rule.method)
    if rule.path is not None:
        conditions.append(rule.path)
    if rule.cidr is not None:
        conditions.append(f"from {rule.cidr}")
    on = " " + " ".join(conditions) if conditions else " on every request"
    return f"rule {rule.priority} ({rule.action}{on})"
