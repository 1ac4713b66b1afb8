"""The Kokoa tunnel protocol, sans-IO: no sockets, no reactor, no threads.

A :class:`Connection` turns received bytes into events and the application's
calls into bytes to send. ``docs/protocol.md`` specifies the format.
"""

from ._connection import HANDSHAKE_VERSION, SUPPORTED_VERSIONS, Connection, Role, SessionState
from ._errors import ErrorCode, ProtocolError
from ._events import (
    ConnectionTerminated,
    ControlReceived,
    DatagramReceived,
    DataReceived,
    Event,
    GoAwayReceived,
    HandshakeCompleted,
    HelloReceived,
    PingAcknowledged,
    StreamEnded,
    StreamOpened,
    StreamReset,
)
from ._frames import HEADER_SIZE, PREFACE, Frame, FrameDecoder, FrameType, encode_frame
from ._settings import KiB, Limits, MiB, PeerSettings
from ._streams import TRANSITIONS, Action, StreamInput, StreamState, transition

__all__ = [
    "HANDSHAKE_VERSION",
    "HEADER_SIZE",
    "PREFACE",
    "SUPPORTED_VERSIONS",
    "TRANSITIONS",
    "Action",
    "Connection",
    "ConnectionTerminated",
    "ControlReceived",
    "DataReceived",
    "DatagramReceived",
    "ErrorCode",
    "Event",
    "Frame",
    "FrameDecoder",
    "FrameType",
    "GoAwayReceived",
    "HandshakeCompleted",
    "HelloReceived",
    "KiB",
    "Limits",
    "MiB",
    "PeerSettings",
    "PingAcknowledged",
    "ProtocolError",
    "Role",
    "SessionState",
    "StreamEnded",
    "StreamInput",
    "StreamOpened",
    "StreamReset",
    "StreamState",
    "encode_frame",
    "transition",
]
