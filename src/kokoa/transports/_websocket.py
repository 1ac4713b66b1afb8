"""WebSocket (ws/wss) server side for the gateway; autobahn is imported only when used."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from twisted.protocols.tls import TLSMemoryBIOFactory

from ._defaults import (
    DEFAULT_AUTO_PING_INTERVAL,
    DEFAULT_AUTO_PING_TIMEOUT,
    DEFAULT_MAX_MESSAGE_SIZE,
    DEFAULT_OPEN_HANDSHAKE_TIMEOUT,
    DEFAULT_TLS_HANDSHAKE_TIMEOUT,
    DEFAULT_WEBSOCKET_PATH,
)
from ._tls import AfterTLSHandshakeFactory, server_context_factory

if TYPE_CHECKING:
    from twisted.internet.interfaces import IProtocolFactory, IReactorTime

    from kokoa.pki import ServerCredentials

_DEFAULT_PORTS = {"http": 80, "https": 443}


def canonical_origin(origin: str) -> str:
    """An Origin as the server compares it: ``scheme://host:port`` (default port filled in)."""
    parts = urlsplit(origin.strip())
    scheme = parts.scheme.lower()
    if not scheme or not parts.hostname or "*" in origin or parts.path not in ("", "/"):
        raise ValueError(
            f"invalid allowed origin {origin!r}: expected scheme://host[:port], e.g. https://console.example.com"
        )
    port = parts.port if parts.port is not None else _DEFAULT_PORTS.get(scheme)
    return f"{scheme}://{parts.hostname}:{port}"


def websocket_server_factory(
    inner_factory: IProtocolFactory,
    creds: ServerCredentials | None,
    path: str = DEFAULT_WEBSOCKET_PATH,
    *,
    allowed_origins: Iterable[str] = (),
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    auto_ping_interval: float = DEFAULT_AUTO_PING_INTERVAL,
    auto_ping_timeout: float = DEFAULT_AUTO_PING_TIMEOUT,
    open_handshake_timeout: float = DEFAULT_OPEN_HANDSHAKE_TIMEOUT,
    tls_handshake_timeout: float | None = DEFAULT_TLS_HANDSHAKE_TIMEOUT,
    reactor: IReactorTime | None = None,
) -> IProtocolFactory:
    """A factory for a plain ``tcp:`` server endpoint serving WebSocket tunnels (wss with `creds`).

    Only `path` is served (others get 404). A request carrying an Origin header is refused
    unless that origin is in `allowed_origins` (edges send none). Per-message compression is
    never accepted; messages and frames above `max_message_size` close the connection.
    TCP_NODELAY is set on every accepted socket.
    """
    if not path.startswith("/"):
        raise ValueError(f"WebSocket path must start with '/', not {path!r}")
    if max_message_size < 1:
        raise ValueError("max_message_size must be positive")
    if reactor is None:
        from twisted.internet import reactor as _reactor

        reactor = _reactor  # type: ignore[assignment]
    from ._ws_protocols import TunnelWebSocketServerFactory

    ws_factory = TunnelWebSocketServerFactory(
        inner_factory,
        path=path,
        allowed_origins=[canonical_origin(o) for o in allowed_origins],
        max_message_size=max_message_size,
        auto_ping_interval=auto_ping_interval,
        auto_ping_timeout=auto_ping_timeout,
        open_handshake_timeout=open_handshake_timeout,
        reactor=reactor,
    )
    if creds is None:
        return ws_factory
    gate = AfterTLSHandshakeFactory(ws_factory, reactor, tls_handshake_timeout)
    return TLSMemoryBIOFactory(server_context_factory(creds), False, gate, clock=reactor)
