"""The gateway's TLS certificates: operator-supplied files or a built-in development CA.

`load_credentials` checks PEM files an operator supplies. `ensure_dev_ca` keeps a small CA
and a server certificate signed by it under ``DATA_DIR/tls/``, created on first use and
reissued when a hostname is added or the certificate nears expiry. Edges trust the gateway
either through the CA file or by pinning the server certificate's SHA-256 fingerprint
(`fingerprint_of`), as `edge_trust_hint` tells the operator.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import os
import socket
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from twisted.logger import Logger

if TYPE_CHECKING:
    from twisted.internet.ssl import CertificateOptions

__all__ = [
    "CA_VALIDITY",
    "HOST_CERT_VALIDITY",
    "LOOPBACK_NAMES",
    "REISSUE_BEFORE_EXPIRY",
    "SERVER_CERT_VALIDITY",
    "ServerCredentials",
    "edge_trust_hint",
    "ensure_dev_ca",
    "ensure_dev_host_cert",
    "fingerprint_of",
    "fingerprint_of_der",
    "host_cert_stem",
    "load_credentials",
    "normalize_fingerprint",
]

_log = Logger()

#: Lifetime of the development CA certificate.
CA_VALIDITY = timedelta(days=3650)
#: Lifetime of a development server certificate (the most browsers accept).
SERVER_CERT_VALIDITY = timedelta(days=825)
#: Lifetime of a development certificate for one HTTPS host (`ensure_dev_host_cert`).
HOST_CERT_VALIDITY = timedelta(days=90)
#: A development server certificate expiring sooner than this is reissued.
REISSUE_BEFORE_EXPIRY = timedelta(days=30)
#: Names every development server certificate carries, besides the requested ones.
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
#: Backdating of notBefore, to tolerate clocks a little behind ours.
_CLOCK_SKEW = timedelta(minutes=5)

_FINGERPRINT_PREFIX = "sha256:"
_KEY_MODE = 0o600
_CERT_MODE = 0o644
_DIR_MODE = 0o700


@dataclass(frozen=True)
class ServerCredentials:
    """A server certificate (PEM, leaf first, then any intermediates) and its private key."""

    cert_path: str
    key_path: str
    ca_path: str | None
    fingerprint: str  # 'sha256:' + hex of the leaf certificate's DER SHA-256

    def server_options(self) -> CertificateOptions:
        """A Twisted/pyOpenSSL server context factory for these files (TLS 1.2 minimum)."""
        from twisted.internet.ssl import CertificateOptions, TLSVersion

        chain = _read_certificates(self.cert_path)
        key = _read_private_key(self.key_path)
        _check_key_matches(key, chain[0], self.cert_path, self.key_path)
        # pyOpenSSL takes cryptography objects directly (its own X509/PKey are deprecated).
        return CertificateOptions(
            privateKey=key,  # type: ignore[arg-type]
            certificate=chain[0],  # type: ignore[arg-type]
            extraCertChain=chain[1:],  # type: ignore[arg-type]
            raiseMinimumTo=TLSVersion.TLSv1_2,
        )


# -- fingerprints -------------------------------------------------------------------------


def fingerprint_of_der(der: bytes) -> str:
    """'sha256:' + lowercase hex of the SHA-256 of a DER certificate."""
    return _FINGERPRINT_PREFIX + hashlib.sha256(der).hexdigest()


def fingerprint_of(pem_bytes: bytes) -> str:
    """Fingerprint of the first certificate in PEM data."""
    try:
        cert = x509.load_pem_x509_certificate(pem_bytes)
    except ValueError as e:
        raise ValueError(f"not a PEM certificate: {e}") from None
    return fingerprint_of_der(cert.public_bytes(serialization.Encoding.DER))


def normalize_fingerprint(text: str) -> str:
    """Canonical form of a SHA-256 fingerprint ('sha256:' + 64 lowercase hex digits).

    Accepts an optional 'sha256:' prefix (any case) and colons or spaces between bytes,
    as printed by ``openssl x509 -fingerprint -sha256``.
    """
    raw = text.strip()
    if raw.lower().startswith(_FINGERPRINT_PREFIX):
        raw = raw[len(_FINGERPRINT_PREFIX) :]
    digits = raw.replace(":", "").replace(" ", "").lower()
    if len(digits) != 64 or any(c not in "0123456789abcdef" for c in digits):
        raise ValueError(
            f"invalid certificate fingerprint {text!r}: expected 'sha256:' followed by 64 hex digits"
        )
    return _FINGERPRINT_PREFIX + digits


# -- operator-supplied files ----------------------------------------------------------------


def load_credentials(cert_path: str | os.PathLike, key_path: str | os.PathLike) -> ServerCredentials:
    """Check operator-supplied PEM files and describe them; ValueError says what is wrong."""
    cert_file, key_file = os.fspath(cert_path), os.fspath(key_path)
    chain = _read_certificates(cert_file)
    key = _read_private_key(key_file)
    _check_key_matches(key, chain[0], cert_file, key_file)
    return ServerCredentials(
        cert_path=cert_file,
        key_path=key_file,
        ca_path=None,
        fingerprint=fingerprint_of_der(chain[0].public_bytes(serialization.Encoding.DER)),
    )


def _read_file(path: str, what: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        raise ValueError(f"{what} file not found: {path}") from None
    except IsADirectoryError:
        raise ValueError(f"{what} path is a directory, not a file: {path}") from None
    except PermissionError:
        raise ValueError(f"{what} file is not readable (permission denied): {path}") from None
    except OSError as e:
        raise ValueError(f"cannot read {what} file {path}: {e.strerror or e}") from None


def _read_certificates(path: str) -> list[x509.Certificate]:
    data = _read_file(path, "certificate")
    try:
        chain = x509.load_pem_x509_certificates(data)
    except ValueError:
        chain = []
    if not chain:
        raise ValueError(f"certificate file {path} contains no PEM certificate")
    return chain


def _read_private_key(path: str):
    data = _read_file(path, "private key")
    try:
        return serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise ValueError(
            f"private key file {path} is encrypted; supply an unencrypted key "
            "(and protect it with file permissions)"
        ) from None
    except (ValueError, UnsupportedAlgorithm) as e:
        raise ValueError(f"private key file {path} contains no usable PEM private key: {e}") from None


def _public_der(public_key) -> bytes:
    return public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _check_key_matches(key, cert: x509.Certificate, cert_path: str, key_path: str) -> None:
    if _public_der(key.public_key()) != _public_der(cert.public_key()):
        raise ValueError(f"the private key in {key_path} does not match the certificate in {cert_path}")


# -- development CA -------------------------------------------------------------------------


def ensure_dev_ca(data_dir: str | os.PathLike, hostnames: Iterable[str] = ()) -> ServerCredentials:
    """Create (first call) or reuse a development CA and server certificate under DATA_DIR/tls.

    The server certificate names the given hostnames plus localhost, 127.0.0.1 and ::1. It is
    reissued by the same CA when a requested name is missing from it (the new certificate
    keeps the names the old one had) or when it expires within `REISSUE_BEFORE_EXPIRY`.
    """
    tls_dir = Path(data_dir) / "tls"
    tls_dir.mkdir(mode=_DIR_MODE, parents=True, exist_ok=True)
    wanted = _normalize_names([*hostnames, *LOOPBACK_NAMES])
    with _locked(tls_dir / ".lock"):
        ca_cert, ca_key = _ensure_ca(tls_dir)
        server_pem = tls_dir / "server.pem"
        server_key = tls_dir / "server.key"
        current = _usable_server_cert(server_pem, server_key, ca_cert)
        names = wanted
        reason = "created"
        if current is not None:
            have = _san_names(current)
            missing = [n for n in wanted if n not in have]
            expires_soon = current.not_valid_after_utc - _now() < REISSUE_BEFORE_EXPIRY
            if not missing and not expires_soon:
                return _dev_credentials(tls_dir, current)
            names = _normalize_names([*wanted, *sorted(have, key=str)])
            reason = f"added {', '.join(map(str, missing))}" if missing else "expiring soon"
        cert = _issue_server_cert(ca_cert, ca_key, names, server_pem, server_key)
        _log.info(
            "Development server certificate {path} issued ({reason}) for {names}",
            path=str(server_pem),
            reason=reason,
            names=", ".join(map(str, names)),
        )
        return _dev_credentials(tls_dir, cert)


def host_cert_stem(hostname: str) -> str:
    """File name (without suffix) of a host's development certificate: '*.' is spelled 'wildcard_.'."""
    return "wildcard_" + hostname[1:] if hostname.startswith("*.") else hostname


