"""Named defaults for the tunnel byte transports (all overridable by keyword arguments)."""

from __future__ import annotations

#: Request path a gateway serves WebSocket tunnels on.
DEFAULT_WEBSOCKET_PATH = "/tunnel"
#: Largest WebSocket message (and frame) sent or accepted; larger writes are split.
DEFAULT_MAX_MESSAGE_SIZE = 1024 * 1024
#: Seconds between WebSocket keepalive pings.
DEFAULT_AUTO_PING_INTERVAL = 20.0
#: Seconds to wait for the pong before dropping the connection.
DEFAULT_AUTO_PING_TIMEOUT = 10.0
#: Seconds allowed for the WebSocket opening handshake (after TCP and TLS).
DEFAULT_OPEN_HANDSHAKE_TIMEOUT = 10.0
#: Seconds allowed for the TLS handshake once TCP is connected.
DEFAULT_TLS_HANDSHAKE_TIMEOUT = 15.0
#: Seconds allowed for the TCP connection (per address tried).
DEFAULT_CONNECT_TIMEOUT = 30.0
