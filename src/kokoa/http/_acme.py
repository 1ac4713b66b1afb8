"""ACME (RFC 8555) certificates for the HTTPS front, with certbot's `acme` library.

Two layers:

- `AcmeClient` does the blocking work: it keeps the account key under ``DATA_DIR/acme/``,
  registers the account once per directory URL and reuses it, orders a certificate for one
  hostname, answers the HTTP-01 challenge (`challenge_response`, which the plain-HTTP front calls
  for ``/.well-known/acme-challenge/TOKEN``) and stores the result under
  ``DATA_DIR/acme/certs/NAME/``. Every network call is made from a worker thread, never from
  the reactor's.
- `AcmeIssuer` is the reactor's side: it runs `AcmeClient` calls one at a time in the thread pool
  it is given, coalesces requests for the same name, logs a failure with its reason and retries
  it with exponential backoff, and hands each new certificate to a callback (the
  `CertificateManager`, which builds its TLS context).

Renewal is `AcmeIssuer.ensure` again: a stored certificate is reused until fewer than
``renew_before_days`` remain, then replaced. The certificate manager calls it at start, every
``check_interval`` and when resources change.
"""

from __future__ import annotations

import json
import os
import random
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from twisted.internet import defer
from twisted.logger import Logger

from kokoa import pki

__all__ = [
    "AcmeClient",
    "AcmeError",
    "AcmeIssuer",
    "AcmeSettings",
    "StoredCertificate",
    "acme_eligible",
]

log = Logger()

_KEY_MODE = 0o600
_CERT_MODE = 0o644
_DIR_MODE = 0o700
#: Names the public ACME CAs never validate (RFC 2606, 6761, 6762, 8375 and ICANN's .internal):
#: such hostnames get a file or development certificate and no ACME order.
_RESERVED_SUFFIXES = ("localhost", "local", "test", "example", "invalid", "internal", "home.arpa")
_LABEL = re.compile(r"^[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?$")


@dataclass(frozen=True)
class AcmeSettings:
    """Where to get certificates and how (``[acme]`` in the gateway's TOML)."""

    #: The ACME directory URL, e.g. https://acme-v02.api.letsencrypt.org/directory.
    directory: str
    #: Contact address given to the CA at registration (expiry and policy mail); optional.
    email: str | None = None
    #: PEM CA bundle to verify the directory's TLS with (a private CA, pebble); None: the system's.
    ca_bundle: str | None = None
    #: Agree to the CA's terms of service. Registration fails, saying so, while this is false
    #: and the directory publishes terms.
    agree_tos: bool = False
    #: Renew a certificate when fewer than this many days remain.
    renew_before_days: float = 30.0
    #: Seconds before the first retry after a failure; doubles at each failure ...
    retry_initial: float = 300.0
    #: ... up to this many seconds.
    retry_max: float = 6 * 3600.0
    #: Seconds one order may take, from the order to the certificate.
    order_timeout: float = 120.0
    #: Seconds for one HTTP request to the ACME server.
    network_timeout: float = 30.0

    def __post_init__(self) -> None:
        if not self.directory.startswith(("https://", "http://")):
            raise ValueError(f"acme directory must be an https:// URL, not {self.directory!r}")
        if self.renew_before_days < 0:
            raise ValueError("acme renew_before_days must not be negative")
        if self.retry_initial <= 0 or self.retry_max < self.retry_initial:
            raise ValueError("acme retry_initial must be positive and retry_max at least retry_initial")
        if self.ca_bundle is not None and not os.path.isfile(self.ca_bundle):
            raise ValueError(f"acme ca_bundle file not found: {self.ca_bundle}")

    @property
    def renew_before(self) -> timedelta:
        return timedelta(days=self.renew_before_days)


@dataclass(frozen=True)
class StoredCertificate:
    """A certificate issued by ACME, as stored under DATA_DIR/acme/certs/NAME/."""

    name: str
    fullchain_path: str
    key_path: str
    not_after: datetime
    fingerprint: str  # 'sha256:' + hex of the leaf's DER