def ensure_dev_host_cert(
    data_dir: str | os.PathLike,
    hostname: str,
    validity: timedelta | None = None,  # None: HOST_CERT_VALIDITY
) -> ServerCredentials:
    """A certificate for one hostname (or wildcard ``*.example.com``) signed by the development CA.

    Kept under ``DATA_DIR/tls/hosts/`` as ``NAME.pem`` and ``NAME.key`` (see `host_cert_stem`),
    reused while it names the host, is signed by the current CA and is valid for longer than
    `REISSUE_BEFORE_EXPIRY`; reissued otherwise. Creates the CA on first use, like
    `ensure_dev_ca`, and shares its lock. Blocking (file I/O, key generation): call it from a thread.
    """
    entry = _general_name(hostname)
    if not isinstance(entry, x509.DNSName):
        raise ValueError(f"a host certificate needs a DNS name, not an IP address: {hostname!r}")
    tls_dir = Path(data_dir) / "tls"
    tls_dir.mkdir(mode=_DIR_MODE, parents=True, exist_ok=True)
    hosts_dir = tls_dir / "hosts"
    hosts_dir.mkdir(mode=_DIR_MODE, exist_ok=True)
    stem = host_cert_stem(entry.value)
    pem, key_path = hosts_dir / f"{stem}.pem", hosts_dir / f"{stem}.key"
    with _locked(tls_dir / ".lock"):
        ca_cert, ca_key = _ensure_ca(tls_dir)
        current = _usable_server_cert(pem, key_path, ca_cert)
        if (
            current is not None
            and entry in _san_names(current)
            and current.not_valid_after_utc - _now() >= REISSUE_BEFORE_EXPIRY
        ):
            cert = current
        else:
            lifetime = HOST_CERT_VALIDITY if validity is None else validity
            cert, key = _make_server_cert(ca_cert, ca_key, [entry], lifetime)
            write_atomic(key_path, _key_pem(key), _KEY_MODE)
            write_atomic(pem, cert.public_bytes(serialization.Encoding.PEM), _CERT_MODE)
            _log.info(
                "Development certificate {path} issued for {name}, valid until {until}",
                path=str(pem),
                name=entry.value,
                until=cert.not_valid_after_utc.isoformat(),
            )
    return ServerCredentials(
        cert_path=str(pem),
        key_path=str(key_path),
        ca_path=str(tls_dir / "ca.pem"),
        fingerprint=fingerprint_of_der(cert.public_bytes(serialization.Encoding.DER)),
    )


