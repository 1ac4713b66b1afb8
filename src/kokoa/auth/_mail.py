"""Outgoing mail (one-time codes, password-reset and invitation links) through an SMTP server.

`Mailer.send` builds a plain-text message and hands it to one SMTP server described by
`MailSettings`, over STARTTLS (the default), implicit TLS or, without credentials only, plain
TCP. The server certificate is always verified. At most ``max_pending`` sends are in flight;
each send's Deferred fires only once its connection is closed, with None or a `MailError`
whose message tells an operator what went wrong (never the password nor the session log).
"""

from __future__ import annotations

import email.policy
import email.utils
import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from io import BytesIO
from typing import Any

from OpenSSL import SSL
from service_identity import CertificateError, VerificationError
from twisted.internet import error as net_error
from twisted.internet.defer import CancelledError, Deferred, fail
from twisted.internet.interfaces import IConnector, IDelayedCall, IOpenSSLClientConnectionCreator
from twisted.internet.ssl import TLSVersion, optionsForClientTLS
from twisted.mail import smtp
from twisted.python.failure import Failure

from kokoa.transports._trust import load_trust_root

__all__ = ["SECURITY_MODES", "MailError", "MailSettings", "Mailer"]

#: Accepted values of `MailSettings.security`.
SECURITY_MODES = ("none", "starttls", "tls")
#: Longest wait for the server to close the connection once a send has succeeded or failed.
_CLOSE_GRACE = 5.0
#: 7bit: non-ASCII bodies go quoted-printable or base64, so servers without 8BITMIME take them.
_POLICY = email.policy.default.clone(cte_type="7bit")
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LOCAL_PART = re.compile(rf"{_ATOM}(?:\.{_ATOM})*")
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_DOMAIN = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")
_HOST = re.compile(r"[A-Za-z0-9._:-]+")  # a DNS name, an IPv4 or a bare IPv6 address


class MailError(Exception):
    """A message could not be sent; the text says why, for an operator."""


@dataclass(frozen=True, kw_only=True)
class MailSettings:
    """How to reach the SMTP server that relays the gateway's mail.

    ``security``: "starttls" (plain connection upgraded with STARTTLS, which is then required),
    "tls" (TLS from the first byte, usually port 465) or "none" (no TLS: only without
    credentials). ``ca_file``: PEM CA certificates trusted instead of the system's.
    ``timeout``: seconds allowed to connect and for each server response.
    """

    host: str
    port: int = 587
    from_address: str  # "noreply@example.com" or "Kokoa <noreply@example.com>"
    security: str = "starttls"
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ca_file: str | None = None
    timeout: float = 30.0
    max_pending: int = 100

    def __post_init__(self) -> None:
        if not isinstance(self.host, str) or not _HOST.fullmatch(self.host):
            raise ValueError(f"invalid mail server host {self.host!r}")
        if isinstance(self.port, bool) or not isinstance(self.port, int) or not 1 <= self.port <= 65535:
            raise ValueError(f"mail server port must be an integer from 1 to 65535, not {self.port!r}")
        _parse_from(self.from_address)
        if self.security not in SECURITY_MODES:
            raise ValueError(
                f"mail security must be one of {', '.join(map(repr, SECURITY_MODES))}, not {self.security!r}"
            )
        for name in ("username", "password"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value):
                raise ValueError(f"mail {name} must be a non-empty string when set")
        if self.username is not None and self.password is None:
            raise ValueError("a mail username needs a password")
        if self.password is not None and self.username is None:
            raise ValueError("a mail password needs a username")
        if self.username is not None and self.security == "none":
            raise ValueError(
                "refusing to send SMTP credentials without TLS: set mail security to 'starttls' or 'tls'"
            )
        if self.ca_file is not None and (not isinstance(self.ca_file, str) or not self.ca_file):
            raise ValueError("mail ca_file must be a non-empty path when set")
        if self.ca_file is not None and self.security == "none":
            raise ValueError("mail ca_file needs security 'starttls' or 'tls' (it is unused with 'none')")
        if (
            isinstance(self.timeout, bool)
            or not isinstance(self.timeout, int | float)
            or not (math.isfinite(self.timeout) and self.timeout > 0)
        ):
            raise ValueError(f"mail timeout must be a positive number of seconds, not {self.timeout!r}")
        if (
            isinstance(self.max_pending, bool)
            or not isinstance(self.max_pending, int)
            or self.max_pending < 1
        ):
            raise ValueError(f"mail max_pending must be a positive integer, not {self.max_pending!r}")