class AcmeError(Exception):
    """An ACME operation failed; the message says why, for the operator."""


class _Cancelled(Exception):
    """The issuer is stopping: the operation was abandoned."""


def acme_eligible(name: str) -> bool:
    """Whether a public ACME CA could validate this hostname: an exact DNS name, not reserved."""
    if name.startswith("*.") or "." not in name or len(name) > 253:
        return False
    labels = name.split(".")
    if not all(_LABEL.match(label) for label in labels):
        return False
    if labels[-1].isdigit():  # an IPv4 literal, or nonsense
        return False
    return not any(name == s or name.endswith("." + s) for s in _RESERVED_SUFFIXES)


class AcmeClient:
    """The blocking ACME operations. Call them from a worker thread, one at a time."""

    def __init__(self, settings: AcmeSettings, data_dir: str | os.PathLike) -> None:
        self.settings = settings
        self.root = Path(data_dir) / "acme"
        self._tokens: dict[str, bytes] = {}
        self._tokens_lock = threading.Lock()
        self._client: Any = None  # acme.client.ClientV2, made on first use

    # -- HTTP-01 -------------------------------------------------------------------------

    def challenge_response(self, token: str) -> bytes | None:
        """The key authorization to answer ``GET /.well-known/acme-challenge/<token>`` with."""
        with self._tokens_lock:
            return self._tokens.get(token)

    # -- storage -------------------------------------------------------------------------

    def cert_dir(self, name: str) -> Path:
        if not acme_eligible(name):  # also keeps '/' and '..' out of the path
            raise ValueError(f"not a hostname ACME can certify: {name!r}")
        return self.root / "certs" / name

    def stored(self, name: str) -> StoredCertificate | None:
        """The stored certificate for `name`, if intact and from this directory; else None."""
        folder = self.cert_dir(name)
        chain_path, key_path, meta_path = (
            folder / "fullchain.pem",
            folder / "privkey.pem",
            folder / "meta.json",
        )
        if not chain_path.exists():
            return None
        try:
            chain = pki._read_certificates(str(chain_path))
            key = pki._read_private_key(str(key_path))
            pki._check_key_matches(key, chain[0], str(chain_path), str(key_path))
            meta = json.loads(meta_path.read_text())
        except (ValueError, OSError) as e:
            log.warn("Ignoring the stored ACME certificate for {name}: {why}", name=name, why=e)
            return None
        if meta.get("directory") != self.settings.directory:
            log.info(
                "The stored certificate for {name} comes from {old}, not {new}: ordering a new one",
                name=name,
                old=meta.get("directory"),
                new=self.settings.directory,
            )
            return None
        return _stored(name, chain_path, key_path, chain[0])

    def due(self, stored: StoredCertificate) -> bool:
        """Whether a certificate should be renewed now."""
        return stored.not_after - datetime.now(UTC) < self.settings.renew_before

    # -- account -------------------------------------------------------------------------

    def _account_key(self):
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ec

        path = self.root / "account.key"
        if path.exists():
            try:
                return serialization.load_pem_private_key(path.read_bytes(), password=None)
            except (ValueError, TypeError) as e:
                raise AcmeError(
                    f"the ACME account key {path} is unreadable ({e}); restore or remove it"
                ) from None
        key = ec.generate_private_key(ec.SECP256R1())
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        _write_atomic(path, pem, _KEY_MODE)
        log.info("ACME account key created: {path}", path=str(path))
        return key

    def _accounts(self) -> dict[str, dict]:
        path = self.root / "account.json"
        if not path.exists():
            return {}
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            log.warn("Ignoring unreadable {path}: {why}", path=str(path), why=e)
            return {}
        return data.get("accounts", {}) if isinstance(data, dict) else {}

    def _save_account(self, uri: str | None) -> None:
        accounts = self._accounts()
        if uri is None:
            accounts.pop(self.settings.directory, None)
        else:
            accounts[self.settings.directory] = {
                "uri": uri,
                "contact": self.settings.email,
                "registered": datetime.now(UTC).isoformat(timespec="seconds"),
            }
        data = json.dumps({"accounts": accounts}, indent=2).encode() + b"\n"
        _write_atomic(self.root / "account.json", data, _KEY_MODE)

    def account_uri(self) -> str | None:
        """The registered account's URL at this directory, if there is one."""
        entry = self._accounts().get(self.settings.directory)
        return entry.get("uri") if isinstance(entry, dict) else None

    def _connect(self):
        """A ClientV2 with the account registered (once, then reused)."""
        if self._client is not None:
            return self._client
        import josepy as jose
        from acme import client as acme_client
        from acme import errors as acme_errors
        from acme import messages

        from kokoa import __version__

        self.root.mkdir(mode=_DIR_MODE, parents=True, exist_ok=True)
        jwk = jose.JWKEC(key=self._account_key())
        net = acme_client.ClientNetwork(
            jwk,
            alg=jose.ES256,
            verify_ssl=self.settings.ca_bundle or True,
            user_agent=f"kokoa/{__version__} acme-python",
            timeout=int(self.settings.network_timeout),
        )
        directory = acme_client.ClientV2.get_directory(self.settings.directory, net)
        client = acme_client.ClientV2(directory, net)
        terms = directory.meta.terms_of_service
        if terms and not self.settings.agree_tos:
            raise AcmeError(
                f"the ACME server {self.settings.directory} asks to agree to its terms of service "
                f"({terms}); read them, then set agree_tos = true in [acme]"
            )
        uri = self.account_uri()
        if uri is None:
            registration = messages.NewRegistration.from_data(
                email=self.settings.email,
                terms_of_service_agreed=True if terms else None,
            )
            try:
                uri = client.new_account(registration).uri
                log.info("ACME account registered at {where}: {uri}", where=self.settings.directory, uri=uri)
            except acme_errors.ConflictError as e:  # this key already has an account there
                uri = str(e.args[0]) if e.args else None
                if not uri:
                    raise AcmeError("the ACME server has an account for our key but gave no URL") from None
            self._save_account(uri)
        net.account = messages.RegistrationResource(uri=uri, body=messages.Registration())
        self._client = client
        return client

    # -- issuance ------------------------------------------------------------------------

    def obtain(self, name: str, cancelled: threading.Event | None = None) -> StoredCertificate:
        """Order, validate (HTTP-01) and store a new certificate for `name`. Blocking."""
        from acme import messages

        cancelled = cancelled or threading.Event()
        self.cert_dir(name)  # refuse ineligible names before any network call
        try:
            try:
                return self._obtain(name, cancelled)
            except messages.Error as e:
                if e.code != "accountDoesNotExist":
                    raise
                # The server forgot our account (a test server restarted, a deactivation): again.
                log.warn(
                    "The ACME account is unknown to {directory}; registering again",
                    directory=self.settings.directory,
                )
                self._client = None
                self._save_account(None)
                return self._obtain(name, cancelled)
        except (_Cancelled, AcmeError):
            raise
        except Exception as e:
            self._client = None  # start over with a fresh connection and nonce next time
            raise AcmeError(describe_error(e)) from e

    def _obtain(self, name: str, cancelled: threading.Event) -> StoredCertificate:
        from acme import crypto_util, messages
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ec

        _check(cancelled)
        client = self._connect()
        key = ec.generate_private_key(ec.SECP256R1())
        key_pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        deadline = time.monotonic() + self.settings.order_timeout
        order = client.new_order(crypto_util.make_csr(key_pem, [name]))
        tokens: list[str] = []
        try:
            pending = []
            for authzr in order.authorizations:
                if authzr.body.status == messages.STATUS_VALID:  # an authorization reused
                    continue
                challb = _http01(authzr)
                response, validation = challb.response_and_validation(client.net.key)
                token = challb.chall.encode("token")
                with self._tokens_lock:
                    self._tokens[token] = validation.encode("ascii")
                tokens.append(token)
                client.answer_challenge(challb, response)
                pending.append(authzr)
            for authzr in pending:
                self._wait_valid(client, authzr, deadline, cancelled)
            _check(cancelled)
            remaining = max(deadline - time.monotonic(), 5.0)
            order = client.finalize_order(order, datetime.now() + timedelta(seconds=remaining))
        finally:
            with self._tokens_lock:
                for token in tokens:
                    self._tokens.pop(token, None)
        return self._store(name, order.fullchain_pem.encode("ascii"), key_pem)

    def _wait_valid(self, client, authzr, deadline: float, cancelled: threading.Event) -> None:
        from acme import messages

        delay = 0.25
        while True:
            _check(cancelled)
            authzr, _ = client.poll(authzr)
            status = authzr.body.status
            if status == messages.STATUS_VALID:
                return
            if status not in (messages.STATUS_PENDING, messages.STATUS_PROCESSING):
                raise AcmeError(_authz_failure(authzr))
            if time.monotonic() + delay > deadline:
                raise AcmeError(
                    f"the ACME server did not validate {authzr.body.identifier.value} within "
                    f"{self.settings.order_timeout:g} s (still {status})"
                )
            cancelled.wait(delay)
            delay = min(delay * 2, 2.0)

    def _store(self, name: str, fullchain_pem: bytes, key_pem: bytes) -> StoredCertificate:
        from cryptography import x509

        chain = x509.load_pem_x509_certificates(fullchain_pem)
        if not chain:
            raise AcmeError(f"the ACME server returned no certificate for {name}")
        folder = self.cert_dir(name)
        folder.mkdir(mode=_DIR_MODE, parents=True, exist_ok=True)
        chain_path, key_path = folder / "fullchain.pem", folder / "privkey.pem"
        _write_atomic(key_path, key_pem, _KEY_MODE)
        _write_atomic(chain_path, fullchain_pem, _CERT_MODE)
        meta = {
            "directory": self.settings.directory,
            "issued": datetime.now(UTC).isoformat(timespec="seconds"),
            "not_after": chain[0].not_valid_after_utc.isoformat(),
        }
        _write_atomic(folder / "meta.json", json.dumps(meta, indent=2).encode() + b"\n", _CERT_MODE)
        return _stored(name, chain_path, key_path, chain[0])


