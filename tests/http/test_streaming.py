"""Bodies stream through the front with backpressure: an upload larger than every buffer on the
way, with ``Connection: close`` (its body must still be read), arrives whole while the
gateway's queue toward the tunnel stays within its limit."""

from __future__ import annotations

import socket

import pytest_twisted as pt
from http_rig import http_resource, start_rig, target
from twisted.internet import defer, endpoints, reactor, task, threads
from twisted.internet.protocol import Factory, Protocol

from kokoa.wire import Limits

MiB = 1 << 20


class Counter(Protocol):
    """Counts the bytes after the request head; answers once the whole body is in."""

    def connectionMade(self):
        self.seen = b""
        self.body = 0

    def dataReceived(self, data):
        if self.factory.head is None:
            self.seen += data
            if b"\r\n\r\n" not in self.seen:
                return
            self.factory.head, data = self.seen.split(b"\r\n\r\n", 1)
        self.factory.received += len(data)
        if self.factory.received >= self.factory.expect:
            self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")


def upload(port: int, n: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(b"POST / HTTP/1.1\r\nHost: app.test\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % n)
        chunk = b"x" * MiB
        for _ in range(n // MiB):
            s.sendall(chunk)
        answer = b""
        while data := s.recv(65536):
            answer += data
        return answer


@pt.ensureDeferred
async def test_a_large_upload_with_connection_close_streams_within_the_buffer_limit():
    factory = Factory.forProtocol(Counter)
    factory.received, factory.head, factory.expect = 0, None, 64 * MiB
    port = await endpoints.TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(factory)

    async def resources(rig):
        rig.ports.append(port)
        return [http_resource("app", "app.test", target("a", port.getHost().port))]

    rig = await start_rig(lambda r: defer.ensureDeferred(resources(r)))
    peak = 0

    def sample():
        nonlocal peak
        for tunnels in rig.registry.all():
            tunnel = tunnels[1]
            for sid in list(tunnel.streams):
                peak = max(peak, tunnel.connection.outbound_buffered(sid))

    sampler = task.LoopingCall(sample)
    sampler.start(0.005)
    try:
        answer = await threads.deferToThread(upload, rig.http_port, 64 * MiB)
    finally:
        sampler.stop()
        await rig.stop()
    assert answer.startswith(b"HTTP/1.1 200 OK") and answer.endswith(b"ok")
    assert factory.received == 64 * MiB
    # Paused above max_send_buffer; at most one read (64 KiB) more arrives before the pause bites.
    assert peak <= Limits().max_send_buffer + 256 * 1024, peak


@pt.ensureDeferred
async def test_idle_clients_and_idle_pooled_upstreams_are_closed_after_their_timeouts():
    from http_rig import Echo, listen_upstream
    from twisted.internet.protocol import ClientFactory

    from kokoa.http._front import FrontSettings

    echo = Echo()

    async def resources(rig):
        port, number = await listen_upstream(echo)
        rig.ports.append(port)
        return [http_resource("app", "app.test", target("a", number))]

    settings = FrontSettings(idle_timeout=0.3, pool_idle_timeout=0.3)
    rig = await start_rig(lambda r: defer.ensureDeferred(resources(r)), settings)
    try:
        closed = defer.Deferred()

        class Client(Protocol):
            def connectionMade(self):
                self.transport.write(b"GET / HTTP/1.1\r\nHost: app.test\r\n\r\n")

            def connectionLost(self, reason):
                closed.callback(None)

        factory = ClientFactory.forProtocol(Client)
        await endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", rig.http_port).connect(factory)
        await task.deferLater(reactor, 0.15, lambda: None)
        assert rig.front.pool.idle_count() == 1 and len(rig.front.connections) == 1
        await closed  # the kept-alive client, idle, is closed by the gateway
        await task.deferLater(reactor, 0.5, lambda: None)
        assert rig.front.pool.idle_count() == 0  # and the pooled upstream connection expired
    finally:
        await rig.stop()


class Silent(Protocol):
    """An upstream that reads and never answers."""


class HugeHead(Protocol):
    """An upstream whose response head is larger than the front accepts."""

    def dataReceived(self, data):
        self.transport.write(
            b"HTTP/1.1 200 OK\r\nX-Big: " + b"b" * 100_000 + b"\r\nContent-Length: 0\r\n\r\n"
        )


async def limits_rig(settings):
    silent = await endpoints.TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
        Factory.forProtocol(Silent)
    )
    huge = await endpoints.TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
        Factory.forProtocol(HugeHead)
    )

    async def resources(rig):
        rig.ports += [silent, huge]
        return [
            http_resource("silent", "silent.test", target("s", silent.getHost().port)),
            http_resource("huge", "huge.test", target("h", huge.getHost().port)),
        ]

    return await start_rig(lambda r: defer.ensureDeferred(resources(r)), settings)


def statuses(port: int, request: bytes) -> list[int]:
    from http_rig import exchange, parse_responses

    return [status for status, _, _ in parse_responses(exchange(port, request))]


@pt.ensureDeferred
async def test_limits_of_pipelining_chunked_bodies_and_upstream_heads():
    from kokoa.http._front import FrontSettings

    settings = FrontSettings(max_pipelined=2, upstream_timeout=0.3, max_body=1000)
    rig = await limits_rig(settings)
    try:
        get = b"GET / HTTP/1.1\r\nHost: silent.test\r\n\r\n"
        # Two wait their turn (each times out upstream: 504); the third is one too many: 429, closed.
        assert await threads.deferToThread(statuses, rig.http_port, get * 4) == [504, 504, 429]
        # A chunked body that grows past max_body while it streams: 413, closed.
        chunked = b"POST / HTTP/1.1\r\nHost: silent.test\r\nTransfer-Encoding: chunked\r\n\r\n"
        chunked += b"400\r\n" + b"x" * 1024 + b"\r\n0\r\n\r\n"
        assert await threads.deferToThread(statuses, rig.http_port, chunked) == [413]
        # An upstream response head above max_response_header_bytes: 502.
        huge = b"GET / HTTP/1.1\r\nHost: huge.test\r\nConnection: close\r\n\r\n"
        assert await threads.deferToThread(statuses, rig.http_port, huge) == [502]
    finally:
        await rig.stop()
