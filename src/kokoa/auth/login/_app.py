"""The login host's app: every page module's routes on one Klein app, served by a twisted.web Site to
which the HTTP front hands the login host's connections."""

from __future__ import annotations

from typing import Any

from twisted.internet.threads import deferToThread
from twisted.web.http import HTTPChannel
from twisted.web.iweb import IRequest
from twisted.web.resource import Resource
from twisted.web.server import Site
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound

from kokoa.api import CappedSite
from kokoa.api._site import CappedRequest
from kokoa.console import ConsoleAssets, load_assets

from .._connect import LoginRoot, connect_resource
from .._gate import AccessGate
from .._pages import link, paragraph
from .._ratelimit import SignInThrottle, TokenBucketLimiter
from .._sealed import Sealer
from ._account import AccountPages
from ._base import app
from ._cli import CLIPages
from ._forms import MAX_FORM_BYTES, Refused
from ._links import LinkPages
from ._password import PasswordPages
from ._resource import ResourcePages
from ._sso import STARTS_BURST, STARTS_REFILL_SECONDS, SSOPages

#: HSTS on every HTTPS answer of the login host: a year.
HSTS = b"max-age=31536000"


class LoginRequest(CappedRequest):
    """The login host's requests: no server version, no sniffing, and HSTS over HTTPS, on every answer
    (pages, the API, errors)."""

    def render(self, resrc: Any) -> None:
        self.setHeader(b"server", b"kokoa")
        self.setHeader(b"x-content-type-options", b"nosniff")
        if self.isSecure():
            self.setHeader(b"strict-transport-security", HSTS)
        super().render(resrc)


class LoginChannel(HTTPChannel):
    """The login host's connections: a request line or header line over the limit is answered (431)
    and the connection closed at once (twisted.web's default closes the transport under its own
    producer registration, which then waits out the 60 s timeout)."""

    def lineLengthExceeded(self, line: bytes) -> None:
        self.transport.write(
            b"HTTP/1.1 431 Request Header Fields Too Large\r\nServer: kokoa\r\n"
            b"Connection: close\r\nContent-Length: 0\r\n\r\n"
        )
        self.loseConnection()


class _Readable(Resource):
    """The app's resource, behind a check of what Klein reads before any page runs: a path or Host
    that is not UTF-8 (Klein logs a traceback and answers with its own page), or a Host werkzeug
    cannot bind the routes to (a label over 63 characters, an empty one: BadHost, a 500), gets our
    400 page. (The front checks the Host of a connection's first request only.)"""

    isLeaf = True

    def __init__(self, pages: LoginApp, app: Resource) -> None:
        super().__init__()
        self.pages = pages
        self.app = app

    def render(self, request: IRequest) -> Any:
        try:
            request.getRequestHostname().decode("utf-8")
            b"/".join(request.prepath + request.postpath).decode("utf-8")
            return self.app.render(request)
        except (UnicodeDecodeError, HTTPException):
            return self.pages._refused(request, Refused(400, "This request's address is not valid."))


class LoginApp(AccountPages, PasswordPages, ResourcePages, SSOPages, CLIPages, LinkPages):
    """The login host's pages (bound to one gateway's gate, front and store).

    The store's instance key (``cookie_key``, through :meth:`set_cookie_key`) seals the cookies that
    carry sign-ins in progress; until it is there, pages answer 503.
    """

    app = app

    def __init__(
        self,
        gate: AccessGate,
        front: Any,
        reactor: Any,
        *,
        mailer: Any = None,
        oidc: Any = (),
        clock: Any = None,
        in_thread: Any = None,
    ) -> None:
        self.gate = gate
        self.front = front
        self.reactor = reactor
        # Time and threads come in from outside, so the sign-in steps run in tests without a reactor.
        self.clock = clock if clock is not None else reactor.seconds
        self.in_thread = in_thread if in_thread is not None else deferToThread
        self.mailer = mailer
        self.oidc = {client.config.name: client for client in oidc}
        s = gate.settings
        self.throttle = SignInThrottle(
            pair_capacity=s.attempts_per_account_address,
            pair_refill_seconds=s.account_address_refill_seconds,
            address_capacity=s.attempts_per_address,
            address_refill_seconds=s.address_refill_seconds,
            account_capacity=s.attempts_per_account,
            account_refill_seconds=s.account_refill_seconds,
            max_delay=s.max_signin_delay,
        )
        self.sso_starts = TokenBucketLimiter(STARTS_BURST, 1 / STARTS_REFILL_SECONDS)
        self.sealer: Sealer | None = None
        self._held = 0
        self.root: LoginRoot | None = None
        self.console_assets = load_assets()  # read once, at start-up: requests read no file

    def set_cookie_key(self, key: bytes) -> None:
        """The instance's cookie key (from the store, shared by every gateway)."""
        self.sealer = Sealer(key)

    def attach_api(self, api: Any) -> None:
        """Serve the admin API at ``/api/v1`` too (the console's; ``api``: an AdminAPI resource)."""
        assert self.root is not None
        self.root.api = api

    def site(self) -> Site:
        pages = _Readable(self, self.app.resource())
        # /connect/: kokoa connect; /static/: the console's files
        self.root = LoginRoot(pages, connect_resource(self), static=ConsoleAssets(self.console_assets))
        site = CappedSite(self.root, max_body=MAX_FORM_BYTES * 64)  # larger bodies: 413 before buffering
        site.requestFactory = LoginRequest
        site.protocol = LoginChannel
        site.displayTracebacks = False
        site.timeOut = 60
        return site

    @app.handle_errors(NotFound, MethodNotAllowed)
    def not_found(self, request: IRequest, failure: Any) -> bytes:
        error = failure.value
        if isinstance(error, MethodNotAllowed):
            request.setHeader(b"allow", ", ".join(error.valid_methods or ()).encode("ascii"))
            status, text = 405, "This page does not take that method."
        else:
            status, text = 404, "There is no such page here."
        body = paragraph(text, "error") + "<p>" + link("/", "Kokoa") + "</p>"
        return self._html(request, "Not found" if status == 404 else "Not allowed", body, status)

    @app.handle_errors(HTTPException)
    def other_error(self, request: IRequest, failure: Any) -> bytes:
        code = getattr(failure.value, "code", 400) or 400
        status = code if 400 <= code < 500 else 400
        return self._html(
            request, "Something went wrong", paragraph("This request is not valid.", "error"), status
        )
