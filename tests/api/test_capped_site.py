"""The capped site refuses an oversized body with 413 before reading it, over raw sockets."""

from __future__ import annotations

import json

import pytest
import pytest_twisted
from api_support import MAX_BODY, count
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol

from kokoa.api import _site


class RawClient(Protocol):
    """Collects what the server sends; ``closed`` fires with it when the connection is gone."""

    def __init__(self) -> None:
        self.received = b""
        self.closed: Deferred[bytes] = Deferred()
        self._waiting: list[tuple[bytes, Deferred[None]]] = []

    def dataReceived(self, data: bytes) -> None:
        self.received += data
        for marker, d in list(self._waiting):
            if marker in self.received:
                self._waiting.remove((marker, d))
                d.callback(None)

    def connectionLost(self, reason: object) -> None:
        self.closed.callback(self.received)

    def until(self, marker: bytes) -> Deferred[None]:
        d: Deferred[None] = Deferred()
        if marker in self.received:
            d.callback(None)
        else:
            self._waiting.append((marker, d))
        return d


async def connect(api) -> RawClient:
    return await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", api.port), RawClient())


def head(api, extra: str) -> bytes:
    return (
        "POST /api/v1/orgs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {api.key}\r\n{extra}\r\n"
    ).encode()


def parse(raw: bytes) -> tuple[str, dict[str, str], dict]:
    head_, _, body = raw.partition(b"\r\n\r\n")
    status, *lines = head_.decode().split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    return status, headers, json.loads(body)


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_a_declared_length_above_the_cap_is_refused_before_any_body(api):
    client = await connect(api)
    client.transport.write(head(api, "Content-Length: 10000000000\r\nExpect: 100-continue\r\n"))
    raw = await client.closed  # the server answers, then closes: no body was ever sent
    status, headers, problem = parse(raw)
    assert status == "HTTP/1.1 413 Content Too Large" and b"100 Continue" not in raw
    assert headers["content-type"] == "application/problem+json" and headers["connection"] == "close"
    assert problem["status"] == 413 and str(MAX_BODY) in problem["detail"]
    assert await count(api, "organizations") == 0


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_a_chunked_body_is_counted_and_refused_midway(api):
    client = await connect(api)
    chunk = b"x" * (MAX_BODY // 2)
    framed = b"%x\r\n%s\r\n" % (len(chunk), chunk)
    client.transport.write(head(api, "Transfer-Encoding: chunked\r\n") + framed * 3)
    await client.until(b'"status":413')  # answered while the client is still sending
    client.transport.write(framed * 4 + b"0\r\n\r\n")  # the rest is read and dropped, then closed
    status, _, problem = parse(await client.closed)
    assert status.startswith("HTTP/1.1 413") and problem["status"] == 413
    assert await count(api, "organizations") == 0 and await count(api, "audit_log") == 0


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_a_client_that_keeps_sending_is_cut_off(api, monkeypatch):
    monkeypatch.setattr(_site, "LINGER_BYTES", 64 * 1024)
    client = await connect(api)
    client.transport.write(head(api, f"Content-Length: {100 * MAX_BODY}\r\n"))
    await client.until(b'"status":413')
    sent = 0
    while not client.closed.called and sent < 100 * MAX_BODY:
        client.transport.write(b"x" * MAX_BODY)
        sent += MAX_BODY
        await _tick()
    assert client.closed.called and sent < 50 * MAX_BODY  # cut off after LINGER_BYTES


def _tick() -> Deferred[None]:
    d: Deferred[None] = Deferred()
    reactor.callLater(0.005, d.callback, None)
    return d


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_a_body_within_the_cap_is_served(api):
    client = await connect(api)
    body = json.dumps({"name": "Acme"}).encode()
    client.transport.write(head(api, f"Content-Length: {len(body)}\r\nConnection: close\r\n") + body)
    status, _, org = parse(await client.closed)
    assert status == "HTTP/1.1 201 Created" and org["name"] == "Acme"