class Mailer:
    """Sends plain-text messages through the SMTP server of `MailSettings`."""

    def __init__(self, settings: MailSettings, reactor: Any) -> None:
        """`reactor` provides IReactorTCP, IReactorSSL and IReactorTime. Reads ``ca_file`` now
        (ValueError if it is unreadable or holds no certificate)."""
        self._settings = settings
        self._reactor = reactor
        self._from_header, self._envelope_from = _parse_from(settings.from_address)
        self._tls = None if settings.security == "none" else _client_tls(settings)
        self._pending = 0

    @property
    def pending(self) -> int:
        """Sends in flight (their connection not yet closed)."""
        return self._pending

    def send(self, to: str, subject: str, body: str) -> Deferred[None]:
        """Send `body` as text/plain UTF-8 to one address.

        Raises ValueError at once for an invalid address or a subject with line breaks or
        control characters. The Deferred fires with None once the server has accepted the
        message and the connection is closed, or fails with `MailError` (at once when
        ``max_pending`` sends are already in flight). Cancelling it aborts the connection.
        """
        recipient = _check_address(to, "recipient address")
        if not isinstance(subject, str) or any(_is_control(c) for c in subject):
            raise ValueError("the mail subject must be text without line breaks or control characters")
        if not isinstance(body, str):
            raise ValueError("the mail body must be text")
        data = self._message(recipient, subject, body)
        if self._pending >= self._settings.max_pending:
            return fail(
                MailError(
                    f"the mail queue is full ({self._pending} sends in flight to "
                    f"{self._settings.host}:{self._settings.port}); try again later"
                )
            )
        self._pending += 1
        delivery = _Delivery(self._settings, self._reactor, self._tls, self._envelope_from, recipient, data)
        delivery.closed.addCallback(self._release)
        return delivery.result

    def _release(self, _: object) -> None:
        self._pending -= 1

    def _message(self, recipient: str, subject: str, body: str) -> bytes:
        message = EmailMessage(policy=_POLICY)
        message["From"] = self._from_header
        message["To"] = recipient
        message["Subject"] = subject
        message["Date"] = email.utils.format_datetime(datetime.fromtimestamp(self._reactor.seconds(), UTC))
        message["Message-ID"] = email.utils.make_msgid(domain=self._envelope_from.rpartition("@")[2])
        message.set_content(body, charset="utf-8")
        return message.as_bytes()  # "\n" line ends: the SMTP client turns them into CRLF


def _client_tls(settings: MailSettings) -> IOpenSSLClientConnectionCreator:
    """TLS client options verifying the server certificate for ``settings.host``."""
    extra = {"raiseMinimumTo": TLSVersion.TLSv1_2}
    if settings.ca_file is None:
        return optionsForClientTLS(settings.host, extraCertificateOptions=extra)
    try:
        root = load_trust_root(settings.ca_file)
    except ValueError as e:
        raise ValueError(f"[auth.mail] ca_file: {e}") from None
    return optionsForClientTLS(settings.host, trustRoot=root, extraCertificateOptions=extra)


class _Sender(smtp.ESMTPSender):
    """Twisted's sender, with dot-stuffing that also holds across the 16 KiB chunk boundaries."""

    _at_line_start = True

    def transformChunk(self, chunk: bytes) -> bytes:
        self.resetTimeout()
        out = chunk.replace(b"\n", b"\r\n").replace(b"\r\n.", b"\r\n..")
        if self._at_line_start and out.startswith(b"."):
            out = b"." + out
        self._at_line_start = chunk.endswith(b"\n")
        return out

    def sendError(self, exc: Exception) -> None:
        if self.factory.sendFinished:
            # Already reported (e.g. a timeout waiting for the reply to QUIT): just hang up.
            # Twisted's SenderMixin would fire the factory's Deferred a second time.
            smtp.SMTPClient.sendError(self, exc)
            return
        super().sendError(exc)


class _SenderFactory(smtp.ESMTPSenderFactory):
    """One message, one attempt (no retries); tells its `_Delivery` when the connection is gone."""

    protocol = _Sender
    noisy = False

    def __init__(self, delivery: _Delivery, **kwargs: Any) -> None:
        super().__init__(retries=0, **kwargs)
        self._delivery = delivery

    def buildProtocol(self, addr: object) -> smtp.ESMTPSender:
        protocol = super().buildProtocol(addr)
        self._delivery.protocol = protocol  # the factory forgets it once the exchange is over
        return protocol

    def clientConnectionFailed(self, connector: IConnector, reason: Failure) -> None:
        super().clientConnectionFailed(connector, reason)
        self._delivery.connection_gone()

    def clientConnectionLost(self, connector: IConnector, reason: Failure) -> None:
        super().clientConnectionLost(connector, reason)
        self._delivery.connection_gone()


