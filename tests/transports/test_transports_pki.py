"""The gateway's certificates: the development CA and operator-supplied files."""

from __future__ import annotations

import ipaddress
import os
import stat
from datetime import timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from twisted.internet.ssl import CertificateOptions

from kokoa import pki


def _cert(path) -> x509.Certificate:
    with open(path, "rb") as f:
        return x509.load_pem_x509_certificate(f.read())


def _sans(cert: x509.Certificate) -> list:
    return list(cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_dev_ca_created_with_expected_contents(tmp_path):
    creds = pki.ensure_dev_ca(tmp_path, ["gateway.example.com", "10.1.2.3"])
    tls = tmp_path / "tls"
    assert creds.ca_path == str(tls / "ca.pem")
    assert creds.cert_path == str(tls / "server.pem")
    assert creds.key_path == str(tls / "server.key")
    assert _mode(tls / "ca.key") == 0o600
    assert _mode(tls / "server.key") == 0o600
    assert _mode(tls) == 0o700
    assert not [p for p in os.listdir(tls) if p.endswith(".tmp")]

    ca, server = _cert(tls / "ca.pem"), _cert(tls / "server.pem")
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert not server.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    server.verify_directly_issued_by(ca)
    sans = _sans(server)
    assert x509.DNSName("gateway.example.com") in sans
    assert x509.DNSName("localhost") in sans
    assert x509.IPAddress(ipaddress.ip_address("10.1.2.3")) in sans
    assert x509.IPAddress(ipaddress.ip_address("127.0.0.1")) in sans
    assert x509.IPAddress(ipaddress.ip_address("::1")) in sans
    assert not any(isinstance(n, x509.DNSName) and n.value in ("127.0.0.1", "::1") for n in sans)

    lifetime = server.not_valid_after_utc - server.not_valid_before_utc
    assert timedelta(days=824) < lifetime < timedelta(days=826)
    assert ca.not_valid_after_utc - ca.not_valid_before_utc > timedelta(days=3649)
    assert creds.fingerprint == pki.fingerprint_of((tls / "server.pem").read_bytes())
    assert creds.fingerprint.startswith("sha256:") and len(creds.fingerprint) == 7 + 64


def test_dev_ca_reused_on_later_calls(tmp_path):
    first = pki.ensure_dev_ca(tmp_path, ["gateway.example.com"])
    tls = tmp_path / "tls"
    before = {name: (tls / name).read_bytes() for name in ("ca.pem", "ca.key", "server.pem", "server.key")}
    again = pki.ensure_dev_ca(tmp_path, ["gateway.example.com"])
    fewer = pki.ensure_dev_ca(tmp_path, [])  # a subset of the names: nothing to do
    assert again == first == fewer
    assert before == {name: (tls / name).read_bytes() for name in before}


def test_new_hostname_reissues_server_cert_from_same_ca(tmp_path):
    first = pki.ensure_dev_ca(tmp_path, ["a.example.com"])
    ca_before = (tmp_path / "tls" / "ca.pem").read_bytes()
    second = pki.ensure_dev_ca(tmp_path, ["b.example.com"])
    assert second.fingerprint != first.fingerprint
    assert (tmp_path / "tls" / "ca.pem").read_bytes() == ca_before
    server = _cert(second.cert_path)
    server.verify_directly_issued_by(_cert(second.ca_path))
    sans = _sans(server)
    assert x509.DNSName("a.example.com") in sans  # names already issued are kept
    assert x509.DNSName("b.example.com") in sans
    assert _mode(second.key_path) == 0o600
    pki.load_credentials(second.cert_path, second.key_path)  # new key matches new cert


def test_expiring_server_cert_is_reissued(tmp_path, monkeypatch):
    monkeypatch.setattr(pki, "SERVER_CERT_VALIDITY", timedelta(days=10))
    first = pki.ensure_dev_ca(tmp_path, [])
    monkeypatch.undo()
    second = pki.ensure_dev_ca(tmp_path, [])
    assert second.fingerprint != first.fingerprint
    lifetime = _cert(second.cert_path).not_valid_after_utc - _cert(second.cert_path).not_valid_before_utc
    assert lifetime > timedelta(days=800)


def test_server_cert_from_another_ca_is_replaced(tmp_path):
    pki.ensure_dev_ca(tmp_path / "one", [])
    pki.ensure_dev_ca(tmp_path / "two", [])
    for name in ("server.pem", "server.key"):
        (tmp_path / "two" / "tls" / name).write_bytes((tmp_path / "one" / "tls" / name).read_bytes())
    creds = pki.ensure_dev_ca(tmp_path / "two", [])
    _cert(creds.cert_path).verify_directly_issued_by(_cert(creds.ca_path))


def test_missing_ca_key_is_an_error_not_a_new_ca(tmp_path):
    pki.ensure_dev_ca(tmp_path, [])
    os.unlink(tmp_path / "tls" / "ca.key")
    with pytest.raises(ValueError, match=r"ca\.key is missing"):
        pki.ensure_dev_ca(tmp_path, [])


@pytest.mark.parametrize("name", ["", "bad name.example", "a..b", "-" * 70 + ".example"])
def test_invalid_hostnames_rejected(tmp_path, name):
    with pytest.raises(ValueError, match="invalid hostname"):
        pki.ensure_dev_ca(tmp_path, [name])


def test_wildcard_idna_and_bracketed_ipv6_names(tmp_path):
    creds = pki.ensure_dev_ca(
        tmp_path, ["*.apps.example.com", "bücher.example", "[2001:db8::1]", "Upper.Example."]
    )
    sans = _sans(_cert(creds.cert_path))
    assert x509.DNSName("*.apps.example.com") in sans
    assert x509.DNSName("xn--bcher-kva.example") in sans
    assert x509.DNSName("upper.example") in sans
    assert x509.IPAddress(ipaddress.ip_address("2001:db8::1")) in sans


def test_server_options_gives_a_tls12_context(tmp_path):
    creds = pki.ensure_dev_ca(tmp_path, [])
    options = creds.server_options()
    assert isinstance(options, CertificateOptions)
    options.getContext()


def test_load_credentials_accepts_matching_files(tmp_path):
    dev = pki.ensure_dev_ca(tmp_path, [])
    creds = pki.load_credentials(dev.cert_path, dev.key_path)
    assert creds.fingerprint == dev.fingerprint
    assert creds.ca_path is None
    creds.server_options().getContext()


def test_load_credentials_errors(tmp_path):
    dev = pki.ensure_dev_ca(tmp_path, [])
    with pytest.raises(ValueError, match=r"certificate file not found: .*nope\.pem"):
        pki.load_credentials(tmp_path / "nope.pem", dev.key_path)
    with pytest.raises(ValueError, match="private key file not found"):
        pki.load_credentials(dev.cert_path, tmp_path / "nope.key")
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("hello")
    with pytest.raises(ValueError, match="contains no PEM certificate"):
        pki.load_credentials(garbage, dev.key_path)
    with pytest.raises(ValueError, match="no usable PEM private key"):
        pki.load_credentials(dev.cert_path, garbage)
    with pytest.raises(ValueError, match="is a directory"):
        pki.load_credentials(tmp_path, dev.key_path)

    other_key = tmp_path / "other.key"
    other_key.write_bytes(pki._key_pem(ec.generate_private_key(ec.SECP256R1())))
    with pytest.raises(ValueError, match="does not match the certificate"):
        pki.load_credentials(dev.cert_path, other_key)

    encrypted = tmp_path / "encrypted.key"
    key = ec.generate_private_key(ec.SECP256R1())
    encrypted.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    with pytest.raises(ValueError, match="encrypted"):
        pki.load_credentials(dev.cert_path, encrypted)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_load_credentials_unreadable(tmp_path):
    dev = pki.ensure_dev_ca(tmp_path, [])
    os.chmod(dev.key_path, 0)
    with pytest.raises(ValueError, match="not readable"):
        pki.load_credentials(dev.cert_path, dev.key_path)


def test_fingerprints():
    digest = "AB:" * 31 + "AB"
    assert pki.normalize_fingerprint(digest) == "sha256:" + "ab" * 32
    assert pki.normalize_fingerprint("SHA256:" + "Cd" * 32) == "sha256:" + "cd" * 32
    for bad in ["sha256:abc", "md5:" + "ab" * 16, "zz" * 32]:
        with pytest.raises(ValueError, match="invalid certificate fingerprint"):
            pki.normalize_fingerprint(bad)
    with pytest.raises(ValueError, match="not a PEM certificate"):
        pki.fingerprint_of(b"nothing")


def test_edge_trust_hint(tmp_path):
    dev = pki.ensure_dev_ca(tmp_path, [])
    hint = pki.edge_trust_hint(dev)
    assert dev.ca_path in hint and "--ca-file" in hint and f"--fingerprint {dev.fingerprint}" in hint
    operator = pki.load_credentials(dev.cert_path, dev.key_path)
    assert f"--fingerprint {operator.fingerprint}" in pki.edge_trust_hint(operator)
