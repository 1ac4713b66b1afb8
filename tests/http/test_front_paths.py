"""Error pages, redirects, balancing, stickiness and upgrades through a real tunnel and edge."""

from __future__ import annotations

import base64
import hashlib
import json
import socket

import pytest_twisted as pt
from http_rig import Echo, exchange, http_resource, listen_upstream, parse_responses, start_rig, target
from twisted.internet import defer, endpoints, reactor, threads
from twisted.internet.protocol import Factory, Protocol

from kokoa.http._front import FrontSettings

H = b"Host: app.test\r\n"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def one(port: int, request: bytes):
    ((status, headers, body),) = parse_responses(exchange(port, request))
    return status, headers, body


class Silent(Protocol):
    """Accepts and never answers."""


class WebSocketEcho(Protocol):
    """A minimal RFC 6455 server: the handshake, then unmasked echo of text frames."""

    buffer = b""
    upgraded = False

    def dataReceived(self, data: bytes) -> None:
        self.buffer += data
        if not self.upgraded:
            if b"\r\n\r\n" not in self.buffer:
                return
            head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
            key = next(
                line.split(b":", 1)[1].strip()
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"sec-websocket-key")
            )
            accept = base64.b64encode(hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
            self.transport.write(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n"
            )
            self.upgraded = True
        while len(self.buffer) >= 6:
            length = self.buffer[1] & 0x7F
            if len(self.buffer) < 6 + length:
                return
            mask, payload = self.buffer[2:6], self.buffer[6 : 6 + length]
            self.buffer = self.buffer[6 + length :]
            text = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
            self.transport.write(bytes([0x81, len(text)]) + text)


@pt.async_yield_fixture
async def rig():
    a, b = Echo("a"), Echo("b")
    refused_port = free_port()

    async def resources(rig):
        pa, na = await listen_upstream(a)
        pb, nb = await listen_upstream(b)
        silent = await endpoints.TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
            Factory.forProtocol(Silent)
        )
        ws = await endpoints.TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
            Factory.forProtocol(WebSocketEcho)
        )
        rig.ports += [pa, pb, silent, ws]
        rig.upstreams.update(a=a, b=b)
        return [
            http_resource("app", "app.test", target("a", na)),
            http_resource("lb", "lb.test", target("a", na), target("b", nb)),
            http_resource("weighted", "weighted.test", target("a", na, weight=3), target("b", nb, weight=1)),
            http_resource("sticky", "sticky.test", target("a", na), target("b", nb), sticky=True),
            http_resource("refused", "refused.test", target("r", refused_port)),
            http_resource("silent", "silent.test", target("s", silent.getHost().port)),
            http_resource("offline", "offline.test", target("o", na, site="elsewhere")),
            http_resource("empty", "empty.test"),
            http_resource("secure", "secure.test", target("a", na), redirect_https=True, hsts_max_age=600),
            http_resource("api", "app.test", target("b", nb), prefix="/api"),
            http_resource("wild", "*.wild.test", target("a", na)),
            http_resource("ws", "ws.test", target("w", ws.getHost().port)),
        ]

    settings = FrontSettings(upstream_timeout=0.5)
    rig = await start_rig(lambda rig: defer.ensureDeferred(resources(rig)), settings)
    yield rig
    await rig.stop()


def get(host: str, path: str = "/", extra: bytes = b"") -> bytes:
    return b"GET %s HTTP/1.1\r\nHost: %s\r\n%sConnection: close\r\n\r\n" % (
        path.encode(),
        host.encode(),
        extra,
    )


@pt.ensureDeferred
async def test_upstream_errors_have_their_own_status_and_message(rig):
    cases = {
        "refused.test": (502, "refused the connection"),
        "silent.test": (504, "did not answer within 0.5s"),
        "offline.test": (502, "offline"),
        "empty.test": (503, "has no targets"),
    }
    for host, (status, text) in cases.items():
        got, headers, body = await threads.deferToThread(one, rig.http_port, get(host))
        assert got == status, (host, body)
        assert headers["content-type"] == "application/problem+json"
        assert text in json.loads(body)["detail"]