def _stored(name: str, chain_path: Path, key_path: Path, leaf) -> StoredCertificate:
    from cryptography.hazmat.primitives import serialization

    return StoredCertificate(
        name=name,
        fullchain_path=str(chain_path),
        key_path=str(key_path),
        not_after=leaf.not_valid_after_utc,
        fingerprint=pki.fingerprint_of_der(leaf.public_bytes(serialization.Encoding.DER)),
    )


def _check(cancelled: threading.Event) -> None:
    if cancelled.is_set():
        raise _Cancelled()


def _http01(authzr):
    from acme import challenges

    for challb in authzr.body.challenges:
        if isinstance(challb.chall, challenges.HTTP01):
            return challb
    offered = ", ".join(str(c.chall.typ) for c in authzr.body.challenges) or "none"
    raise AcmeError(
        f"the ACME server offers no http-01 challenge for {authzr.body.identifier.value} (offered: {offered})"
    )


def _problem(error) -> str:
    code = error.code or error.typ
    return f"{code}: {error.detail}" if error.detail else str(code)


def _authz_failure(authzr) -> str:
    name = authzr.body.identifier.value
    reasons = [f"{c.chall.typ}: {_problem(c.error)}" for c in authzr.body.challenges if c.error is not None]
    why = "; ".join(reasons) or f"authorization {authzr.body.status}"
    return f"validation of {name} failed ({why})"


