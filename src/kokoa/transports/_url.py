"""Gateway addresses as an edge is given them: ``tls:HOST:PORT`` or ``wss://HOST[:PORT]/PATH``."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from ._defaults import DEFAULT_WEBSOCKET_PATH

TransportKind = Literal["tls", "wss", "ws"]

ACCEPTED_FORMS = (
    "tls:HOST:PORT (or tls://HOST:PORT), wss://HOST[:PORT][/PATH] (default port 443, path "
    f"{DEFAULT_WEBSOCKET_PATH}), or ws://HOST[:PORT][/PATH] (plain, for tests only); "
    "IPv6 addresses go in brackets, e.g. tls:[2001:db8::1]:8443"
)


@dataclass(frozen=True)
class GatewayAddress:
    """Where and how an edge reaches a gateway."""

    kind: TransportKind
    host: str  # hostname or IP literal, without brackets
    port: int
    path: str | None = None  # WebSocket request path; None for tls

    @property
    def secure(self) -> bool:
        """True when the bytes travel inside TLS."""
        return self.kind != "ws"

    @property
    def is_websocket(self) -> bool:
        return self.kind in ("ws", "wss")

    @property
    def netloc(self) -> str:
        """HOST:PORT with IPv6 literals bracketed."""
        return f"{_bracket(self.host)}:{self.port}"

    def __str__(self) -> str:
        if self.kind == "tls":
            return f"tls:{self.netloc}"
        return f"{self.kind}://{self.netloc}{self.path}"


def parse_gateway_url(url: str) -> GatewayAddress:
    """Parse a gateway address; ValueError names the accepted forms."""
    if not isinstance(url, str):
        raise TypeError(f"gateway URL must be a string, not {type(url).__name__}")
    text = url.strip()
    lowered = text.lower()
    if lowered.startswith("tls://"):
        return _parse_tls(url, text[len("tls://") :])
    if lowered.startswith("tls:"):
        return _parse_tls(url, text[len("tls:") :])
    if lowered.startswith(("wss://", "ws://")):
        return _parse_websocket(url, text)
    raise ValueError(f"unsupported gateway URL {url!r}: use {ACCEPTED_FORMS}")


def _bad(url: str, why: str) -> ValueError:
    return ValueError(f"invalid gateway URL {url!r}: {why}; use {ACCEPTED_FORMS}")


def _parse_tls(url: str, rest: str) -> GatewayAddress:
    rest = rest.rstrip("/")
    if "/" in rest or "?" in rest or "#" in rest or "@" in rest:
        raise _bad(url, "a tls: address is only HOST:PORT")
    if rest.startswith("["):
        host, sep, port_text = rest[1:].partition("]")
        if not sep or not port_text.startswith(":"):
            raise _bad(url, "expected tls:[IPv6]:PORT")
        port_text = port_text[1:]
        _require_ipv6(url, host)
    else:
        host, sep, port_text = rest.rpartition(":")
        if not sep:
            raise _bad(url, "a tls: address needs a port")
        if ":" in host:
            raise _bad(url, "put IPv6 addresses in brackets")
    return GatewayAddress("tls", _check_host(url, host), _check_port(url, port_text))


def _parse_websocket(url: str, text: str) -> GatewayAddress:
    try:
        parts = urlsplit(text)
    except ValueError as e:
        raise _bad(url, str(e)) from None
    kind: TransportKind = "wss" if parts.scheme.lower() == "wss" else "ws"
    if parts.query or parts.fragment or text.endswith(("?", "#")):
        raise _bad(url, "no query or fragment allowed")
    if parts.username is not None or parts.password is not None:
        raise _bad(url, "no user or password allowed")
    netloc = parts.netloc
    if netloc.startswith("["):
        host, _, after = netloc[1:].partition("]")
        _require_ipv6(url, host)
        port_text = after[1:] if after.startswith(":") else after
        if after and not after.startswith(":"):
            raise _bad(url, "bad text after the IPv6 address")
    else:
        host, sep, port_text = netloc.rpartition(":")
        if not sep:
            host, port_text = netloc, ""
        if ":" in host:
            raise _bad(url, "put IPv6 addresses in brackets")
    port = _check_port(url, port_text) if port_text else (443 if kind == "wss" else 80)
    path = parts.path or DEFAULT_WEBSOCKET_PATH
    return GatewayAddress(kind, _check_host(url, host), port, path)


def _check_host(url: str, host: str) -> str:
    if not host:
        raise _bad(url, "missing host")
    if any(c.isspace() for c in host) or any(c in host for c in "/?#@[]"):
        raise _bad(url, f"bad host {host!r}")
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return host.lower().rstrip(".")


def _check_port(url: str, text: str) -> int:
    if not (text.isascii() and text.isdigit()) or not 0 < int(text) < 65536:
        raise _bad(url, f"port must be 1-65535, not {text!r}")
    return int(text)


def _require_ipv6(url: str, host: str) -> None:
    try:
        ipaddress.IPv6Address(host)
    except ValueError:
        raise _bad(url, f"{host!r} in brackets is not an IPv6 address") from None


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host else host
