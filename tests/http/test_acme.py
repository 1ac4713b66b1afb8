"""ACME certificates for the HTTPS front, against a real pebble on loopback."""

from __future__ import annotations

import json
import socket
import ssl

import pytest
import pytest_twisted as pt
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from pebble import require_pebble, start_pebble
from test_certs import Rig, eventually, shake
from twisted.internet import defer, reactor, task, threads
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import formatEvent, globalLogPublisher

from kokoa import pki
from kokoa.http._acme import AcmeError, AcmeIssuer, AcmeSettings, acme_eligible
from kokoa.http._certs import CertificateManager

CHALLENGE_PREFIX = b"/.well-known/acme-challenge/"
TEN_DAYS = 10 * 24 * 3600


class ChallengeProtocol(Protocol):
    """The plain-HTTP side pebble validates: answers one request, then closes."""

    def connectionMade(self) -> None:
        self.buffer = b""
        self.factory.connections.add(self)

    def connectionLost(self, reason) -> None:
        self.factory.connections.discard(self)

    def dataReceived(self, data: bytes) -> None:
        self.buffer += data
        if b"\r\n\r\n" not in self.buffer:
            return
        method, target, _ = self.buffer.split(b"\r\n", 1)[0].split(b" ", 2)
        answer = None
        if method == b"GET" and target.startswith(CHALLENGE_PREFIX):
            token = target[len(CHALLENGE_PREFIX) :].decode("ascii", "replace")
            self.factory.requests.append(token)
            if self.factory.hang:
                return  # never answers: pebble waits
            answer = self.factory.responder(token) if self.factory.responder else None
        status, body = (b"200 OK", answer) if answer is not None else (b"404 Not Found", b"no such token\n")
        self.transport.write(
            b"HTTP/1.1 %s\r\nContent-Type: text/plain\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
            % (status, len(body), body)
        )
        self.transport.loseConnection()


class ChallengeFactory(Factory):
    protocol = ChallengeProtocol
    noisy = False

    def __init__(self) -> None:
        self.responder = None
        self.hang = False
        self.requests: list[str] = []
        self.connections: set[ChallengeProtocol] = set()


class AcmeRig(Rig):
    def settings(self, **kwargs) -> AcmeSettings:
        kwargs.setdefault("email", "ops@example.com")
        kwargs.setdefault("agree_tos", True)
        return AcmeSettings(directory=self.pebble.directory, ca_bundle=self.pebble.ca_bundle, **kwargs)

    def acme_manager(self, responding: bool = True, **kwargs) -> CertificateManager:
        manager = self.manager(acme=self.settings(**kwargs))
        # What the lead wires into the plain-HTTP front: the manager answers the challenges.
        self.challenges.responder = manager.challenge_response if responding else None
        return manager


async def start_acme_rig(tmp_path, validity_seconds=None) -> AcmeRig:
    rig = AcmeRig(tmp_path)
    rig.challenges = ChallengeFactory()
    rig.ports.append(reactor.listenTCP(0, rig.challenges, interface="127.0.0.1"))
    http_port = rig.ports[-1].getHost().port
    try:
        rig.pebble = await threads.deferToThread(
            start_pebble, tmp_path / "pebble", http_port, validity_seconds
        )
    except BaseException:
        await rig.close()
        raise
    return rig


async def stop_acme_rig(rig: AcmeRig) -> None:
    try:
        for connection in list(rig.challenges.connections):
            connection.transport.abortConnection()
        await rig.close()
    finally:
        await threads.deferToThread(rig.pebble.stop)


@pytest.fixture
def pebble_installed():
    """Skips (or fails, with KOKOA_REQUIRE_PEBBLE=1) without pebble; a plain fixture, since
    pytest-twisted cannot skip from an async one."""
    require_pebble()


@pt.async_yield_fixture
async def acme_rig(pebble_installed, tmp_path):
    """Pebble issuing certificates valid for 10 days, so that renew_before decides renewals."""
    rig = await start_acme_rig(tmp_path, validity_seconds=TEN_DAYS)
    yield rig
    await stop_acme_rig(rig)


@pytest.fixture
def log_lines():
    lines: list[str] = []

    def observe(event):
        lines.append(formatEvent(event))

    globalLogPublisher.addObserver(observe)
    yield lines
    globalLogPublisher.removeObserver(observe)


