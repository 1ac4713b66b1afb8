"""A byte-stream Twisted transport over a WebSocket connection (no autobahn import here)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from twisted.internet.interfaces import IConsumer, IPushProducer, ITransport
from zope.interface import implementer

if TYPE_CHECKING:
    from twisted.internet.interfaces import IAddress


@implementer(ITransport, IConsumer, IPushProducer)
class WebSocketStreamTransport:
    """What the inner protocol sees as its transport when the tunnel runs over WebSocket.

    Writes go out as binary messages of at most `max_message_size` bytes. Producer calls,
    both ways, go straight to the TCP (or TLS) transport under the WebSocket, so a full
    socket buffer pauses the inner protocol and a paused inner protocol stops the reads.
    """

    def __init__(self, websocket: Any, max_message_size: int) -> None:
        if max_message_size < 1:
            raise ValueError("max_message_size must be positive")
        self._ws = websocket
        self._max = max_message_size
        self.disconnecting = False
        self.aborted = False

    @property
    def connected(self) -> bool:
        return self._ws.state == self._ws.STATE_OPEN and not self.disconnecting

    # ITransport

    def write(self, data: bytes) -> None:
        ws = self._ws
        if self.disconnecting or ws.state != ws.STATE_OPEN or not data:
            return
        if type(data) is not bytes:
            data = bytes(data)
        size, limit = len(data), self._max
        if size <= limit:
            ws.sendMessage(data, isBinary=True)
            return
        view = memoryview(data)
        for start in range(0, size, limit):
            ws.sendMessage(bytes(view[start : start + limit]), isBinary=True)

    def writeSequence(self, data) -> None:
        self.write(b"".join(data))

    def loseConnection(self) -> None:
        """Start the WebSocket closing handshake (after anything already written)."""
        if self.disconnecting:
            return
        self.disconnecting = True
        ws = self._ws
        if ws.state == ws.STATE_OPEN:
            ws.sendClose(code=1000)

    def abortConnection(self) -> None:
        """Drop the connection at once, discarding unsent data."""
        self.disconnecting = True
        self.aborted = True
        self._ws.transport.abortConnection()

    def getPeer(self) -> IAddress:
        return self._ws.transport.getPeer()

    def getHost(self) -> IAddress:
        return self._ws.transport.getHost()

    # IConsumer: the inner protocol is paused when the socket buffer fills.

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        self._ws.transport.registerProducer(producer, streaming)

    def unregisterProducer(self) -> None:
        self._ws.transport.unregisterProducer()

    # IPushProducer: the inner protocol can stop the reads.

    def pauseProducing(self) -> None:
        self._ws.transport.pauseProducing()

    def resumeProducing(self) -> None:
        self._ws.transport.resumeProducing()

    def stopProducing(self) -> None:
        self._ws.transport.stopProducing()

    def __repr__(self) -> str:
        return f"<WebSocketStreamTransport peer={self.getPeer()!r}>"
