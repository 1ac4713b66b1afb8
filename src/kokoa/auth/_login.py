"""The login host: sign-in pages, single sign-on, and the one-time codes that carry a sign-in to a
resource's host.

A Klein app, served by a twisted.web Site to which the HTTP front hands every connection whose first
request is for the login host (same listeners, same TLS). Its own session lives in a ``__Host-``
cookie on the login host only; resource hosts get theirs by exchanging a one-time code
(``/authorize`` → ``https://<resource host>/.kokoa/auth/callback?code=...``).

Safety: every form carries a CSRF token that must match a ``__Host-`` cookie, and a POST whose
Origin is another site's is refused; after sign-in the browser goes only to a known resource host
(``https``) or a path on the login host (no open redirects); each sign-in makes a new session (no
fixation); sign-in attempts are rate-limited per account and per client address.
"""

from __future__ import annotations

import hmac
import secrets
import time
from dataclasses import dataclass
from datetime import timedelta
from html import escape
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from klein import Klein
from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThread
from twisted.logger import Logger
from twisted.web.iweb import IRequest
from twisted.web.server import Site

from kokoa.http._router import BadTarget, normalize_target

from ._gate import AccessGate
from ._identities import SESSION, Resolved
from ._pages import form, link, page, paragraph
from ._ratelimit import SignInLimiter
from ._settings import CALLBACK_PATH, LOGIN_COOKIE

log = Logger()

CSRF_COOKIE = "__Host-kokoa_csrf"
MFA_COOKIE = "__Host-kokoa_mfa"
#: Seconds a password-checked sign-in may wait for its second factor; how many may wait at once.
MFA_WINDOW = 300.0
MAX_PENDING = 10_000
#: Form bodies larger than this are refused before they are parsed.
MAX_FORM_BYTES = 16 * 1024


@dataclass
class _Pending:
    """A sign-in waiting for something: its second factor, or the single sign-on provider."""

    expires: float
    user_id: str | None = None
    rd: str = ""
    method: str = ""
    attempts: int = 0
    provider: str = ""
    account: str = ""  # the email the password was checked for (its rate limit)
    nonce: str = ""
    verifier: str = ""