class _Delivery:
    """One send: `result` fires once the SMTP exchange is over and the socket is closed;
    `closed` fires (with None) when the socket is closed, also after a cancellation."""

    def __init__(
        self,
        settings: MailSettings,
        reactor: Any,
        tls: IOpenSSLClientConnectionCreator | None,
        sender: str,
        recipient: str,
        data: bytes,
    ) -> None:
        self._settings = settings
        self._reactor = reactor
        self._recipient = recipient
        self.result: Deferred[None] = Deferred(self._cancel)
        self.closed: Deferred[None] = Deferred()
        self._outcome: Failure | None = None
        self._gone = False
        self._cancelled = False
        self._abort_call: IDelayedCall | None = None
        self.protocol: smtp.ESMTPSender | None = None
        self._exchange: Deferred[object] = Deferred()
        starttls = settings.security == "starttls"
        authenticate = settings.username is not None
        self._factory = _SenderFactory(
            self,
            username=settings.username.encode() if authenticate else None,
            password=settings.password.encode() if settings.password is not None else None,
            fromEmail=sender,
            toEmail=[recipient.encode("ascii")],
            file=BytesIO(data),
            deferred=self._exchange,
            timeout=settings.timeout,
            contextFactory=tls if starttls else None,
            heloFallback=settings.security == "none",
            requireAuthentication=authenticate,
            # Implicit TLS is below the SMTP client, which does not see it: it must not ask for STARTTLS.
            requireTransportSecurity=starttls,
        )
        self._exchange.addBoth(self._exchange_over)
        if settings.security == "tls":
            self._connector: IConnector = reactor.connectSSL(
                settings.host, settings.port, self._factory, tls, timeout=settings.timeout
            )
        else:
            self._connector = reactor.connectTCP(
                settings.host, settings.port, self._factory, timeout=settings.timeout
            )

    def _exchange_over(self, result: object) -> None:
        if isinstance(result, Failure):
            self._outcome = Failure(_mail_error(result, self._settings, self._recipient))
        if not self._gone:
            # Normally the client says QUIT and the server hangs up; don't wait for ever.
            grace = min(self._settings.timeout, _CLOSE_GRACE)
            self._abort_call = self._reactor.callLater(grace, self._abort)

    def connection_gone(self) -> None:
        if self._gone:
            return
        self._gone = True
        if self._abort_call is not None and self._abort_call.active():
            self._abort_call.cancel()
        if not self._exchange.called:  # cancelled: the factory did not report it
            self._exchange.errback(CancelledError())
        outcome, self._outcome = self._outcome, None
        self.closed.callback(None)  # first: the slot is free when the sender hears of the result
        if not self.result.called:
            if self._cancelled:
                self.result.errback(CancelledError())
            elif outcome is None:
                self.result.callback(None)
            else:
                self.result.errback(outcome)

    def _cancel(self, _: Deferred[None]) -> None:
        self._cancelled = True
        self._factory.sendFinished = True  # no report from the factory, no retry
        self._abort()

    def _abort(self) -> None:
        if self.protocol is not None and self.protocol.transport is not None:
            self.protocol.transport.abortConnection()
        else:
            self._connector.disconnect()