def edge_trust_hint(creds: ServerCredentials) -> str:
    """Tell the operator what an edge needs in order to trust this gateway."""
    pin = f"--fingerprint {creds.fingerprint}"
    if creds.ca_path is not None:
        return (
            "Edges must be told to trust this gateway's development CA. Either copy "
            f"{creds.ca_path} to the edge and pass --ca-file PATH (survives server certificate "
            f"renewals), or pin this server certificate with {pin} (must be updated whenever "
            "the certificate is reissued)."
        )
    return (
        "If this certificate was issued by a CA the edge's system already trusts, edges need "
        "nothing more. Otherwise copy the issuing CA certificate to the edge and pass "
        f"--ca-file PATH, or pin this server certificate with {pin}."
    )


def _dev_credentials(tls_dir: Path, cert: x509.Certificate) -> ServerCredentials:
    return ServerCredentials(
        cert_path=str(tls_dir / "server.pem"),
        key_path=str(tls_dir / "server.key"),
        ca_path=str(tls_dir / "ca.pem"),
        fingerprint=fingerprint_of_der(cert.public_bytes(serialization.Encoding.DER)),
    )


def _ensure_ca(tls_dir: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    ca_pem, ca_key_path = tls_dir / "ca.pem", tls_dir / "ca.key"
    if ca_pem.exists():
        # Edges may already trust this CA: never replace it silently.
        cert = _read_certificates(str(ca_pem))[0]
        if not ca_key_path.exists():
            raise ValueError(
                f"development CA certificate {ca_pem} exists but its key {ca_key_path} is missing; "
                "restore the key, or remove both files to create a new CA (edges must then trust it again)"
            )
        key = _read_private_key(str(ca_key_path))
        _check_key_matches(key, cert, str(ca_pem), str(ca_key_path))
        if cert.not_valid_after_utc - _now() < REISSUE_BEFORE_EXPIRY:
            _log.warn(
                "Development CA {path} expires on {when}; remove {dir}/ca.* to create a new one",
                path=str(ca_pem),
                when=cert.not_valid_after_utc.isoformat(),
                dir=str(tls_dir),
            )
        return cert, key
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Kokoa"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"Kokoa development CA ({socket.gethostname()[:40]})"),
        ]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _CLOCK_SKEW)
        .not_valid_after(now + CA_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    write_atomic(ca_key_path, _key_pem(key), _KEY_MODE)
    write_atomic(ca_pem, cert.public_bytes(serialization.Encoding.PEM), _CERT_MODE)
    _log.info("Development CA created: {path}", path=str(ca_pem))
    return cert, key


def _usable_server_cert(pem: Path, key_path: Path, ca_cert: x509.Certificate) -> x509.Certificate | None:
    """The existing server certificate if it is intact and signed by this CA, else None."""
    if not (pem.exists() and key_path.exists()):
        return None
    try:
        cert = _read_certificates(str(pem))[0]
        key = _read_private_key(str(key_path))
        _check_key_matches(key, cert, str(pem), str(key_path))
        cert.verify_directly_issued_by(ca_cert)
    except Exception as e:  # unreadable, mismatched or signed by another CA: reissue
        _log.warn("Replacing development server certificate {path}: {error}", path=str(pem), error=e)
        return None
    return cert


def _issue_server_cert(
    ca_cert: x509.Certificate,
    ca_key,
    names: list[x509.GeneralName],
    pem: Path,
    key_path: Path,
) -> x509.Certificate:
    cert, key = _make_server_cert(ca_cert, ca_key, names)
    write_atomic(key_path, _key_pem(key), _KEY_MODE)
    write_atomic(pem, cert.public_bytes(serialization.Encoding.PEM), _CERT_MODE)
    return cert


def _make_server_cert(
    ca_cert: x509.Certificate,
    ca_key,
    names: list[x509.GeneralName],
    validity: timedelta | None = None,  # None: SERVER_CERT_VALIDITY
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    lifetime = SERVER_CERT_VALIDITY if validity is None else validity
    not_after = min(now + lifetime, ca_cert.not_valid_after_utc)
    first_dns = next((n.value for n in names if isinstance(n, x509.DNSName)), "kokoa gateway")
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, first_dns[:64])]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _CLOCK_SKEW)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    return cert, key