@pt.ensureDeferred
async def test_longest_prefix_and_wildcards_route(rig):
    _, _, body = await threads.deferToThread(one, rig.http_port, get("app.test", "/api/x"))
    assert json.loads(body)["upstream"] == "b"
    _, _, body = await threads.deferToThread(one, rig.http_port, get("app.test", "/apix"))
    assert json.loads(body)["upstream"] == "a"
    _, _, body = await threads.deferToThread(one, rig.http_port, get("app.test", "//%61pi/../api/y"))
    seen = json.loads(body)
    assert seen["upstream"] == "b" and seen["uri"] == "/api/y"
    status, _, _ = await threads.deferToThread(one, rig.http_port, get("x.wild.test"))
    assert status == 200
    status, _, _ = await threads.deferToThread(one, rig.http_port, get("x.y.wild.test"))
    assert status == 404


@pt.ensureDeferred
async def test_round_robin_and_weights(rig):
    seen = []
    for _ in range(8):
        _, _, body = await threads.deferToThread(one, rig.http_port, get("weighted.test"))
        seen.append(json.loads(body)["upstream"])
    assert seen.count("a") == 6 and seen.count("b") == 2
    seen = []
    for _ in range(4):
        _, _, body = await threads.deferToThread(one, rig.http_port, get("lb.test"))
        seen.append(json.loads(body)["upstream"])
    assert sorted(seen) == ["a", "a", "b", "b"]


@pt.ensureDeferred
async def test_sticky_sessions_pin_a_client_and_hide_the_cookie_upstream(rig):
    _, headers, body = await threads.deferToThread(one, rig.http_port, get("sticky.test"))
    first = json.loads(body)["upstream"]
    cookie = headers["set-cookie"].split(";")[0]
    assert "HttpOnly" in headers["set-cookie"]
    for _ in range(4):
        _, headers, body = await threads.deferToThread(
            one, rig.http_port, get("sticky.test", extra=b"Cookie: a=1; " + cookie.encode() + b"\r\n")
        )
        seen = json.loads(body)
        assert seen["upstream"] == first and "set-cookie" not in headers
        assert seen["headers"]["cookie"] == ["a=1"]


@pt.ensureDeferred
async def test_plain_http_is_redirected_when_the_resource_asks(rig):
    status, headers, _ = await threads.deferToThread(one, rig.http_port, get("secure.test", "/a?b=1"))
    assert status == 308 and headers["location"] == "https://secure.test/a?b=1"


@pt.ensureDeferred
async def test_head_and_interim_responses(rig):
    request = (
        b"HEAD /bytes/1000 HTTP/1.1\r\n" + H + b"\r\nGET /n/1 HTTP/1.1\r\n" + H + b"Connection: close\r\n\r\n"
    )
    raw = await threads.deferToThread(exchange, rig.http_port, request)
    assert raw.startswith(b"HTTP/1.1 200 OK") and b"Content-Length: 1000" in raw
    assert raw.count(b"HTTP/1.1 200 OK") == 2 and b"x" * 10 not in raw
    request = (
        b"POST /n/2 HTTP/1.1\r\n"
        + H
        + b"Content-Length: 5\r\nExpect: 100-continue\r\nConnection: close\r\n\r\nhello"
    )
    raw = await threads.deferToThread(exchange, rig.http_port, request)
    assert raw.startswith(b"HTTP/1.1 100 Continue\r\n") and b"HTTP/1.1 200 OK" in raw


def websocket_echo(port: int, messages: list[bytes]) -> list[bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(
            b"GET /chat HTTP/1.1\r\nHost: ws.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        head = b""
        while b"\r\n\r\n" not in head:
            head += s.recv(1)
        assert head.startswith(b"HTTP/1.1 101 "), head
        assert b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" in head
        answers = []
        for message in messages:
            mask = b"\x01\x02\x03\x04"
            payload = bytes(c ^ mask[i % 4] for i, c in enumerate(message))
            s.sendall(bytes([0x81, 0x80 | len(message)]) + mask + payload)
            frame = b""
            while len(frame) < 2 + len(message):
                frame += s.recv(1024)
            answers.append(frame[2:])
        return answers


@pt.ensureDeferred
async def test_websocket_upgrade_passes_through(rig):
    answers = await threads.deferToThread(websocket_echo, rig.http_port, [b"hello", b"kokoa" * 10])
    assert answers == [b"hello", b"kokoa" * 10]
