"""What every page of the login host shares: the store, responses and their headers, where to go after
signing in (through a one-time code bound to the browser), throttling, and the sealed cookies that
carry a sign-in in progress (so no gateway keeps one in memory, and any gateway can finish it)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

from klein import Klein
from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.web.iweb import IRequest

from kokoa.http._router import BadTarget, normalize_target
from kokoa.store import Invalid, NotFound, create_auth_code, create_session, get_organization

from .._gate import AccessGate
from .._identities import SESSION, Resolved
from .._pages import FORM_ACTION, link, page, page_csp, paragraph
from .._ratelimit import Refusal, SignInThrottle
from .._redirects import BadReturnURL, ReturnTo, check_return_url
from .._sealed import Sealer
from .._settings import CALLBACK_PATH, LOGIN_COOKIE, START_PATH
from ._forms import Redirect, Refused, arg, cookie, csrf_token, read_form, set_cookie

log = Logger()

#: The one Klein app of the login host; every page module adds its routes to it.
app = Klein()

DEVICE_COOKIE = "__Host-kokoa_device"
#: Days a device cookie is remembered; accounts it vouches for (most recent first).
DEVICE_DAYS = 180
DEVICE_ACCOUNTS = 8
#: Sign-in attempts held back by the account-wide pace at once, in this process; more are refused.
MAX_HELD = 1000
#: The nonce hash a resource host sends with a visitor (SHA-256, hex).
_NONCE_HASH = re.compile(r"[0-9a-f]{64}")

#: Headers of every page (and its Content-Security-Policy: :func:`kokoa.auth._pages.page_csp`).
_HEADERS = {
    b"cache-control": b"no-store",
    b"x-frame-options": b"DENY",
    b"x-content-type-options": b"nosniff",
    b"referrer-policy": b"no-referrer",
}


@dataclass(frozen=True, slots=True)
class Destination:
    """Where the browser goes after signing in, and the hash of the nonce cookie it holds on that
    resource's host (``nonce``; None on the login host, or when not known yet)."""

    to: ReturnTo
    nonce: str | None = None

    @property
    def on_login_host(self) -> bool:
        return self.to.host is None

    def fields(self) -> dict[str, str]:
        """Hidden form fields (and query arguments) that carry it to the next step."""
        return {"rd": self.to.url, **({"n": self.nonce} if self.nonce else {})}

    def query(self) -> str:
        return urlencode(self.fields())


