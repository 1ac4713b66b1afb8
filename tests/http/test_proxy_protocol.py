"""proxy_protocol_factory over real loopback sockets: v1, v2, untrusted peers, bad headers, timeouts."""

from __future__ import annotations

import ipaddress
import struct

import pytest_twisted as pt
from twisted.internet import defer, endpoints, reactor, task
from twisted.internet.protocol import ClientFactory, Factory, Protocol
from twisted.logger import globalLogPublisher
from twisted.protocols.haproxy._v2parser import V2Parser

from kokoa.http._client_address import TrustedProxies, proxy_protocol_factory

LOCALHOST = TrustedProxies(["127.0.0.1"])
WAIT = 5.0  # seconds before a wait in a test gives up
V1 = b"PROXY TCP4 203.0.113.7 10.0.0.1 51234 443\r\n"


def v2_header(
    source: str, destination: str, sport: int, dport: int, command: int = 1, tlv: bytes = b""
) -> bytes:
    """A binary v2 header: PROXY (1) or LOCAL (0), TCP over IPv4 or IPv6."""
    src, dst = ipaddress.ip_address(source), ipaddress.ip_address(destination)
    family = 0x11 if src.version == 4 else 0x21
    body = src.packed + dst.packed + struct.pack("!HH", sport, dport) + tlv
    return V2Parser.PREFIX + struct.pack("!BBH", 0x20 | command, family, len(body)) + body


class PeerEcho(Protocol):
    """Says who it thinks the peer is, then echoes."""

    def connectionMade(self) -> None:
        peer, host = self.transport.getPeer(), self.transport.getHost()
        self.factory.peers.append((peer.host, peer.port))
        self.factory.hosts.append((host.host, host.port))
        self.transport.write(f"{peer.host} {peer.port}\n".encode())

    def dataReceived(self, data: bytes) -> None:
        self.transport.write(data)


class RecordingFactory(Factory):
    protocol = PeerEcho

    def __init__(self) -> None:
        self.built: list[tuple[str, int]] = []
        self.peers: list[tuple[str, int]] = []
        self.hosts: list[tuple[str, int]] = []

    def buildProtocol(self, addr):
        self.built.append((addr.host, addr.port))
        return super().buildProtocol(addr)


class RawClient(Protocol):
    """Sends its chunks (a pause between them), collects what comes back, notes the close."""

    def __init__(self, chunks: list[bytes], pause: float = 0.0) -> None:
        self.chunks = chunks
        self.pause = pause
        self.received = b""
        self.lost = False
        self._closed: list[defer.Deferred[None]] = []
        self.waiting: tuple[int, defer.Deferred[bytes]] | None = None
        self.sender: defer.Deferred | None = None

    def connectionMade(self) -> None:
        self.sender = defer.ensureDeferred(self._send())

    async def _send(self) -> None:
        for i, chunk in enumerate(self.chunks):
            if i and self.pause:
                await task.deferLater(reactor, self.pause, lambda: None)
            if self.lost:
                return
            self.transport.write(chunk)

    def dataReceived(self, data: bytes) -> None:
        self.received += data
        if self.waiting is not None and len(self.received) >= self.waiting[0]:
            _, waiter = self.waiting
            self.waiting = None
            waiter.callback(self.received)

    def receive(self, n: int) -> defer.Deferred[bytes]:
        """The bytes received once there are ``n`` (a test that goes wrong fails instead of hanging)."""
        waiter: defer.Deferred[bytes] = defer.Deferred()
        self.waiting = (n, waiter)
        self.dataReceived(b"")
        return waiter.addTimeout(WAIT, reactor)

    def closed(self) -> defer.Deferred[None]:
        """Fires when the connection is closed (fails after a while instead of hanging)."""
        if self.lost:
            return defer.succeed(None)
        waiter: defer.Deferred[None] = defer.Deferred()
        self._closed.append(waiter)
        return waiter.addTimeout(WAIT, reactor)

    def connectionLost(self, reason) -> None:
        self.lost = True
        if self.waiting is not None:
            self.waiting[1].errback(reason)
            self.waiting = None
        for waiter in self._closed:
            if not waiter.called:
                waiter.callback(None)


async def serve(trusted: TrustedProxies = LOCALHOST, timeout: float = 10.0):
    wrapped = RecordingFactory()
    factory = proxy_protocol_factory(wrapped, trusted, timeout=timeout, reactor=reactor)
    port = await endpoints.TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(factory)
    return wrapped, port


async def connect(port, chunks: list[bytes], pause: float = 0.0) -> RawClient:
    client = RawClient(chunks, pause)
    factory = ClientFactory.forProtocol(lambda: client)
    await endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port).connect(factory)
    return client


async def finish(port, client: RawClient | None) -> None:
    if client is not None:
        if not client.lost:
            client.transport.abortConnection()
        await client.closed()
        if client.sender is not None:
            await client.sender
    await port.stopListening()


async def exchange(chunks: list[bytes], expected: bytes, pause: float = 0.0, trusted=LOCALHOST):
    """Connect, send, and return what the wrapped factory saw once ``expected`` came back."""
    wrapped, port = await serve(trusted)
    client = None
    try:
        client = await connect(port, chunks, pause)
        received = await client.receive(len(expected))
        assert received == expected
        return wrapped
    finally:
        await finish(port, client)


async def closed_without_building(chunks: list[bytes], trusted=LOCALHOST, timeout: float = 10.0):
    """Connect, send, and check the server closes without building the wrapped protocol."""
    wrapped, port = await serve(trusted, timeout)
    client = None
    try:
        client = await connect(port, chunks)
        started = reactor.seconds()
        await client.closed()
        assert client.received == b""
        assert wrapped.built == [] and wrapped.peers == []
        return reactor.seconds() - started
    finally:
        await finish(port, client)


