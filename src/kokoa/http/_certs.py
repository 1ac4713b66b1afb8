"""Certificates per host for the HTTPS front, picked by SNI.

For a server name, in this order:

1. a certificate from the operator's files whose subjectAltName DNS names cover it (exact
   first, then ``*.example.com`` matching one label);
2. a certificate issued by ACME for exactly that name, when ACME is configured and the name is
   an exact resource hostname (`set_hostnames`);
3. a leaf signed by the development CA of `kokoa.pki` for that resource hostname (exact or
   wildcard), when ``dev_ca`` is on (the default): issued on demand, cached on disk under
   ``DATA_DIR/tls/hosts/`` and in memory, valid 90 days, reissued in its last 30;
4. otherwise the default certificate (the gateway's own, or the first file).

The SNI callback only looks in memory. A TLS context is built once per certificate, in a worker
thread, together with reading files and generating keys; a name whose certificate is not ready
gets the default one and starts its preparation.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from OpenSSL import SSL
from twisted.application import service
from twisted.internet import defer, task
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

from kokoa import pki

from ._acme import AcmeIssuer, AcmeSettings, StoredCertificate, acme_eligible

__all__ = [
    "ALPN_PROTOCOLS",
    "CertificateManager",
    "LoadedCertificate",
    "load_certificate",
]

log = Logger()

#: Protocols the HTTPS front offers over ALPN.
ALPN_PROTOCOLS = (b"http/1.1",)
#: A certificate from a file expiring sooner than this is warned about at each check.
FILE_EXPIRY_WARNING = timedelta(days=14)

FILE, ACME, DEV, DEFAULT = "file", "acme", "dev", "default"


@dataclass(eq=False)
class LoadedCertificate:
    """A certificate and key read from disk, with the TLS context serving them."""

    source: str  # "file", "acme", "dev" or "default"
    cert_path: str
    key_path: str
    names: tuple[str, ...]  # subjectAltName DNS names, lowercase
    not_after: datetime
    fingerprint: str
    context: Any = field(repr=False)  # OpenSSL.SSL.Context
    options: Any = field(repr=False)  # the CertificateOptions that made it

    def describe(self) -> dict:
        return {
            "source": self.source,
            "names": list(self.names),
            "not_after": self.not_after.isoformat(),
            "fingerprint": self.fingerprint,
            "cert_path": self.cert_path,
        }


def load_certificate(cert_path: str, key_path: str, source: str) -> LoadedCertificate:
    """Read a PEM chain and key and build their server context (blocking: use a thread).

    Raises ValueError saying what is wrong with the files.
    """
    chain = pki._read_certificates(cert_path)
    key = pki._read_private_key(key_path)
    pki._check_key_matches(key, chain[0], cert_path, key_path)
    options = _options(key, chain)
    leaf = chain[0]
    return LoadedCertificate(
        source=source,
        cert_path=cert_path,
        key_path=key_path,
        names=_dns_names(leaf),
        not_after=leaf.not_valid_after_utc,
        fingerprint=pki.fingerprint_of_der(leaf.public_bytes(serialization.Encoding.DER)),
        context=options.getContext(),
        options=options,
    )


def _options(key, chain: list[x509.Certificate], **extra):
    from twisted.internet.ssl import CertificateOptions, TLSVersion

    # pyOpenSSL takes cryptography objects directly (its own X509/PKey are deprecated).
    options = CertificateOptions(
        privateKey=key,  # type: ignore[arg-type]
        certificate=chain[0],  # type: ignore[arg-type]
        extraCertChain=chain[1:],  # type: ignore[arg-type]
        raiseMinimumTo=TLSVersion.TLSv1_2,
        **extra,
    )
    # Our own ALPN choice rather than acceptableProtocols=: Twisted's aborts the handshake with an
    # internal error when the client offers none of ours; this one goes on without ALPN.
    options.getContext().set_alpn_select_callback(_select_alpn)
    return options


def _select_alpn(connection, offered: list[bytes]):
    for protocol in ALPN_PROTOCOLS:
        if protocol in offered:
            return protocol
    return SSL.NO_OVERLAPPING_PROTOCOLS


def _dns_names(cert: x509.Certificate) -> tuple[str, ...]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return ()
    return tuple(dict.fromkeys(n.lower().rstrip(".") for n in san.get_values_for_type(x509.DNSName)))


def _normalize_hostname(raw: str) -> str | None:
    """A resource hostname as certificates name it (lowercase A-labels), or None for an IP."""
    entry = pki._general_name(raw)
    return entry.value if isinstance(entry, x509.DNSName) else None


def _sni_name(server_name: bytes | None) -> str | None:
    if not server_name:
        return None
    try:
        name = server_name.decode("ascii").lower().rstrip(".")
    except UnicodeDecodeError:
        return None
    return name or None


def _parent(name: str) -> str | None:
    head, dot, rest = name.partition(".")
    return rest if dot and head and rest else None


class CertificateManager(service.Service):
    """Chooses the HTTPS front's certificate for each server name (SNI); keeps them current.

    `files`: ``(cert_path, key_path)`` pairs, read now (a bad file raises ValueError). `dev_ca`:
    fall back to per-host leaves of the development CA (on by default, so that a fresh gateway
    serves HTTPS). `acme`: issue certificates for exact resource hostnames. `default`: the
    certificate for names nothing else covers and for clients without SNI; by default the
    development CA's server certificate (`pki.ensure_dev_ca`) with ``dev_ca``, else the first
    file.

    As a service: starting it prepares every hostname and checks them again every
    `check_interval` seconds (renewals); stopping it stops retries and waits for its threads.
    """

    name = "https-certificates"

    def __init__(
        self,
        data_dir: str | os.PathLike,
        reactor,
        files: Iterable[tuple[str | os.PathLike, str | os.PathLike]] = (),
        dev_ca: bool = True,
        acme: AcmeSettings | None = None,
        *,
        default: pki.ServerCredentials | None = None,
        check_interval: float = 12 * 3600.0,
        dev_validity: timedelta | None = None,  # None: pki.HOST_CERT_VALIDITY (90 days)
        threads: int = 4,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.reactor = reactor
        self.dev_ca = dev_ca
        self.check_interval = check_interval
        self.dev_validity = dev_validity
        self._file_specs = [(os.fspath(c), os.fspath(k)) for c, k in files]
        self._files = [load_certificate(c, k, FILE) for c, k in self._file_specs]
        self._file_exact: dict[str, LoadedCertificate] = {}
        self._file_wild: dict[str, LoadedCertificate] = {}
        self._index_files()
        if default is not None:
            self._default_spec = (default.cert_path, default.key_path)
        elif dev_ca:
            creds = pki.ensure_dev_ca(self.data_dir)
            self._default_spec = (creds.cert_path, creds.key_path)
        elif self._file_specs:
            self._default_spec = self._file_specs[0]
        else:
            raise ValueError(
                "the HTTPS front has no default certificate (for clients without SNI and unknown "
                "names): configure a certificate file or turn the development CA on"
            )
        self._default = load_certificate(*self._default_spec, DEFAULT)
        self._hostnames: frozenset[str] = frozenset()
        self._wildcards: frozenset[str] = frozenset()  # parents of '*.parent' hostnames
        self._acme_certs: dict[str, LoadedCertificate] = {}
        self._dev_certs: dict[str, LoadedCertificate] = {}  # by hostname pattern
        self._dev_pending: dict[str, defer.Deferred] = {}
        self._options: Any = None
        self._threads = threads
        self._pool: ThreadPool | None = None
        self._pool_trigger: Any = None
        self._closing = False
        self._inflight: set[defer.Deferred] = set()
        self._timer: task.LoopingCall | None = None
        self.acme = (
            AcmeIssuer(acme, self.data_dir, reactor, self._in_thread, self._acme_ready) if acme else None
        )
        if self.acme is not None:
            self.acme.wanted = lambda name: name in self._hostnames

    # -- what the front uses ---------------------------------------------------------------

    def server_context_factory(self):
        """A server connection creator for `TLSMemoryBIOFactory` / `endpoints`, switching on SNI."""
        if self._options is None:
            chain = pki._read_certificates(self._default.cert_path)
            key = pki._read_private_key(self._default.key_path)
            self._options = _options(key, chain, contextForServerName=self._context_for)
        return self._options

    def challenge_response(self, token: str) -> bytes | None:
        """The answer to ``GET /.well-known/acme-challenge/<token>`` on plain HTTP, or None."""
        return self.acme.challenge_response(token) if self.acme is not None else None

    def source_for(self, server_name: str) -> str:
        """Where a handshake for this name gets its certificate now: file, acme, dev or default."""
        return self.certificate_for(server_name).source

    def certificate_for(self, server_name: str | None) -> LoadedCertificate:
        """The certificate a handshake for this name (None: no SNI) gets now."""
        try:
            name = _normalize_hostname(server_name) if server_name else None
        except ValueError:
            name = None
        return self._select(name, kick=False)

    def describe(self) -> list[dict]:
        """Every certificate in memory, for status pages."""
        certs = [self._default, *self._files, *self._acme_certs.values(), *self._dev_certs.values()]
        return [c.describe() for c in certs]

    # -- hostnames and preparation ---------------------------------------------------------

    def set_hostnames(self, hostnames: Iterable[str]) -> defer.Deferred:
        """The resource hostnames to serve (exact or ``*.example.com``); prepares new ones.

        Fires like `prepare` for the names that were not there before.
        """
        exact: set[str] = set()
        wild: set[str] = set()
        for raw in hostnames:
            try:
                name = _normalize_hostname(raw)
            except ValueError as e:
                log.warn("No certificate for {raw!r}: {why}", raw=raw, why=e)
                continue
            if name is None:
                continue
            if name.startswith("*."):
                wild.add(name[2:])
            else:
                exact.add(name)
        before = self._patterns()
        self._hostnames, self._wildcards = frozenset(exact), frozenset(wild)
        now = self._patterns()
        for gone in before - now:
            self._acme_certs.pop(gone, None)
            self._dev_certs.pop(gone, None)
        if self.acme is not None:
            self.acme.forget(before - now)
        return self.prepare(sorted(now - before))

    def prepare(self, names: Iterable[str]) -> defer.Deferred:
        """Make sure the certificates for these hostnames exist and are current.

        Fires with ``{name: source}`` once each is settled (see `source_for`); never fails:
        problems are logged (and ACME failures retried with backoff). Only resource hostnames
        (`set_hostnames`) are prepared; any other name is reported as served by the default.
        """
        wanted: list[str] = []
        for raw in names:
            try:
                name = _normalize_hostname(raw)
            except ValueError as e:
                log.warn("No certificate for {raw!r}: {why}", raw=raw, why=e)
                continue
            if name is not None and name not in wanted:
                wanted.append(name)
        patterns = self._patterns()
        work = [self._prepare_one(n) for n in wanted if n in patterns]
        d = defer.gatherResults(work, consumeErrors=True)
        d.addCallback(lambda _: {n: self._pattern_source(n) for n in wanted})
        return d

    def refresh(self) -> defer.Deferred:
        """Check every hostname (renewals included); what the periodic timer calls."""
        now = datetime.now(UTC)
        for cert in self._files:
            if cert.not_after - now < FILE_EXPIRY_WARNING:
                log.warn(
                    "The certificate {path} for {names} expires on {when}: replace the file and "
                    "reload (SIGHUP)",
                    path=cert.cert_path,
                    names=", ".join(cert.names),
                    when=cert.not_after.isoformat(),
                )
        return self.prepare(sorted(self._patterns()))

    def reload(self) -> defer.Deferred:
        """Read the certificate files again (on SIGHUP); fires with a list of problems (strings).

        A file that fails to load keeps its previous certificate in service.
        """
        if self._closing:
            return defer.succeed([])
        specs = list(self._file_specs)
        default_spec = self._default_spec

        def read_all():
            results = []
            for cert_path, key_path in [*specs, default_spec]:
                try:
                    results.append(load_certificate(cert_path, key_path, FILE))
                except ValueError as e:
                    results.append(e)
            return results

        def swap(results):
            problems = []
            *loaded, default = results
            for i, item in enumerate(loaded):
                if isinstance(item, Exception):
                    problems.append(str(item))
                    log.error("Keeping the previous certificate: {why}", why=item)
                elif item.fingerprint != self._files[i].fingerprint:
                    log.info("Certificate {path} reloaded ({names})", path=item.cert_path, names=item.names)
                    self._files[i] = item
            if isinstance(default, Exception):
                if default_spec not in specs:
                    problems.append(str(default))
                    log.error("Keeping the previous default certificate: {why}", why=default)
            elif default.fingerprint != self._default.fingerprint:
                default.source = DEFAULT
                self._default = default
            self._index_files()
            return problems

        return self._in_thread(read_all).addCallback(swap)

    # -- lifecycle -------------------------------------------------------------------------

    def startService(self) -> None:
        super().startService()
        self._closing = False
        if self.acme is not None:
            self.acme.resume()
        self._timer = task.LoopingCall(self._tick)
        self._timer.clock = self.reactor
        self._timer.start(self.check_interval, now=True).addErrback(
            lambda f: log.failure("The certificate timer stopped", f)
        )

    def stopService(self) -> defer.Deferred:
        super().stopService()
        if self._timer is not None and self._timer.running:
            self._timer.stop()
        self._timer = None
        return self.close()

    def close(self) -> defer.Deferred:
        """Stop ACME retries, wait for running threads, stop the thread pool.

        Until the next `startService`, nothing new is prepared (handshakes are still answered).
        """
        self._closing = True
        waits = [self.acme.stop()] if self.acme is not None else []
        waits += [_settled(d) for d in list(self._inflight)]
        d = defer.DeferredList(waits, consumeErrors=True)
        d.addCallback(lambda _: self._stop_pool())
        return d

    def _tick(self) -> defer.Deferred:
        d = self.refresh()
        d.addErrback(lambda f: log.failure("Certificate check failed", f))
        return d

    # -- internals -------------------------------------------------------------------------

    def _in_thread(self, f, *args) -> defer.Deferred:
        if self._pool is None:
            self._pool = ThreadPool(0, self._threads, "kokoa-certificates")
            self._pool.start()
            self._pool_trigger = self.reactor.addSystemEventTrigger("during", "shutdown", self._stop_pool)
        d = deferToThreadPool(self.reactor, self._pool, f, *args)
        self._inflight.add(d)

        def done(result):
            self._inflight.discard(d)
            return result

        return d.addBoth(done)

    def _stop_pool(self) -> None:
        if self._pool_trigger is not None:
            self.reactor.removeSystemEventTrigger(self._pool_trigger)
            self._pool_trigger = None
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.stop()

    def _index_files(self) -> None:
        exact: dict[str, LoadedCertificate] = {}
        wild: dict[str, LoadedCertificate] = {}
        for cert in self._files:  # the first file naming a host wins
            if not cert.names:
                log.warn("Certificate {path} names no DNS host (no subjectAltName)", path=cert.cert_path)
            for name in cert.names:
                if name.startswith("*."):
                    wild.setdefault(name[2:], cert)
                else:
                    exact.setdefault(name, cert)
        self._file_exact, self._file_wild = exact, wild

    def _patterns(self) -> frozenset[str]:
        return self._hostnames | {"*." + w for w in self._wildcards}

    def _file_for(self, name: str) -> LoadedCertificate | None:
        cert = self._file_exact.get(name)
        if cert is None and name.startswith("*."):
            return self._file_wild.get(name[2:])
        if cert is None and (parent := _parent(name)) is not None:
            cert = self._file_wild.get(parent)
        return cert

    def _pattern_for(self, name: str) -> str | None:
        """The resource hostname (exact, or '*.parent') a server name belongs to, if any."""
        if name in self._hostnames:
            return name
        parent = _parent(name)
        if parent is not None and parent in self._wildcards:
            return "*." + parent
        return None

    def _context_for(self, server_name: bytes | None):
        """The SNI callback: memory lookups only, never raises, always a context."""
        try:
            return self._select(_sni_name(server_name), kick=True).context
        except Exception:
            log.failure("Choosing a certificate for {name!r} failed", name=server_name)
            return self._default.context

    def _select(self, name: str | None, kick: bool) -> LoadedCertificate:
        if name is None:
            return self._default
        cert = self._file_for(name)
        if cert is not None:
            return cert
        pattern = self._pattern_for(name)
        if pattern is None:
            return self._default
        cert = self._acme_certs.get(pattern)
        if cert is not None:
            return cert
        if self.dev_ca:
            cert = self._dev_certs.get(pattern)
            if cert is not None:
                return cert
            if kick and pattern not in self._dev_pending:
                self._prepare_dev(pattern)
        return self._default

    def _pattern_source(self, pattern: str) -> str:
        if pattern not in self._patterns():
            return DEFAULT
        if pattern.startswith("*."):
            cert = self._file_for(pattern) or self._dev_certs.get(pattern) or self._default
        else:
            cert = self._select(pattern, kick=False)
        return cert.source

    def _prepare_one(self, pattern: str) -> defer.Deferred:
        if self._closing or self._file_for(pattern) is not None:
            return defer.succeed(None)
        if self.acme is not None and acme_eligible(pattern):
            d = self.acme.ensure(pattern)

            def fallback(_):
                if pattern not in self._acme_certs and self.dev_ca and not self._closing:
                    return self._prepare_dev(pattern)
                return None

            return d.addCallback(fallback)
        if self.dev_ca:
            return self._prepare_dev(pattern)
        return defer.succeed(None)

    def _prepare_dev(self, pattern: str) -> defer.Deferred:
        current = self._dev_certs.get(pattern)
        if current is not None and current.not_after - datetime.now(UTC) >= pki.REISSUE_BEFORE_EXPIRY:
            return defer.succeed(current)
        if pattern in self._dev_pending:
            return _settled(self._dev_pending[pattern])
        if self._closing:
            return defer.succeed(None)

        def issue():
            creds = pki.ensure_dev_host_cert(self.data_dir, pattern, self.dev_validity)
            return load_certificate(creds.cert_path, creds.key_path, DEV)

        def ready(cert: LoadedCertificate):
            old = self._dev_certs.get(pattern)
            if old is None or old.fingerprint != cert.fingerprint:
                self._dev_certs[pattern] = cert
            return self._dev_certs[pattern]

        def failed(failure):
            log.error(
                "No development certificate for {name}: {why}", name=pattern, why=failure.getErrorMessage()
            )
            return None

        def done(result):
            self._dev_pending.pop(pattern, None)
            return result

        d = self._in_thread(issue).addCallbacks(ready, failed).addBoth(done)
        self._dev_pending[pattern] = d
        return _settled(d)

    def _acme_ready(self, name: str, stored: StoredCertificate):
        current = self._acme_certs.get(name)
        if self._closing or (current is not None and current.fingerprint == stored.fingerprint):
            return None

        def ready(cert: LoadedCertificate) -> None:
            if name in self._hostnames:
                self._acme_certs[name] = cert

        d = self._in_thread(load_certificate, stored.fullchain_path, stored.key_path, ACME)
        return d.addCallback(ready)


def _settled(d: defer.Deferred) -> defer.Deferred:
    """A Deferred firing with `d`'s result (None if it failed), leaving `d` untouched."""
    follower: defer.Deferred = defer.Deferred()

    def relay(result):
        follower.callback(None if isinstance(result, Failure) else result)
        return result

    d.addBoth(relay)
    return follower
