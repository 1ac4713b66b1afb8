"""Helpers for the transport tests: recording protocols and servers on 127.0.0.1, port 0."""

from __future__ import annotations

import socket
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IPushProducer
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import deferLater
from zope.interface import implementer

from kokoa.transports import WebSocketStreamTransport, tls_server_factory, websocket_server_factory


async def within(d: Deferred, seconds: float = 10.0) -> Any:
    """Await `d`, failing with TimeoutError instead of hanging the test run."""
    return await d.addTimeout(seconds, reactor)


async def sleep(seconds: float) -> None:
    await deferLater(reactor, seconds, lambda: None)


async def until(predicate, seconds: float = 10.0, what: str = "condition") -> None:
    """Poll `predicate` until it holds."""
    for _ in range(int(seconds / 0.02)):
        if predicate():
            return
        await sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


class Recorder(Protocol):
    """Records everything that happens to it."""

    def __init__(self) -> None:
        self.made = 0
        self.received = bytearray()
        self.chunks: list[int] = []
        self.lost: list = []
        self.lost_d: Deferred = Deferred()
        self._waiters: list[tuple[int, Deferred]] = []

    def connectionMade(self) -> None:
        self.made += 1
        notify = getattr(getattr(self, "factory", None), "connected", None)
        if notify is not None:
            notify(self)

    def dataReceived(self, data: bytes) -> None:
        self.received += data
        self.chunks.append(len(data))
        ready = [(n, d) for n, d in self._waiters if len(self.received) >= n]
        for item in ready:
            self._waiters.remove(item)
            item[1].callback(bytes(self.received))

    def connectionLost(self, reason) -> None:
        self.lost.append(reason)
        if not self.lost_d.called:
            self.lost_d.callback(None)

    def wait_for(self, size: int) -> Deferred:
        """Fires with all data received so far once at least `size` bytes arrived."""
        d: Deferred = Deferred()
        if len(self.received) >= size:
            d.callback(bytes(self.received))
        else:
            self._waiters.append((size, d))
        return d


class Echo(Recorder):
    def dataReceived(self, data: bytes) -> None:
        super().dataReceived(data)
        self.transport.write(data)


class SlowReader(Recorder):
    """Stops reading as soon as it is connected."""

    def connectionMade(self) -> None:
        super().connectionMade()
        self.transport.pauseProducing()


@implementer(IPushProducer)
class Firehose(Recorder):
    """Writes as fast as its transport lets it: a streaming producer on its own transport."""

    CHUNK = b"x" * 65536
    SAFETY_LIMIT = 256 * 1024 * 1024  # stop here if backpressure does not work

    def __init__(self) -> None:
        super().__init__()
        self.written = 0
        self.limit: int | None = None
        self.paused = False
        self.pauses = 0
        self.resumes = 0
        self._call = None

    def connectionMade(self) -> None:
        super().connectionMade()
        self.transport.registerProducer(self, True)
        self._schedule()

    def _schedule(self) -> None:
        if self._call is None and not self.lost:
            self._call = reactor.callLater(0, self._pump)

    def _pump(self) -> None:
        self._call = None
        limit = self.SAFETY_LIMIT if self.limit is None else min(self.limit, self.SAFETY_LIMIT)
        while not self.paused and not self.lost and self.written < limit:
            self.transport.write(self.CHUNK)
            self.written += len(self.CHUNK)

    def pauseProducing(self) -> None:
        self.paused = True
        self.pauses += 1

    def resumeProducing(self) -> None:
        self.paused = False
        self.resumes += 1
        self._schedule()

    def stopProducing(self) -> None:
        self.paused = True

    def connectionLost(self, reason) -> None:
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None
        super().connectionLost(reason)


class CountingFactory(Factory):
    """Builds `protocol_class` instances and keeps them; `first` fires with the first connected."""

    def __init__(self, protocol_class: type[Protocol] = Echo) -> None:
        self.protocol_class = protocol_class
        self.built: list = []
        self.first: Deferred = Deferred()

    def buildProtocol(self, addr):
        p = self.protocol_class()
        p.factory = self
        self.built.append(p)
        return p

    def connected(self, p) -> None:
        if not self.first.called:
            self.first.callback(p)


def wrap_server(kind: str, inner: Factory, creds, **options):
    if kind == "tls":
        return tls_server_factory(inner, creds, **options)
    return websocket_server_factory(inner, creds if kind == "wss" else None, **options)


def listen(factory):
    return reactor.listenTCP(0, factory, interface="127.0.0.1")


def url_for(kind: str, port: int, host: str = "127.0.0.1", path: str = "/tunnel") -> str:
    if kind == "tls":
        return f"tls:{host}:{port}"
    return f"{kind}://{host}:{port}{path}"


def tcp_transport(transport):
    """The TCP transport under a tunnel transport (through WebSocket and TLS layers)."""
    if isinstance(transport, WebSocketStreamTransport):
        transport = transport._ws.transport
    while hasattr(transport, "wrappedProtocol"):  # TLSMemoryBIOProtocol
        transport = transport.transport
    return transport


def nodelay(transport) -> bool:
    sock = tcp_transport(transport).getHandle()
    return bool(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))


class RawHTTP(Protocol):
    """Sends one request and collects the response head."""

    def __init__(self, request: bytes) -> None:
        self.request = request
        self.data = b""
        self.done: Deferred = Deferred()
        self.closed: Deferred = Deferred()

    def connectionMade(self) -> None:
        self.transport.write(self.request)

    def dataReceived(self, data: bytes) -> None:
        self.data += data
        if b"\r\n\r\n" in self.data and not self.done.called:
            self.done.callback(self.data.split(b"\r\n\r\n")[0].decode("latin-1"))
            self.transport.loseConnection()

    def connectionLost(self, reason) -> None:
        if not self.done.called:
            self.done.callback(self.data.decode("latin-1"))
        self.closed.callback(None)


def upgrade_request(port: int, path: str = "/tunnel", origin: str | None = None) -> bytes:
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: 127.0.0.1:{port}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version: 13",
    ]
    if origin is not None:
        lines.append(f"Origin: {origin}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()
