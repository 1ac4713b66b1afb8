"""The Twisted side of the tunnel: a protocol driving kokoa.wire, streams as transports."""

from ._protocol import (
    DEFAULT_HANDSHAKE_TIMEOUT,
    DEFAULT_PING_INTERVAL,
    DEFAULT_PING_TIMEOUT,
    ITunnelHandler,
    Refusal,
    TunnelProtocol,
)
from ._relay import RelaySide, pair
from ._stream import StreamReset, TunnelAddress, TunnelStream

__all__ = [
    "DEFAULT_HANDSHAKE_TIMEOUT",
    "DEFAULT_PING_INTERVAL",
    "DEFAULT_PING_TIMEOUT",
    "ITunnelHandler",
    "Refusal",
    "RelaySide",
    "StreamReset",
    "TunnelAddress",
    "TunnelProtocol",
    "TunnelStream",
    "pair",
]