class _Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class LoginApp:
    """The login host's pages (bound to one gateway's gate, front and store)."""

    app = Klein()

    def __init__(
        self, gate: AccessGate, front: Any, reactor: Any, *, mailer: Any = None, oidc: Any = ()
    ) -> None:
        self.gate = gate
        self.front = front
        self.reactor = reactor
        self.settings = gate.settings
        self.mailer = mailer
        self.oidc = {client.config.name: client for client in oidc}
        s = self.settings
        self.limiter = SignInLimiter(
            account_capacity=s.attempts_per_account,
            account_refill_seconds=s.account_refill_seconds,
            address_capacity=s.attempts_per_address,
            address_refill_seconds=s.address_refill_seconds,
        )
        self._pending: dict[str, _Pending] = {}
        self.clock = time.time  # TOTP's clock (tests may replace it)

    def attach_api(self, api: Any) -> None:
        """Serve the admin API at ``/api/v1`` too (the console's; ``api``: an AdminAPI resource)."""
        self.root.api = api

    def site(self) -> Site:
        from kokoa.api import CappedSite

        from ._connect import LoginRoot, connect_resource

        self.root = LoginRoot(self.app.resource(), connect_resource(self))  # /connect/: kokoa connect
        site = CappedSite(self.root, max_body=MAX_FORM_BYTES * 64)  # larger bodies: 413 before buffering
        site.displayTracebacks = False
        site.timeOut = 60
        return site

    @property
    def store(self) -> Any:
        store = self.gate._store()
        if store is None:
            raise _Refused(503, "The gateway is starting: try again in a moment.")
        return store

    # ------------------------------------------------------------------ plumbing

    def _client(self, request: IRequest) -> str:
        peer = request.getClientAddress()
        host = getattr(peer, "host", "unknown")
        if not self.gate.trusted:
            return host
        return self.gate.trusted.client_address(
            host, request.requestHeaders.getRawHeaders(b"x-forwarded-for") or []
        )

    def _cookie(self, request: IRequest, name: str) -> str | None:
        value = request.getCookie(name.encode())
        if value is None:
            return None
        try:
            return value.decode("ascii")
        except UnicodeDecodeError:
            return None

    def _set_cookie(self, request: IRequest, name: str, value: str, max_age: int | None) -> None:
        request.addCookie(
            name.encode(),
            value.encode(),
            path=b"/",
            max_age=None if max_age is None else str(max_age).encode(),
            secure=True,
            httpOnly=True,
            sameSite="lax",
        )

    def _csrf(self, request: IRequest) -> str:
        token = self._cookie(request, CSRF_COOKIE)
        if not token or len(token) != 43:
            token = secrets.token_urlsafe(32)
            self._set_cookie(request, CSRF_COOKIE, token, None)
        return token

    def _form(self, request: IRequest) -> dict[str, str]:
        """The POSTed form, after the CSRF checks (token = cookie; Origin, if sent, is ours)."""
        origin = request.getHeader(b"origin")
        if origin is not None and origin.decode("latin-1") != self.gate.login_origin:
            raise _Refused(403, "This form was sent from another site: refused (CSRF protection).")
        length = request.getHeader(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > MAX_FORM_BYTES):
            raise _Refused(413, "The form is too large.")
        raw = request.content.read(MAX_FORM_BYTES + 1) if request.content is not None else b""
        if len(raw) > MAX_FORM_BYTES:
            raise _Refused(413, "The form is too large.")
        from urllib.parse import parse_qsl

        fields = dict(parse_qsl(raw.decode("utf-8", "replace"), max_num_fields=20))
        expected = self._cookie(request, CSRF_COOKIE)
        if not expected or not hmac.compare_digest(fields.get("csrf", ""), expected):
            raise _Refused(
                403, "The form's security token is missing or stale: reload the page and try again."
            )
        return fields

    def _html(self, request: IRequest, title: str, body: str, status: int = 200) -> bytes:
        request.setResponseCode(status)
        request.setHeader(b"content-type", b"text/html; charset=utf-8")
        request.setHeader(b"cache-control", b"no-store")
        request.setHeader(b"x-frame-options", b"DENY")
        request.setHeader(
            b"content-security-policy",
            b"default-src 'none'; style-src 'unsafe-inline'; form-action 'self' https:",
        )
        # same-origin: form posts keep their Origin (no-referrer would make it "null", refused below)
        request.setHeader(b"referrer-policy", b"same-origin")
        return page(title, body)

    def _redirect(self, request: IRequest, location: str) -> bytes:
        request.setResponseCode(302)
        request.setHeader(b"location", location.encode("ascii", "replace"))
        request.setHeader(b"cache-control", b"no-store")
        return b""

    def _refused(self, request: IRequest, error: _Refused) -> bytes:
        body = paragraph(error.message, "error") + "<p>" + link("/login", "Sign in") + "</p>"
        return self._html(request, "Something went wrong", body, error.status)

    def _guard(self, request: IRequest, work: Any) -> Deferred:
        """Run a handler coroutine; refusals become pages, anything else a 500 page (logged)."""
        if not request.isSecure():
            return Deferred.fromCoroutine(self._plain(request))

        async def run() -> bytes:
            try:
                return await work
            except _Refused as e:
                return self._refused(request, e)

        d = Deferred.fromCoroutine(run())

        def failed(failure: Any) -> bytes:
            log.failure("login page failed", failure)
            return self._html(
                request, "Something went wrong", paragraph("Try again in a moment.", "error"), 500
            )

        return d.addErrback(failed)

    async def _plain(self, request: IRequest) -> bytes:
        """The login host works over HTTPS only: send plain HTTP there."""
        target = request.uri.decode("ascii", "replace")
        if not target.startswith("/"):
            target = "/"
        return self._redirect(request, self.gate.login_origin + target)

    # ------------------------------------------------------------------ where to go after sign-in

    def _check_rd(self, rd: str | None) -> str:
        """A safe destination: an https URL on a known resource host, or a path on the login host."""
        if not rd:
            return "/"
        if rd.startswith("/") and not rd.startswith("//") and "\\" not in rd and all(c >= " " for c in rd):
            return rd
        parts = urlsplit(rd)
        host = (parts.hostname or "").lower()
        if parts.scheme == "https" and host and not parts.username and self.front.router.knows_host(host):
            return rd
        raise _Refused(
            400, "The address to return to after signing in is not one of this gateway's resources."
        )

    def _resource_of(self, rd: str) -> Any:
        """The resource an absolute ``rd`` points to, or None."""
        parts = urlsplit(rd)
        if not parts.scheme:
            return None
        try:
            target = normalize_target(
                (parts.path or "/").encode("ascii") + (b"?" + parts.query.encode() if parts.query else b"")
            )
        except (BadTarget, UnicodeError):
            return None
        route = self.front.router.route((parts.hostname or "").lower(), target)
        return None if route is None else route.resource

    async def _login_session(self, request: IRequest) -> Resolved | None:
        token = self._cookie(request, LOGIN_COOKIE)
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
        self, request: IRequest, session_id: str, user_id: str | None, method: str, rd: str
    ) -> bytes:
        """Signed in: go to ``rd``, through a one-time code when it is on a resource's host."""
        if rd.startswith("/"):
            return self._redirect(request, rd)
        return await self._code_redirect(request, rd, method=method, parent_id=session_id, user_id=user_id)

    async def _scoped_continue(
        self, request: IRequest, resource: Any, method: str, subject: str | None, rd: str
    ) -> bytes:
        """Signed in to one resource by its own credential: to ``rd`` through a one-time code."""
        return await self._code_redirect(request, rd, method=method, resource_id=resource.id, subject=subject)

    async def _code_redirect(self, request: IRequest, rd: str, **code: Any) -> bytes:
        """A one-time code for ``rd``'s host (and the path to go to there), and the redirect to the
        host's callback that exchanges it for a session cookie."""
        from kokoa.store import create_auth_code

        parts = urlsplit(rd)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        host = (parts.hostname or "").lower()
        made = await self.store.run(create_auth_code, host=host, path=path, **code)
        return self._redirect(request, f"https://{parts.netloc}{CALLBACK_PATH}?code={quote(made)}")

    async def _start_session(self, request: IRequest, user_id: str, method: str) -> Any:
        """A new login session (never one the browser brought: no fixation), in the login cookie."""
        from kokoa.store import create_session

        lifetime = self.gate.session_lifetime()
        session, token = await self.store.run(
            create_session,
            method=method,
            lifetime=lifetime,
            user_id=user_id,
            source_address=self._client(request),
            user_agent=(request.getHeader(b"user-agent") or b"").decode("latin-1")[:200],
        )
        self._set_cookie(request, LOGIN_COOKIE, token, int(lifetime.total_seconds()))
        return session

    def _event(self, request: IRequest, kind: str, outcome: str, reason: str, **fields: Any) -> None:
        self.gate.recorder.record(
            kind, outcome, reason, client_address=self._client(request), host=self.gate.login_host, **fields
        )

    def _remember(self, pending: _Pending) -> str:
        now = time.monotonic()
        if len(self._pending) >= MAX_PENDING:
            for key in [k for k, p in self._pending.items() if p.expires < now]:
                del self._pending[key]
            if len(self._pending) >= MAX_PENDING:
                raise _Refused(503, "Too many sign-ins are in progress: try again in a minute.")
        key = secrets.token_urlsafe(32)
        self._pending[key] = pending
        return key

    def _recall(self, key: str | None, *, keep: bool = False) -> _Pending | None:
        if not key:
            return None
        pending = self._pending.get(key) if keep else self._pending.pop(key, None)
        if pending is None or pending.expires < time.monotonic():
            self._pending.pop(key, None)
            return None
        return pending

    # ------------------------------------------------------------------ pages: sign in

    @app.route("/", methods=["GET"])
    def home(self, request: IRequest) -> Deferred:
        return self._guard(request, self._home(request))

    async def _home(self, request: IRequest) -> bytes:
        found = await self._login_session(request)
        if found is None:
            return self._redirect(request, "/login")
        return self._html(request, "Kokoa", await self._account(request, found))

    async def _account(self, request: IRequest, found: Resolved, note: str | None = None) -> str:
        """The signed-in user's page: their sessions (each can be ended), password, second factor."""
        from kokoa.store import list_sessions

        csrf = self._csrf(request)
        identity = found.identity
        body = paragraph(note, "note") if note else ""
        body += paragraph(f"Signed in as {identity.email}.")
        body += form("/logout", csrf, [], "Sign out", form_id="signout")
        sessions = (await self.store.run(list_sessions, user_id=identity.user_id, limit=100)).items
        rows = []
        for session in sessions:
            if session.kind != "login":
                continue
            this = " (this one)" if session.id == found.session_id else ""
            when = session.last_seen_at.strftime("%Y-%m-%d %H:%M UTC")
            end = form(f"/account/sessions/{session.id}/revoke", csrf, [], "End", form_id=f"end-{session.id}")
            rows.append(
                f"<tr><td>{escape(session.method)}{this}</td><td>{escape(session.source_address or '')}</td>"
                f"<td>{when}</td><td>{end}</td></tr>"
            )
        body += '<hr><h2>Sessions</h2><table id="sessions">' + "".join(rows) + "</table>"
        body += "<hr><h2>Password</h2>" + form(
            "/account/password",
            csrf,
            [
                ("current", "Current password", "password", "current-password"),
                ("password", "New password", "password", "new-password"),
            ],
            "Change the password",
            form_id="change-password",
        )
        body += "<hr>" + link("/account/totp", "Set up two-factor sign-in")
        return body

    @app.route("/account/sessions/<session_id>/revoke", methods=["POST"])
    def end_session(self, request: IRequest, session_id: str) -> Deferred:
        return self._guard(request, self._end_session(request, session_id))

    async def _end_session(self, request: IRequest, session_id: str) -> bytes:
        from kokoa.store import NotFound, get_session, revoke_session

        self._form(request)
        found = await self._login_session(request)
        if found is None:
            return self._redirect(request, "/login")

        def tx(conn: Any) -> bool:
            try:
                session = get_session(conn, session_id)
            except NotFound:
                return False
            if session.user_id != found.identity.user_id:
                return False  # not theirs: as if it did not exist
            revoke_session(conn, session_id)
            return True

        if not await self.store.run(tx):
            raise _Refused(404, "No such session of yours.")
        self._event(
            request,
            "signout",
            "success",
            f"session {session_id} ended by its user",
            user_id=found.identity.user_id,
        )
        if session_id == found.session_id:
            self._set_cookie(request, LOGIN_COOKIE, "", 0)
            return self._redirect(request, "/signed-out")
        return self._redirect(request, "/")

    @app.route("/account/password", methods=["POST"])
    def change_password(self, request: IRequest) -> Deferred:
        return self._guard(request, self._change_password(request))

    async def _change_password(self, request: IRequest) -> bytes:
        from kokoa.store import Invalid, check_password, hash_password, password_hash_for

        fields = self._form(request)
        found = await self._login_session(request)
        if found is None:
            return self._redirect(request, "/login")
        identity = found.identity
        refusal = self.limiter.check(identity.email, self._client(request), time.monotonic())
        if refusal is not None:
            return self._html(request, "Kokoa", await self._account(request, found, refusal.message), 429)
        current = await self.store.run(password_hash_for, identity.email)
        stored = current[1] if current is not None else None
        if not await deferToThread(check_password, stored, fields.get("current", "")):
            self._event(
                request,
                "signin",
                "failure",
                "wrong current password (password change)",
                user_id=identity.user_id,
            )
            return self._html(
                request, "Kokoa", await self._account(request, found, "The current password is wrong."), 401
            )
        try:
            new_hash = await deferToThread(hash_password, fields.get("password", ""))
        except Invalid as e:
            return self._html(
                request, "Kokoa", await self._account(request, found, f"The new password {e.message}."), 400
            )
        await self.store.run(_change_password, identity.user_id, new_hash, found.session_id)
        self._event(
            request, "signin", "success", "password changed; other sessions ended", user_id=identity.user_id
        )
        return self._html(
            request,
            "Kokoa",
            await self._account(request, found, "Password changed; your other sessions ended."),
        )

    @app.route("/login", methods=["GET"])
    def login_form(self, request: IRequest) -> Deferred:
        return self._guard(request, self._login_form(request))

    async def _login_form(self, request: IRequest, error: str | None = None, status: int = 200) -> bytes:
        rd = self._check_rd(_arg(request, "rd"))
        found = await self._login_session(request)
        if found is not None and error is None:
            return await self._continue(request, found.session_id, found.identity.user_id, "session", rd)
        csrf = self._csrf(request)
        body = paragraph(error, "error") if error else ""
        body += form(
            "/login",
            csrf,
            [
                ("email", "Email", "email", "username"),
                ("password", "Password", "password", "current-password"),
            ],
            "Sign in",
            {"rd": rd},
            form_id="signin",
        )
        for name, client in self.oidc.items():
            body += (
                "<p>"
                + link(
                    f"/oidc/{name}/start?" + urlencode({"rd": rd}),
                    f"Sign in with {client.config.display_name}",
                )
                + "</p>"
            )
        resource = self._resource_of(rd)
        if resource is not None and resource.auth_methods:
            body += "<hr>" + paragraph(f"No account? {resource.name} also lets you in with:")
            labels = {"password": "its password", "pin": "its PIN", "email": "a code sent by email"}
            for method in resource.auth_methods:
                body += "<p>" + link(f"/resource/{method}?" + urlencode({"rd": rd}), labels[method]) + "</p>"
        return self._html(request, "Sign in", body, status)

    @app.route("/authorize", methods=["GET"])
    def authorize(self, request: IRequest) -> Deferred:
        return self._guard(request, self._login_form(request))

    @app.route("/login", methods=["POST"])
    def login(self, request: IRequest) -> Deferred:
        return self._guard(request, self._login(request))

    async def _login(self, request: IRequest) -> bytes:
        fields = self._form(request)
        rd = self._check_rd(fields.get("rd"))
        request.args[b"rd"] = [rd.encode()]
        email = fields.get("email", "").strip().lower()[:254]
        refusal = self.limiter.check(email, self._client(request), time.monotonic())
        if refusal is not None:
            self._event(request, "signin", "failure", f"rate limited: {refusal.message}", subject=email)
            request.setHeader(b"retry-after", str(refusal.retry_after).encode())
            return await self._login_form(request, refusal.message, 429)
        from kokoa.store import check_password, password_hash_for

        found = await self.store.run(password_hash_for, email)
        user, password_hash = found if found is not None else (None, None)
        good = await deferToThread(check_password, password_hash, fields.get("password", ""))
        if not good or user is None or user.status != "active":
            self._event(request, "signin", "failure", "wrong email or password", subject=email)
            return await self._login_form(request, "Wrong email or password.", 401)
        totp = await self.store.run(_totp_state, user.id)
        if totp is not None:  # the account's attempts are forgiven only once the second factor passes
            pending = _Pending(time.monotonic() + MFA_WINDOW, user.id, rd, "password+totp", account=email)
            key = self._remember(pending)
            self._set_cookie(request, MFA_COOKIE, key, int(MFA_WINDOW))
            return self._redirect(request, "/login/totp")
        self.limiter.succeeded(email)
        session = await self._start_session(request, user.id, "password")
        self._event(request, "signin", "success", "password", user_id=user.id, subject=user.email)
        return await self._continue(request, session.id, user.id, "password", rd)

    @app.route("/login/totp", methods=["GET"])
    def totp_form(self, request: IRequest) -> Deferred:
        return self._guard(request, self._totp_form(request))

    async def _totp_form(self, request: IRequest, error: str | None = None, status: int = 200) -> bytes:
        if self._recall(self._cookie(request, MFA_COOKIE), keep=True) is None:
            return self._redirect(request, "/login")
        body = (
            paragraph(error, "error")
            if error
            else paragraph("Enter the 6-digit code from your authenticator app, or a backup code.")
        )
        body += form(
            "/login/totp",
            self._csrf(request),
            [("code", "Code", "text", "one-time-code")],
            "Continue",
            form_id="totp",
        )
        return self._html(request, "Two-factor sign-in", body, status)

    @app.route("/login/totp", methods=["POST"])
    def totp(self, request: IRequest) -> Deferred:
        return self._guard(request, self._totp(request))

    async def _totp(self, request: IRequest) -> bytes:
        fields = self._form(request)
        key = self._cookie(request, MFA_COOKIE)
        pending = self._recall(key, keep=True)
        if pending is None or pending.user_id is None:
            return self._redirect(request, "/login")
        # Codes are guessable (10^6): every try counts against the account's own limit too, across
        # sign-ins, and a pending sign-in allows five.
        refusal = self.limiter.check(f"totp:{pending.user_id}", self._client(request), time.monotonic())
        if refusal is not None:
            request.setHeader(b"retry-after", str(refusal.retry_after).encode())
            return await self._totp_form(request, refusal.message, 429)
        pending.attempts += 1
        if pending.attempts > 5:
            self._recall(key)
            self._event(
                request, "signin", "failure", "too many wrong second-factor codes", user_id=pending.user_id
            )
            raise _Refused(429, "Too many wrong codes: sign in again.")
        ok = await self.store.run(_check_second_factor, pending.user_id, fields.get("code", ""), self.clock())
        if not ok:
            self._event(request, "signin", "failure", "wrong second-factor code", user_id=pending.user_id)
            return await self._totp_form(request, "That code is not right. Try again.", 401)
        self._recall(key)
        self.limiter.succeeded(pending.account)
        self.limiter.succeeded(f"totp:{pending.user_id}")
        session = await self._start_session(request, pending.user_id, pending.method)
        self._set_cookie(request, MFA_COOKIE, "", 0)
        self._event(request, "signin", "success", pending.method, user_id=pending.user_id)
        return await self._continue(request, session.id, pending.user_id, pending.method, pending.rd)

    @app.route("/logout", methods=["POST"])
    def logout(self, request: IRequest) -> Deferred:
        return self._guard(request, self._logout(request))

    async def _logout(self, request: IRequest) -> bytes:
        self._form(request)
        found = await self._login_session(request)
        if found is not None:
            from kokoa.store import revoke_session

            await self.store.run(revoke_session, found.session_id)
            self._event(request, "signout", "success", "signed out", user_id=found.identity.user_id)
        self._set_cookie(request, LOGIN_COOKIE, "", 0)
        return self._redirect(request, "/signed-out")

    @app.route("/signed-out", methods=["GET"])
    def signed_out(self, request: IRequest) -> Deferred:
        async def show() -> bytes:
            self._set_cookie(request, LOGIN_COOKIE, "", 0)
            return self._html(
                request,
                "Signed out",
                paragraph("You are signed out.") + "<p>" + link("/login", "Sign in again") + "</p>",
            )

        return self._guard(request, show())

    # ------------------------------------------------------------------ a resource's own sign-in

    @app.route("/resource/<method>", methods=["GET"])
    def resource_form(self, request: IRequest, method: str) -> Deferred:
        return self._guard(request, self._resource_form(request, method))

    def _resource_for(self, rd: str, method: str) -> Any:
        resource = self._resource_of(rd)
        if resource is None or method not in resource.auth_methods:
            raise _Refused(404, "This resource has no such way to sign in.")
        return resource

    async def _resource_form(
        self, request: IRequest, method: str, error: str | None = None, status: int = 200
    ) -> bytes:
        rd = self._check_rd(_arg(request, "rd"))
        resource = self._resource_for(rd, method)
        csrf = self._csrf(request)
        body = paragraph(error, "error") if error else ""
        if method == "email":
            fields = [("email", "Your email address", "email", "email")]
            body += paragraph(f"We will send a code to your address if it may reach {resource.name}.")
            body += form(
                f"/resource/email?{urlencode({'rd': rd})}",
                csrf,
                fields,
                "Send a code",
                {"rd": rd},
                "email-code",
            )
        else:
            label = "Password" if method == "password" else "PIN"
            kind = "password"
            fields = [("secret", label, kind, "off")]
            body += form(
                f"/resource/{method}?{urlencode({'rd': rd})}",
                csrf,
                fields,
                "Continue",
                {"rd": rd},
                "resource-secret",
            )
        return self._html(request, f"Sign in to {resource.name}", body, status)

    @app.route("/resource/<method>", methods=["POST"])
    def resource_sign_in(self, request: IRequest, method: str) -> Deferred:
        return self._guard(request, self._resource_sign_in(request, method))

    async def _resource_sign_in(self, request: IRequest, method: str) -> bytes:
        fields = self._form(request)
        rd = self._check_rd(fields.get("rd"))
        request.args[b"rd"] = [rd.encode()]
        resource = self._resource_for(rd, method)
        account = f"resource:{resource.id}"
        refusal = self.limiter.check(account, self._client(request), time.monotonic())
        if refusal is not None:
            request.setHeader(b"retry-after", str(refusal.retry_after).encode())
            return await self._resource_form(request, method, refusal.message, 429)
        if method == "email":
            return await self._send_email_code(request, resource, fields.get("email", ""), rd)
        if method == "email-verify":
            raise _Refused(404, "Unknown step.")
        stored = await self.store.run(_resource_secret_hash, resource.id, method)
        from kokoa.store import check_password

        good = await deferToThread(check_password, stored, fields.get("secret", ""))
        if not good:
            self._event(
                request,
                "signin",
                "failure",
                f"wrong resource {method}",
                resource_id=resource.id,
                org_id=resource.org_id,
            )
            return await self._resource_form(
                request, method, f"Wrong {method.upper() if method == 'pin' else method}.", 401
            )
        # (no limiter.succeeded here: the resource's bucket is shared by every visitor, and a visitor's
        # success must not give a guesser more tries)
        self._event(
            request,
            "signin",
            "success",
            f"resource {method}",
            resource_id=resource.id,
            org_id=resource.org_id,
        )
        return await self._scoped_continue(request, resource, method, None, rd)

    async def _send_email_code(self, request: IRequest, resource: Any, email: str, rd: str) -> bytes:
        from kokoa.store import Invalid, create_email_code, get_resource
        from kokoa.store import email_allowed as allowed

        if self.mailer is None:
            raise _Refused(503, "This gateway cannot send email (no [auth.mail] settings).")
        try:
            from kokoa.store._validate import email as check_email

            address = check_email(email)
        except Invalid:
            return await self._resource_form(request, "email", "That is not an email address.", 400)

        def tx(conn: Any) -> str | None:
            current = get_resource(conn, resource.id)
            if not allowed(current, address):
                return None
            return create_email_code(
                conn, resource.id, address, lifetime=timedelta(seconds=self.settings.email_code_lifetime)
            )

        code = await self.store.run(tx)
        if code is not None:
            self.mailer.send(
                address,
                f"Your code for {resource.name}",
                f"Your code to reach {resource.name} is {code}.\n\nIt is valid for "
                f"{int(self.settings.email_code_lifetime // 60)} minutes. "
                "If you did not ask for it, ignore this mail.\n",
            ).addErrback(lambda f: log.warn("cannot send an email code: {why}", why=f.getErrorMessage()))
            self._event(
                request,
                "signin",
                "success",
                "email code sent",
                resource_id=resource.id,
                subject=address,
                org_id=resource.org_id,
            )
        else:
            self._event(
                request,
                "signin",
                "failure",
                "email code asked for an address not allowed",
                resource_id=resource.id,
                subject=address,
                org_id=resource.org_id,
            )
        # The same answer either way: nobody learns which addresses may reach the resource.
        csrf = self._csrf(request)
        body = paragraph(f"If {address} may reach {resource.name}, a code is on its way. Enter it here.")
        body += form(
            "/resource-code",
            csrf,
            [("code", "Code", "text", "one-time-code")],
            "Continue",
            {"rd": rd, "email": address},
            "email-verify",
        )
        return self._html(request, f"Sign in to {resource.name}", body)

    @app.route("/resource-code", methods=["POST"])
    def resource_code(self, request: IRequest) -> Deferred:
        return self._guard(request, self._resource_code(request))

    async def _resource_code(self, request: IRequest) -> bytes:
        fields = self._form(request)
        rd = self._check_rd(fields.get("rd"))
        request.args[b"rd"] = [rd.encode()]
        resource = self._resource_for(rd, "email")
        from kokoa.store import verify_email_code

        address = fields.get("email", "")[:254]
        good = await self.store.run(verify_email_code, resource.id, address, fields.get("code", "").strip())
        if not good:
            self._event(
                request,
                "signin",
                "failure",
                "wrong or expired email code",
                resource_id=resource.id,
                subject=address,
                org_id=resource.org_id,
            )
            return await self._resource_form(
                request, "email", "That code is wrong or expired: ask for a new one.", 401
            )
        self._event(
            request,
            "signin",
            "success",
            "email code",
            resource_id=resource.id,
            subject=address,
            org_id=resource.org_id,
        )
        return await self._scoped_continue(request, resource, "email", address, rd)

    # ------------------------------------------------------------------ single sign-on

    @app.route("/oidc/<name>/start", methods=["GET"])
    def oidc_start(self, request: IRequest, name: str) -> Deferred:
        return self._guard(request, self._oidc_start(request, name))

    def _redirect_uri(self, name: str) -> str:
        return f"{self.gate.login_origin}/oidc/{name}/callback"

    async def _oidc_start(self, request: IRequest, name: str) -> bytes:
        from ._oidc import OIDCError, new_code_verifier, new_nonce

        client = self.oidc.get(name)
        if client is None:
            raise _Refused(404, "No such single sign-on provider.")
        rd = self._check_rd(_arg(request, "rd"))
        try:
            await client.discover()
        except OIDCError as e:
            raise _Refused(502, e.message) from None
        pending = _Pending(
            time.monotonic() + MFA_WINDOW,
            rd=rd,
            provider=name,
            nonce=new_nonce(),
            verifier=new_code_verifier(),
        )
        state = self._remember(pending)
        return self._redirect(
            request,
            client.authorization_url(self._redirect_uri(name), state, pending.nonce, pending.verifier),
        )

    @app.route("/oidc/<name>/callback", methods=["GET"])
    def oidc_callback(self, request: IRequest, name: str) -> Deferred:
        return self._guard(request, self._oidc_callback(request, name))

    async def _oidc_callback(self, request: IRequest, name: str) -> bytes:
        from ._oidc import OIDCError

        client = self.oidc.get(name)
        pending = self._recall(_arg(request, "state"))
        if client is None or pending is None or pending.provider != name:
            raise _Refused(400, "This sign-in has expired or did not start here: sign in again.")
        error = _arg(request, "error")
        if error:
            raise _Refused(401, f"{client.config.display_name} did not sign you in ({error[:100]}).")
        try:
            claims = await client.exchange(
                _arg(request, "code") or "", self._redirect_uri(name), pending.verifier, pending.nonce
            )
        except OIDCError as e:
            self._event(request, "signin", "failure", f"oidc:{name}: {e.message}")
            raise _Refused(401, e.message) from None
        if not claims.email or not claims.email_verified or not client.config.accepts_email(claims.email):
            self._event(
                request,
                "signin",
                "failure",
                f"oidc:{name}: email missing, unverified or not allowed",
                subject=claims.email,
            )
            raise _Refused(
                403, f"{client.config.display_name} did not vouch for an email address this gateway accepts."
            )
        user_id = await self.store.run(
            _sso_user, name, claims, client.config.provision_org, client.config.default_role
        )
        if user_id is None:
            self._event(
                request,
                "signin",
                "failure",
                f"oidc:{name}: no such user and no provisioning",
                subject=claims.email,
            )
            raise _Refused(
                403, f"{claims.email} has no account on this gateway. Ask an administrator for an invitation."
            )
        method = f"oidc:{name}"
        session = await self._start_session(request, user_id, method)
        self._event(request, "signin", "success", method, user_id=user_id, subject=claims.email)
        return await self._continue(request, session.id, user_id, method, pending.rd)

    # ------------------------------------------------------------------ kokoa connect's browser sign-in

    @app.route("/cli", methods=["GET"])
    def cli_form(self, request: IRequest) -> Deferred:
        return self._guard(request, self._cli_form(request))

    def _cli_args(self, port: str | None, state: str | None) -> tuple[int, str]:
        if not port or not port.isdigit() or not 1024 <= int(port) <= 65535:
            raise _Refused(400, "This sign-in link for kokoa connect is broken (port).")
        if not state or not 16 <= len(state) <= 100 or not state.replace("-", "").replace("_", "").isalnum():
            raise _Refused(400, "This sign-in link for kokoa connect is broken (state).")
        return int(port), state

    async def _cli_form(self, request: IRequest) -> bytes:
        port, state = self._cli_args(_arg(request, "port"), _arg(request, "state"))
        found = await self._login_session(request)
        if found is None:
            here = "/cli?" + urlencode({"port": port, "state": state})
            return self._redirect(request, "/login?" + urlencode({"rd": here}))
        body = paragraph(
            f"kokoa connect, on this computer, asks to reach TCP resources as {found.identity.email}. "
            "Allow it only if you just started it."
        )
        body += form(
            "/cli", self._csrf(request), [], "Allow", {"port": str(port), "state": state}, "cli-allow"
        )
        return self._html(request, "Sign in kokoa connect", body)

    @app.route("/cli", methods=["POST"])
    def cli_allow(self, request: IRequest) -> Deferred:
        return self._guard(request, self._cli_allow(request))

    async def _cli_allow(self, request: IRequest) -> bytes:
        from kokoa.store import create_auth_code

        from ._connect import CLI_HOST

        fields = self._form(request)
        port, state = self._cli_args(fields.get("port"), fields.get("state"))
        found = await self._login_session(request)
        if found is None:
            return self._redirect(request, "/login")
        code = await self.store.run(
            create_auth_code,
            host=CLI_HOST,
            path="/",
            method="cli",
            parent_id=found.session_id,
            user_id=found.identity.user_id,
        )
        self._event(request, "signin", "success", "kokoa connect allowed", user_id=found.identity.user_id)
        # Only ever to this machine's loopback (RFC 8252's native-app redirect): no open redirect.
        return self._redirect(
            request, f"http://127.0.0.1:{port}/callback?" + urlencode({"code": code, "state": state})
        )

    @app.route("/cli/token", methods=["POST"])
    def cli_token(self, request: IRequest) -> Deferred:
        return self._guard(request, self._cli_token(request))

    async def _cli_token(self, request: IRequest) -> bytes:
        """The back channel: ``kokoa connect`` trades the code it got on loopback for a session token
        (the code is the secret: no cookie, so no CSRF token)."""
        import json
        from urllib.parse import parse_qsl

        from kokoa.store import redeem_auth_code

        from ._connect import CLI_HOST

        raw = request.content.read(MAX_FORM_BYTES + 1) if request.content is not None else b""
        code = dict(parse_qsl(raw[:MAX_FORM_BYTES].decode("utf-8", "replace"))).get("code", "")
        found = await self.store.run(
            redeem_auth_code,
            code,
            CLI_HOST,
            lifetime=self.gate.session_lifetime(),
            idle_timeout=timedelta(seconds=self.settings.idle_timeout),
            source_address=self._client(request),
            user_agent="kokoa connect",
        )
        request.setHeader(b"content-type", b"application/json")
        request.setHeader(b"cache-control", b"no-store")
        if found is None:
            request.setResponseCode(400)
            return json.dumps(
                {"error": "the sign-in code is unknown, used or expired: sign in again"}
            ).encode()
        session, token, _ = found
        return json.dumps({"token": token, "expires_at": session.expires_at.isoformat()}).encode()

    # ------------------------------------------------------------------ one-time links and account

    @app.route("/setup", methods=["GET"])
    def setup_form(self, request: IRequest) -> Deferred:
        return self._guard(request, self._password_link_form(request, "setup"))

    @app.route("/reset", methods=["GET"])
    def reset_form(self, request: IRequest) -> Deferred:
        return self._guard(request, self._password_link_form(request, "reset"))

    @app.route("/invite", methods=["GET"])
    def invite_form(self, request: IRequest) -> Deferred:
        return self._guard(request, self._password_link_form(request, "invite"))

    async def _password_link_form(
        self, request: IRequest, purpose: str, error: str | None = None, status: int = 200
    ) -> bytes:
        from kokoa.store import peek_user_token

        token = _arg(request, "token") or ""
        user = await self.store.run(peek_user_token, token, purpose)
        if user is None:
            raise _Refused(404, "This link is unknown, used or expired. Ask for a new one.")
        body = paragraph(error, "error") if error else paragraph(f"Choose a password for {user.email}.")
        body += form(
            f"/{purpose}",
            self._csrf(request),
            [("password", "New password", "password", "new-password")],
            "Set the password",
            {"token": token},
            "set-password",
        )
        return self._html(request, "Choose a password", body, status)

    @app.route("/setup", methods=["POST"])
    def setup(self, request: IRequest) -> Deferred:
        return self._guard(request, self._password_link(request, "setup"))

    @app.route("/reset", methods=["POST"])
    def reset(self, request: IRequest) -> Deferred:
        return self._guard(request, self._password_link(request, "reset"))

    @app.route("/invite", methods=["POST"])
    def invite(self, request: IRequest) -> Deferred:
        return self._guard(request, self._password_link(request, "invite"))

    async def _password_link(self, request: IRequest, purpose: str) -> bytes:
        from kokoa.store import Invalid, hash_password

        fields = self._form(request)
        token = fields.get("token", "")
        request.args[b"token"] = [token.encode()]
        try:
            password_hash = await deferToThread(hash_password, fields.get("password", ""))
        except Invalid as e:
            return await self._password_link_form(request, purpose, f"The password {e.message}.", 400)
        user = await self.store.run(_use_password_link, token, purpose, password_hash)
        if user is None:
            raise _Refused(404, "This link is unknown, used or expired. Ask for a new one.")
        self._event(
            request,
            "signin",
            "success",
            f"password set by a {purpose} link",
            user_id=user.id,
            subject=user.email,
        )
        if await self.store.run(_totp_state, user.id) is not None:
            return self._redirect(request, "/login")  # the second factor still applies: sign in
        await self._start_session(request, user.id, "password")
        return self._redirect(request, "/")

    @app.route("/account/totp", methods=["GET"])
    def totp_setup_form(self, request: IRequest) -> Deferred:
        return self._guard(request, self._totp_setup_form(request))

    async def _totp_setup_form(self, request: IRequest, error: str | None = None, status: int = 200) -> bytes:
        from ._totp import new_totp_secret, provisioning_uri

        found = await self._login_session(request)
        if found is None:
            return self._redirect(request, "/login?" + urlencode({"rd": "/account/totp"}))
        key = self._cookie(request, MFA_COOKIE)
        pending = self._recall(key, keep=True)
        if pending is None or pending.method != "enrol" or pending.user_id != found.identity.user_id:
            pending = _Pending(
                time.monotonic() + MFA_WINDOW, found.identity.user_id, method="enrol", nonce=new_totp_secret()
            )
            self._set_cookie(request, MFA_COOKIE, self._remember(pending), int(MFA_WINDOW))
        uri = provisioning_uri(pending.nonce, found.identity.email)
        body = paragraph(error, "error") if error else ""
        body += paragraph("Add this key to your authenticator app, then enter the code it shows.")
        body += f'<p><code id="totp-secret">{pending.nonce}</code></p>'
        body += f'<p class="note"><code id="totp-uri">{escape(uri)}</code></p>'
        body += form(
            "/account/totp",
            self._csrf(request),
            [("code", "Code", "text", "one-time-code")],
            "Turn on",
            form_id="totp-setup",
        )
        return self._html(request, "Two-factor sign-in", body, status)

    @app.route("/account/totp", methods=["POST"])
    def totp_setup(self, request: IRequest) -> Deferred:
        return self._guard(request, self._totp_setup(request))

    async def _totp_setup(self, request: IRequest) -> bytes:
        from ._totp import hash_backup_code, new_backup_codes, verify_totp

        fields = self._form(request)
        found = await self._login_session(request)
        pending = self._recall(self._cookie(request, MFA_COOKIE), keep=True)
        if (
            found is None
            or pending is None
            or pending.method != "enrol"
            or pending.user_id != found.identity.user_id
        ):
            return self._redirect(request, "/account/totp")
        step = verify_totp(pending.nonce, fields.get("code", ""), now=self.clock())
        if step is None:
            return await self._totp_setup_form(
                request, "That code is not right: check your device's clock and try again.", 400
            )
        codes = new_backup_codes()
        await self.store.run(
            _enable_totp, found.identity.user_id, pending.nonce, step, [hash_backup_code(c) for c in codes]
        )
        self._recall(self._cookie(request, MFA_COOKIE))
        self._event(
            request, "signin", "success", "two-factor sign-in turned on", user_id=found.identity.user_id
        )
        items = "".join(f"<li><code>{c}</code></li>" for c in codes)
        body = paragraph("Two-factor sign-in is on. Keep these backup codes somewhere safe: each works once.")
        body += f'<ul id="backup-codes">{items}</ul><p>{link("/", "Done")}</p>'
        return self._html(request, "Two-factor sign-in", body)


