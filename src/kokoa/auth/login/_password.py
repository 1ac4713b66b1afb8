"""Signing in with an email and a password, then the second factor; signing out."""

from __future__ import annotations

from html import escape
from typing import Any
from urllib.parse import urlencode

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.web.iweb import IRequest

from kokoa.console import console_shell
from kokoa.store import (
    check_password,
    check_second_factor,
    get_session,
    password_hash_for,
    revoke_session,
    totp_secret_of,
)

from .._oidc import OIDCError
from .._pages import Field, form, link, paragraph
from .._redirects import BadReturnURL
from .._settings import LOGIN_COOKIE
from ._base import Destination, LoginBase, app
from ._forms import Refused, set_cookie

log = Logger()

MFA_COOKIE = "__Host-kokoa_mfa"
#: Seconds a password-checked sign-in may wait for its second factor; wrong codes it may try.
MFA_WINDOW = 300.0
MFA_TRIES = 5


class PasswordPages(LoginBase):
    oidc: dict[str, Any]

    async def _account(self, request: IRequest, found: Any, note: str | None = None) -> str:
        """The signed-in user's page (:class:`AccountPages`)."""
        raise NotImplementedError

    @app.route("/login", methods=["GET"])
    def login_form(self, request: IRequest) -> Deferred:
        return self._guard(request, self._login_form(request))

    @app.route("/authorize", methods=["GET"])
    def authorize(self, request: IRequest) -> Deferred:
        return self._guard(request, self._login_form(request))

    async def _login_form(
        self,
        request: IRequest,
        error: str | None = None,
        status: int = 200,
        to: Destination | None = None,
    ) -> bytes:
        if to is None:
            to = self._asked_destination(request)
        found = await self._login_session(request)
        if found is not None and error is None:
            return await self._continue(request, found.session_id, found.identity.user_id, "session", to)
        going = await self._signing_in_to(to)
        body = f'<p class="lead" id="destination">{escape(going)}</p>' if going else ""
        body += paragraph(error, "error") if error else ""
        body += form(
            "/login",
            self._csrf(request),
            [
                ("email", "Email", "email", "username"),
                ("password", "Password", "password", "current-password"),
            ],
            "Sign in",
            to.fields(),
            form_id="signin",
        )
        if self.oidc:
            body += '<div class="alternatives">'
            for name, client in self.oidc.items():
                body += link(
                    f"/oidc/{name}/start?{to.query()}",
                    f"Sign in with {client.config.display_name}",
                    "button secondary",
                )
            body += "</div>"
        resource = self._resource_of(to.to)
        if resource is not None and resource.auth_methods:
            body += '<h2 class="divider">No account?</h2>'
            body += paragraph(f"{resource.name} also lets you in with:")
            labels = {"password": "its password", "pin": "its PIN", "email": "a code sent by email"}
            items = "".join(
                "<li>" + link(f"/resource/{method}?{to.query()}", labels[method]) + "</li>"
                for method in resource.auth_methods
            )
            body += f'<ul class="choices">{items}</ul>'
        return self._html(request, "Sign in", body, status)

    @app.route("/login", methods=["POST"])
    def login(self, request: IRequest) -> Deferred:
        return self._guard(request, self._login(request))

    async def _login(self, request: IRequest) -> bytes:
        fields = self._form(request)
        to = self._destination(fields.get("rd"), fields.get("n"))
        email = fields.get("email", "").strip().lower()[:254]
        refusal = await self._throttled(request, email)
        if refusal is not None:
            self._event(request, "signin", "failure", f"throttled: {refusal.message}", subject=email)
            return await self._login_form(request, refusal.message, 429, to)
        found = await self.store.run(password_hash_for, email)
        user, password_hash = found if found is not None else (None, None)
        good = await self.in_thread(check_password, password_hash, fields.get("password", ""))
        if not good or user is None or user.status != "active":
            self._event(request, "signin", "failure", "wrong email or password", subject=email)
            return await self._login_form(request, "Wrong email or password.", 401, to)
        if await self.store.run(totp_secret_of, user.id) is not None:
            # The account's failed attempts are forgiven only once the second factor passes.
            state = {"u": user.id, "a": email, "m": "password+totp", "t": 0, **to.fields()}
            self._hold(request, MFA_COOKIE, "mfa", state, MFA_WINDOW)
            return self._redirect(request, "/login/totp")
        self._succeeded(request, email)
        session = await self._start_session(request, user.id, "password", email)
        self._event(request, "signin", "success", "password", user_id=user.id, subject=user.email)
        return await self._continue(request, session.id, user.id, "password", to)

    @app.route("/login/totp", methods=["GET"])
    def totp_form(self, request: IRequest) -> Deferred:
        return self._guard(request, self._totp_form(request))

    async def _totp_form(self, request: IRequest, error: str | None = None, status: int = 200) -> bytes:
        state = self._held_state(request, MFA_COOKIE, "mfa")
        if state is None:
            return self._redirect(request, "/login")
        try:
            going = await self._signing_in_to(self._destination(state.get("rd"), state.get("n")))
        except BadReturnURL:  # (checked when the sign-in began; a host may have gone since)
            going = None
        body = f'<p class="lead" id="destination">{escape(going)}</p>' if going else ""
        body += paragraph(error, "error") if error else ""
        body += form(
            "/login/totp",
            self._csrf(request),
            [
                Field(
                    "code",
                    "Code",
                    "text",
                    "one-time-code",
                    "The 6-digit code from your authenticator app, or one of your backup codes.",
                )
            ],
            "Continue",
            form_id="totp",
        )
        return self._html(request, "Two-factor sign-in", body, status)

    @app.route("/login/totp", methods=["POST"])
    def totp(self, request: IRequest) -> Deferred:
        return self._guard(request, self._totp(request))

    async def _totp(self, request: IRequest) -> bytes:
        fields = self._form(request)
        state = self._held_state(request, MFA_COOKIE, "mfa")
        if state is None or not isinstance(state.get("u"), str):
            return self._redirect(request, "/login")
        user_id: str = state["u"]
        # Codes are guessable (10^6): every try counts against the account's own limits too, across
        # sign-ins, and one password check allows MFA_TRIES.
        refusal = await self._throttled(request, f"totp:{user_id}")
        if refusal is not None:
            return await self._totp_form(request, refusal.message, 429)
        tries = int(state.get("t", 0)) + 1
        if tries > MFA_TRIES:
            self._drop(request, MFA_COOKIE)
            self._event(request, "signin", "failure", "too many wrong second-factor codes", user_id=user_id)
            raise Refused(429, "Too many wrong codes: sign in again.")
        ok = await self.store.run(check_second_factor, user_id, fields.get("code", ""), self.clock())
        if not ok:
            self._hold(request, MFA_COOKIE, "mfa", {**state, "t": tries}, MFA_WINDOW)
            self._event(request, "signin", "failure", "wrong second-factor code", user_id=user_id)
            return await self._totp_form(request, "That code is not right. Try again.", 401)
        self._drop(request, MFA_COOKIE)
        account, method = str(state.get("a", "")), str(state.get("m", "password+totp"))
        self._succeeded(request, account)
        self._succeeded(request, f"totp:{user_id}")
        to = self._destination(state.get("rd"), state.get("n"))
        session = await self._start_session(request, user_id, method, account)
        self._event(request, "signin", "success", method, user_id=user_id)
        return await self._continue(request, session.id, user_id, method, to)

    @app.route("/logout", methods=["POST"])
    def logout(self, request: IRequest) -> Deferred:
        return self._guard(request, self._logout(request))

    async def _logout(self, request: IRequest) -> bytes:
        self._form(request)
        found = await self._login_session(request)
        provider_end = None
        if found is not None:
            session = await self.store.run(get_session, found.session_id)
            await self.store.run(revoke_session, found.session_id)
            self._event(request, "signout", "success", "signed out", user_id=found.identity.user_id)
            provider_end = await self._provider_sign_out(session.method)
        set_cookie(request, LOGIN_COOKIE, "", 0)
        return self._redirect(request, provider_end or "/signed-out")

    async def _provider_sign_out(self, method: str) -> str | None:
        """The single sign-on provider's end-session URL, when the session came from one that is set
        to end its own session too (``end_session``); None otherwise, or when it cannot be had (the
        sign-out here has happened either way)."""
        if not method.startswith("oidc:"):
            return None
        client = self.oidc.get(method[5:])
        if client is None:
            return None
        try:
            return await client.end_session_url(f"{self.gate.login_origin}/signed-out")
        except (OIDCError, ValueError) as e:
            log.warn("cannot end the provider's session too: {why}", why=str(e))
            return None

    @app.route("/signed-out", methods=["GET"])
    def signed_out(self, request: IRequest) -> Deferred:
        async def show() -> bytes:
            set_cookie(request, LOGIN_COOKIE, "", 0)
            return self._html(
                request,
                "Signed out",
                paragraph("You are signed out.", "ok") + "<p>" + link("/login", "Sign in again") + "</p>",
            )

        return self._guard(request, show())

    @app.route("/", methods=["GET"])
    def home(self, request: IRequest) -> Deferred:
        return self._guard(request, self._home(request))

    async def _home(self, request: IRequest) -> bytes:
        """The console (a signed-in user's page; it decides what they see from the API)."""
        found = await self._login_session(request)
        if found is None:
            return self._redirect(request, "/login")
        return console_shell(request, self.console_assets, self._csrf(request))

    @app.route("/account", methods=["GET"])
    def account(self, request: IRequest) -> Deferred:
        return self._guard(request, self._account_page(request))

    async def _account_page(self, request: IRequest) -> bytes:
        found = await self._login_session(request)
        if found is None:
            return self._redirect(request, login_link("/account"))
        return self._html(request, "Your account", await self._account(request, found), wide=True)


def login_link(rd: str) -> str:
    """The sign-in page that comes back to ``rd`` (a path on the login host)."""
    return "/login?" + urlencode({"rd": rd})
