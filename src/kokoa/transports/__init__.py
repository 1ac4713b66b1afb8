"""How tunnel bytes travel between an edge and a gateway: TLS over TCP, or WebSocket (wss).

The tunnel protocol is an ordinary Twisted protocol; it gets a transport that behaves the
same over either (ITransport, IConsumer, IPushProducer, TCP_NODELAY underneath).

Edge::

    endpoint = client_endpoint(reactor, "wss://gw.example.com/tunnel", Trust(ca_file="ca.pem"))
    protocol = await endpoint.connect(factory)

Gateway::

    serverFromString(reactor, "tcp:8443").listen(tls_server_factory(factory, creds))
    serverFromString(reactor, "tcp:443").listen(websocket_server_factory(factory, creds))
"""

from ._adapter import WebSocketStreamTransport
from ._client import TunnelClientEndpoint, client_endpoint
from ._defaults import (
    DEFAULT_AUTO_PING_INTERVAL,
    DEFAULT_AUTO_PING_TIMEOUT,
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_MAX_MESSAGE_SIZE,
    DEFAULT_OPEN_HANDSHAKE_TIMEOUT,
    DEFAULT_TLS_HANDSHAKE_TIMEOUT,
    DEFAULT_WEBSOCKET_PATH,
)
from ._errors import CertificateFingerprintMismatch, HandshakeTimeout, WebSocketHandshakeError
from ._tls import set_tcp_nodelay, tls_server_factory
from ._trust import Trust
from ._url import ACCEPTED_FORMS, GatewayAddress, parse_gateway_url
from ._websocket import canonical_origin, websocket_server_factory

__all__ = [
    "ACCEPTED_FORMS",
    "DEFAULT_AUTO_PING_INTERVAL",
    "DEFAULT_AUTO_PING_TIMEOUT",
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_MAX_MESSAGE_SIZE",
    "DEFAULT_OPEN_HANDSHAKE_TIMEOUT",
    "DEFAULT_TLS_HANDSHAKE_TIMEOUT",
    "DEFAULT_WEBSOCKET_PATH",
    "CertificateFingerprintMismatch",
    "GatewayAddress",
    "HandshakeTimeout",
    "Trust",
    "TunnelClientEndpoint",
    "WebSocketHandshakeError",
    "WebSocketStreamTransport",
    "canonical_origin",
    "client_endpoint",
    "parse_gateway_url",
    "set_tcp_nodelay",
    "tls_server_factory",
    "websocket_server_factory",
]