class LoginBase:
    """The login host's plumbing; the page modules' classes build on it (see :class:`LoginApp`)."""

    app = app
    gate: AccessGate
    front: Any
    reactor: Any
    throttle: SignInThrottle
    clock: Callable[[], float]  # Unix time (the reactor's, or a test's)
    in_thread: Callable[..., Deferred]  # runs slow work (argon2) off the reactor: deferToThread
    sealer: Sealer | None  # once the store has given the instance's cookie key
    _held: int

    # ------------------------------------------------------------------ plumbing

    @property
    def store(self) -> Any:
        store = self.gate._store()
        if store is None or self.sealer is None:
            raise Refused(503, "The gateway is starting: try again in a moment.")
        return store

    @property
    def seal(self) -> Sealer:
        if self.sealer is None:
            raise Refused(503, "The gateway is starting: try again in a moment.")
        return self.sealer

    def _client(self, request: IRequest) -> str:
        peer = request.getClientAddress()
        host = getattr(peer, "host", "unknown")
        if not self.gate.trusted:
            return host
        return self.gate.trusted.client_address(
            host, request.requestHeaders.getRawHeaders(b"x-forwarded-for") or []
        )

    def _csrf(self, request: IRequest) -> str:
        return csrf_token(request)

    def _form(self, request: IRequest) -> dict[str, str]:
        return read_form(request, self.gate.login_origin)

    def _html(
        self,
        request: IRequest,
        title: str,
        body: str,
        status: int = 200,
        *,
        wide: bool = False,
        form_action: str = FORM_ACTION,
    ) -> bytes:
        """A page (``wide``: a wider card); ``form_action``: where its forms may lead the browser."""
        request.setResponseCode(status)
        request.setHeader(b"content-type", b"text/html; charset=utf-8")
        for name, value in _HEADERS.items():
            request.setHeader(name, value)
        request.setHeader(b"content-security-policy", page_csp(form_action))
        return page(title, body, wide=wide)

    def _redirect(self, request: IRequest, location: str) -> bytes:
        """A 302 to ``location``: a path of ours, or a URL this code built from parsed parts."""
        request.setResponseCode(302)
        request.setHeader(b"location", location.encode("ascii"))
        request.setHeader(b"cache-control", b"no-store")
        request.setHeader(b"referrer-policy", b"no-referrer")
        return b""

    def _refused(self, request: IRequest, error: Refused) -> bytes:
        body = paragraph(error.message, "error") + "<p>" + link("/login", "Sign in") + "</p>"
        return self._html(request, "Something went wrong", body, error.status)

    def _guard(self, request: IRequest, work: Any) -> Deferred:
        """Run a handler coroutine; refusals become pages, anything else a 500 page (logged)."""
        if not request.isSecure():
            work.close()
            return Deferred.fromCoroutine(self._plain(request))

        async def run() -> bytes:
            try:
                return await work
            except Refused as e:
                return self._refused(request, e)
            except BadReturnURL as e:
                return self._refused(request, Refused(400, e.message))
            except Redirect as e:
                return self._redirect(request, e.location)

        d = Deferred.fromCoroutine(run())

        def failed(failure: Any) -> bytes:
            log.failure("login page failed", failure)
            return self._html(
                request, "Something went wrong", paragraph("Try again in a moment.", "error"), 500
            )

        return d.addErrback(failed)

    async def _plain(self, request: IRequest) -> bytes:
        """The login host works over HTTPS only: send plain HTTP there (the path only, as sent)."""
        target = request.uri.decode("ascii", "replace")
        if not target.startswith("/") or target.startswith("//") or not target.isprintable():
            target = "/"
        return self._redirect(request, self.gate.login_origin + quote(target, safe="/?=&%:@!$'()*+,;~"))

    def _event(self, request: IRequest, kind: str, outcome: str, reason: str, **fields: Any) -> None:
        self.gate.recorder.record(
            kind, outcome, reason, client_address=self._client(request), host=self.gate.login_host, **fields
        )

    # ------------------------------------------------------------------ where to go after sign-in

    def _destination(self, rd: str | None, nonce: str | None) -> Destination:
        """The checked return URL (:mod:`kokoa.auth._redirects`, the one check) and its nonce hash."""
        to = check_return_url(rd, known_host=self.front.router.knows_host, login_host=self.gate.login_host)
        if to.host is None or not nonce or not _NONCE_HASH.fullmatch(nonce):
            nonce = None
        return Destination(to, nonce)

    def _resource_of(self, to: ReturnTo) -> Any:
        """The resource a return URL points to, or None."""
        if to.host is None:
            return None
        try:
            target = normalize_target(to.path.encode("ascii"))
        except (BadTarget, UnicodeError):
            return None
        route = self.front.router.route(to.host, target)
        return None if route is None else route.resource

    async def _signing_in_to(self, to: Destination) -> str | None:
        """The sentence "Sign in to continue to <resource> (<organization>)." when ``to`` is on a resource's
        host (names only, never ids; the page escapes them); None on the login host, or when no
        resource serves that address (any more)."""
        resource = self._resource_of(to.to)
        if resource is None:
            return None
        org = await self._org_name(getattr(resource, "org_id", None))
        where = f"{resource.name} ({org})" if org else resource.name
        return f"Sign in to continue to {where}."

    async def _org_name(self, org_id: str | None) -> str | None:
        """An organization's name (None: no organization, as for the configuration file's resources)."""
        if not org_id:
            return None
        try:
            return (await self.store.run(get_organization, org_id)).name
        except (NotFound, Invalid):
            return None

    def _unbound(self, request: IRequest, to: Destination) -> bytes:
        """Off to the resource's host, which gives the browser its nonce cookie and sends it back
        here with the nonce's hash (every sign-in for a resource host is bound to one)."""
        return self._redirect(request, _start_url(to))

    def _asked_destination(self, request: IRequest) -> Destination:
        """Where a page's query (``rd``, ``n``) asks to go after sign-in; for a resource host without
        the nonce's hash, the browser is sent to get one first (:class:`Redirect`)."""
        to = self._destination(arg(request, "rd"), arg(request, "n"))
        if not to.on_login_host and to.nonce is None:
            raise Redirect(_start_url(to))
        return to

    async def _login_session(self, request: IRequest) -> Resolved | None:
        token = cookie(request, LOGIN_COOKIE)
        if not token:
            return None
        found = self.gate.identities.resolve(SESSION, token)
        if isinstance(found, Deferred):
            found = await found
        if found.identity is None or found.host is not None or found.session_id is None:
            return None  # unknown, ended, or a resource host's session
        if found.identity.resources:
            return None
        return found

    async def _continue(
        self, request: IRequest, session_id: str, user_id: str | None, method: str, to: Destination
    ) -> bytes:
        """Signed in: go to ``to``, through a one-time code when it is on a resource's host."""
        if to.on_login_host:
            return self._redirect(request, to.to.url)
        if to.nonce is None:
            return self._unbound(request, to)
        return await self._code_redirect(request, to, method=method, parent_id=session_id, user_id=user_id)

    async def _code_redirect(self, request: IRequest, to: Destination, **code: Any) -> bytes:
        """A one-time code for the resource host, bound to the browser's nonce there, and the redirect
        to the host's callback that exchanges it for a session cookie."""
        assert to.to.host is not None and to.nonce is not None
        made = await self.store.run(
            create_auth_code, host=to.to.host, path=to.to.path, nonce_hash=to.nonce, **code
        )
        return self._redirect(request, f"https://{to.to.netloc}{CALLBACK_PATH}?code={quote(made)}")

    async def _start_session(self, request: IRequest, user_id: str, method: str, account: str) -> Any:
        """A new login session (never one the browser brought: no fixation), in the login cookie;
        the browser's device cookie now vouches for ``account``."""
        lifetime = self.gate.session_lifetime()
        session, token = await self.store.run(
            create_session,
            method=method,
            lifetime=lifetime,
            user_id=user_id,
            source_address=self._client(request),
            user_agent=(request.getHeader(b"user-agent") or b"").decode("latin-1")[:200],
        )
        set_cookie(request, LOGIN_COOKIE, token, int(lifetime.total_seconds()))
        self._trust_device(request, account)
        return session

    # ------------------------------------------------------------------ throttling and device cookies

    def _device_accounts(self, request: IRequest) -> list[str]:
        opened = self.seal.open("device", cookie(request, DEVICE_COOKIE), now=self.clock())
        accounts = opened.get("a") if opened else None
        return [a for a in accounts if isinstance(a, str)] if isinstance(accounts, list) else []

    def _trust_device(self, request: IRequest, account: str) -> None:
        """Remember in the browser's device cookie that it signed in to ``account``."""
        mark = _account_mark(account)
        accounts = [mark] + [a for a in self._device_accounts(request) if a != mark]
        sealed = self.seal.seal(
            "device", {"a": accounts[:DEVICE_ACCOUNTS]}, now=self.clock(), lifetime=DEVICE_DAYS * 86400
        )
        set_cookie(request, DEVICE_COOKIE, sealed, DEVICE_DAYS * 86400)

    async def _throttled(self, request: IRequest, account: str) -> Refusal | None:
        """Apply the sign-in throttle to an attempt on ``account``: a refusal, or None once any delay
        the account-wide pace asks for has passed."""
        trusted = _account_mark(account) in self._device_accounts(request)
        verdict = self.throttle.check(account, self._client(request), self.clock(), trusted=trusted)
        if verdict.refusal is not None:
            request.setHeader(b"retry-after", str(verdict.refusal.retry_after).encode())
            return verdict.refusal
        if verdict.delay > 0:
            if self._held >= MAX_HELD:
                request.setHeader(b"retry-after", b"10")
                return Refusal("Too many sign-in attempts are waiting: try again in a moment.", 10)
            self._held += 1
            try:
                await deferLater(self.reactor, verdict.delay)
            finally:
                self._held -= 1
        return None

    def _succeeded(self, request: IRequest, account: str) -> None:
        self.throttle.succeeded(account, self._client(request))

    # ------------------------------------------------------------------ sign-ins in progress

    def _hold(self, request: IRequest, name: str, purpose: str, state: dict, lifetime: float) -> None:
        """Keep ``state`` for the next step in a sealed cookie."""
        sealed = self.seal.seal(purpose, state, now=self.clock(), lifetime=lifetime)
        set_cookie(request, name, sealed, int(lifetime))

    def _held_state(self, request: IRequest, name: str, purpose: str) -> dict | None:
        return self.seal.open(purpose, cookie(request, name), now=self.clock())

    def _drop(self, request: IRequest, name: str) -> None:
        set_cookie(request, name, "", 0)


def _start_url(to: Destination) -> str:
    return f"https://{to.to.netloc}{START_PATH}?" + urlencode({"path": to.to.path})


def _account_mark(account: str) -> str:
    """How a device cookie names an account (a hash: the cookie is sealed, but small is better)."""
    return hashlib.sha256(account.lower().encode()).hexdigest()[:16]
