"""A real SMTP server for tests: aiosmtpd on 127.0.0.1 and a free port, in its own thread.

    with SmtpServer(starttls=True, require_auth=True) as server:
        ... send to server.host:server.port, trusting server.ca_file ...
        [received] = server.wait_for(1)

Received messages are kept in order, with the envelope and the parsed message. TLS uses a
development CA made by `kokoa.pki.ensure_dev_ca` (its server certificate names 127.0.0.1 and
localhost) in a temporary directory removed by `stop`.
"""

from __future__ import annotations

import email
import email.policy
import ssl
import tempfile
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from kokoa.pki import ensure_dev_ca

#: Credentials accepted by a server made with ``require_auth=True``.
USERNAME = "mailer"
PASSWORD = "correct horse battery staple"


@dataclass(frozen=True)
class Received:
    """One message the server accepted."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    message: EmailMessage
    raw: bytes  # as received (CRLF line ends)
    tls: bool  # whether the session used TLS (implicit or STARTTLS)
    authenticated: bool


class SmtpServer:
    """aiosmtpd on 127.0.0.1 and a free port; a context manager (or call `start` and `stop`).

    ``starttls``: offer STARTTLS, and require it before any mail transaction.
    ``implicit_tls``: TLS from the first byte (SMTPS) instead.
    ``require_auth``: require AUTH LOGIN or PLAIN (offered only over TLS) with `USERNAME`/`PASSWORD`.
    ``reject``: recipient addresses answered with 550.
    """

    host = "127.0.0.1"

    def __init__(
        self,
        *,
        starttls: bool = False,
        implicit_tls: bool = False,
        require_auth: bool = False,
        reject: Iterable[str] = (),
        username: str = USERNAME,
        password: str = PASSWORD,
    ) -> None:
        if starttls and implicit_tls:
            raise ValueError("choose starttls or implicit_tls, not both")
        self.starttls = starttls
        self.implicit_tls = implicit_tls
        self.require_auth = require_auth
        self._reject = {r.lower() for r in reject}
        self._credentials = (username.encode(), password.encode())
        self._received: list[Received] = []
        self._auth_failures = 0
        self._changed = threading.Condition()
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._controller: _Controller | None = None
        self.ca_file: str | None = None  # PEM of the CA that signed the server certificate (TLS only)

    @property
    def port(self) -> int:
        if self._controller is None:
            raise RuntimeError("the SMTP server is not running")
        return self._controller.port

    @property
    def messages(self) -> list[Received]:
        """A copy of the messages received so far."""
        with self._changed:
            return list(self._received)

    @property
    def auth_failures(self) -> int:
        """How many AUTH attempts were refused."""
        with self._changed:
            return self._auth_failures

    def wait_for(self, count: int, timeout: float = 5.0) -> list[Received]:
        """Block until at least `count` messages were received (AssertionError after `timeout`)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while len(self._received) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"the SMTP server received {len(self._received)} messages, expected {count}"
                    )
                self._changed.wait(left)
            return list(self._received)

    def start(self) -> SmtpServer:
        if self._controller is not None:
            raise RuntimeError("the SMTP server is already running")
        kwargs: dict[str, Any] = {}
        if self.starttls or self.implicit_tls:
            context = self._tls_context()
            if self.starttls:
                kwargs.update(tls_context=context, require_starttls=True)
            else:
                kwargs.update(ssl_context=context)
        if self.require_auth:
            kwargs.update(authenticator=self._authenticate, auth_required=True, auth_require_tls=True)
        controller = _Controller(
            _Handler(self), hostname=self.host, port=0, server_hostname="localhost", **kwargs
        )
        controller.start()
        self._controller = controller
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
            self.ca_file = None

    def __enter__(self) -> SmtpServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _tls_context(self) -> ssl.SSLContext:
        self._tmp = tempfile.TemporaryDirectory(prefix="smtp-test-")
        creds = ensure_dev_ca(self._tmp.name)
        self.ca_file = creds.ca_path
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(creds.cert_path, creds.key_path)
        return context

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        ok = (
            mechanism in ("LOGIN", "PLAIN")
            and isinstance(auth_data, LoginPassword)
            and (auth_data.login, auth_data.password) == self._credentials
        )
        if not ok:
            with self._changed:
                self._auth_failures += 1
        return AuthResult(success=ok, handled=False)

    def _record(self, received: Received) -> None:
        with self._changed:
            self._received.append(received)
            self._changed.notify_all()

    def _rejects(self, address: str) -> bool:
        return address.lower() in self._reject


class _Handler:
    """aiosmtpd handler hooks (run in the server's thread)."""

    def __init__(self, server: SmtpServer) -> None:
        self._server = server

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        if self._server._rejects(address):
            return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        # Parsed with "\n" line ends, like Python builds messages: get_content() gives back the text sent.
        message = email.message_from_bytes(raw.replace(b"\r\n", b"\n"), policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        self._server._record(
            Received(
                mail_from=envelope.mail_from or "",
                rcpt_tos=tuple(envelope.rcpt_tos),
                message=message,
                raw=raw,
                tls=self._server.implicit_tls or session.ssl is not None,
                authenticated=bool(session.authenticated),
            )
        )
        return "250 2.0.0 Message accepted for delivery"


class _Controller(Controller):
    """Controller that may listen on port 0 (it learns the real port before its self-test)."""

    def _trigger_server(self) -> None:
        assert self.server is not None
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()
