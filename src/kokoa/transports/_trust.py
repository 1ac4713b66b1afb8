"""How an edge decides to trust a gateway's TLS certificate."""

from __future__ import annotations

from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from OpenSSL import SSL
from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator
from twisted.internet.ssl import (
    Certificate,
    CertificateOptions,
    TLSVersion,
    optionsForClientTLS,
    trustRootFromCertificates,
)
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from kokoa.pki import fingerprint_of_der, normalize_fingerprint

from ._errors import CertificateFingerprintMismatch

_log = Logger()
_MINIMUM_TLS = TLSVersion.TLSv1_2


@dataclass(frozen=True)
class Trust:
    """What the edge trusts.

    - default (nothing set): the system trust store, with the hostname verified;
    - ``ca_file``: only CAs in that PEM file, hostname still verified;
    - ``fingerprint``: exactly the certificate with this SHA-256 fingerprint, whoever issued
      it and whatever names it carries (the pin is stronger than a name check);
    - ``insecure``: nothing is verified (tests and development only).
    """

    ca_file: str | None = None
    fingerprint: str | None = None
    insecure: bool = False

    def __post_init__(self) -> None:
        chosen = [self.ca_file is not None, self.fingerprint is not None, self.insecure]
        if sum(chosen) > 1:
            raise ValueError("choose one of ca_file, fingerprint or insecure, not several")
        if self.fingerprint is not None:
            object.__setattr__(self, "fingerprint", normalize_fingerprint(self.fingerprint))

    def connection_creator(self, hostname: str) -> IOpenSSLClientConnectionCreator:
        """A client TLS connection creator for `hostname` that applies this trust."""
        extra = {"raiseMinimumTo": _MINIMUM_TLS}
        if self.insecure:
            _log.warn(
                "!!! TLS certificate verification is DISABLED for {host}: anyone on the path can "
                "impersonate the gateway. Use this for tests and development only. !!!",
                host=hostname,
            )
            return _UnverifiedCreator(hostname)
        if self.fingerprint is not None:
            return _PinnedCreator(hostname, self.fingerprint)
        if self.ca_file is not None:
            return optionsForClientTLS(
                hostname, trustRoot=load_trust_root(self.ca_file), extraCertificateOptions=extra
            )
        return optionsForClientTLS(hostname, extraCertificateOptions=extra)


def load_trust_root(ca_file: str):
    """A trust root of the PEM certificates in ``ca_file``; ValueError saying why it cannot be read."""
    try:
        with open(ca_file, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ValueError(f"cannot read CA file {ca_file}: {e.strerror or e}") from None
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError:
        certs = []
    if not certs:
        raise ValueError(f"CA file {ca_file} contains no PEM certificate")
    return trustRootFromCertificates([Certificate.load(c.public_bytes(Encoding.DER)) for c in certs])


def _sni(hostname: str) -> bytes | None:
    """The server name to send, or None for IP literals (which SNI does not allow)."""
    if isIPAddress(hostname) or isIPv6Address(hostname):
        return None
    return hostname.encode("idna")


@implementer(IOpenSSLClientConnectionCreator)
class _PinnedCreator:
    """Accepts exactly the server certificate with the pinned SHA-256 fingerprint."""

    def __init__(self, hostname: str, fingerprint: str) -> None:
        self._server_name = _sni(hostname)
        self._expected = fingerprint
        self._context = CertificateOptions(raiseMinimumTo=_MINIMUM_TLS).getContext()

    def clientConnectionForTLS(self, tlsProtocol) -> SSL.Connection:
        connection = SSL.Connection(self._context, None)
        connection.set_app_data(tlsProtocol)
        connection.set_connect_state()
        if self._server_name is not None:
            connection.set_tlsext_host_name(self._server_name)
        expected = self._expected

        def verify(conn: SSL.Connection, cert, errno: int, depth: int, ok: int) -> bool:
            if depth != 0:
                return True  # the chain does not matter: only the leaf is pinned
            actual = fingerprint_of_der(cert.to_cryptography().public_bytes(Encoding.DER))
            if actual == expected:
                return True
            # As Twisted's own hostname check does: record the reason, then fail the handshake.
            tlsProtocol.failVerification(Failure(CertificateFingerprintMismatch(expected, actual)))
            return False

        connection.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT, verify)
        return connection


@implementer(IOpenSSLClientConnectionCreator)
class _UnverifiedCreator:
    """Accepts any server certificate."""

    def __init__(self, hostname: str) -> None:
        self._server_name = _sni(hostname)
        self._context = CertificateOptions(raiseMinimumTo=_MINIMUM_TLS).getContext()

    def clientConnectionForTLS(self, tlsProtocol) -> SSL.Connection:
        connection = SSL.Connection(self._context, None)
        connection.set_app_data(tlsProtocol)
        connection.set_connect_state()
        if self._server_name is not None:
            connection.set_tlsext_host_name(self._server_name)
        return connection