def _normalize_names(names: Iterable[str]) -> list[x509.GeneralName]:
    """SAN entries for hostnames and IP literals, deduplicated, in order."""
    result: list[x509.GeneralName] = []
    for raw in names:
        entry = _general_name(raw)
        if entry not in result:
            result.append(entry)
    return result


def _general_name(raw: str | x509.GeneralName) -> x509.GeneralName:
    if isinstance(raw, x509.DNSName | x509.IPAddress):
        return raw
    name = raw.strip()
    if name.startswith("[") and name.endswith("]"):
        name = name[1:-1]
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        pass
    labels = name.rstrip(".").lower().split(".")
    if not name or any(not label for label in labels):
        raise ValueError(f"invalid hostname for a certificate: {raw!r}")
    try:
        ascii_labels = [
            label if label == "*" or label.isascii() else label.encode("idna").decode("ascii")
            for label in labels
        ]
    except UnicodeError:
        raise ValueError(f"invalid hostname for a certificate: {raw!r}") from None
    allowed = set("abcdefghijklmnopqrstuvwxyz0123456789-_")
    for i, label in enumerate(ascii_labels):
        if (label == "*" and i == 0) or (set(label) <= allowed and len(label) <= 63):
            continue
        raise ValueError(f"invalid hostname for a certificate: {raw!r}")
    return x509.DNSName(".".join(ascii_labels))


def _san_names(cert: x509.Certificate) -> set[x509.GeneralName]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    return {n for n in san if isinstance(n, x509.DNSName | x509.IPAddress)}


def _key_pem(key) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def write_atomic(path: Path, data: bytes, mode: int) -> None:
    """Write a file so that readers see the old or the new content, never a partial one."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):  # make the rename durable too
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Serialize concurrent callers (e.g. two processes starting at once) on a lock file."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, _KEY_MODE)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _now() -> datetime:
    return datetime.now(UTC)
