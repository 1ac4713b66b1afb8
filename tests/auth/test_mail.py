"""Mailer: real sends over loopback to an aiosmtpd server (see smtp_server.py)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest
import pytest_twisted
from smtp_server import PASSWORD, USERNAME, SmtpServer
from twisted.internet import reactor, task
from twisted.internet.defer import CancelledError
from twisted.internet.protocol import Factory, Protocol
from twisted.protocols.basic import LineReceiver

from kokoa.auth._mail import Mailer, MailError, MailSettings, _Sender

REJECTED = "nobody@example.com"


def settings_for(server: SmtpServer, **overrides: Any) -> MailSettings:
    values: dict[str, Any] = {
        "host": server.host,
        "port": server.port,
        "from_address": "Kokoa <noreply@kokoa.test>",
        "security": "none",
        "timeout": 5.0,
    }
    values.update(overrides)
    return MailSettings(**values)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def plain_server() -> Iterator[SmtpServer]:
    with SmtpServer(reject=[REJECTED]) as server:
        yield server


@pytest.fixture
def tls_server() -> Iterator[SmtpServer]:
    with SmtpServer(starttls=True, require_auth=True) as server:
        yield server


@pytest.fixture
def stalled_port() -> Iterator[int]:
    """A TCP server that accepts connections and never says a word."""
    port = reactor.listenTCP(0, Factory.forProtocol(Protocol), interface="127.0.0.1")
    try:
        yield port.getHost().port
    finally:
        pytest_twisted.blockon(port.stopListening())


@pytest_twisted.ensureDeferred
async def test_a_plain_send_delivers_a_well_formed_utf8_text_message(plain_server):
    mailer = Mailer(settings_for(plain_server), reactor)
    body = "Your sign-in code is 123456.\n.a line starting with a dot\nÀ bientôt, Zoë\n"
    assert await mailer.send("ada@example.com", "Votre code de connexion", body) is None

    [received] = plain_server.wait_for(1)
    assert received.mail_from == "noreply@kokoa.test"
    assert received.rcpt_tos == ("ada@example.com",)
    assert not received.tls and not received.authenticated
    message = received.message
    assert message["From"] == "Kokoa <noreply@kokoa.test>"
    assert message["To"] == "ada@example.com"
    assert message["Subject"] == "Votre code de connexion"
    assert message["Date"].datetime is not None
    assert message["Message-ID"].startswith("<") and message["Message-ID"].endswith("@kokoa.test>")
    assert message.get_content_type() == "text/plain"
    assert message.get_content_charset() == "utf-8"
    assert message.get_content() == body
    assert max(map(len, received.raw.splitlines())) <= 998
    assert received.raw.isascii()  # 7bit on the wire: no 8BITMIME needed
    assert mailer.pending == 0


@pytest_twisted.ensureDeferred
async def test_a_non_ascii_subject_is_encoded_and_several_sends_run_at_once(plain_server):
    mailer = Mailer(settings_for(plain_server), reactor)
    sends = [mailer.send(f"user{i}@example.com", f"Invitation n°{i} — Kokoa", f"Hello {i}") for i in range(3)]
    assert mailer.pending == 3
    for send in sends:
        await send
    received = plain_server.wait_for(3)
    assert sorted(r.message["Subject"] for r in received) == [f"Invitation n°{i} — Kokoa" for i in range(3)]
    assert sorted(r.rcpt_tos for r in received) == [(f"user{i}@example.com",) for i in range(3)]
    assert mailer.pending == 0


@pytest_twisted.ensureDeferred
async def test_starttls_with_a_ca_file_and_authentication(tls_server):
    mailer = Mailer(
        settings_for(
            tls_server, security="starttls", username=USERNAME, password=PASSWORD, ca_file=tls_server.ca_file
        ),
        reactor,
    )
    await mailer.send("ada@example.com", "Reset your password", "https://kokoa.test/reset#abc")
    [received] = tls_server.wait_for(1)
    assert received.tls and received.authenticated
    assert received.message.get_content() == "https://kokoa.test/reset#abc\n"


@pytest_twisted.ensureDeferred
async def test_implicit_tls_with_a_ca_file():
    with SmtpServer(implicit_tls=True) as server:
        mailer = Mailer(settings_for(server, security="tls", ca_file=server.ca_file), reactor)
        await mailer.send("ada@example.com", "Code", "424242")
        [received] = server.wait_for(1)
        assert received.tls
        assert received.message.get_content() == "424242\n"


@pytest_twisted.ensureDeferred
async def test_a_wrong_password_is_a_mail_error(tls_server):
    mailer = Mailer(
        settings_for(
            tls_server, security="starttls", username=USERNAME, password="wrong", ca_file=tls_server.ca_file
        ),
        reactor,
    )
    with pytest.raises(MailError, match="rejected the mail username or password: 535") as caught:
        await mailer.send("ada@example.com", "Code", "123456")
    assert "wrong" not in str(caught.value)
    assert tls_server.auth_failures >= 1
    assert tls_server.messages == []
    assert mailer.pending == 0


@pytest_twisted.ensureDeferred
async def test_starttls_is_required_when_configured(plain_server):
    mailer = Mailer(settings_for(plain_server, security="starttls"), reactor)
    with pytest.raises(MailError, match="does not offer STARTTLS"):
        await mailer.send("ada@example.com", "Code", "123456")
    assert plain_server.messages == []


@pytest_twisted.ensureDeferred
async def test_an_untrusted_server_certificate_is_a_mail_error():
    for security, options in (("starttls", {"starttls": True}), ("tls", {"implicit_tls": True})):
        with SmtpServer(**options) as server:
            mailer = Mailer(settings_for(server, security=security), reactor)  # the system's CAs only
            with pytest.raises(
                MailError, match=r"TLS with the mail server .* failed: .*certificate verify failed"
            ):
                await mailer.send("ada@example.com", "Code", "123456")
            assert server.messages == []


@pytest_twisted.ensureDeferred
async def test_a_refused_recipient_is_a_mail_error(plain_server):
    mailer = Mailer(settings_for(plain_server), reactor)
    with pytest.raises(MailError, match=f"refused the recipient {REJECTED}: 550 5.1.1"):
        await mailer.send(REJECTED, "Code", "123456")
    assert plain_server.messages == []
    await mailer.send("ada@example.com", "Code", "123456")  # the mailer is still usable
    assert len(plain_server.wait_for(1)) == 1


@pytest_twisted.ensureDeferred
async def test_an_unreachable_server_is_a_mail_error():
    port = free_port()
    mailer = Mailer(
        MailSettings(host="127.0.0.1", port=port, from_address="a@kokoa.test", security="none"), reactor
    )
    with pytest.raises(MailError, match=f"could not connect to the mail server 127.0.0.1:{port}: .*refused"):
        await mailer.send("ada@example.com", "Code", "123456")
    assert mailer.pending == 0


@pytest_twisted.ensureDeferred
async def test_the_queue_is_bounded_and_a_silent_server_times_out(stalled_port):
    mailer = Mailer(
        MailSettings(
            host="127.0.0.1",
            port=stalled_port,
            from_address="a@kokoa.test",
            security="none",
            timeout=0.3,
            max_pending=1,
        ),
        reactor,
    )
    first = mailer.send("ada@example.com", "Code", "123456")
    second = mailer.send("bob@example.com", "Code", "654321")
    assert second.called
    with pytest.raises(MailError, match=r"the mail queue is full \(1 sends in flight to 127.0.0.1:"):
        await second
    with pytest.raises(MailError, match="timed out waiting for the mail server"):
        await first
    assert mailer.pending == 0


@pytest_twisted.ensureDeferred
async def test_a_cancelled_send_closes_its_connection(stalled_port):
    mailer = Mailer(
        MailSettings(host="127.0.0.1", port=stalled_port, from_address="a@kokoa.test", security="none"),
        reactor,
    )
    for delay in (None, 0.1):  # while connecting, then once connected
        sending = mailer.send("ada@example.com", "Code", "123456")
        if delay is not None:
            await task.deferLater(reactor, delay, lambda: None)
            assert not sending.called
        sending.cancel()
        with pytest.raises(CancelledError):
            await sending
        for _ in range(50):  # the slot is freed once the aborted connection is gone
            if mailer.pending == 0:
                break
            await task.deferLater(reactor, 0.02, lambda: None)
        assert mailer.pending == 0


class _MuteOnQuit(LineReceiver):
    """Accepts one message like an SMTP server, then ignores QUIT and never hangs up."""

    def connectionMade(self) -> None:
        self.in_data = False
        self.sendLine(b"220 mute.test ESMTP")

    def lineReceived(self, line: bytes) -> None:
        if self.in_data:
            if line == b".":
                self.in_data = False
                self.sendLine(b"250 accepted")
            return
        verb = line.split(b" ", 1)[0].upper()
        if verb == b"DATA":
            self.in_data = True
            self.sendLine(b"354 go ahead")
        elif verb != b"QUIT":
            self.sendLine(b"250 ok")


@pytest_twisted.ensureDeferred
async def test_a_server_that_does_not_hang_up_after_quit_is_disconnected():
    port = reactor.listenTCP(0, Factory.forProtocol(_MuteOnQuit), interface="127.0.0.1")
    try:
        mailer = Mailer(
            MailSettings(
                host="127.0.0.1",
                port=port.getHost().port,
                from_address="a@kokoa.test",
                security="none",
                timeout=0.3,
            ),
            reactor,
        )
        started = reactor.seconds()
        await mailer.send("ada@example.com", "Code", "123456")
        assert reactor.seconds() - started >= 0.25  # waited for the server to hang up, then aborted
        assert mailer.pending == 0
    finally:
        await port.stopListening()


@pytest.mark.sans_io
def test_header_injection_and_invalid_addresses_are_refused():
    mailer = Mailer(
        MailSettings(host="127.0.0.1", port=2525, from_address="a@kokoa.test", security="none"), reactor
    )
    for to in (
        "ada@example.com\r\nBcc: eve@example.com",
        "ada@example.com\nBcc: eve@example.com",
        "not-an-address",
        "ada@",
        "@example.com",
        "ada smith@example.com",
        "<ada@example.com>",
        "Ada <ada@example.com>",
        "ada@example.com, eve@example.com",
        "ada@exa_mple.com",
        "ada@-example.com",
        "",
    ):
        with pytest.raises(ValueError):
            mailer.send(to, "Code", "123456")
    for subject in ("Code\r\nBcc: eve@example.com", "Code\nX: y", "Code\rX", "Code\x00", "a\u2028b"):
        with pytest.raises(ValueError, match="line breaks or control characters"):
            mailer.send("ada@example.com", subject, "123456")
    assert mailer.pending == 0


@pytest.mark.sans_io
def test_dot_stuffing_holds_across_chunks():
    sender = _Sender(None, None, None, b"client.test")
    chunks = [b"Subject: x\n\n.one\nline\n", b".two\n..three", b"\n.\n"]
    assert b"".join(map(sender.transformChunk, chunks)) == (
        b"Subject: x\r\n\r\n..one\r\nline\r\n..two\r\n...three\r\n..\r\n"
    )


@pytest.mark.sans_io
@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"host": ""}, "invalid mail server host"),
        ({"host": "smtp example.com"}, "invalid mail server host"),
        ({"port": 0}, "port must be an integer from 1 to 65535"),
        ({"port": 65536}, "port must be an integer from 1 to 65535"),
        ({"port": "587"}, "port must be an integer"),
        ({"security": "ssl"}, "security must be one of 'none', 'starttls', 'tls'"),
        ({"from_address": "noreply"}, "invalid mail from_address"),
        ({"from_address": "a@kokoa.test, b@kokoa.test"}, "invalid mail from_address"),
        ({"from_address": "Kokoa <a@kokoa.test>\r\nBcc: x@y.z"}, "line breaks"),
        ({"username": "u"}, "a mail username needs a password"),
        ({"password": "p"}, "a mail password needs a username"),
        ({"username": "", "password": "p"}, "username must be a non-empty string"),
        (
            {"security": "none", "username": "u", "password": "p"},
            "refusing to send SMTP credentials without TLS",
        ),
        ({"security": "none", "ca_file": "/ca.pem"}, "ca_file needs security"),
        ({"timeout": 0}, "timeout must be a positive number"),
        ({"timeout": float("inf")}, "timeout must be a positive number"),
        ({"max_pending": 0}, "max_pending must be a positive integer"),
    ],
)
def test_settings_are_validated(overrides, message):
    values: dict[str, Any] = {"host": "smtp.example.com", "from_address": "a@kokoa.test"} | overrides
    with pytest.raises(ValueError, match=message):
        MailSettings(**values)


@pytest.mark.sans_io
def test_settings_defaults_and_a_hidden_password(tmp_path):
    settings = MailSettings(
        host="smtp.example.com", from_address="Kokoa <a@kokoa.test>", username="u", password="hunter2"
    )
    assert (settings.port, settings.security, settings.timeout, settings.max_pending) == (
        587,
        "starttls",
        30.0,
        100,
    )
    assert "hunter2" not in repr(settings)
    Mailer(settings, reactor)  # the system's CAs
    missing = MailSettings(
        host="smtp.example.com", from_address="a@kokoa.test", ca_file=str(tmp_path / "no.pem")
    )
    with pytest.raises(ValueError, match=r"\[auth.mail\] ca_file: cannot read CA file"):
        Mailer(missing, reactor)
    (tmp_path / "empty.pem").write_text("nothing here\n")
    empty = MailSettings(
        host="smtp.example.com", from_address="a@kokoa.test", ca_file=str(tmp_path / "empty.pem")
    )
    with pytest.raises(ValueError, match="contains no PEM certificate"):
        Mailer(empty, reactor)