@pt.ensureDeferred
async def test_v1_gives_the_proxied_client_to_build_protocol_and_get_peer():
    wrapped = await exchange([V1 + b"hello"], b"203.0.113.7 51234\nhello")
    assert wrapped.built == [("203.0.113.7", 51234)]
    assert wrapped.peers == [("203.0.113.7", 51234)]
    assert wrapped.hosts == [("10.0.0.1", 443)]


@pt.ensureDeferred
async def test_v1_tcp6_is_canonical():
    header = b"PROXY TCP6 2001:DB8:0::7 2001:db8::1 51234 443\r\n"
    wrapped = await exchange([header, b"x"], b"2001:db8::7 51234\nx")
    assert wrapped.built == [("2001:db8::7", 51234)]


@pt.ensureDeferred
async def test_a_header_in_pieces_is_reassembled():
    """Twisted's own wrapper drops a connection whose first read is shorter than 8 or 16 bytes."""
    pieces = [V1[i : i + 3] for i in range(0, len(V1), 3)]
    wrapped = await exchange([*pieces, b"after"], b"203.0.113.7 51234\nafter", pause=0.005)
    assert wrapped.built == [("203.0.113.7", 51234)]
    header = v2_header("198.51.100.2", "10.0.0.1", 4000, 443)
    wrapped = await exchange(
        [header[:5], header[5:14], header[14:20], header[20:]], b"198.51.100.2 4000\n", 0.005
    )
    assert wrapped.built == [("198.51.100.2", 4000)]


@pt.ensureDeferred
async def test_v2_gives_the_proxied_client():
    header = v2_header("198.51.100.2", "10.0.0.1", 40000, 8443)
    wrapped = await exchange([header + b"ping"], b"198.51.100.2 40000\nping")
    assert wrapped.built == wrapped.peers == [("198.51.100.2", 40000)]
    assert wrapped.hosts == [("10.0.0.1", 8443)]


@pt.ensureDeferred
async def test_v2_ipv6_and_tlvs():
    aws_vpce = b"\xea" + struct.pack("!H", 23) + b"\x01" + b"vpce-08d2bf15fac5001c9"
    header = v2_header("2001:db8::42", "2001:db8::1", 1234, 443, tlv=aws_vpce)
    wrapped = await exchange([header], b"2001:db8::42 1234\n")
    assert wrapped.built == wrapped.peers == [("2001:db8::42", 1234)]


@pt.ensureDeferred
async def test_v2_local_keeps_the_real_peer():
    header = v2_header("198.51.100.2", "10.0.0.1", 40000, 8443, command=0)
    wrapped, port = await serve()
    client = None
    try:
        client = await connect(port, [header])
        await client.receive(1)
        await client.receive(client.received.index(b"\n") + 1)
        own = client.transport.getHost()
        assert client.received == f"127.0.0.1 {own.port}\n".encode()
        assert wrapped.built == wrapped.peers == [("127.0.0.1", own.port)]
    finally:
        await finish(port, client)


@pt.ensureDeferred
async def test_an_untrusted_peer_is_closed_at_once_with_one_info_line():
    events: list[dict] = []
    globalLogPublisher.addObserver(events.append)
    try:
        await closed_without_building([V1 + b"hello"], trusted=TrustedProxies(["10.9.9.9/32"]))
    finally:
        globalLogPublisher.removeObserver(events.append)
    ours = [e for e in events if "trusted_proxies" in e.get("log_format", "")]
    assert len(ours) == 1
    assert ours[0]["log_level"].name == "info"
    assert ours[0]["peer"].startswith("127.0.0.1:")


@pt.ensureDeferred
async def test_malformed_headers_are_closed():
    bad = [
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"PROXY TCP4 nonsense 10.0.0.1 1 2\r\n",
        b"PROXY TCP4 203.0.113.7 10.0.0.1 +1 443\r\n",
        b"PROXY TCP4 203.0.113.7 10.0.0.1 51234 443 extra\r\n",
        b"PROXY TCP4 203.0.113.7 10.0.0.1 99999 443\r\n",
        b"PROXY TCP4 2001:db8::1 10.0.0.1 1 443\r\n",
        b"PROXY TCP4 203.0.113.7 10.0.0.1 x 443\r\n",
        b"PROXY TCP4 \xff\xfe 10.0.0.1 1 443\r\n",
        b"PROXY " + b"A" * 200,  # no CRLF within 107 bytes
        b"PROXY TCP4 203.0.113.7 10.0.0.1 51234 443" + b" " * 70 + b"\r\n",  # CRLF past 107
        V2Parser.PREFIX + b"\x21\x11" + struct.pack("!H", 1000) + b"\0" * 1000,  # longer than 216
        V2Parser.PREFIX + b"\x31\x11\x00\x0c" + b"\0" * 12,  # version 3
        V2Parser.PREFIX + b"\x21\x11\x00\x04" + b"\0" * 4,  # address block cut short
        V2Parser.PREFIX + b"\x21\x31" + struct.pack("!H", 216) + b"/tmp/x".ljust(216, b"\0"),  # UNIX
        V2Parser.PREFIX + b"\x21\x12\x00\x0c" + b"\0" * 12,  # UDP
    ]
    for header in bad:
        await closed_without_building([header])


@pt.ensureDeferred
async def test_no_header_in_time_is_closed():
    elapsed = await closed_without_building([b"PROXY TCP4 203"], timeout=0.2)
    assert 0.15 <= elapsed < 5
    elapsed = await closed_without_building([], timeout=0.2)
    assert 0.15 <= elapsed < 5