def _arg(request: IRequest, name: str) -> str | None:
    values = request.args.get(name.encode())
    if not values:
        return None
    try:
        return values[0].decode("utf-8")[:4096]
    except UnicodeDecodeError:
        return None


# -- store work (run in the store's thread) -------------------------------------------------------------


def _totp_state(conn: Any, user_id: str) -> str | None:
    from sqlalchemy import select

    from kokoa.store import _schema as s

    return conn.execute(select(s.users.c.totp_secret).where(s.users.c.id == user_id)).scalar_one_or_none()


def _check_second_factor(conn: Any, user_id: str, code: str, now: float) -> bool:
    """A TOTP code (not replayed) or an unused backup code; records what was used."""
    from sqlalchemy import select, update

    from kokoa.store import _schema as s

    from ._totp import match_backup_code, verify_totp

    row = conn.execute(select(s.users).where(s.users.c.id == user_id)).one_or_none()
    if row is None or row.totp_secret is None:
        return False
    step = verify_totp(row.totp_secret, code, now=now, last_step=row.totp_last_step)
    users = s.users.c
    if step is not None:
        # Conditional: of two sign-ins with one code at the same moment, one only moves the step.
        newer = (users.totp_last_step.is_(None)) | (users.totp_last_step < step)
        claimed = conn.execute(update(s.users).where(users.id == user_id, newer).values(totp_last_step=step))
        return claimed.rowcount == 1
    hashes = list(row.backup_codes or [])
    used = match_backup_code(code, hashes)
    if used is None:
        return False
    hashes.remove(used)
    # Likewise a backup code: only if the list is still the one read (nobody used one meanwhile).
    same = (
        users.backup_codes == row.backup_codes if conn.dialect.name == "postgresql" else users.id == user_id
    )
    claimed = conn.execute(update(s.users).where(users.id == user_id, same).values(backup_codes=hashes))
    return claimed.rowcount == 1