def verified_handshake(port: int, name: str, root_pem: bytes):
    """A handshake verified against pebble's root, with the name checked; returns the leaf."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(cadata=root_pem.decode())
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        ctx.wrap_socket(raw, server_hostname=name) as tls,
    ):
        return x509.load_der_x509_certificate(tls.getpeercert(binary_form=True))


# -- issuance, renewal ----------------------------------------------------------------------------


@pt.ensureDeferred
async def test_a_certificate_is_issued_served_and_renewed(acme_rig):
    rig = acme_rig
    manager = rig.acme_manager(renew_before_days=1)
    sources = await manager.set_hostnames(["web.example.com", "*.apps.example.com", "intranet.test"])
    # Exact public names get ACME; wildcards and reserved names the development CA.
    assert sources == {"web.example.com": "acme", "*.apps.example.com": "dev", "intranet.test": "dev"}
    assert len(rig.challenges.requests) >= 1  # pebble fetched the HTTP-01 token from us

    port = rig.listen(manager)
    root = await threads.deferToThread(rig.pebble.root_pem)
    leaf = await threads.deferToThread(verified_handshake, port, "web.example.com", root)
    issued = manager.certificate_for("web.example.com")
    assert issued.source == "acme"
    assert pki.fingerprint_of_der(leaf.public_bytes(Encoding.DER)) == issued.fingerprint
    assert (await shake(port, "x.apps.example.com", rig.dev_ca)).names == ["*.apps.example.com"]

    acme_dir = rig.data_dir / "acme"
    stored = acme_dir / "certs" / "web.example.com"
    assert (acme_dir / "account.key").stat().st_mode & 0o777 == 0o600
    assert (stored / "privkey.pem").stat().st_mode & 0o777 == 0o600
    assert len(x509.load_pem_x509_certificates((stored / "fullchain.pem").read_bytes())) >= 2
    account_key = (acme_dir / "account.key").read_bytes()
    account = json.loads((acme_dir / "account.json").read_text())["accounts"][rig.pebble.directory]
    assert account["uri"].startswith("https://127.0.0.1:") and account["contact"] == "ops@example.com"

    # Ten days left, renewal at one day: the periodic check keeps the certificate.
    requests_before = len(rig.challenges.requests)
    await manager.refresh()
    assert manager.certificate_for("web.example.com").fingerprint == issued.fingerprint
    assert len(rig.challenges.requests) == requests_before
    await manager.close()

    # A gateway renewing 30 days ahead: due at its first check, renewed with the same account.
    renewing = rig.acme_manager(renew_before_days=30)
    assert await renewing.set_hostnames(["web.example.com"]) == {"web.example.com": "acme"}
    renewed = renewing.certificate_for("web.example.com")
    # A new certificate (issued within the same second, it may end at the same second).
    assert renewed.fingerprint != issued.fingerprint and renewed.not_after >= issued.not_after
    # (No check that pebble fetched a token again: it may reuse the account's valid authorization,
    # about 1 order in 100 even with PEBBLE_AUTHZREUSE=0; the failed-renewal test uses a new account.)
    assert (acme_dir / "account.key").read_bytes() == account_key
    assert json.loads((acme_dir / "account.json").read_text())["accounts"][rig.pebble.directory] == account
    port2 = rig.listen(renewing)
    leaf2 = await threads.deferToThread(verified_handshake, port2, "web.example.com", root)
    assert pki.fingerprint_of_der(leaf2.public_bytes(Encoding.DER)) == renewed.fingerprint


@pt.ensureDeferred
async def test_a_failed_validation_is_logged_retried_and_served_by_the_dev_ca_meanwhile(acme_rig, log_lines):
    rig = acme_rig
    manager = rig.acme_manager(responding=False, retry_initial=0.5, retry_max=1.0)
    assert await manager.set_hostnames(["web.example.com"]) == {"web.example.com": "dev"}
    failure = next(line for line in log_lines if "ACME certificate for web.example.com failed" in line)
    assert "validation of web.example.com failed" in failure and "unauthorized" in failure
    assert "404" in failure and "attempt 1" in failure
    assert 0 < manager.acme.retry_in("web.example.com") <= 0.55

    port = rig.listen(manager)
    assert (await shake(port, "web.example.com", rig.dev_ca)).names == ["web.example.com"]
    # The gateway answers challenges again: the scheduled retry succeeds on its own.
    rig.challenges.responder = manager.challenge_response
    await eventually(lambda: manager.source_for("web.example.com") == "acme", timeout=20)
    assert manager.acme.retry_in("web.example.com") is None


@pt.ensureDeferred
async def test_a_failed_renewal_keeps_the_current_certificate(acme_rig, log_lines):
    rig = acme_rig
    first = rig.acme_manager(renew_before_days=1)
    await first.set_hostnames(["web.example.com"])
    current = first.certificate_for("web.example.com").fingerprint
    await first.close()
    # A new ACME account for the renewal: pebble reuses an account's valid authorization now and then
    # (about 1 order in 100 even with PEBBLE_AUTHZREUSE=0), and would then issue without a challenge.
    for name in ("account.key", "account.json"):
        (rig.data_dir / "acme" / name).unlink()

    renewing = rig.acme_manager(responding=False, renew_before_days=30)
    assert await renewing.set_hostnames(["web.example.com"]) == {"web.example.com": "acme"}
    assert renewing.certificate_for("web.example.com").fingerprint == current
    assert any("stays in use" in line and "web.example.com" in line for line in log_lines)
    assert renewing.acme.retry_in("web.example.com") is not None
    await renewing.close()  # cancels the retry
    assert renewing.acme.retry_in("web.example.com") is None


@pt.ensureDeferred
async def test_stopping_abandons_an_order_in_progress(acme_rig):
    rig = acme_rig
    rig.challenges.hang = True
    manager = rig.acme_manager()
    manager.startService()
    prepared = manager.set_hostnames(["web.example.com"])
    await eventually(lambda: rig.challenges.requests, timeout=20)  # pebble is validating
    started = reactor.seconds()
    await manager.stopService()  # does not wait for the order: it is abandoned
    assert reactor.seconds() - started < 5
    assert await prepared == {"web.example.com": "default"}
    assert manager.acme.retry_in("web.example.com") is None and manager._pool is None


@pt.ensureDeferred
async def test_terms_of_service_must_be_agreed(acme_rig, log_lines):
    rig = acme_rig
    manager = rig.acme_manager(agree_tos=False)
    assert await manager.set_hostnames(["web.example.com"]) == {"web.example.com": "dev"}
    assert any("terms of service" in line and "agree_tos = true" in line for line in log_lines)
    assert not (rig.data_dir / "acme" / "account.json").exists()
    assert manager.acme.retry_in("web.example.com") is not None
    await manager.set_hostnames([])  # the resource went away: no more attempts
    assert manager.acme.retry_in("web.example.com") is None


@pt.ensureDeferred
async def test_an_untrusted_directory_says_to_set_the_ca_bundle(acme_rig, log_lines):
    rig = acme_rig
    manager = rig.manager(acme=AcmeSettings(directory=rig.pebble.directory, agree_tos=True))
    await manager.set_hostnames(["web.example.com"])
    assert any("TLS to the ACME server failed" in line and "ca_bundle" in line for line in log_lines)


# -- without pebble -----------------------------------------------------------------------------


def test_which_names_acme_is_asked_for():
    assert acme_eligible("web.example.com") and acme_eligible("a-b.c.example.org")
    reserved = ("localhost", "printer.local", "x.test", "a.example", "gw.internal", "nas.home.arpa")
    for name in ("*.example.com", "single", *reserved):
        assert not acme_eligible(name), name
    assert not acme_eligible("10.0.0.1") and not acme_eligible("../etc.example.com")


def test_settings_are_checked(tmp_path):
    with pytest.raises(ValueError, match="https://"):
        AcmeSettings(directory="acme.example.com/dir")
    with pytest.raises(ValueError, match="renew_before_days"):
        AcmeSettings(directory="https://acme.example.com/dir", renew_before_days=-1)
    with pytest.raises(ValueError, match="ca_bundle"):
        AcmeSettings(directory="https://acme.example.com/dir", ca_bundle=str(tmp_path / "none.pem"))


class FailingClient:
    """Stands for AcmeClient: nothing stored, every order fails."""

    def __init__(self) -> None:
        self.orders = 0

    def stored(self, name):
        return None

    def obtain(self, name, cancelled):
        self.orders += 1
        raise AcmeError(f"validation of {name} failed (http-01: connection refused)")


def test_failures_are_retried_with_exponential_backoff_up_to_the_maximum(tmp_path, log_lines):
    clock = task.Clock()
    settings = AcmeSettings(directory="https://acme.example.com/dir", retry_initial=60, retry_max=300)
    issuer = AcmeIssuer(settings, tmp_path, clock, lambda f, *args: defer.maybeDeferred(f, *args))
    issuer.client = client = FailingClient()
    wanted = {"web.example.com"}
    issuer.wanted = lambda name: name in wanted

    results = []
    issuer.ensure("web.example.com").addCallback(results.append)
    assert results == [None] and client.orders == 1
    delays = []
    for _ in range(4):
        delays.append(issuer.retry_in("web.example.com"))
        assert issuer.ensure("web.example.com") is not None and client.orders == len(delays)  # backing off
        clock.advance(delays[-1])
    assert client.orders == 5
    for got, expected in zip(delays, [60, 120, 240, 300], strict=True):
        assert expected * 0.9 <= got <= expected * 1.1
    assert sum("connection refused" in line and "attempt 3" in line for line in log_lines) == 1

    wanted.clear()  # the name is no longer served: its pending retry does not order again
    clock.advance(issuer.retry_in("web.example.com"))
    assert client.orders == 5 and issuer.retry_in("web.example.com") is None
