"""The tunnel byte transports on real sockets: TLS, wss and ws on 127.0.0.1."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest
import pytest_twisted
from OpenSSL import SSL
from service_identity import VerificationError
from transports_support import (
    CountingFactory,
    Echo,
    Firehose,
    RawHTTP,
    Recorder,
    SlowReader,
    listen,
    nodelay,
    sleep,
    until,
    upgrade_request,
    url_for,
    within,
    wrap_server,
)
from twisted.internet import reactor
from twisted.internet.defer import CancelledError
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.error import ConnectionDone, ConnectionLost, ConnectionRefusedError, NoProtocol
from twisted.internet.protocol import Factory, Protocol

from kokoa import pki
from kokoa.transports import (
    CertificateFingerprintMismatch,
    HandshakeTimeout,
    Trust,
    WebSocketHandshakeError,
    client_endpoint,
)

ALL_KINDS = ["tls", "wss", "ws"]
TLS_KINDS = ["tls", "wss"]
WS_KINDS = ["wss", "ws"]


@pytest.fixture
def creds(tmp_path):
    return pki.ensure_dev_ca(tmp_path, ["gateway.test"])


@pytest.fixture
def ca_trust(creds):
    return Trust(ca_file=creds.ca_path)


class Setup:
    """A server of one kind on 127.0.0.1:0 and ways to reach it; closed by `close()`."""

    def __init__(self, kind, creds, server_protocol=Echo, **server_options):
        self.kind = kind
        self.inner = CountingFactory(server_protocol)
        self.port = listen(wrap_server(kind, self.inner, creds, **server_options))
        self.url = url_for(kind, self.port.getHost().port)
        self.clients: list = []

    async def connect(self, trust=None, protocol=Recorder, url=None, **options):
        client = await within(
            client_endpoint(reactor, url or self.url, trust, **options).connect(Factory.forProtocol(protocol))
        )
        self.clients.append(client)
        return client

    async def close(self):
        for client in self.clients:
            if not client.lost:
                client.transport.loseConnection()
        for p in [*self.clients, *self.inner.built]:
            if p.made:
                await within(p.lost_d)
        await self.port.stopListening()


@pytest_twisted.async_yield_fixture
async def servers(creds):
    made: list[Setup] = []

    def make(kind, **kw):
        setup = Setup(kind, creds, **kw)
        made.append(setup)
        return setup

    yield make
    for setup in made:
        await setup.close()


def trust_for(kind, creds):
    return Trust(ca_file=creds.ca_path) if kind != "ws" else None


# -- bytes round-trip ----------------------------------------------------------------------


@pytest.mark.parametrize("kind", ALL_KINDS)
@pytest_twisted.ensureDeferred
async def test_echo_round_trip_small_and_large(kind, creds, servers):
    ws_options = {"max_message_size": 65536} if kind != "tls" else {}
    setup = servers(kind, **ws_options)
    client = await setup.connect(trust_for(kind, creds), **ws_options)
    assert client.made == 1
    server = await within(setup.inner.first)

    client.transport.write(b"hello")
    assert await within(client.wait_for(5)) == b"hello"

    payload = os.urandom(4 * 1024 * 1024)
    client.transport.writeSequence([payload[:1000], payload[1000:]])
    echoed = await within(client.wait_for(5 + len(payload)), 30)
    assert echoed[5:] == payload
    if kind != "tls":  # one message per dataReceived, none above the limit
        assert len(server.chunks) >= 64
        assert max(server.chunks) <= 65536
    assert nodelay(client.transport)
    assert nodelay(server.transport)

    client.transport.loseConnection()
    await within(client.lost_d)
    await within(server.lost_d)
    await sleep(0.05)
    assert len(client.lost) == 1 and len(server.lost) == 1
    assert client.lost[0].check(ConnectionDone)
    assert server.lost[0].check(ConnectionDone)


@pytest.mark.parametrize("kind", TLS_KINDS)
@pytest_twisted.ensureDeferred
async def test_ca_file_trust_with_dns_name(kind, creds, servers):
    setup = servers(kind)
    url = url_for(kind, setup.port.getHost().port, host="localhost")
    client = await setup.connect(Trust(ca_file=creds.ca_path), url=url)
    client.transport.write(b"ping")
    assert await within(client.wait_for(4)) == b"ping"


@pytest.mark.parametrize("kind", ALL_KINDS)
@pytest_twisted.ensureDeferred
async def test_peer_drop_calls_connection_lost_once(kind, creds, servers):
    setup = servers(kind)
    client = await setup.connect(trust_for(kind, creds))
    server = await within(setup.inner.first)
    server.transport.abortConnection()
    await within(client.lost_d)
    await within(server.lost_d)
    await sleep(0.05)
    reason = client.lost[0]
    assert len(client.lost) == 1 and len(server.lost) == 1
    assert reason.check(ConnectionLost, ConnectionDone)


# -- certificates --------------------------------------------------------------------------


@pytest.mark.parametrize("kind", TLS_KINDS)
@pytest_twisted.ensureDeferred
async def test_hostname_not_in_certificate_fails(kind, tmp_path, creds, servers):
    # A certificate from the same CA, for another name only: 127.0.0.1 is not in it.
    ca_cert, ca_key = pki._ensure_ca(tmp_path / "tls")
    cert, key = pki._make_server_cert(ca_cert, ca_key, pki._normalize_names(["other.example"]))
    pki.write_atomic(tmp_path / "other.pem", cert.public_bytes(pki.serialization.Encoding.PEM), 0o644)
    pki.write_atomic(tmp_path / "other.key", pki._key_pem(key), 0o600)
    other = pki.load_credentials(tmp_path / "other.pem", tmp_path / "other.key")
    setup = Setup(kind, other)
    try:
        with pytest.raises(VerificationError):
            await setup.connect(Trust(ca_file=creds.ca_path))
        assert setup.inner.built == []
    finally:
        await setup.close()


@pytest.mark.parametrize("kind", TLS_KINDS)
@pytest_twisted.ensureDeferred
async def test_untrusted_certificate_fails_with_system_trust(kind, servers):
    setup = servers(kind)
    with pytest.raises(SSL.Error):
        await setup.connect(Trust())
    assert setup.inner.built == []


@pytest.mark.parametrize("kind", TLS_KINDS)
@pytest_twisted.ensureDeferred
async def test_fingerprint_pin_matches(kind, creds, servers):
    setup = servers(kind)
    # The pin ignores names: reach the server by a name the certificate does not carry.
    client = await setup.connect(Trust(fingerprint=creds.fingerprint.upper().replace("SHA256:", "")))
    client.transport.write(b"pinned")
    assert await within(client.wait_for(6)) == b"pinned"


@pytest.mark.parametrize("kind", TLS_KINDS)
@pytest_twisted.ensureDeferred
async def test_fingerprint_pin_mismatch_fails_naming_both(kind, creds, servers):
    setup = servers(kind)
    wrong = "sha256:" + "ab" * 32
    with pytest.raises(CertificateFingerprintMismatch) as info:
        await setup.connect(Trust(fingerprint=wrong))
    message = str(info.value)
    assert wrong in message and creds.fingerprint in message
    assert setup.inner.built == []


@pytest.mark.parametrize("kind", TLS_KINDS)
@pytest_twisted.ensureDeferred
async def test_insecure_trust_accepts_anything(kind, servers):
    setup = servers(kind)
    client = await setup.connect(Trust(insecure=True))
    client.transport.write(b"x")
    assert await within(client.wait_for(1)) == b"x"


# -- WebSocket rules -----------------------------------------------------------------------


@pytest.mark.parametrize("kind", WS_KINDS)
@pytest_twisted.ensureDeferred
async def test_message_over_limit_closes_connection(kind, creds, servers):
    setup = servers(kind, max_message_size=65536)
    client = await setup.connect(trust_for(kind, creds), max_message_size=1024 * 1024)
    server = await within(setup.inner.first)
    client.transport.write(b"y" * 100_000)
    await within(client.lost_d)
    await within(server.lost_d)
    reason = client.lost[0]
    assert reason.check(ConnectionLost)
    assert "1009" in reason.getErrorMessage()
    assert server.received == b""
    assert len(client.lost) == 1 and len(server.lost) == 1


@pytest.mark.parametrize("kind", WS_KINDS)
@pytest_twisted.ensureDeferred
async def test_text_message_closes_connection(kind, creds, servers):
    setup = servers(kind)
    client = await setup.connect(trust_for(kind, creds))
    server = await within(setup.inner.first)
    client.transport._ws.sendMessage(b"not bytes", isBinary=False)
    await within(server.lost_d)
    await within(client.lost_d)
    assert "1002" in server.lost[0].getErrorMessage()
    assert server.received == b""


@pytest_twisted.ensureDeferred
async def test_foreign_origin_refused_and_allowed_origin_accepted(servers):
    setup = servers("ws", allowed_origins=["https://console.example.com"])
    port = setup.port.getHost().port
    endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port)

    refused = await connectProtocol(endpoint, RawHTTP(upgrade_request(port, origin="https://evil.example")))
    head = await within(refused.done)
    await within(refused.closed)
    assert head.startswith("HTTP/1.1 400") and "origin" in head.lower()

    accepted = await connectProtocol(
        endpoint, RawHTTP(upgrade_request(port, origin="https://console.example.com"))
    )
    head = await within(accepted.done)
    await within(accepted.closed)
    assert head.startswith("HTTP/1.1 101")


@pytest_twisted.ensureDeferred
async def test_any_origin_refused_by_default(servers):
    setup = servers("ws")
    port = setup.port.getHost().port
    raw = await connectProtocol(
        TCP4ClientEndpoint(reactor, "127.0.0.1", port), RawHTTP(upgrade_request(port, origin="null"))
    )
    head = await within(raw.done)
    await within(raw.closed)
    assert head.startswith("HTTP/1.1 400")
    assert setup.inner.built == []


@pytest_twisted.ensureDeferred
async def test_wrong_path_refused(servers):
    setup = servers("ws")
    port = setup.port.getHost().port
    raw = await connectProtocol(
        TCP4ClientEndpoint(reactor, "127.0.0.1", port), RawHTTP(upgrade_request(port, "/x"))
    )
    head = await within(raw.done)
    await within(raw.closed)
    assert head.startswith("HTTP/1.1 404")

    with pytest.raises(WebSocketHandshakeError, match="404"):
        await setup.connect(url=url_for("ws", port, path="/elsewhere"))
    assert setup.inner.built == []


# -- backpressure --------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ALL_KINDS)
@pytest_twisted.ensureDeferred
async def test_slow_reader_pauses_streaming_writer(kind, creds, servers):
    setup = servers(kind, server_protocol=SlowReader)
    writer = await setup.connect(trust_for(kind, creds), protocol=Firehose)
    reader = await within(setup.inner.first)

    # The reader does not read: the writer is paused and stays paused.
    stable = {"written": -1, "polls": 0}

    def stalled() -> bool:
        if writer.paused and writer.written == stable["written"]:
            stable["polls"] += 1
        else:
            stable["written"], stable["polls"] = writer.written, 0
        return stable["polls"] >= 10

    await until(stalled, 20, "the writer to be paused")
    assert writer.pauses >= 1
    assert writer.written < Firehose.SAFETY_LIMIT
    assert len(reader.received) < writer.written

    # The reader resumes: everything arrives and the writer is resumed.
    writer.limit = writer.written
    reader.transport.resumeProducing()
    await within(reader.wait_for(writer.written), 30)
    await until(lambda: writer.resumes >= 1, 5, "the writer to be resumed")
    assert len(reader.received) == writer.written

    writer.transport.unregisterProducer()
    writer.transport.loseConnection()
    await within(writer.lost_d)
    await within(reader.lost_d)


# -- connection attempts that fail ----------------------------------------------------------


@pytest.mark.parametrize("kind", ALL_KINDS)
@pytest_twisted.ensureDeferred
async def test_connection_refused(kind, creds):
    port = listen(Factory.forProtocol(Protocol))
    number = port.getHost().port
    await port.stopListening()
    with pytest.raises(ConnectionRefusedError):
        await within(
            client_endpoint(reactor, url_for(kind, number), trust_for(kind, creds)).connect(Factory())
        )


class Silent(Protocol):
    """Accepts a TCP connection and never answers."""

    def connectionMade(self) -> None:
        self.factory.connections.append(self.transport)


@pytest_twisted.async_yield_fixture
async def silent_server():
    factory = Factory.forProtocol(Silent)
    factory.connections = []
    port = listen(factory)
    yield port, factory
    for transport in factory.connections:
        transport.abortConnection()
    await port.stopListening()
    await sleep(0.05)


@pytest.mark.parametrize("kind", ALL_KINDS)
@pytest_twisted.ensureDeferred
async def test_cancel_aborts_attempt(kind, creds, silent_server):
    port, factory = silent_server
    inner = CountingFactory(Recorder)
    d = client_endpoint(reactor, url_for(kind, port.getHost().port), trust_for(kind, creds)).connect(inner)
    await until(lambda: factory.connections, 5, "the TCP connection")
    d.cancel()
    with pytest.raises(CancelledError):
        await d
    await until(lambda: not factory.connections[0].connected, 5, "the connection to close")
    assert inner.built == []


@pytest_twisted.ensureDeferred
async def test_tls_handshake_timeout(creds, silent_server):
    port, _ = silent_server
    endpoint = client_endpoint(
        reactor, url_for("tls", port.getHost().port), Trust(ca_file=creds.ca_path), tls_handshake_timeout=0.2
    )
    with pytest.raises(HandshakeTimeout):
        await within(endpoint.connect(Factory.forProtocol(Recorder)))


@pytest_twisted.ensureDeferred
async def test_websocket_open_handshake_timeout(silent_server):
    port, _ = silent_server
    endpoint = client_endpoint(reactor, url_for("ws", port.getHost().port), open_handshake_timeout=0.2)
    with pytest.raises(WebSocketHandshakeError, match="timeout"):
        await within(endpoint.connect(Factory.forProtocol(Recorder)))


def test_bad_ca_file_reported_when_endpoint_is_made(tmp_path):
    bad = tmp_path / "ca.pem"
    bad.write_text("not a certificate")
    with pytest.raises(ValueError, match="no PEM certificate"):
        client_endpoint(reactor, "tls:127.0.0.1:1", Trust(ca_file=str(bad)))
    with pytest.raises(ValueError, match="cannot read CA file"):
        client_endpoint(reactor, "tls:127.0.0.1:1", Trust(ca_file=str(tmp_path / "missing.pem")))


def test_trust_options_are_exclusive_and_fingerprint_checked():
    with pytest.raises(ValueError, match="one of"):
        Trust(ca_file="ca.pem", fingerprint="sha256:" + "00" * 32)
    with pytest.raises(ValueError, match="fingerprint"):
        Trust(fingerprint="sha256:1234")
    assert Trust(fingerprint="AB:" * 31 + "AB").fingerprint == "sha256:" + "ab" * 32


class Refusing(Factory):
    def buildProtocol(self, addr):
        return None


@pytest.mark.parametrize("kind", ALL_KINDS)
@pytest_twisted.ensureDeferred
async def test_client_factory_refusing_fails_connect(kind, creds, servers):
    setup = servers(kind)
    with pytest.raises(NoProtocol):
        await within(client_endpoint(reactor, setup.url, trust_for(kind, creds)).connect(Refusing()))
    await until(lambda: all(p.lost for p in setup.inner.built), 5, "server side to close")


@pytest.mark.parametrize("kind", ALL_KINDS)
@pytest_twisted.ensureDeferred
async def test_server_factory_refusing_closes_connection(kind, creds):
    port = listen(wrap_server(kind, Refusing(), creds))
    try:
        endpoint = client_endpoint(reactor, url_for(kind, port.getHost().port), trust_for(kind, creds))
        # The client's handshake completes first; then the server closes the connection.
        client = await within(endpoint.connect(Factory.forProtocol(Recorder)))
        await within(client.lost_d)
        assert len(client.lost) == 1
        if kind != "tls":
            assert "1011" in client.lost[0].getErrorMessage()
    finally:
        await port.stopListening()


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback")
@pytest.mark.parametrize("kind", ALL_KINDS)
@pytest_twisted.ensureDeferred
async def test_ipv6_literal(kind, creds):
    inner = CountingFactory(Echo)
    port = reactor.listenTCP(0, wrap_server(kind, inner, creds), interface="::1")
    try:
        url = url_for(kind, port.getHost().port, host="[::1]")
        client = await within(
            client_endpoint(reactor, url, trust_for(kind, creds)).connect(Factory.forProtocol(Recorder))
        )
        client.transport.write(b"six")
        assert await within(client.wait_for(3)) == b"six"
        client.transport.loseConnection()
        await within(client.lost_d)
        await within(inner.built[0].lost_d)
    finally:
        await port.stopListening()


def test_importing_transports_does_not_import_autobahn_or_reactor():
    code = (
        "import sys, kokoa.transports, kokoa.pki; "
        "assert 'autobahn' not in sys.modules; "
        "assert 'twisted.internet.reactor' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
