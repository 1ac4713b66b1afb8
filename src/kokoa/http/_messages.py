"""Request and response heads: strict checks and the heads Kokoa forwards. Pure code.

httptools (llhttp) already refuses most ambiguous framing (Content-Length with
Transfer-Encoding, duplicate or malformed lengths, bare LF, obs-fold, whitespace
before a colon, control characters). The checks here cover the rest: the exact
Transfer-Encoding, a single Host, absolute-form targets, and the headers a client
must not be able to send upstream.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ._router import BadTarget, Target, normalize_host, normalize_target


class BadRequest(Exception):
    """A request Kokoa refuses; ``status`` is 400, 405, 414, 431 or 501."""

    def __init__(self, detail: str, status: int = 400) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


#: Hop-by-hop headers (RFC 9110 section 7.6.1) and their common non-standard kin.
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)

#: Headers only the gateway sets; a client's copies (any spelling) never go upstream.
GATEWAY_SET = frozenset(
    {
        b"x-forwarded-for",
        b"x-forwarded-proto",
        b"x-forwarded-host",
        b"x-forwarded-port",
        b"x-forwarded-prefix",
        b"x-real-ip",
        b"forwarded",
        b"remote-user",
        b"remote-email",
        b"remote-groups",
        b"remote-name",
    }
)

_CONNECT_METHODS = frozenset({b"CONNECT"})


@dataclass(slots=True)
class RequestHead:
    """A parsed, checked request head."""

    method: bytes
    raw_target: bytes
    version: str  # "1.0" or "1.1"
    headers: list[tuple[bytes, bytes]]
    host: str = ""  # normalized
    host_header: bytes = b""  # as sent
    target: Target | None = None
    content_length: int | None = None
    chunked: bool = False
    upgrade: bytes | None = None  # the Upgrade header's value, when asking for one
    keep_alive: bool = True
    accept: bytes | None = None
    cookie_headers: list[bytes] = field(default_factory=list)
    authorization: bytes | None = None  # the Authorization header's value (one at most)

    @property
    def has_body(self) -> bool:
        return self.chunked or bool(self.content_length)


def check_request(
    method: bytes, raw_target: bytes, version: str, headers: list[tuple[bytes, bytes]], keep_alive: bool
) -> RequestHead:
    """Check a request head as httptools parsed it; raises BadRequest."""
    head = RequestHead(method, raw_target, version, headers, keep_alive=keep_alive)
    if version not in ("1.0", "1.1"):
        raise BadRequest(f"HTTP/{version} is not supported here", 505)
    if method in _CONNECT_METHODS:
        raise BadRequest("this gateway is not a forward proxy: CONNECT is not allowed", 405)
    hosts: list[bytes] = []
    lengths: list[bytes] = []
    encodings: list[bytes] = []
    connection_tokens: set[bytes] = set()
    upgrade = None
    for name, value in headers:
        lower = name.lower()
        if lower == b"host":
            hosts.append(value)
        elif lower == b"content-length":
            lengths.append(value)
        elif lower == b"transfer-encoding":
            encodings.append(value)
        elif lower == b"connection":
            connection_tokens.update(t.strip().lower() for t in value.split(b","))
        elif lower == b"upgrade":
            upgrade = value
        elif lower == b"accept":
            head.accept = value
        elif lower == b"cookie":
            head.cookie_headers.append(value)
        elif lower == b"authorization":
            if head.authorization is not None:
                # Which one would the upstream read, which one the gate? Neither: refused.
                raise BadRequest("more than one Authorization header")
            head.authorization = value
    if lengths and encodings:
        raise BadRequest("a request must not carry both Content-Length and Transfer-Encoding")
    if len(lengths) > 1:
        raise BadRequest("more than one Content-Length")
    if lengths:
        value = lengths[0]
        if not value.isdigit() or len(value) > 18:
            raise BadRequest("malformed Content-Length")
        head.content_length = int(value)
    if encodings:
        if len(encodings) > 1 or encodings[0].strip().lower() != b"chunked":
            raise BadRequest("Transfer-Encoding other than 'chunked' is not supported")
        if version == "1.0":
            raise BadRequest("Transfer-Encoding is not allowed in HTTP/1.0")
        head.chunked = True
    if len(hosts) != 1:
        raise BadRequest("a request needs exactly one Host header" if hosts else "the Host header is missing")
    head.host_header = hosts[0]
    try:
        head.host = normalize_host(hosts[0].decode("ascii"))
        head.target = _origin_target(raw_target, head.host, method)
    except (BadTarget, UnicodeDecodeError) as e:
        raise BadRequest(str(e) if isinstance(e, BadTarget) else "the Host header is not ASCII") from None
    if upgrade is not None and b"upgrade" in connection_tokens:
        head.upgrade = upgrade
    return head


def _origin_target(raw: bytes, host: str, method: bytes) -> Target:
    if raw.startswith(b"/"):
        return normalize_target(raw)
    if raw == b"*" and method == b"OPTIONS":
        return Target("*", "/", "")
    lower = raw[:8].lower()
    if lower.startswith(b"http://") or lower.startswith(b"https://"):
        rest = raw.split(b"://", 1)[1]
        ends = [i for i in (rest.find(b"/"), rest.find(b"?")) if i >= 0]
        cut = min(ends) if ends else len(rest)
        authority, path = rest[:cut], rest[cut:] or b"/"
        if b"@" in authority:
            raise BadTarget("user information is not allowed in the request target")
        if normalize_host(authority.decode("ascii")) != host:
            raise BadTarget("the request target's host disagrees with the Host header")
        return normalize_target(path if not path.startswith(b"?") else b"/" + path)
    raise BadTarget("the request target must be a path or an absolute http(s) URL")


#: A Kokoa credential in a header value: an API key (``kk_``) or a share token (``kks_``), in any case,
#: at the start or after a space, comma, "=" or quote (``Bearer kk_...``, ``token="kk_..."``).
#: Base64 (Basic) never holds one there, nor does a JWT.
_KOKOA_TOKEN = re.compile(rb"(?:^|[\s,=\"'])kks?_", re.IGNORECASE)


def holds_kokoa_token(value: bytes) -> bool:
    """Whether a header value carries a Kokoa API key or share token (never to be forwarded)."""
    return _KOKOA_TOKEN.search(value) is not None


#: What frames or routes a message: a Connection header can never make these hop-by-hop
#: (dropping Content-Length while forwarding the body would smuggle a request).
_NEVER_CONNECTION_LISTED = frozenset({b"host", b"content-length", b"transfer-encoding"})


def connection_listed(headers: list[tuple[bytes, bytes]]) -> set[bytes]:
    """Header names listed in Connection (they are hop-by-hop too), but never the framing ones."""
    listed: set[bytes] = set()
    for name, value in headers:
        if name.lower() == b"connection":
            listed.update(t.strip().lower() for t in value.split(b",") if t.strip())
    return listed - _NEVER_CONNECTION_LISTED


def format_for(address: str) -> str:
    """An address as RFC 7239 wants it in Forwarded: IPv6 quoted and bracketed."""
    return f'"[{address}]"' if ":" in address else address


def upstream_request_head(
    head: RequestHead,
    client_address: str,
    scheme: str,
    strip_cookies: frozenset[bytes] = frozenset(),
    extra: list[tuple[bytes, bytes]] | None = None,
    drop: frozenset[bytes] = frozenset(),
    drop_prefixes: tuple[bytes, ...] = (),
    token_headers: frozenset[bytes] = frozenset(),
) -> bytes:
    """The request head sent to the target: hop-by-hop and gateway-set headers removed (and those
    in ``drop``, lowercase names, or whose name starts with one of ``drop_prefixes``; ``_`` in a
    client's header name counts as ``-``), the headers named in ``token_headers`` removed when they
    hold a Kokoa token, forwarding headers set, the body framed as received (chunked stays
    chunked)."""
    assert head.target is not None
    listed = connection_listed(head.headers)
    lines = [b"%s %s HTTP/1.1" % (head.method, head.target.forwarded.encode("ascii"))]
    for name, value in head.headers:
        lower = name.lower()
        if lower in HOP_BY_HOP or lower in listed:
            continue
        if 0x5F in lower:  # "_": many servers read "Remote_User" as "Remote-User"
            lower = lower.replace(b"_", b"-")  # (an int is found faster in bytes than b"_" is)
        if lower in GATEWAY_SET or lower in drop:
            continue
        if drop_prefixes and lower.startswith(drop_prefixes):
            continue
        if token_headers and lower in token_headers and _KOKOA_TOKEN.search(value) is not None:
            continue
        if lower == b"cookie" and strip_cookies:
            value = _without_cookies(value, strip_cookies)
            if not value:
                continue
        lines.append(name + b": " + value)
    host = head.host_header.decode("ascii")
    lines += [
        b"X-Forwarded-For: " + client_address.encode(),
        b"X-Forwarded-Proto: " + scheme.encode(),
        b"X-Forwarded-Host: " + head.host_header,
        b'Forwarded: for=%s;proto=%s;host="%s"'
        % (format_for(client_address).encode(), scheme.encode(), host.encode()),
    ]
    if extra:
        lines += [name + b": " + value for name, value in extra]
    if head.chunked:
        lines.append(b"Transfer-Encoding: chunked")
    if head.upgrade is not None:
        lines += [b"Connection: upgrade", b"Upgrade: " + head.upgrade]
    return b"\r\n".join(lines) + b"\r\n\r\n"


def _without_cookies(value: bytes, names: frozenset[bytes]) -> bytes:
    kept = [c for c in value.split(b";") if c.strip().split(b"=", 1)[0] not in names]
    return b";".join(kept).strip()


def cookie_value(head: RequestHead, name: bytes) -> str | None:
    """The value of cookie ``name`` in the request, or None."""
    for header in head.cookie_headers:
        for pair in header.split(b";"):
            key, _, value = pair.strip().partition(b"=")
            if key == name:
                try:
                    return value.decode("ascii")
                except UnicodeDecodeError:
                    return None
    return None


#: Upstream response headers the gateway does not pass to clients.
_RESPONSE_DROPPED = HOP_BY_HOP


def client_response_head(
    status: int,
    reason: bytes,
    headers: list[tuple[bytes, bytes]],
    framing: str,
    close: bool,
    extra: list[tuple[bytes, bytes]] | None = None,
) -> bytes:
    """The response head for the client. ``framing`` is "length" (the upstream's
    Content-Length passes), "chunked" (re-encoded), "none" (no body) or "close"
    (the body ends with the connection)."""
    listed = connection_listed(headers)
    lines = [b"HTTP/1.1 %d %s" % (status, reason or b"-")]
    for name, value in headers:
        lower = name.lower()
        if lower in _RESPONSE_DROPPED or lower in listed:
            continue
        if lower == b"content-length" and framing not in ("length", "none"):
            continue
        lines.append(name + b": " + value)
    if extra:
        lines += [name + b": " + value for name, value in extra]
    if framing == "chunked":
        lines.append(b"Transfer-Encoding: chunked")
    if close:
        lines.append(b"Connection: close")
    return b"\r\n".join(lines) + b"\r\n\r\n"


def switching_protocols_head(status: int, reason: bytes, headers: list[tuple[bytes, bytes]]) -> bytes:
    """A 101 response passes with its Connection and Upgrade headers (the upgrade needs them)."""
    listed = connection_listed(headers) - {b"upgrade"}
    lines = [b"HTTP/1.1 %d %s" % (status, reason or b"Switching Protocols")]
    for name, value in headers:
        lower = name.lower()
        if lower in (b"connection", b"upgrade") or not (lower in HOP_BY_HOP or lower in listed):
            lines.append(name + b": " + value)
    return b"\r\n".join(lines) + b"\r\n\r\n"
