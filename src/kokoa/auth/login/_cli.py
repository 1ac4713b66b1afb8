"""``kokoa connect``'s browser sign-in: the person allows it, the browser carries a one-time code to
the program's loopback listener (RFC 8252), and the program trades it for a session token."""

from __future__ import annotations

import json
from datetime import timedelta
from urllib.parse import parse_qsl, urlencode

from twisted.internet.defer import Deferred
from twisted.web.iweb import IRequest

from kokoa.store import create_auth_code, redeem_auth_code

from .._connect import CLI_HOST
from .._pages import form as html_form
from .._pages import paragraph
from ._base import LoginBase, app
from ._forms import MAX_FORM_BYTES, Refused, arg
from ._password import login_link

#: Where the browser takes the code to: ``kokoa connect``'s listener on this machine (RFC 8252).
LOOPBACK = "http://127.0.0.1:*"


class CLIPages(LoginBase):
    def _cli_args(self, port: str | None, state: str | None) -> tuple[int, str]:
        # ASCII digits only ("²".isdigit() is true, and int("²") raises)
        if not (port and port.isascii() and port.isdigit() and len(port) <= 5 and 1024 <= int(port) <= 65535):
            raise Refused(400, "This sign-in link for kokoa connect is broken (port).")
        if not state or not 16 <= len(state) <= 100 or not state.replace("-", "").replace("_", "").isalnum():
            raise Refused(400, "This sign-in link for kokoa connect is broken (state).")
        if not state.isascii():
            raise Refused(400, "This sign-in link for kokoa connect is broken (state).")
        return int(port), state

    @app.route("/cli", methods=["GET"])
    def cli_form(self, request: IRequest) -> Deferred:
        return self._guard(request, self._cli_form(request))

    async def _cli_form(self, request: IRequest) -> bytes:
        port, state = self._cli_args(arg(request, "port"), arg(request, "state"))
        found = await self._login_session(request)
        if found is None:
            return self._redirect(request, login_link("/cli?" + urlencode({"port": port, "state": state})))
        body = paragraph(
            f"kokoa connect, on this computer, asks to reach TCP resources as {found.identity.email}. "
            "Allow it only if you just started it."
        )
        body += html_form(
            "/cli", self._csrf(request), [], "Allow", {"port": str(port), "state": state}, "cli-allow"
        )
        # The form's answer sends the browser to the program's loopback listener (plain HTTP).
        return self._html(request, "Allow kokoa connect", body, form_action=f"'self' {LOOPBACK}")

    @app.route("/cli", methods=["POST"])
    def cli_allow(self, request: IRequest) -> Deferred:
        return self._guard(request, self._cli_allow(request))

    async def _cli_allow(self, request: IRequest) -> bytes:
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
        raw = request.content.read(MAX_FORM_BYTES + 1) if request.content is not None else b""
        try:
            code = dict(parse_qsl(raw[:MAX_FORM_BYTES].decode("utf-8"), max_num_fields=5)).get("code", "")
        except (UnicodeDecodeError, ValueError):
            code = ""
        found = await self.store.run(
            redeem_auth_code,
            code,
            CLI_HOST,
            lifetime=self.gate.session_lifetime(),
            idle_timeout=timedelta(seconds=self.gate.settings.idle_timeout),
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
