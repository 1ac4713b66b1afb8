"""Signing in to one resource with its own credential: its password, its PIN, or a code sent by email
to an allowed address. The sign-in reaches that resource only (a resource-scoped host session)."""

from __future__ import annotations

from datetime import timedelta
from html import escape
from typing import Any

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.web.iweb import IRequest

from kokoa.store import (
    Invalid,
    check_password,
    create_email_code,
    email_allowed,
    get_resource,
    resource_secret_hash,
    verify_email_code,
)
from kokoa.store._validate import email as check_email

from .._pages import Field, form, paragraph
from ._base import Destination, LoginBase, app
from ._forms import Refused

log = Logger()

#: The input of each of a resource's own secrets (a PIN is digits: a phone shows its number pad).
_SECRETS = {
    "password": Field("secret", "Password", "password", "current-password"),
    "pin": Field("secret", "PIN", "password", "off", inputmode="numeric"),
}


class ResourcePages(LoginBase):
    mailer: Any

    def _resource_for(self, to: Destination, method: str) -> Any:
        resource = self._resource_of(to.to)
        if resource is None or method not in resource.auth_methods:
            raise Refused(404, "This resource has no such way to sign in.")
        return resource

    def _bound(self, to: Destination) -> Destination:
        """A resource's own sign-in makes no login session, so its code must be bound from the start."""
        if to.nonce is None:
            raise Refused(400, "This sign-in form is stale: open the resource's address again.")
        return to

    @app.route("/resource/<method>", methods=["GET"])
    def resource_form(self, request: IRequest, method: str) -> Deferred:
        return self._guard(request, self._resource_form(request, method))

    async def _resource_form(
        self,
        request: IRequest,
        method: str,
        error: str | None = None,
        status: int = 200,
        to: Destination | None = None,
    ) -> bytes:
        if to is None:
            to = self._asked_destination(request)
        resource = self._resource_for(to, method)
        csrf = self._csrf(request)
        going = await self._signing_in_to(to)
        body = f'<p class="lead" id="destination">{escape(going)}</p>' if going else ""
        body += paragraph(error, "error") if error else ""
        if method == "email":
            body += paragraph(f"We will send a code to your address if it may reach {resource.name}.")
            body += form(
                f"/resource/email?{to.query()}",
                csrf,
                [("email", "Your email address", "email", "email")],
                "Send a code",
                to.fields(),
                "email-code",
            )
        else:
            body += form(
                f"/resource/{method}?{to.query()}",
                csrf,
                [_SECRETS[method]],
                "Continue",
                to.fields(),
                "resource-secret",
            )
        return self._html(request, f"Sign in to {resource.name}", body, status)

    @app.route("/resource/<method>", methods=["POST"])
    def resource_sign_in(self, request: IRequest, method: str) -> Deferred:
        return self._guard(request, self._resource_sign_in(request, method))

    async def _resource_sign_in(self, request: IRequest, method: str) -> bytes:
        fields = self._form(request)
        to = self._bound(self._destination(fields.get("rd"), fields.get("n")))
        resource = self._resource_for(to, method)
        account = f"resource:{resource.id}"
        refusal = await self._throttled(request, account)
        if refusal is not None:
            return await self._resource_form(request, method, refusal.message, 429, to)
        if method == "email":
            return await self._send_email_code(request, resource, fields.get("email", ""), to)
        stored = await self.store.run(resource_secret_hash, resource.id, method)
        good = await self.in_thread(check_password, stored, fields.get("secret", ""))
        where = {"resource_id": resource.id, "org_id": resource.org_id}
        if not good:
            self._event(request, "signin", "failure", f"wrong resource {method}", **where)
            return await self._resource_form(
                request, method, "Wrong PIN." if method == "pin" else "Wrong password.", 401, to
            )
        self._succeeded(request, account)
        self._trust_device(request, account)
        self._event(request, "signin", "success", f"resource {method}", **where)
        return await self._code_redirect(request, to, method=method, resource_id=resource.id, subject=None)

    async def _send_email_code(self, request: IRequest, resource: Any, email: str, to: Destination) -> bytes:
        if self.mailer is None:
            raise Refused(503, "This gateway cannot send email (no [auth.mail] settings).")
        try:
            address = check_email(email)
        except Invalid:
            return await self._resource_form(request, "email", "That is not an email address.", 400, to)
        lifetime = timedelta(seconds=self.gate.settings.email_code_lifetime)

        def tx(conn: Any) -> str | None:
            if not email_allowed(get_resource(conn, resource.id), address):
                return None
            return create_email_code(conn, resource.id, address, lifetime=lifetime)

        code = await self.store.run(tx)
        where = {"resource_id": resource.id, "subject": address, "org_id": resource.org_id}
        if code is not None:
            minutes = int(self.gate.settings.email_code_lifetime // 60)
            self.mailer.send(
                address,
                f"Your code for {resource.name}",
                f"Your code to reach {resource.name} is {code}.\n\nIt is valid for {minutes} minutes. "
                "If you did not ask for it, ignore this mail.\n",
            ).addErrback(lambda f: log.warn("cannot send an email code: {why}", why=f.getErrorMessage()))
            self._event(request, "signin", "success", "email code sent", **where)
        else:
            self._event(request, "signin", "failure", "email code asked for an address not allowed", **where)
        # The same answer either way: nobody learns which addresses may reach the resource.
        body = paragraph(f"If {address} may reach {resource.name}, a code is on its way. Enter it here.")
        body += form(
            "/resource-code",
            self._csrf(request),
            [Field("code", "Code", "text", "one-time-code", "The 6-digit code in the email.", "numeric")],
            "Continue",
            {**to.fields(), "email": address},
            "email-verify",
        )
        return self._html(request, f"Sign in to {resource.name}", body)

    @app.route("/resource-code", methods=["POST"])
    def resource_code(self, request: IRequest) -> Deferred:
        return self._guard(request, self._resource_code(request))

    async def _resource_code(self, request: IRequest) -> bytes:
        fields = self._form(request)
        to = self._bound(self._destination(fields.get("rd"), fields.get("n")))
        resource = self._resource_for(to, "email")
        address = fields.get("email", "")[:254]
        account = f"resource:{resource.id}"
        refusal = await self._throttled(request, account)
        if refusal is not None:
            return await self._resource_form(request, "email", refusal.message, 429, to)
        good = await self.store.run(verify_email_code, resource.id, address, fields.get("code", "").strip())
        where = {"resource_id": resource.id, "subject": address, "org_id": resource.org_id}
        if not good:
            self._event(request, "signin", "failure", "wrong or expired email code", **where)
            return await self._resource_form(
                request, "email", "That code is wrong or expired: ask for a new one.", 401, to
            )
        self._succeeded(request, account)
        self._event(request, "signin", "success", "email code", **where)
        return await self._code_redirect(
            request, to, method="email", resource_id=resource.id, subject=address
        )
