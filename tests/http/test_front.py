"""The HTTP front through a real tunnel and edge to a real twisted.web upstream (one reactor)."""

from __future__ import annotations

import http.client
import json

import pytest_twisted as pt
from http_rig import Echo, exchange, http_resource, listen_upstream, parse_responses, start_rig, target
from twisted.internet import defer, threads


@pt.async_yield_fixture
async def rig():
    echo = Echo()

    async def resources(rig):
        port, number = await listen_upstream(echo)
        rig.ports.append(port)
        rig.upstreams["echo"] = echo
        return [http_resource("app", "app.test", target("a", number))]

    rig = await start_rig(lambda rig: defer.ensureDeferred(resources(rig)))
    yield rig
    await rig.stop()


def get(port: int, path: str, host: str = "app.test", method: str = "GET", body=None, headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request(method, path, body=body, headers={"Host": host, **(headers or {})})
    response = conn.getresponse()
    data = response.read()
    conn.close()
    return response.status, dict(response.getheaders()), data


@pt.ensureDeferred
async def test_a_get_reaches_the_upstream_with_forwarding_headers(rig):
    status, _headers, body = await threads.deferToThread(
        get, rig.http_port, "/hello?x=1", headers={"X-Forwarded-For": "6.6.6.6", "X_Forwarded_Host": "evil"}
    )
    assert status == 200
    seen = json.loads(body)
    assert seen["uri"] == "/hello?x=1"
    assert seen["headers"]["x-forwarded-for"] == ["127.0.0.1"]
    assert seen["headers"]["x-forwarded-host"] == ["app.test"]
    assert seen["headers"]["x-forwarded-proto"] == ["http"]
    assert "x_forwarded_host" not in seen["headers"]
    assert seen["headers"]["forwarded"] == ['for=127.0.0.1;proto=http;host="app.test"']


@pt.ensureDeferred
async def test_a_post_body_arrives_whole(rig):
    payload = bytes(range(256)) * 4000
    status, _, body = await threads.deferToThread(get, rig.http_port, "/up", method="POST", body=payload)
    seen = json.loads(body)
    assert status == 200 and seen["length"] == len(payload)
    import hashlib

    assert seen["sha256"] == hashlib.sha256(payload).hexdigest()


@pt.ensureDeferred
async def test_an_unknown_host_gets_a_404_page(rig):
    status, headers, body = await threads.deferToThread(get, rig.http_port, "/", host="nope.test")
    assert status == 404
    assert headers["Content-Type"] == "application/problem+json"
    assert "nope.test" in json.loads(body)["detail"]
    status, headers, body = await threads.deferToThread(
        get, rig.http_port, "/", host="nope.test", headers={"Accept": "text/html"}
    )
    assert status == 404 and headers["Content-Type"].startswith("text/html") and b"nope.test" in body


@pt.ensureDeferred
async def test_keep_alive_reuses_the_client_and_the_upstream_connection(rig):
    def three():
        conn = http.client.HTTPConnection("127.0.0.1", rig.http_port, timeout=10)
        out = []
        for i in range(3):
            conn.request("GET", f"/n/{i}", headers={"Host": "app.test"})
            r = conn.getresponse()
            out.append(json.loads(r.read())["uri"])
        conn.close()
        return out

    assert await threads.deferToThread(three) == ["/n/0", "/n/1", "/n/2"]
    assert rig.front.pool.opened == 1


@pt.ensureDeferred
async def test_pipelined_requests_are_answered_in_order(rig):
    requests = b"".join(
        b"GET /p/%d HTTP/1.1\r\nHost: app.test\r\n%s\r\n" % (i, b"Connection: close\r\n" if i == 4 else b"")
        for i in range(5)
    )
    raw = await threads.deferToThread(exchange, rig.http_port, requests)
    uris = [json.loads(body)["uri"] for _, _, body in parse_responses(raw)]
    assert uris == [f"/p/{i}" for i in range(5)]


@pt.ensureDeferred
async def test_chunked_both_ways(rig):
    request = (
        b"POST /chunked/50 HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\n"
        b"Connection: close\r\n\r\n"
        b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
    )
    raw = await threads.deferToThread(exchange, rig.http_port, request)
    ((_status, headers, body),) = parse_responses(raw)
    assert headers["transfer-encoding"] == "chunked"
    assert rig.upstreams["echo"].requests[-1]["length"] == 11
    assert body == b"chunk;" * 50
