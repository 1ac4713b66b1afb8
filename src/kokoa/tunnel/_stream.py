"""A tunnel stream, seen by the application as an ordinary Twisted transport."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING

from twisted.internet import error
from twisted.internet.interfaces import (
    IAddress,
    IConsumer,
    IHalfCloseableProtocol,
    IProtocol,
    IPushProducer,
    ITransport,
)
from twisted.python.failure import Failure
from zope.interface import implementer

from kokoa.wire import ErrorCode, ProtocolError, StreamState

if TYPE_CHECKING:
    from ._protocol import TunnelProtocol


@implementer(IAddress)
@dataclass(frozen=True)
class TunnelAddress:
    """Where a stream leads: a tunnel stream and, when known, the real client."""

    stream_id: int
    peer: str  # the tunnel's peer ("site-id" on the gateway, "gateway" on the edge)
    client: str | None = None  # "ip:port" of the user, carried in the stream metadata

    def __str__(self) -> str:
        return f"{self.peer}#{self.stream_id}" + (f" ({self.client})" if self.client else "")


class StreamReset(error.ConnectionLost):
    """The stream was reset (by the peer or by us) with a wire error code."""

    def __init__(self, code: int, reason: str, by_peer: bool = True) -> None:
        self.code = code
        self.reason = reason
        self.by_peer = by_peer
        who = "peer" if by_peer else "local side"
        super().__init__(f"stream reset by {who}: {ErrorCode.describe(code)}: {reason}")


@implementer(ITransport, IConsumer, IPushProducer)
class TunnelStream:
    """One multiplexed stream: a full-duplex, half-closeable, flow-controlled transport.

    Inbound data is delivered to the protocol unless reading is paused, and the
    peer's window is credited only once the protocol has taken it. Outbound
    writes are queued in the session and sent as the peer's window allows; a
    registered producer is paused while the queue is above ``max_send_buffer``.
    """

    def __init__(self, tunnel: TunnelProtocol, stream_id: int, metadata: dict) -> None:
        self.tunnel = tunnel
        self.stream_id = stream_id
        self.metadata = metadata
        self.protocol: IProtocol | None = None
        self.connected = False
        self.disconnected = False
        self.disconnecting = False  # loseConnection() called
        self._reading_paused = False
        self._inbound: deque[bytes] = deque()
        self._inbound_bytes = 0
        self._ended = False  # the peer sent FIN
        self.read_closed = False
        self._producer = None
        self._streaming = True
        self._producer_paused = False
        self.write_closed = False

    # ----------------------------------------------------------- wiring

    def attach(self, protocol: IProtocol) -> None:
        """Connect ``protocol`` to this stream (calls its makeConnection)."""
        self.protocol = protocol
        self.connected = True
        protocol.makeConnection(self)
        self._deliver()

    # ----------------------------------------------------------- ITransport

    def write(self, data: bytes) -> None:
        if self.disconnected or self.write_closed or not data:
            return
        try:
            self.tunnel.connection.send_data(self.stream_id, data)
        except ProtocolError:
            return  # the stream is already gone; connectionLost follows
        self.tunnel.stream_wrote(self)

    def writeSequence(self, data) -> None:
        self.write(b"".join(data))

    def loseWriteConnection(self) -> None:
        """Half-close: send FIN after the queued data; reading goes on."""
        if self.disconnected or self.write_closed:
            return
        self.write_closed = True
        try:
            self.tunnel.connection.end_stream(self.stream_id)
        except ProtocolError:
            return
        self.tunnel.stream_wrote(self)

    def loseConnection(self) -> None:
        """Close after the queued data is sent; the peer sees FIN, then a reset
        (CANCEL) if it had not finished sending either."""
        if self.disconnected or self.disconnecting:
            return
        self.disconnecting = True
        self._reading_paused = True  # nothing more for the protocol
        self.loseWriteConnection()
        self.tunnel.stream_closing(self)

    def abortConnection(self) -> None:
        self.reset(ErrorCode.CANCEL, "aborted")

    def reset(self, code: int, reason: str) -> None:
        """Abort in both directions with a wire error code and a reason."""
        if self.disconnected:
            return
        self.tunnel.connection.reset_stream(self.stream_id, code, reason)
        self.tunnel.flush()
        self.closed(Failure(StreamReset(code, reason, by_peer=False)))

    def getPeer(self) -> TunnelAddress:
        return TunnelAddress(self.stream_id, self.tunnel.peer_name, self.metadata.get("client"))

    def getHost(self) -> TunnelAddress:
        return TunnelAddress(self.stream_id, self.tunnel.local_name)

    # ----------------------------------------------------------- IConsumer

    def registerProducer(self, producer, streaming: bool) -> None:
        if self._producer is not None:
            raise RuntimeError("a producer is already registered")
        self._producer = producer
        self._streaming = streaming
        self._producer_paused = False
        if self.disconnected:
            producer.stopProducing()
        elif not streaming:
            producer.resumeProducing()

    def unregisterProducer(self) -> None:
        self._producer = None

    # ----------------------------------------------------------- IPushProducer (reading)

    def pauseProducing(self) -> None:
        self._reading_paused = True

    def resumeProducing(self) -> None:
        if self.disconnecting:
            return
        self._reading_paused = False
        self._deliver()

    def stopProducing(self) -> None:
        """What a TCP transport does: close (gracefully: queued data still goes)."""
        self.loseConnection()

    # ----------------------------------------------------------- called by the tunnel

    @property
    def buffered_inbound(self) -> int:
        """Bytes received but not yet taken by the protocol (bounded by the window)."""
        return self._inbound_bytes

    def data_received(self, data: bytes) -> None:
        if self.disconnecting:
            # Closing: the protocol wants no more, but keep the peer's window open.
            self.tunnel.connection.acknowledge_data(self.stream_id, len(data))
            return
        self._inbound.append(data)
        self._inbound_bytes += len(data)
        self._deliver()

    def ended(self) -> None:
        self._ended = True
        self._deliver()

    def closed(self, reason: Failure) -> None:
        """The stream is gone in both directions."""
        if self.disconnected:
            return
        self.disconnected = True
        self.connected = False
        self.tunnel.stream_gone(self)
        producer, self._producer = self._producer, None
        if producer is not None:
            producer.stopProducing()
        protocol, self.protocol = self.protocol, None
        if protocol is not None:
            protocol.connectionLost(reason)

    def send_buffer_changed(self, buffered: int, limit: int) -> None:
        """Pause the registered producer above ``limit`` queued bytes, resume below half."""
        producer = self._producer
        if producer is None:
            return
        if buffered > limit and not self._producer_paused and self._streaming:
            self._producer_paused = True
            producer.pauseProducing()
        elif buffered <= limit // 2:
            if self._producer_paused:
                self._producer_paused = False
                producer.resumeProducing()
            elif not self._streaming:
                producer.resumeProducing()

    def _deliver(self) -> None:
        protocol = self.protocol
        if protocol is None:
            return
        connection = self.tunnel.connection
        while self._inbound and not self._reading_paused and not self.disconnected:
            data = self._inbound.popleft()
            self._inbound_bytes -= len(data)
            protocol.dataReceived(data)
            connection.acknowledge_data(self.stream_id, len(data))
        if self._inbound or self.read_closed or not self._ended or self.disconnected:
            self.tunnel.flush()
            return
        self.read_closed = True
        half_closeable = IHalfCloseableProtocol(protocol, None)
        if half_closeable is not None and not self.disconnecting:
            half_closeable.readConnectionLost()
        elif connection.stream_state(self.stream_id) is not StreamState.CLOSED:
            self.loseConnection()
        self.tunnel.stream_read_closed(self)
        self.tunnel.flush()
