"""Relay bytes between two transports, with backpressure and half-close both ways.

The shape of ``twisted.protocols.portforward``: each side writes what it reads
into the other and is registered as the other's push producer, so a slow
reader pauses the fast writer instead of filling memory.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

from twisted.internet import error
from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure
from zope.interface import implementer


@implementer(IHalfCloseableProtocol)
class RelaySide(Protocol):
    """One end of a relay; ``pair()`` makes two that feed each other."""

    def __init__(
        self,
        name: str,
        on_closed: Callable[[RelaySide, Failure], None] | None = None,
        on_connected: Callable[[RelaySide], None] | None = None,
    ) -> None:
        self.name = name
        self.other: RelaySide | None = None
        self.on_closed = on_closed
        self.on_connected = on_connected
        self.read_done = False
        self.closed = False
        self.bytes_in = 0
        self.coupled = False
        self._pending: list[bytes] = []  # read before the other side was connected

    def connectionMade(self) -> None:
        set_nodelay = getattr(self.transport, "setTcpNoDelay", None)  # TCP sockets (not streams)
        if set_nodelay is not None:
            with contextlib.suppress(OSError):  # not TCP after all (a UNIX socket)
                set_nodelay(True)  # relayed small writes must not wait for Nagle
        if self.on_connected is not None:
            self.on_connected(self)
        other = self.other
        if other is not None and other.closed:
            self.transport.loseConnection()  # the other side went away while we connected
        elif other is not None and other.transport is not None and not other.coupled:
            _couple(self, other)

    def dataReceived(self, data: bytes) -> None:
        self.bytes_in += len(data)
        other = self.other
        if other is None or other.transport is None:
            self._pending.append(data)
            self.transport.pauseProducing()
            return
        other.transport.write(data)

    def readConnectionLost(self) -> None:
        """Our peer sent FIN: pass it on, and close once both directions are done."""
        self.read_done = True
        other = self.other
        if other is not None and other.transport is not None:
            # We produce nothing more for the other side; a transport with a
            # registered producer would otherwise wait for it before closing.
            other.transport.unregisterProducer()
            lose_write = getattr(other.transport, "loseWriteConnection", None)
            if lose_write is not None:
                lose_write()
            else:
                other.transport.loseConnection()
            if other.read_done:
                self.transport.loseConnection()
                other.transport.loseConnection()

    def writeConnectionLost(self) -> None:
        pass

    def connectionLost(self, reason: Failure) -> None:
        self.closed = True
        other = self.other
        if other is not None and other.transport is not None and not other.closed:
            other.transport.unregisterProducer()
            if reason.check(error.ConnectionDone):
                other.transport.loseConnection()
            else:
                other.transport.abortConnection()  # an error here is an error there
        if self.on_closed is not None:
            self.on_closed(self, reason)


def _couple(a: RelaySide, b: RelaySide) -> None:
    """Both transports are up: flush what waited, make each the other's producer."""
    a.coupled = b.coupled = True
    a.transport.registerProducer(b.transport, True)
    b.transport.registerProducer(a.transport, True)
    for side, other in ((a, b), (b, a)):
        if side._pending:
            other.transport.write(b"".join(side._pending))
            side._pending.clear()
        side.transport.resumeProducing()


def pair(name_a: str, name_b: str, on_closed=None, on_connected=None) -> tuple[RelaySide, RelaySide]:
    """Two relay sides that forward to each other once both are connected."""
    a, b = RelaySide(name_a, on_closed, on_connected), RelaySide(name_b, on_closed)
    a.other, b.other = b, a
    return a, b
