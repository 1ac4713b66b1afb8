"""Events that :meth:`Connection.receive_data` returns."""

from __future__ import annotations

from dataclasses import dataclass, field


class Event:
    """Base class of everything the connection reports."""

    __slots__ = ()


@dataclass(slots=True)
class HelloReceived(Event):
    """Server side: the peer asks to start a session. Answer with accept() or reject()."""

    version: int  # the version that accept() will select
    hello: dict = field(repr=False)  # the peer's HELLO, credentials included


@dataclass(slots=True)
class HandshakeCompleted(Event):
    """The session is open: ``version`` was agreed, ``info`` is what the other side said."""

    version: int
    info: dict


@dataclass(slots=True)
class StreamOpened(Event):
    stream_id: int
    metadata: dict
    fin: bool = False


@dataclass(slots=True)
class DataReceived(Event):
    """Stream data. Call acknowledge_data() once the application has consumed it."""

    stream_id: int
    data: bytes


@dataclass(slots=True)
class StreamEnded(Event):
    """The peer half-closed the stream: it sends no more data."""

    stream_id: int


@dataclass(slots=True)
class StreamReset(Event):
    """The stream is gone in both directions. ``by_peer`` is False when we refused it."""

    stream_id: int
    code: int
    reason: str
    by_peer: bool = True


@dataclass(slots=True)
class DatagramReceived(Event):
    stream_id: int
    data: bytes


@dataclass(slots=True)
class ControlReceived(Event):
    message: dict


@dataclass(slots=True)
class PingAcknowledged(Event):
    rtt: float


@dataclass(slots=True)
class GoAwayReceived(Event):
    """The peer drains: it accepts no stream above ``last_stream_id``."""

    last_stream_id: int
    code: int
    message: str


@dataclass(slots=True)
class ConnectionTerminated(Event):
    """The session is over; close the transport once data_to_send() is written."""

    code: int
    message: str
    by_peer: bool
