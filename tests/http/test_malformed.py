"""Hostile and malformed requests over raw sockets: each is refused with a 4xx and a closed
connection, and nothing of it reaches the upstream (asserted on the bytes the upstream got)."""

from __future__ import annotations

import socket
import time

import pytest
import pytest_twisted as pt
from http_rig import Recorder, exchange, http_resource, start_rig, target
from twisted.internet import defer, endpoints, reactor, threads
from twisted.internet.protocol import Factory

from kokoa.http._front import FrontSettings

H = b"Host: app.test\r\n"

CASES = {
    "content-length and transfer-encoding": (
        b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        400,
    ),
    "duplicate content-length": (
        b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
        400,
    ),
    "content-length with a sign": (b"POST / HTTP/1.1\r\n" + H + b"Content-Length: +3\r\n\r\nabc", 400),
    "content-length in hex": (b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 0x3\r\n\r\nabc", 400),
    "content-length with a space": (b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 1 2\r\n\r\nabc", 400),
    "content-length list": (b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 3,3\r\n\r\nabc", 400),
    "negative content-length": (b"POST / HTTP/1.1\r\n" + H + b"Content-Length: -1\r\n\r\nabc", 400),
    "transfer-encoding gzip": (b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: gzip\r\n\r\nabc", 400),
    "transfer-encoding gzip, chunked": (
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
        400,
    ),
    "transfer-encoding twice": (
        b"POST / HTTP/1.1\r\n"
        + H
        + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        400,
    ),
    "transfer-encoding with a tab": (
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding:\tchunked\x0b\r\n\r\n0\r\n\r\n",
        400,
    ),
    "bare LF in a chunk line": (
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n3\nabc\r\n0\r\n\r\n",
        400,
    ),
    "bare LF in the head": (b"GET / HTTP/1.1\n" + b"Host: app.test\n\n", 400),
    "whitespace before the colon": (b"GET / HTTP/1.1\r\nHost : app.test\r\n\r\n", 400),
    "obs-fold": (b"GET / HTTP/1.1\r\n" + H + b"X-A: a\r\n b\r\n\r\n", 400),
    "control character in a value": (b"GET / HTTP/1.1\r\n" + H + b"X-A: a\x01b\r\n\r\n", 400),
    "NUL in a value": (b"GET / HTTP/1.1\r\n" + H + b"X-A: a\x00b\r\n\r\n", 400),
    "control character in a name": (b"GET / HTTP/1.1\r\n" + H + b"X\x01A: ab\r\n\r\n", 400),
    "absolute form disagreeing with Host": (b"GET http://other.test/ HTTP/1.1\r\n" + H + b"\r\n", 400),
    "missing Host": (b"GET / HTTP/1.1\r\n\r\n", 400),
    "two Hosts": (b"GET / HTTP/1.1\r\n" + H + H + b"\r\n", 400),
    "malformed Host": (b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400),
    "fragment in the target": (b"GET /a#b HTTP/1.1\r\n" + H + b"\r\n", 400),
    "encoded NUL in the path": (b"GET /a%00b HTTP/1.1\r\n" + H + b"\r\n", 400),
    "broken percent-escape": (b"GET /a%zz HTTP/1.1\r\n" + H + b"\r\n", 400),
    "CONNECT": (b"CONNECT app.test:443 HTTP/1.1\r\n" + H + b"\r\n", 405),
    "HTTP/2.0 request line": (b"GET / HTTP/2.0\r\n" + H + b"\r\n", 505),
    "garbage": (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40, 400),
    "oversized request line": (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n" + H + b"\r\n", 414),
    "oversized header block": (b"GET / HTTP/1.1\r\n" + H + b"X-Big: " + b"b" * 40_000 + b"\r\n\r\n", 431),
    "too many header fields": (
        b"GET / HTTP/1.1\r\n" + H + b"".join(b"X-%d: 1\r\n" % i for i in range(120)) + b"\r\n",
        431,
    ),
    "body larger than allowed": (
        b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 2000\r\n\r\n" + b"x" * 2000,
        413,
    ),
}


#: Malformations in the body (not the head), found as the body streams.
BODY_LEVEL = {"bare LF in a chunk line"}


@pt.async_yield_fixture
async def rig():
    factory = Factory.forProtocol(Recorder)
    factory.received = b""
    factory.connections = 0
    port = await endpoints.TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(factory)

    async def resources(rig):
        rig.ports.append(port)
        rig.upstreams["recorder"] = factory
        return [http_resource("app", "app.test", target("a", port.getHost().port))]

    settings = FrontSettings(max_body=1000, header_timeout=0.5)
    rig = await start_rig(lambda rig: defer.ensureDeferred(resources(rig)), settings)
    yield rig
    await rig.stop()


@pytest.mark.parametrize("name", list(CASES))
@pt.ensureDeferred
async def test_a_malformed_request_is_refused_and_never_forwarded(rig, name):
    request, status = CASES[name]
    raw = await threads.deferToThread(exchange, rig.http_port, request)
    assert raw.startswith(b"HTTP/1.1 %d " % status), raw[:200]
    assert b"Connection: close" in raw.split(b"\r\n\r\n", 1)[0]
    recorder = rig.upstreams["recorder"]
    if name in BODY_LEVEL:
        # Found while the body streams: the (valid) head may have gone ahead, but the stream is
        # reset at the bad chunk, so no complete request ever reaches the upstream.
        assert b"0\r\n\r\n" not in recorder.received and b"abc" not in recorder.received
    else:
        assert recorder.received == b"" and recorder.connections == 0


@pt.ensureDeferred
async def test_a_refused_request_after_a_good_one_on_the_same_connection(rig):
    """Pipelined: the good one is answered (and forwarded), the bad one refused, nothing after it read."""
    good = b"GET /good HTTP/1.1\r\n" + H + b"\r\n"
    bad = b"GET / HTTP/1.1\r\n" + H + b"Content-Length: 1\r\nContent-Length: 2\r\n\r\n"
    after = b"GET /after HTTP/1.1\r\n" + H + b"\r\n"
    raw = await threads.deferToThread(exchange, rig.http_port, good + bad + after)
    assert raw.startswith(b"HTTP/1.1 200 OK") and b"HTTP/1.1 400 Bad Request" in raw
    received = rig.upstreams["recorder"].received
    assert received.startswith(b"GET /good HTTP/1.1\r\n")
    assert b"/after" not in received and received.count(b"HTTP/1.1") == 1


def slowloris(port: int) -> bytes:
    """Trickle a head that never ends; return what the gateway says before it closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: app.test\r\n")
        for _ in range(3):  # still sending, a byte at a time, within the idle timeout
            time.sleep(0.1)
            s.sendall(b"X")
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
        return b"".join(chunks)


@pt.ensureDeferred
async def test_slowloris_connections_are_closed_while_others_are_served(rig):
    slow = [threads.deferToThread(slowloris, rig.http_port) for _ in range(5)]
    served = []
    for i in range(5):
        raw = await threads.deferToThread(
            exchange, rig.http_port, b"GET /n/%d HTTP/1.1\r\n" % i + H + b"Connection: close\r\n\r\n"
        )
        served.append(raw.startswith(b"HTTP/1.1 200 OK"))
    answers = await defer.gatherResults(slow)
    assert all(served)
    # Closed by the header deadline (0.5 s here; the idle timeout is 60 s), with a 408.
    assert all(a.startswith(b"HTTP/1.1 408 ") for a in answers), answers
    assert rig.upstreams["recorder"].received.count(b"GET /n/") == 5


@pt.ensureDeferred
async def test_connection_cannot_unframe_a_body_to_smuggle_a_request(rig):
    """'Connection: content-length' must not drop the length while the body still goes upstream."""
    smuggled = b"GET /admin HTTP/1.1\r\nHost: app.test\r\n\r\n"
    request = (
        b"POST /public HTTP/1.1\r\n"
        + H
        + b"Content-Length: %d\r\n" % len(smuggled)
        + b"Connection: close, content-length\r\n\r\n"
        + smuggled
    )
    raw = await threads.deferToThread(exchange, rig.http_port, request)
    assert raw.startswith(b"HTTP/1.1 200 OK")
    received = rig.upstreams["recorder"].received
    head, _, body = received.partition(b"\r\n\r\n")
    assert b"\r\nContent-Length: %d" % len(smuggled) in head and body == smuggled
