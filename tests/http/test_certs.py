"""The HTTPS front's certificates per host: real TLS handshakes on 127.0.0.1, picked by SNI."""

from __future__ import annotations

import os
import socket
import ssl
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import pytest_twisted as pt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from twisted.internet import reactor, task, threads
from twisted.internet.protocol import Factory, Protocol
from twisted.protocols.tls import TLSMemoryBIOFactory

from kokoa import pki
from kokoa.http._certs import CertificateManager

# -- an operator's CA and certificate files -------------------------------------------------


class OperatorCA:
    """A CA of our own, standing for whoever issued the operator's certificate files."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Test operator CA")])
        now = datetime.now(UTC)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(hours=1))
            .not_valid_after(now + timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        self.ca_path = folder / "operator-ca.pem"
        self.ca_path.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))

    def issue(self, stem: str, names: list[str], days: int = 20) -> tuple[str, str, str]:
        """Write STEM.pem and STEM.key for these DNS names; return the paths and the fingerprint."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.now(UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(hours=1))
            .not_valid_after(now + timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        cert_path, key_path = self.folder / f"{stem}.pem", self.folder / f"{stem}.key"
        key_path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        der = cert.public_bytes(serialization.Encoding.DER)
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return str(cert_path), str(key_path), pki.fingerprint_of_der(der)


# -- a TLS listener and a client -----------------------------------------------------------


@dataclass
class Handshake:
    fingerprint: str
    alpn: str | None
    names: list[str]


def handshake(port: int, server_name: str | None, cafile: str | None = None, alpn=("h2", "http/1.1")):
    """A blocking TLS handshake (run it in a thread); verified against `cafile` when given."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if cafile is not None:
        ctx.load_verify_locations(cafile)
    else:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(list(alpn))
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        ctx.wrap_socket(raw, server_hostname=server_name) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
        cert = x509.load_der_x509_certificate(der)
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = san.get_values_for_type(x509.DNSName)
        return Handshake(pki.fingerprint_of_der(der), tls.selected_alpn_protocol(), names)


class Rig:
    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.data_dir = tmp_path / "data"
        self.operator = OperatorCA(tmp_path / "operator")
        self.managers: list[CertificateManager] = []
        self.ports: list = []

    def manager(self, **kwargs) -> CertificateManager:
        kwargs.setdefault("files", [])
        manager = CertificateManager(self.data_dir, reactor, **kwargs)
        self.managers.append(manager)
        return manager

    def listen(self, manager: CertificateManager) -> int:
        factory = TLSMemoryBIOFactory(manager.server_context_factory(), False, Factory.forProtocol(Protocol))
        port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.ports.append(port)
        return port.getHost().port

    @property
    def dev_ca(self) -> str:
        return str(self.data_dir / "tls" / "ca.pem")

    async def close(self) -> None:
        for port in self.ports:
            await port.stopListening()
        for manager in self.managers:
            await manager.close()


@pt.async_yield_fixture
async def rig(tmp_path):
    rig = Rig(tmp_path)
    yield rig
    await rig.close()


def shake(port, name, cafile=None, **kwargs):
    return threads.deferToThread(handshake, port, name, cafile, **kwargs)


async def eventually(predicate, timeout: float = 5.0) -> None:
    for _ in range(int(timeout / 0.02)):
        if predicate():
            return
        await task.deferLater(reactor, 0.02, lambda: None)
    raise AssertionError("condition not reached in time")


# -- selection -------------------------------------------------------------------------------


@pt.ensureDeferred
async def test_sni_picks_the_file_the_wildcard_the_dev_leaf_or_the_default(rig):
    cert, key, file_fp = rig.operator.issue("site", ["files.example.com", "*.wild.example.com"])
    manager = rig.manager(files=[(cert, key)])
    sources = await manager.set_hostnames(
        ["files.example.com", "dev.example.com", "*.apps.example.com", "Upper.Example.com."]
    )
    assert sources == {
        "*.apps.example.com": "dev",
        "dev.example.com": "dev",
        "files.example.com": "file",
        "upper.example.com": "dev",
    }
    port = rig.listen(manager)
    default_fp = manager.certificate_for(None).fingerprint
    assert default_fp == pki.ensure_dev_ca(rig.data_dir).fingerprint  # the gateway's own certificate

    # A file's host, verified against the operator's CA with the host name checked.
    exact = await shake(port, "files.example.com", str(rig.operator.ca_path))
    assert exact.fingerprint == file_fp and exact.alpn == "http/1.1"
    # Its wildcard covers one label more, whether or not a resource uses that host ...
    wild = await shake(port, "anything.wild.example.com", str(rig.operator.ca_path))
    assert wild.fingerprint == file_fp
    # ... and not two.
    assert (await shake(port, "a.b.wild.example.com")).fingerprint == default_fp

    # Other resource hostnames: their own leaf of the development CA, which verifies.
    dev = await shake(port, "dev.example.com", rig.dev_ca)
    assert dev.names == ["dev.example.com"] and dev.fingerprint not in (file_fp, default_fp)
    apps = await shake(port, "x.apps.example.com", rig.dev_ca)
    assert apps.names == ["*.apps.example.com"]
    assert (await shake(port, "upper.example.com", rig.dev_ca)).names == ["upper.example.com"]

    # Names no resource has, and clients without SNI: the default certificate.
    assert (await shake(port, "unknown.example.org")).fingerprint == default_fp
    assert (await shake(port, "x.y.apps.example.com")).fingerprint == default_fp
    assert (await shake(port, None)).fingerprint == default_fp
    assert manager.source_for("unknown.example.org") == "default"


@pt.ensureDeferred
async def test_alpn_offers_http_1_1_only(rig):
    manager = rig.manager()
    port = rig.listen(manager)
    assert (await shake(port, "x.example.com", alpn=("h2", "http/1.1"))).alpn == "http/1.1"
    assert (await shake(port, "x.example.com", alpn=("http/1.1",))).alpn == "http/1.1"
    # A client offering none of ours still gets its handshake, without a protocol chosen.
    assert (await shake(port, "x.example.com", alpn=("h2",))).alpn is None
    assert (await shake(port, None, alpn=())).alpn is None


@pt.ensureDeferred
async def test_contexts_are_built_once_per_certificate(rig):
    cert, key, _ = rig.operator.issue("site", ["files.example.com"])
    manager = rig.manager(files=[(cert, key)])
    await manager.set_hostnames(["dev.example.com"])
    for name in (b"files.example.com", b"dev.example.com", b"nothing.example.org", None):
        assert manager._context_for(name) is manager._context_for(name)
    assert manager._context_for(b"dev.example.com") is not manager._context_for(b"files.example.com")


@pt.ensureDeferred
async def test_a_name_not_ready_gets_the_default_until_its_leaf_is_made(rig, monkeypatch):
    release = threading.Event()
    real = pki.ensure_dev_host_cert

    def slow(*args, **kwargs):
        assert release.wait(10)
        return real(*args, **kwargs)

    monkeypatch.setattr(pki, "ensure_dev_host_cert", slow)
    manager = rig.manager()
    port = rig.listen(manager)
    default_fp = manager.certificate_for(None).fingerprint
    prepared = manager.set_hostnames(["late.example.com"])
    # The handshake is not held up while the leaf is being made: the default answers.
    assert (await shake(port, "late.example.com")).fingerprint == default_fp
    release.set()
    assert await prepared == {"late.example.com": "dev"}
    assert (await shake(port, "late.example.com", rig.dev_ca)).names == ["late.example.com"]


@pt.ensureDeferred
async def test_a_handshake_for_a_name_without_its_leaf_starts_making_it(rig, monkeypatch):
    real = pki.ensure_dev_host_cert
    failures = [RuntimeError("disk full")]

    def flaky(*args, **kwargs):
        if failures:
            raise failures.pop()
        return real(*args, **kwargs)

    monkeypatch.setattr(pki, "ensure_dev_host_cert", flaky)
    manager = rig.manager()
    port = rig.listen(manager)
    assert await manager.set_hostnames(["flaky.example.com"]) == {"flaky.example.com": "default"}
    assert (await shake(port, "flaky.example.com")).fingerprint == manager.certificate_for(None).fingerprint
    await eventually(lambda: manager.source_for("flaky.example.com") == "dev")
    assert (await shake(port, "flaky.example.com", rig.dev_ca)).names == ["flaky.example.com"]


# -- the development CA's leaves on disk ----------------------------------------------------------


@pt.ensureDeferred
async def test_dev_leaves_are_kept_on_disk_and_reused(rig):
    first = rig.manager()
    await first.set_hostnames(["dev.example.com", "*.apps.example.com"])
    hosts = rig.data_dir / "tls" / "hosts"
    assert sorted(p.name for p in hosts.iterdir()) == [
        "dev.example.com.key",
        "dev.example.com.pem",
        "wildcard_.apps.example.com.key",
        "wildcard_.apps.example.com.pem",
    ]
    assert (hosts / "dev.example.com.key").stat().st_mode & 0o777 == 0o600
    leaf = first.certificate_for("dev.example.com")
    assert timedelta(days=89) < leaf.not_after - datetime.now(UTC) <= timedelta(days=90)

    second = rig.manager()
    await second.set_hostnames(["dev.example.com"])
    assert second.certificate_for("dev.example.com").fingerprint == leaf.fingerprint


@pt.ensureDeferred
async def test_an_expiring_dev_leaf_is_reissued(rig):
    old = pki.ensure_dev_host_cert(rig.data_dir, "dev.example.com", validity=timedelta(days=10))
    manager = rig.manager()
    await manager.set_hostnames(["dev.example.com"])
    new = manager.certificate_for("dev.example.com")
    assert new.fingerprint != old.fingerprint
    assert new.not_after - datetime.now(UTC) > timedelta(days=89)

    # In memory too: the periodic check replaces a leaf in its last 30 days.
    short = rig.manager(dev_validity=timedelta(days=10))
    await short.set_hostnames(["short.example.com"])
    before = short.certificate_for("short.example.com").fingerprint
    await short.refresh()
    assert short.certificate_for("short.example.com").fingerprint != before


# -- files -------------------------------------------------------------------------------------


@pt.ensureDeferred
async def test_a_replaced_file_is_served_after_reload(rig):
    cert, key, old_fp = rig.operator.issue("site", ["files.example.com"])
    manager = rig.manager(files=[(cert, key)], dev_ca=False)
    port = rig.listen(manager)
    assert (await shake(port, "files.example.com")).fingerprint == old_fp
    assert (await shake(port, None)).fingerprint == old_fp  # the only file is the default

    _, _, new_fp = rig.operator.issue("site", ["files.example.com"])  # renewed in place
    assert (await shake(port, "files.example.com")).fingerprint == old_fp  # read only on reload
    assert await manager.reload() == []
    assert (await shake(port, "files.example.com")).fingerprint == new_fp
    assert (await shake(port, None)).fingerprint == new_fp


@pt.ensureDeferred
async def test_a_broken_file_at_reload_keeps_the_previous_certificate(rig):
    cert, key, fp = rig.operator.issue("site", ["files.example.com"])
    manager = rig.manager(files=[(cert, key)])
    port = rig.listen(manager)
    Path(cert).write_text("not a certificate\n")
    problems = await manager.reload()
    assert len(problems) == 1 and cert in problems[0] and "no PEM certificate" in problems[0]
    assert (await shake(port, "files.example.com")).fingerprint == fp


def test_a_bad_file_is_refused_at_start(tmp_path):
    operator = OperatorCA(tmp_path / "operator")
    cert, _, _ = operator.issue("one", ["one.example.com"])
    _, other_key, _ = operator.issue("two", ["two.example.com"])
    with pytest.raises(ValueError, match="does not match"):
        CertificateManager(tmp_path / "data", reactor, files=[(cert, other_key)])
    with pytest.raises(ValueError, match="not found"):
        CertificateManager(tmp_path / "data", reactor, files=[(cert, str(tmp_path / "missing.key"))])


def test_without_the_dev_ca_something_must_be_configured(tmp_path):
    with pytest.raises(ValueError, match="no default certificate"):
        CertificateManager(tmp_path / "data", reactor, dev_ca=False)


@pt.ensureDeferred
async def test_without_the_dev_ca_other_hosts_get_the_default(rig):
    cert, key, fp = rig.operator.issue("site", ["files.example.com"])
    manager = rig.manager(files=[(cert, key)], dev_ca=False)
    assert await manager.set_hostnames(["other.example.com", "*.apps.example.com"]) == {
        "*.apps.example.com": "default",
        "other.example.com": "default",
    }
    port = rig.listen(manager)
    assert (await shake(port, "other.example.com")).fingerprint == fp
    assert not (rig.data_dir / "tls").exists()


@pt.ensureDeferred
async def test_a_given_default_serves_unknown_names(rig):
    gateway = pki.ensure_dev_ca(rig.tmp_path / "gateway", ["gw.example.com"])
    manager = rig.manager(default=gateway)
    port = rig.listen(manager)
    assert (await shake(port, "nobody.example.org")).fingerprint == gateway.fingerprint
    assert manager.challenge_response("token") is None  # no ACME configured


# -- hostnames come and go; the service -----------------------------------------------------------


@pt.ensureDeferred
async def test_removed_hostnames_stop_getting_their_leaf(rig):
    manager = rig.manager()
    await manager.set_hostnames(["a.example.com", "b.example.com"])
    assert manager.source_for("a.example.com") == "dev"
    assert await manager.set_hostnames(["b.example.com", "c.example.com"]) == {"c.example.com": "dev"}
    assert manager.source_for("a.example.com") == "default"
    assert await manager.prepare(["a.example.com", "b.example.com"]) == {
        "a.example.com": "default",  # not a resource hostname any more: not prepared
        "b.example.com": "dev",
    }


@pt.ensureDeferred
async def test_the_service_prepares_at_start_and_stops_its_threads(rig):
    manager = rig.manager(check_interval=3600)
    manager._hostnames = frozenset({"early.example.com"})  # as if set before the start
    manager.startService()
    await eventually(lambda: manager.source_for("early.example.com") == "dev")
    await manager.stopService()
    assert manager._pool is None and manager._timer is None
    assert os.path.exists(rig.data_dir / "tls" / "hosts" / "early.example.com.pem")
