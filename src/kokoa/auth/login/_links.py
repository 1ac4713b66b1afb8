"""One-time links that set a password: ``/setup`` (from ``kokoa init``), ``/reset``, ``/invite``."""

from __future__ import annotations

from twisted.internet.defer import Deferred
from twisted.web.iweb import IRequest

from kokoa.store import Invalid, hash_password, peek_user_token, totp_secret_of, use_password_link
from kokoa.store._validate import PASSWORD_MIN

from .._pages import Field, form, paragraph
from ._base import LoginBase, app
from ._forms import Refused, arg

_GONE = "This link is unknown, used or expired. Ask for a new one."
_HINT = f"At least {PASSWORD_MIN} characters."


class LinkPages(LoginBase):
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
        self,
        request: IRequest,
        purpose: str,
        error: str | None = None,
        status: int = 200,
        token: str | None = None,
    ) -> bytes:
        if token is None:
            token = arg(request, "token") or ""
        user = await self.store.run(peek_user_token, token, purpose)
        if user is None:
            raise Refused(404, _GONE)
        body = paragraph(f"Choose a password for {user.email}.")
        body += paragraph(error, "error") if error else ""
        body += form(
            f"/{purpose}",
            self._csrf(request),
            [Field("password", "New password", "password", "new-password", _HINT)],
            "Set the password",
            {"token": token},
            "set-password",
            username=user.email,
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
        fields = self._form(request)
        token = fields.get("token", "")
        try:
            password_hash = await self.in_thread(hash_password, fields.get("password", ""))
        except Invalid as e:
            return await self._password_link_form(request, purpose, f"The password {e.message}.", 400, token)
        user = await self.store.run(use_password_link, token, purpose, password_hash)
        if user is None:
            raise Refused(404, _GONE)
        self._event(
            request,
            "signin",
            "success",
            f"password set by a {purpose} link",
            user_id=user.id,
            subject=user.email,
        )
        if await self.store.run(totp_secret_of, user.id) is not None:
            return self._redirect(request, "/login")  # the second factor still applies: sign in
        await self._start_session(request, user.id, "password", user.email)
        return self._redirect(request, "/")