def _enable_totp(conn: Any, user_id: str, secret: str, step: int, backup_hashes: list[str]) -> None:
    from sqlalchemy import update

    from kokoa.store import _schema as s

    conn.execute(
        update(s.users)
        .where(s.users.c.id == user_id)
        .values(totp_secret=secret, totp_last_step=step, backup_codes=backup_hashes)
    )


def _resource_secret_hash(conn: Any, resource_id: str, method: str) -> str | None:
    from sqlalchemy import select

    from kokoa.store import _schema as s

    column = s.resources.c.auth_password_hash if method == "password" else s.resources.c.auth_pin_hash
    return conn.execute(select(column).where(s.resources.c.id == resource_id)).scalar_one_or_none()


def _use_password_link(conn: Any, token: str, purpose: str, password_hash: str) -> Any:
    from kokoa.store import redeem_user_token, revoke_user_sessions, set_password_hash, update_user

    user = redeem_user_token(conn, token, purpose)
    if user is None:
        return None
    set_password_hash(conn, user.id, password_hash)
    if user.status == "invited":
        update_user(conn, user.id, status="active")
    revoke_user_sessions(conn, user.id)
    return user


def _change_password(conn: Any, user_id: str, password_hash: str, keep_session: str) -> None:
    from kokoa.store import revoke_user_sessions, set_password_hash

    set_password_hash(conn, user_id, password_hash)
    revoke_user_sessions(conn, user_id, except_id=keep_session)


