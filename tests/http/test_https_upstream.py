"""https targets: TLS from the gateway to the upstream, inside the tunnel stream."""

from __future__ import annotations

import json

import pytest_twisted as pt
from http_rig import Echo, exchange, http_resource, parse_responses, start_rig, target
from twisted.internet import defer, endpoints, reactor, threads
from twisted.web import server

from kokoa import pki
from kokoa.http._front import FrontSettings


def one(port: int, host: str):
    request = b"GET /who HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" % host.encode()
    ((status, _, body),) = parse_responses(exchange(port, request))
    return status, body


@pt.async_yield_fixture
async def rig(tmp_path):
    creds = pki.ensure_dev_ca(tmp_path, ["upstream.internal"])
    echo = Echo("tls")
    listening = await endpoints.SSL4ServerEndpoint(
        reactor, 0, creds.server_options(), interface="127.0.0.1"
    ).listen(server.Site(echo))
    port = listening.getHost().port

    async def resources(rig):
        rig.ports.append(listening)
        return [
            # verified against the CA given in the settings, with the name the certificate holds
            http_resource(
                "ok", "ok.test", target("v", port, scheme="https", tls_server_name="upstream.internal")
            ),
            # verified, but the certificate does not name 127.0.0.1's "wrong.internal"
            http_resource(
                "bad", "bad.test", target("w", port, scheme="https", tls_server_name="wrong.internal")
            ),
            # not verified at all (a per-target choice)
            http_resource("lax", "lax.test", target("l", port, scheme="https", tls_verify=False)),
        ]

    settings = FrontSettings(upstream_ca_file=creds.ca_path)
    rig = await start_rig(lambda rig: defer.ensureDeferred(resources(rig)), settings)
    yield rig
    await rig.stop()


@pt.ensureDeferred
async def test_a_verified_https_upstream_is_reached_through_the_tunnel(rig):
    status, body = await threads.deferToThread(one, rig.http_port, "ok.test")
    assert status == 200 and json.loads(body)["upstream"] == "tls"


@pt.ensureDeferred
async def test_a_certificate_for_another_name_is_refused_with_a_502(rig, expect_logged_errors):
    status, body = await threads.deferToThread(one, rig.http_port, "bad.test")
    assert status == 502
    assert "TLS handshake" in json.loads(body)["detail"] and "wrong.internal" in json.loads(body)["detail"]


@pt.ensureDeferred
async def test_verification_can_be_skipped_per_target(rig):
    status, body = await threads.deferToThread(one, rig.http_port, "lax.test")
    assert status == 200 and json.loads(body)["upstream"] == "tls"


@pt.ensureDeferred
async def test_connections_over_max_connections_are_closed_cleanly_under_tls(tmp_path):
    """The HTTPS front refuses a connection over the limit without an error (TLS needs a protocol)."""
    import socket as socketlib
    import ssl

    from twisted.protocols.tls import TLSMemoryBIOFactory

    from kokoa.gateway import StaticSiteDirectory, TunnelRegistry
    from kokoa.http._front import HTTPFront

    creds = pki.ensure_dev_ca(tmp_path, [])
    front = HTTPFront(
        StaticSiteDirectory([], []), TunnelRegistry(), reactor, FrontSettings(max_connections=1)
    )
    factory = TLSMemoryBIOFactory(creds.server_options(), False, front.factory("https"))
    port = await endpoints.TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(factory)
    number = port.getHost().port

    def two_clients():
        context = ssl.create_default_context(cafile=creds.ca_path)
        first = context.wrap_socket(
            socketlib.create_connection(("127.0.0.1", number)), server_hostname="localhost"
        )
        try:
            raw = socketlib.create_connection(("127.0.0.1", number), timeout=5)
            try:
                second = context.wrap_socket(raw, server_hostname="localhost")
                return second.recv(100)
            except (ssl.SSLError, OSError):
                return b""
            finally:
                raw.close()
        finally:
            first.close()

    try:
        assert await threads.deferToThread(two_clients) == b""
    finally:
        front.close_all()
        await port.stopListening()