def describe_error(e: BaseException) -> str:
    """One line for the operator: what went wrong with an ACME operation."""
    import requests
    from acme import errors as acme_errors
    from acme import messages

    if isinstance(e, AcmeError):
        return str(e)
    if isinstance(e, messages.Error):
        return f"the ACME server refused the request ({_problem(e)})"
    if isinstance(e, acme_errors.ValidationError):
        return "; ".join(_authz_failure(a) for a in e.failed_authzrs)
    if isinstance(e, acme_errors.IssuanceError):
        return f"the ACME server did not issue the certificate ({_problem(e.error)})"
    if isinstance(e, acme_errors.TimeoutError):
        return "the ACME server did not finish the order in time"
    if isinstance(e, requests.exceptions.SSLError):
        return (
            f"TLS to the ACME server failed ({e}); if it uses a private CA (pebble, a company CA), "
            "set ca_bundle in [acme]"
        )
    if isinstance(e, requests.exceptions.ConnectionError | requests.exceptions.Timeout):
        return f"cannot reach the ACME server ({e})"
    if isinstance(e, acme_errors.ClientError):
        return f"unexpected answer from the ACME server ({e})"
    return f"{type(e).__name__}: {e}"


def _write_atomic(path: Path, data: bytes, mode: int) -> None:
    """pki.write_atomic, into a directory made (0700) if missing."""
    path.parent.mkdir(mode=_DIR_MODE, parents=True, exist_ok=True)
    pki.write_atomic(path, data, mode)