def _sso_user(
    conn: Any, provider: str, claims: Any, provision_org: str | None, default_role: str
) -> str | None:
    """The user a provider's subject is: linked before, or the user with that (verified) email, or a
    new one in ``provision_org`` with ``default_role``; None if none may be made."""
    from sqlalchemy import insert, select

    from kokoa.store import (
        NotFound,
        add_member,
        create_user,
        get_organization,
        get_role_by_name,
        get_user_by_email,
        list_organizations,
    )
    from kokoa.store import _schema as s
    from kokoa.store._common import utcnow

    ids = s.user_identities
    linked = conn.execute(
        select(ids.c.user_id).where(ids.c.provider == provider, ids.c.subject == claims.subject)
    ).scalar_one_or_none()
    if linked is not None:
        return linked
    try:
        user = get_user_by_email(conn, claims.email)
    except NotFound:
        if provision_org is None:
            return None
        try:
            org = get_organization(conn, provision_org)
        except NotFound:
            org = next(
                (
                    o
                    for o in list_organizations(conn, limit=1000).items
                    if o.name.lower() == provision_org.lower()
                ),
                None,
            )
            if org is None:
                log.warn("oidc provider {p}: provision_org {o!r} does not exist", p=provider, o=provision_org)
                return None
        user = create_user(conn, claims.email, display_name=(claims.name or None) and claims.name[:100])
        add_member(conn, org.id, user.id, get_role_by_name(conn, org.id, default_role).id)
    if user.status != "active":
        return None
    conn.execute(
        insert(ids).values(
            provider=provider,
            subject=claims.subject[:255],
            user_id=user.id,
            email=claims.email,
            created_at=utcnow(),
        )
    )
    return user.id