def _mail_error(failure: Failure, settings: MailSettings, recipient: str) -> MailError:
    """A MailError for an SMTP client failure (without the session log, which has credentials)."""
    where = f"the mail server {settings.host}:{settings.port}"
    exc = failure.value
    if isinstance(exc, MailError):
        return exc
    if isinstance(exc, CancelledError):
        return MailError(f"sending mail through {where} was cancelled")
    if isinstance(exc, smtp.SMTPTimeoutError):
        return MailError(f"timed out waiting for {where} (no response within {settings.timeout:g} s)")
    if isinstance(exc, smtp.TLSRequiredError):
        return MailError(f"{where} does not offer STARTTLS, which mail security 'starttls' requires")
    if isinstance(exc, smtp.TLSError):
        return MailError(f"{where} refused STARTTLS: {_reply(exc)}")
    if isinstance(exc, smtp.AUTHDeclinedError):
        return MailError(f"{where} rejected the mail username or password: {_reply(exc)}")
    if isinstance(exc, smtp.AUTHRequiredError):
        return MailError(
            f"{where} offers no authentication method this client supports (LOGIN, PLAIN, CRAM-MD5)"
        )
    if isinstance(exc, smtp.AuthenticationError):
        return MailError(f"authentication with {where} failed: {_reply(exc)}")
    if isinstance(exc, smtp.EHLORequiredError):
        return MailError(f"{where} does not support ESMTP (EHLO), which authentication or STARTTLS needs")
    if isinstance(exc, smtp.SMTPDeliveryError):
        refused = [(code, resp) for _, code, resp in exc.addresses or () if code not in smtp.SUCCESS]
        if refused:
            code, resp = refused[0]
            return MailError(f"{where} refused the recipient {recipient}: {_reply_text(code, resp)}")
        if exc.code == 530:
            return MailError(
                f"{where} requires authentication (set the mail username and password): {_reply(exc)}"
            )
        return MailError(f"{where} refused the message: {_reply(exc)}")
    if isinstance(exc, smtp.SMTPConnectError):
        cause = exc.__cause__
        if exc.code > 0:
            return MailError(f"{where} refused the session: {_reply(exc)}")
        if isinstance(cause, SSL.Error | VerificationError | CertificateError):
            return MailError(f"TLS with {where} failed: {_tls_detail(cause)}")
        if isinstance(cause, net_error.TimeoutError):
            return MailError(f"timed out connecting to {where}")
        if isinstance(cause, net_error.ConnectionDone | net_error.ConnectionLost):
            return MailError(f"{where} closed the connection before the message was sent")
        return MailError(f"could not connect to {where}: {cause or _reply(exc)}")
    if isinstance(exc, smtp.SMTPProtocolError):
        return MailError(f"{where} sent an invalid response")
    return MailError(f"sending mail through {where} failed: {type(exc).__name__}: {exc}")


def _reply(exc: smtp.SMTPClientError) -> str:
    return _reply_text(exc.code, exc.resp)


def _reply_text(code: int, resp: bytes | str) -> str:
    text = resp.decode("utf-8", "replace") if isinstance(resp, bytes) else str(resp)
    text = " ".join(text.split())
    return f"{code:03d} {text}" if code > 0 else text


def _tls_detail(cause: BaseException) -> str:
    if isinstance(cause, SSL.Error) and cause.args and isinstance(cause.args[0], list):
        reasons = [entry[-1] for entry in cause.args[0] if isinstance(entry, tuple) and entry]
        if reasons:
            return "; ".join(map(str, reasons))
    if isinstance(cause, VerificationError):
        return f"the certificate does not name the server ({cause})"
    return str(cause) or type(cause).__name__


def _is_control(char: str) -> bool:
    return ord(char) < 0x20 or 0x7F <= ord(char) < 0xA0 or char in "\u2028\u2029"


def _check_address(value: object, what: str) -> str:
    """A bare ASCII address (``local@domain``; an internationalized domain becomes IDNA)."""
    if not isinstance(value, str):
        raise ValueError(f"the {what} must be a string")
    if any(_is_control(c) for c in value):
        raise ValueError(f"the {what} must not contain line breaks or control characters")
    local, at, domain = value.rpartition("@")
    if not at or not local or not domain:
        raise ValueError(f"invalid {what} {value!r}: expected local@domain")
    if not domain.isascii():
        try:
            domain = domain.encode("idna").decode("ascii")
        except UnicodeError:
            raise ValueError(f"invalid {what} {value!r}: bad domain") from None
    if len(local) > 64 or not _LOCAL_PART.fullmatch(local):
        raise ValueError(f"invalid {what} {value!r}: unsupported characters before the @")
    if len(domain) > 253 or not _DOMAIN.fullmatch(domain):
        raise ValueError(f"invalid {what} {value!r}: bad domain")
    address = f"{local}@{domain}"
    if len(address) > 254:
        raise ValueError(f"invalid {what} {value!r}: too long")
    return address


def _parse_from(value: object) -> tuple[str, str]:
    """The From header and the envelope sender of ``"addr"`` or ``"Display Name <addr>"``."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError("mail from_address must be a non-empty string")
    if any(_is_control(c) for c in value):
        raise ValueError("mail from_address must not contain line breaks or control characters")
    parsed = email.policy.default.header_factory("from", value)
    if parsed.defects or len(parsed.addresses) != 1:
        raise ValueError(f"invalid mail from_address {value!r}: expected addr@domain or 'Name <addr@domain>'")
    name, addr = parsed.addresses[0].display_name, parsed.addresses[0].addr_spec
    try:
        addr = _check_address(addr, "mail from_address")
    except ValueError as e:
        raise ValueError(f"invalid mail from_address {value!r}: {e}") from None
    header = str(Address(display_name=name, addr_spec=addr)) if name else addr
    return header, addr