class AcmeIssuer:
    """The reactor's side of ACME: one operation at a time in threads, backoff, callbacks.

    `run_in_thread(f, *args)` must run `f` in a worker thread and return a Deferred of its
    result. `on_certificate(name, stored)` is called (on the reactor thread) with every
    certificate `ensure` finds or obtains; it may return a Deferred, which `ensure` waits for.
    """

    def __init__(
        self,
        settings: AcmeSettings,
        data_dir: str | os.PathLike,
        reactor,
        run_in_thread: Callable[..., defer.Deferred],
        on_certificate: Callable[[str, StoredCertificate], Any] | None = None,
    ) -> None:
        self.settings = settings
        self.client = AcmeClient(settings, data_dir)
        self.reactor = reactor
        self.on_certificate = on_certificate
        #: Whether a name is still wanted: a failure for one that is not is not retried.
        self.wanted: Callable[[str], bool] = lambda name: True
        self._run = run_in_thread
        self._serial = defer.DeferredLock()
        self._pending: dict[str, defer.Deferred] = {}
        self._failures: dict[str, int] = {}
        self._retries: dict[str, Any] = {}  # name -> IDelayedCall
        self._cancelled = threading.Event()
        self._stopped = False

    def challenge_response(self, token: str) -> bytes | None:
        return self.client.challenge_response(token)

    def retry_in(self, name: str) -> float | None:
        """Seconds until the next attempt for a name whose last attempt failed, else None."""
        call = self._retries.get(name)
        if call is None or not call.active():
            return None
        return max(call.getTime() - self.reactor.seconds(), 0.0)

    def ensure(self, name: str, force: bool = False) -> defer.Deferred:
        """Load, obtain or renew the certificate for `name`; fires with it, or None on failure.

        Never fails: a failure is logged with its reason and retried later with backoff. While a
        retry is scheduled, calls return None at once (unless `force`), so that periodic checks
        and configuration changes do not hammer the CA.
        """
        if self._stopped:
            return defer.succeed(None)
        if name in self._pending:
            return _follow(self._pending[name])
        if not force and self.retry_in(name) is not None:
            return defer.succeed(None)
        self._cancel_retry(name)
        d = self._serial.run(self._run, self._ensure_blocking, name)
        self._pending[name] = d

        def done(result):
            if self._pending.get(name) is d:
                del self._pending[name]
            return result

        d.addCallbacks(self._obtained, self._failed, callbackArgs=(name,), errbackArgs=(name,))
        d.addBoth(done)
        return _follow(d)

    def forget(self, names: Iterable[str]) -> None:
        """Stop retrying names no longer served."""
        for name in names:
            self._cancel_retry(name)
            self._failures.pop(name, None)

    def stop(self) -> defer.Deferred:
        """Abandon queued and running operations, cancel retries; fires when threads are done."""
        self._stopped = True
        self._cancelled.set()
        for name in list(self._retries):
            self._cancel_retry(name)
        pending = [_follow(d) for d in self._pending.values()]
        return defer.DeferredList(pending, consumeErrors=True)

    def resume(self) -> None:
        """Accept work again after `stop` (a service started again)."""
        if self._stopped:
            self._stopped = False
            self._cancelled = threading.Event()

    def _ensure_blocking(self, name: str):
        """(certificate to serve or None, whether newly issued, error or None); in a thread."""
        cancelled = self._cancelled
        if cancelled.is_set():
            raise _Cancelled()
        client = self.client
        stored = client.stored(name)
        if stored is not None and not client.due(stored):
            return stored, False, None
        try:
            return client.obtain(name, cancelled), True, None
        except AcmeError as e:
            if stored is not None and stored.not_after > datetime.now(UTC):
                return stored, False, e  # renewal failed: keep serving the current one meanwhile
            raise

    def _obtained(self, result, name: str):
        stored, issued, error = result
        if error is not None:
            self._note_failure(name, str(error), stored)
        else:
            self._failures.pop(name, None)
        if issued:
            log.info(
                "ACME certificate for {name} issued by {directory}, valid until {until}",
                name=name,
                directory=self.settings.directory,
                until=stored.not_after.isoformat(),
            )
        if self.on_certificate is None:
            return stored
        d = defer.maybeDeferred(self.on_certificate, name, stored)

        def unusable(failure):
            log.failure("Cannot use the ACME certificate for {name}", failure, name=name)

        d.addCallbacks(lambda _: stored, unusable)
        return d

    def _failed(self, failure, name: str):
        if failure.check(_Cancelled) or self._stopped:
            return None
        reason = failure.getErrorMessage() if failure.check(AcmeError) else describe_error(failure.value)
        self._note_failure(name, reason, None)
        return None

    def _note_failure(self, name: str, reason: str, still_serving: StoredCertificate | None) -> None:
        if not self.wanted(name):
            log.info("ACME certificate for {name} failed ({why}); no longer needed", name=name, why=reason)
            return
        count = self._failures.get(name, 0) + 1
        self._failures[name] = count
        delay = min(self.settings.retry_initial * 2 ** (count - 1), self.settings.retry_max)
        delay *= random.uniform(0.9, 1.1)
        meanwhile = (
            f"the current certificate (valid until {still_serving.not_after.isoformat()}) stays in use"
            if still_serving is not None
            else "the development CA or the default certificate serves it meanwhile"
        )
        log.error(
            "ACME certificate for {name} failed (attempt {count}): {reason}; {meanwhile}; "
            "next attempt in {delay:.0f} s",
            name=name,
            count=count,
            reason=reason,
            meanwhile=meanwhile,
            delay=delay,
        )
        self._cancel_retry(name)
        self._retries[name] = self.reactor.callLater(delay, self._retry, name)

    def _retry(self, name: str) -> None:
        self._retries.pop(name, None)
        if self.wanted(name):
            self.ensure(name)

    def _cancel_retry(self, name: str) -> None:
        call = self._retries.pop(name, None)
        if call is not None and call.active():
            call.cancel()


def _follow(d: defer.Deferred) -> defer.Deferred:
    """A new Deferred with `d`'s result (`d` must not fail: the issuer's never do)."""
    follower: defer.Deferred = defer.Deferred()

    def relay(result):
        follower.callback(result)
        return result

    d.addCallback(relay)
    return follower
