"""Single sign-on with OpenID Connect providers: off to the provider, and back.

The round trip's state (the ``state`` value, the ID token's nonce, the PKCE verifier, where to go
after) travels in a sealed cookie, not in this process's memory: starting sign-ins fills no table, and
the provider's callback may land on any gateway. Starts are limited per client address.
"""

from __future__ import annotations

import hmac
import secrets

from twisted.internet.defer import Deferred
from twisted.web.iweb import IRequest

from kokoa.store import sso_user

from .._oidc import OIDCError, new_code_verifier, new_nonce
from .._ratelimit import TokenBucketLimiter, _address_key
from ._base import LoginBase, app
from ._forms import Refused, arg

SSO_COOKIE = "__Host-kokoa_sso"
#: Seconds a person has at the provider.
SSO_WINDOW = 600.0
#: Starts per client address: a burst, then one every few seconds.
STARTS_BURST = 20
STARTS_REFILL_SECONDS = 3.0


class SSOPages(LoginBase):
    oidc: dict
    sso_starts: TokenBucketLimiter

    def _redirect_uri(self, name: str) -> str:
        return f"{self.gate.login_origin}/oidc/{name}/callback"

    @app.route("/oidc/<name>/start", methods=["GET"])
    def oidc_start(self, request: IRequest, name: str) -> Deferred:
        return self._guard(request, self._oidc_start(request, name))

    async def _oidc_start(self, request: IRequest, name: str) -> bytes:
        to = self._asked_destination(request)
        client = self.oidc.get(name)
        if client is None:
            raise Refused(404, "No such single sign-on provider.")
        wait = self.sso_starts.take(_address_key(self._client(request)), self.clock())
        if wait > 0:
            request.setHeader(b"retry-after", str(max(1, int(wait + 0.999))).encode())
            raise Refused(429, "Too many single sign-on starts from your network: try again in a moment.")
        try:
            await client.discover()
        except OIDCError as e:
            raise Refused(502, e.message) from None
        state = {"p": name, "s": secrets.token_urlsafe(24), "o": new_nonce(), "v": new_code_verifier()}
        self._hold(request, SSO_COOKIE, "oidc", {**state, **to.fields()}, SSO_WINDOW)
        return self._redirect(
            request, client.authorization_url(self._redirect_uri(name), state["s"], state["o"], state["v"])
        )

    @app.route("/oidc/<name>/callback", methods=["GET"])
    def oidc_callback(self, request: IRequest, name: str) -> Deferred:
        return self._guard(request, self._oidc_callback(request, name))

    async def _oidc_callback(self, request: IRequest, name: str) -> bytes:
        client = self.oidc.get(name)
        held = self._held_state(request, SSO_COOKIE, "oidc")
        sent = arg(request, "state") or ""
        if (
            client is None
            or held is None
            or held.get("p") != name
            or not isinstance(held.get("s"), str)
            or not hmac.compare_digest(held["s"].encode(), sent.encode())
        ):
            raise Refused(400, "This sign-in has expired or did not start in this browser: sign in again.")
        self._drop(request, SSO_COOKIE)
        error = arg(request, "error")
        if error:
            raise Refused(401, f"{client.config.display_name} did not sign you in ({error[:100]}).")
        try:
            claims = await client.exchange(
                arg(request, "code") or "", self._redirect_uri(name), str(held["v"]), str(held["o"])
            )
        except OIDCError as e:
            self._event(request, "signin", "failure", f"oidc:{name}: {e.message}")
            raise Refused(401, e.message) from None
        if not claims.email or not claims.email_verified or not client.config.accepts_email(claims.email):
            self._event(
                request,
                "signin",
                "failure",
                f"oidc:{name}: email missing, unverified or not allowed",
                subject=claims.email,
            )
            raise Refused(
                403, f"{client.config.display_name} did not vouch for an email address this gateway accepts."
            )
        user_id = await self.store.run(
            sso_user, name, claims, client.config.provision_org, client.config.default_role
        )
        if user_id is None:
            self._event(
                request,
                "signin",
                "failure",
                f"oidc:{name}: no such user and no provisioning",
                subject=claims.email,
            )
            raise Refused(
                403, f"{claims.email} has no account on this gateway. Ask an administrator for an invitation."
            )
        method = f"oidc:{name}"
        to = self._destination(held.get("rd"), held.get("n"))
        session = await self._start_session(request, user_id, method, claims.email)
        self._event(request, "signin", "success", method, user_id=user_id, subject=claims.email)
        return await self._continue(request, session.id, user_id, method, to)
