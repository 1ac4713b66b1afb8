"""The signed-in user's own pages: their sessions (each can be ended), password, second factor."""

from __future__ import annotations

from html import escape
from typing import Any

from twisted.internet.defer import Deferred
from twisted.web.iweb import IRequest

from kokoa.store import (
    Invalid,
    NotFound,
    change_password,
    check_password,
    enable_totp,
    get_session,
    hash_password,
    list_sessions,
    password_hash_for,
    revoke_session,
)
from kokoa.store._validate import PASSWORD_MIN

from .._pages import Field, form, link, paragraph, qr_code
from .._settings import LOGIN_COOKIE
from .._totp import hash_backup_code, new_backup_codes, new_totp_secret, provisioning_uri, verify_totp
from ._base import LoginBase, app
from ._forms import Refused, set_cookie
from ._password import login_link

_HINT = f"At least {PASSWORD_MIN} characters. Changing it ends your other sessions."
ENROL_COOKIE = "__Host-kokoa_enrol"
#: Seconds to finish setting up a second factor.
ENROL_WINDOW = 600.0


class AccountPages(LoginBase):
    oidc: dict[str, Any]

    def _method_label(self, method: str) -> str:
        """How a session was signed in, in words (a single sign-on provider by its display name)."""
        if method.startswith("oidc:"):
            client = self.oidc.get(method[5:])
            return client.config.display_name if client is not None else "Single sign-on"
        return _method_words(method)

    async def _account(self, request: IRequest, found: Any, note: str | None = None, kind: str = "ok") -> str:
        """The account page's body: ``note`` on top (``kind`` ``ok`` or ``error``)."""
        csrf = self._csrf(request)
        identity = found.identity
        body = paragraph(note, kind) if note else ""
        body += paragraph(f"Signed in as {identity.email}.")
        body += (
            '<div class="actions">'
            + link("/", "Open the console", "button")
            + form("/logout", csrf, [], "Sign out", form_id="signout", button_class="secondary")
            + "</div>"
        )
        sessions = (await self.store.run(list_sessions, user_id=identity.user_id, limit=100)).items
        rows = []
        for session in sessions:
            if session.kind != "login":
                continue
            how = self._method_label(session.method)
            this = ' <span class="badge ok">this one</span>' if session.id == found.session_id else ""
            when = session.last_seen_at.strftime("%Y-%m-%d %H:%M UTC")
            where = session.source_address or "unknown"
            end = form(
                f"/account/sessions/{session.id}/revoke",
                csrf,
                [],
                "End",
                form_id=f"end-{session.id}",
                button_class="secondary",
                button_label=f"End the session signed in with {how} from {where}, last used {when}",
            )
            rows.append(
                f"<tr><td>{escape(how)}{this}</td><td>{escape(where)}</td><td>{when}</td><td>{end}</td></tr>"
            )
        body += (
            '<h2 id="sessions-title">Sessions</h2><div class="table-wrap">'
            '<table id="sessions" aria-labelledby="sessions-title"><thead><tr>'
            '<th scope="col">Signed in with</th><th scope="col">From</th><th scope="col">Last used</th>'
            '<th scope="col"><span class="visually-hidden">End</span></th></tr></thead><tbody>'
            + "".join(rows)
            + "</tbody></table></div>"
        )
        body += "<h2>Password</h2>" + form(
            "/account/password",
            csrf,
            [
                ("current", "Current password", "password", "current-password"),
                Field("password", "New password", "password", "new-password", _HINT),
            ],
            "Change the password",
            form_id="change-password",
            username=identity.email,
        )
        body += "<h2>Two-factor sign-in</h2><p>" + link("/account/totp", "Set up two-factor sign-in") + "</p>"
        return body

    async def _account_html(
        self, request: IRequest, found: Any, note: str | None = None, kind: str = "ok", status: int = 200
    ) -> bytes:
        return self._html(
            request, "Your account", await self._account(request, found, note, kind), status, wide=True
        )

    @app.route("/account/sessions/<session_id>/revoke", methods=["POST"])
    def end_session(self, request: IRequest, session_id: str) -> Deferred:
        return self._guard(request, self._end_session(request, session_id))

    async def _end_session(self, request: IRequest, session_id: str) -> bytes:
        self._form(request)
        if not (session_id.isascii() and session_id.replace("_", "").isalnum() and len(session_id) <= 40):
            raise Refused(404, "No such session of yours.")
        found = await self._login_session(request)
        if found is None:
            return self._redirect(request, "/login")

        def tx(conn: Any) -> bool:
            try:
                session = get_session(conn, session_id)
            except (NotFound, Invalid):
                return False
            if session.user_id != found.identity.user_id:
                return False  # not theirs: as if it did not exist
            revoke_session(conn, session_id)
            return True

        if not await self.store.run(tx):
            raise Refused(404, "No such session of yours.")
        self._event(
            request,
            "signout",
            "success",
            f"session {session_id} ended by its user",
            user_id=found.identity.user_id,
        )
        if session_id == found.session_id:
            set_cookie(request, LOGIN_COOKIE, "", 0)
            return self._redirect(request, "/signed-out")
        return self._redirect(request, "/account")

    @app.route("/account/password", methods=["POST"])
    def change_password(self, request: IRequest) -> Deferred:
        return self._guard(request, self._change_password(request))

    async def _change_password(self, request: IRequest) -> bytes:
        fields = self._form(request)
        found = await self._login_session(request)
        if found is None:
            return self._redirect(request, "/login")
        identity = found.identity
        refusal = await self._throttled(request, identity.email)
        if refusal is not None:
            return await self._account_html(request, found, refusal.message, "error", 429)
        current = await self.store.run(password_hash_for, identity.email)
        stored = current[1] if current is not None else None
        if not await self.in_thread(check_password, stored, fields.get("current", "")):
            self._event(
                request,
                "signin",
                "failure",
                "wrong current password (password change)",
                user_id=identity.user_id,
            )
            return await self._account_html(request, found, "The current password is wrong.", "error", 401)
        try:
            new_hash = await self.in_thread(hash_password, fields.get("password", ""))
        except Invalid as e:
            return await self._account_html(request, found, f"The new password {e.message}.", "error", 400)
        await self.store.run(change_password, identity.user_id, new_hash, found.session_id)
        self._event(
            request, "signin", "success", "password changed; other sessions ended", user_id=identity.user_id
        )
        return await self._account_html(request, found, "Password changed; your other sessions ended.")

    @app.route("/account/totp", methods=["GET"])
    def totp_setup_form(self, request: IRequest) -> Deferred:
        return self._guard(request, self._totp_setup_form(request))

    async def _totp_setup_form(self, request: IRequest, error: str | None = None, status: int = 200) -> bytes:
        found = await self._login_session(request)
        if found is None:
            return self._redirect(request, login_link("/account/totp"))
        state = self._held_state(request, ENROL_COOKIE, "enrol")
        if state is None or state.get("u") != found.identity.user_id or not isinstance(state.get("k"), str):
            state = {"u": found.identity.user_id, "k": new_totp_secret()}
            self._hold(request, ENROL_COOKIE, "enrol", state, ENROL_WINDOW)
        secret = state["k"]
        uri = provisioning_uri(secret, found.identity.email)
        body = paragraph(error, "error") if error else ""
        body += paragraph(
            "Scan this QR code with your authenticator app, or type the key below into it; "
            "then enter the code it shows."
        )
        body += '<div class="qr-setup">' + qr_code(
            uri, "QR code of your two-factor key, for an authenticator app", "totp-qr"
        )
        body += (
            '<p class="key">Key for manual entry: '
            f'<code id="totp-secret">{escape(_grouped(secret))}</code></p>'
            "</div>"
        )
        body += (
            '<details class="note"><summary>The key as an address (otpauth://)</summary>'
            f'<p><code id="totp-uri">{escape(uri)}</code></p></details>'
        )
        body += form(
            "/account/totp",
            self._csrf(request),
            [Field("code", "Code", "text", "one-time-code", "The 6-digit code your app shows.", "numeric")],
            "Turn on",
            form_id="totp-setup",
        )
        body += "<p>" + link("/account", "Back to your account") + "</p>"
        return self._html(request, "Two-factor sign-in", body, status)

    @app.route("/account/totp", methods=["POST"])
    def totp_setup(self, request: IRequest) -> Deferred:
        return self._guard(request, self._totp_setup(request))

    async def _totp_setup(self, request: IRequest) -> bytes:
        fields = self._form(request)
        found = await self._login_session(request)
        state = self._held_state(request, ENROL_COOKIE, "enrol")
        if (
            found is None
            or state is None
            or state.get("u") != found.identity.user_id
            or not isinstance(state.get("k"), str)
        ):
            return self._redirect(request, "/account/totp")
        step = verify_totp(state["k"], fields.get("code", ""), now=self.clock())
        if step is None:
            return await self._totp_setup_form(
                request, "That code is not right: check your device's clock and try again.", 400
            )
        codes = new_backup_codes()
        await self.store.run(
            enable_totp, found.identity.user_id, state["k"], step, [hash_backup_code(c) for c in codes]
        )
        self._drop(request, ENROL_COOKIE)
        self._event(
            request, "signin", "success", "two-factor sign-in turned on", user_id=found.identity.user_id
        )
        items = "".join(f"<li><code>{escape(c)}</code></li>" for c in codes)
        body = paragraph("Two-factor sign-in is on.", "ok")
        body += paragraph(
            "Keep these backup codes somewhere safe: each works once, instead of a code from your app."
        )
        body += f'<ul class="codes" id="backup-codes">{items}</ul><p>{link("/account", "Done")}</p>'
        return self._html(request, "Two-factor sign-in", body)


def _grouped(secret: str) -> str:
    """A base32 key in groups of four, as authenticator apps show and take it (they ignore spaces)."""
    return " ".join(secret[i : i + 4] for i in range(0, len(secret), 4))


def _method_words(method: str) -> str:
    return {
        "password": "Password",
        "password+totp": "Password and code",
        "session": "An earlier sign-in",
        "cli": "kokoa connect",
    }.get(method, method)
