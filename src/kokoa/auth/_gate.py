"""The gate: the HTTP front asks it about every request to a resource, and it answers from memory.

For each request it finds the credentials (the host session cookie on HTTPS, or a Kokoa token in the
bearer header), resolves them through the :class:`IdentityCache`, asks the policy engine, notes the
decision in the access log, and then lets the exchange go on with the identity headers for the
upstream, or answers itself: a redirect to the login host (browsers), 401 (programs), 403.

It also answers the gateway's own paths on every resource host (``/.kokoa/...``): the exchange of a
one-time code from the login host for a host-only session cookie, opening a share link, signing out.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, quote, urlencode, urlsplit

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from kokoa.http._client_address import TrustedProxies
from kokoa.http._errors import wants_html
from kokoa.http._messages import cookie_value
from kokoa.policy import Decision, Identity, PolicySet
from kokoa.store import new_token, token_hash

from ._identities import API_KEY, SESSION, SHARE, IdentityCache, Resolved
from ._recorder import AccessRecorder
from ._settings import (
    CALLBACK_PATH,
    NONCE_COOKIE,
    SESSION_COOKIE,
    SHARE_PREFIX,
    SIGNOUT_PATH,
    START_PATH,
    AuthSettings,
)

if TYPE_CHECKING:
    from kokoa.http._front import Exchange

log = Logger()

_SESSION_COOKIE = SESSION_COOKIE.encode()
_NONCE_COOKIE = NONCE_COOKIE.encode()
_NONCE = re.compile(r"[A-Za-z0-9_-]{43}")
#: Seconds a browser has to sign in and come back with its nonce.
NONCE_LIFETIME = 900
_BROWSER_METHODS = (b"GET", b"HEAD")


def session_cookie(token: str, max_age: int) -> bytes:
    """The host-only session cookie (``__Host-``: Secure, Path=/, no Domain)."""
    return b"%s=%s; Path=/; Max-Age=%d; Secure; HttpOnly; SameSite=Lax" % (
        _SESSION_COOKIE,
        token.encode("ascii"),
        max_age,
    )


CLEAR_SESSION_COOKIE = _SESSION_COOKIE + b"=; Path=/; Max-Age=0; Secure; HttpOnly; SameSite=Lax"


def _header_value(text: str) -> bytes:
    """Text safe in a header value (no control characters; UTF-8 bytes as they are)."""
    return "".join(c for c in text if c >= " " and c != "\x7f").encode("utf-8")


class AccessGate:
    """Authentication and authorization of the HTTP front's requests."""

    def __init__(self, settings: AuthSettings, store: Any, reactor: Any, *, https_port: int | None) -> None:
        self.settings = settings
        self.reactor = reactor
        self._store = store  # returns the Store or None
        self.https_port = https_port
        self.login_host = (urlsplit(settings.login_origin(None)).hostname or "").lower()
        self.trusted = TrustedProxies(settings.trusted_proxies)
        self.policies = PolicySet()
        self.identities = IdentityCache(
            store,
            reactor.seconds,
            idle_timeout=settings.idle_timeout,
            max_entries=settings.session_cache_size,
        )
        self.recorder = AccessRecorder(
            store,
            reactor,
            max_pending=settings.access_log_buffer,
            retention_days=settings.access_log_retention_days,
        )
        self._bearer = settings.bearer_header.lower().encode()
        names = (settings.header_user, settings.header_email, settings.header_groups, settings.header_name)
        self._header_names = tuple(n.encode() for n in names)
        # Client copies of the identity headers never pass (the defaults are in the front's list too),
        # nor do the headers of [auth] strip_headers: exact names here, "X-Auth-Request-*" prefixes.
        strip = [n.lower().encode() for n in settings.strip_headers]
        self.drop_headers = frozenset(n.lower() for n in self._header_names) | {
            n for n in strip if not n.endswith(b"*")
        }
        self.drop_prefixes = tuple(n[:-1] for n in strip if n.endswith(b"*"))
        # Kokoa tokens never pass, whatever the credential and the resource: these headers are not
        # forwarded when they hold one (the front looks at them in a request with an Authorization
        # header, or always when the bearer header is another).
        self.token_headers = frozenset({b"authorization", self._bearer})
        self.custom_bearer = self._bearer != b"authorization"
        self.strip_cookies = frozenset({_SESSION_COOKIE, _NONCE_COOKIE})
        self.requests = {"allow": 0, "deny": 0, "authenticate": 0}

    # ------------------------------------------------------------------ configuration

    @property
    def login_origin(self) -> str:
        """``https://login.example.com`` (with the HTTPS port when it is not 443)."""
        return self.settings.login_origin(self.https_port)

    def reload(self, policies: PolicySet) -> None:
        """A new configuration: new policies, and forget every cached credential."""
        self.policies = policies
        self.identities.clear()

    def session_lifetime(self) -> timedelta:
        return timedelta(seconds=self.settings.session_lifetime)

    def public_netloc(self, host: str) -> str:
        """``host`` as the address of its HTTPS side (the port unless it is 443)."""
        if self.https_port in (None, 443):
            return host
        return f"{host}:{self.https_port}"

    def client_address(self, exchange: Exchange) -> str:
        peer = exchange.client.client_host
        if not self.trusted:
            return peer
        forwarded = [v for n, v in exchange.head.headers if n.lower() == b"x-forwarded-for"]
        return self.trusted.client_address(peer, forwarded)

    # ------------------------------------------------------------------ requests to resources

    def credentials(self, exchange: Exchange) -> tuple[str, str] | None:
        """(kind, token) of the request's Kokoa credential, if it carries one."""
        head = exchange.head
        if exchange.client.scheme == "https" and head.cookie_headers:
            token = cookie_value(head, _SESSION_COOKIE)
            if token:
                return SESSION, token
        if self.custom_bearer:
            value = next((v for n, v in head.headers if n.lower() == self._bearer), None)
        else:
            value = head.authorization  # (a request with more than one was refused)
        if value is not None:
            text = value.decode("latin-1").strip()
            if not self.custom_bearer:
                scheme, _, text = text.partition(" ")
                if scheme.lower() != "bearer":
                    return None
                text = text.strip()
            if text.startswith("kks_"):
                return SHARE, text
            if text.startswith("kk_"):
                return API_KEY, text
        return None

    def check(self, exchange: Exchange) -> None:
        """Decide about a routed request: the exchange goes on (``proceed``) or is answered here."""
        client_ip = self.client_address(exchange)
        found = self.credentials(exchange)
        if found is None:
            self._decide(exchange, None, None, client_ip)
            return
        resolved = self.identities.resolve(*found)
        if isinstance(resolved, Deferred):
            exchange.hold()
            resolved.addCallback(lambda r: self._decide(exchange, r, found[0], client_ip))
            resolved.addErrback(self._internal_error, exchange)
            return
        self._decide(exchange, resolved, found[0], client_ip)

    def _decide(
        self, exchange: Exchange, resolved: Resolved | None, kind: str | None, client_ip: str
    ) -> None:
        if not exchange.waiting():
            return
        head, route = exchange.head, exchange.route
        identity = resolved.identity if resolved is not None else None
        resource = route.resource
        if identity is not None and kind == SESSION and resolved.host != head.host:
            identity = None  # a session cookie is good on its own host only (never a login session's)
        if identity is not None and resolved.org_id is not None and resolved.org_id != resource.org_id:
            identity = None  # an organization's API key reaches that organization's resources only
        drop = self._bearer if kind in (API_KEY, SHARE) else None
        if identity is not None:
            cached = resolved.decisions.get(resource.id)
            if cached is not None:  # the hot path: a known credential on a resource without rules
                decision, extra = cached
                self.requests["allow"] += 1
                if exchange.inspection is not None:
                    exchange.inspection.decided(decision, identity, client_ip)
                if not self.recorder.allowed_again(resource.id, identity.user_id, client_ip, decision):
                    self._record(exchange, resource, identity, decision, client_ip)
                exchange.proceed(extra, drop, client_ip)
                return
        decision = self.policies.decide_route(route, head.method.decode("latin-1"), client_ip, identity)
        extra = []
        if identity is not None and decision.outcome == "allow":
            extra = self._identity_headers(identity, resolved, resource.org_id)
            if not self.policies.get(resource.id).rules:  # the same answer for every request
                resolved.decisions[resource.id] = (decision, extra)
        self.requests[decision.outcome] += 1
        self._record(exchange, resource, identity, decision, client_ip)
        if exchange.inspection is not None:  # someone watches the resource (the request inspector)
            exchange.inspection.decided(decision, identity, client_ip, self.policies.get(resource.id))
        if decision.outcome == "allow":
            exchange.proceed(extra, drop, client_ip)
        elif decision.outcome == "authenticate":
            self._ask_to_sign_in(exchange, kind)
        else:
            who = f" ({identity.email})" if identity is not None and identity.email else ""
            exchange.refuse(403, f"You{who} may not reach {resource.name!r} this way: {denial(decision)}.")

    def _record(
        self, exchange: Exchange, resource: Any, identity: Identity | None, decision: Any, ip: str
    ) -> None:
        head = exchange.head
        self.recorder.record(
            "request",
            decision.outcome,
            decision.reason,
            org_id=resource.org_id,
            resource_id=resource.id,
            user_id=identity.user_id if identity else None,
            subject=identity.email if identity else None,
            method=head.method.decode("latin-1"),
            host=head.host,
            path=head.target.path,
            client_address=ip,
            rule_id=decision.rule_id,
        )

    def _identity_headers(self, identity: Identity, resolved: Resolved, org_id: str | None) -> list:
        """The headers that tell the upstream who is asking: the groups are the user's role names in
        the resource's own organization (never another's)."""
        user, email, groups, name = self._header_names
        scoped = bool(identity.resources)
        headers = [
            (user, _header_value(identity.email if not scoped or identity.email else identity.user_id))
        ]
        if identity.email and "@" in identity.email:
            headers.append((email, _header_value(identity.email)))
        names = [role.replace(",", " ") for org, role in resolved.groups if org == org_id]
        if names:
            headers.append((groups, _header_value(",".join(names))))
        if resolved.display_name:
            headers.append((name, _header_value(resolved.display_name)))
        return headers

    def _ask_to_sign_in(self, exchange: Exchange, kind: str | None) -> None:
        head = exchange.head
        if kind in (None, SESSION) and head.method in _BROWSER_METHODS and wants_html(head.accept):
            self._send_to_login(exchange, head.target.forwarded)
            return
        why = "the credential is unknown, expired or revoked" if kind else "this resource needs signing in"
        exchange.refuse(
            401,
            f"Sign in first: {why}. Browsers sign in at {self.login_origin}/; programs send "
            "Authorization: Bearer <API key or share token>.",
            [(b"WWW-Authenticate", b'Bearer realm="kokoa"')],
        )

    def _send_to_login(self, exchange: Exchange, path: str) -> None:
        """Off to the login host to sign in, and back to ``path`` on this host: the browser gets a
        nonce cookie here (host-only, kept if it has one) and the login host the nonce's hash, so
        the one-time code it mints comes back to this browser only."""
        head = exchange.head
        nonce = cookie_value(head, _NONCE_COOKIE)
        if not nonce or not _NONCE.fullmatch(nonce):
            nonce = new_token()
        url = f"https://{self.public_netloc(head.host)}{path}"
        location = f"{self.login_origin}/authorize?" + urlencode({"rd": url, "n": token_hash(nonce)})
        cookie = b"%s=%s; Path=/; Max-Age=%d; Secure; HttpOnly; SameSite=Lax" % (
            _NONCE_COOKIE,
            nonce.encode("ascii"),
            NONCE_LIFETIME,
        )
        exchange.redirect(location.encode("ascii"), [(b"Set-Cookie", cookie)])

    def check_connection(self, resource: Any, client_ip: str) -> bool:
        """Whether a TCP connection to a resource's public port may go on: its address rules and
        whether it is public decide (a port cannot ask anyone to sign in: ``kokoa connect`` can)."""
        decision = connection_decision(self.policies, resource.id, client_ip)
        outcome, reason = decision.outcome, decision.reason
        self.recorder.record(
            "connect",
            outcome,
            reason,
            org_id=getattr(resource, "org_id", None),
            resource_id=resource.id,
            client_address=client_ip,
            rule_id=decision.rule_id,
        )
        if outcome != "allow":
            log.info(
                "refused {client} on resource {name!r}: {why}",
                client=client_ip,
                name=resource.name,
                why=reason,
            )
        return outcome == "allow"

    # ------------------------------------------------------------------ the gateway's own paths

    def internal(self, exchange: Exchange) -> None:
        """Answer ``/.kokoa/...`` on a resource's host."""
        head = exchange.head
        path = head.target.path
        if exchange.client.scheme != "https":
            exchange.refuse(400, "Signing in works over HTTPS only.")
            return
        if path == CALLBACK_PATH:
            self._callback(exchange)
        elif path == START_PATH:
            self._start(exchange)
        elif path.startswith(SHARE_PREFIX):
            self._open_share_link(exchange, path[len(SHARE_PREFIX) :])
        elif path == SIGNOUT_PATH:
            self._sign_out(exchange)
        else:
            exchange.refuse(404, f"{path} is not a path of this gateway.")

    def _store_or_refuse(self, exchange: Exchange) -> Any:
        store = self._store()
        if store is None:
            exchange.refuse(503, "The gateway is starting: try again in a moment.")
        return store

    def _start(self, exchange: Exchange) -> None:
        """``/.kokoa/auth/start?path=/x``: a sign-in that began on the login host comes here for the
        browser's nonce cookie, and goes back bound to it."""
        query = parse_qs((exchange.head.target.query or "").lstrip("?"))
        path = (query.get("path") or ["/"])[0]
        if not path.startswith("/") or path.startswith("//") or "\\" in path or not path.isprintable():
            path = "/"
        self._send_to_login(exchange, quote(path, safe="/?=&%:@!$'()*+,;~-._"))

    def _callback(self, exchange: Exchange) -> None:
        store = self._store_or_refuse(exchange)
        if store is None:
            return
        query = parse_qs((exchange.head.target.query or "").lstrip("?"))
        code = (query.get("code") or [""])[0]
        head, client_ip = exchange.head, self.client_address(exchange)
        from kokoa.store import redeem_auth_code

        exchange.hold()
        d = store.run(
            redeem_auth_code,
            code,
            head.host,
            lifetime=self.session_lifetime(),
            idle_timeout=timedelta(seconds=self.settings.idle_timeout),
            source_address=client_ip,
            user_agent=_user_agent(head),
            nonce=cookie_value(head, _NONCE_COOKIE) or "",
        )

        def redeemed(found: Any) -> None:
            if not exchange.waiting():
                return
            if found is None:
                again = f"https://{self.public_netloc(head.host)}{START_PATH}"
                exchange.refuse(
                    400,
                    f"This sign-in link is unknown, used or expired. Sign in again: {again}",
                )
                return
            session, token, path = found
            if not path.startswith("/") or path.startswith("//") or "\\" in path:
                path = "/"
            max_age = int((session.expires_at - session.created_at).total_seconds())
            exchange.redirect(
                path.encode("ascii", "replace"), [(b"Set-Cookie", session_cookie(token, max_age))]
            )

        d.addCallback(redeemed).addErrback(self._internal_error, exchange)

    def _open_share_link(self, exchange: Exchange, token: str) -> None:
        store = self._store_or_refuse(exchange)
        if store is None:
            return
        head, client_ip = exchange.head, self.client_address(exchange)
        lifetime = self.session_lifetime()

        def tx(conn: Any) -> Any:
            from kokoa.store import create_session, get_resource, redeem_share_link

            link = redeem_share_link(conn, token, count_use=False)
            if link is None:
                return None
            resource = get_resource(conn, link.resource_id)
            if resource.hostname != head.host or not resource.enabled:
                return None
            if redeem_share_link(conn, token, count_use=True) is None:
                return None
            expires = (
                lifetime if link.expires_at is None else min(lifetime, link.expires_at - datetime.now(UTC))
            )
            from kokoa.store._share_links import session_method

            session, session_token = create_session(
                conn,
                kind="host",
                method=session_method(link.id),
                lifetime=expires,
                resource_id=link.resource_id,
                subject=link.name,
                host=head.host,
                source_address=client_ip,
                user_agent=_user_agent(head),
            )
            return link, resource, session, session_token

        exchange.hold()

        def opened(found: Any) -> None:
            if not exchange.waiting():
                return
            if found is None:
                self.recorder.record(
                    "share",
                    "failure",
                    "unknown, revoked, expired or used-up share link",
                    host=head.host,
                    client_address=client_ip,
                )
                exchange.refuse(403, "This share link is unknown, revoked, expired or used up.")
                return
            link, resource, session, session_token = found
            self.recorder.record(
                "share",
                "success",
                f"share link {link.prefix} ({link.name}) opened",
                org_id=resource.org_id,
                resource_id=resource.id,
                subject=link.name,
                host=head.host,
                client_address=client_ip,
            )
            max_age = int((session.expires_at - session.created_at).total_seconds())
            exchange.redirect(
                (resource.path_prefix or "/").encode("ascii"),
                [(b"Set-Cookie", session_cookie(session_token, max_age))],
            )

        store.run(tx).addCallback(opened).addErrback(self._internal_error, exchange)

    def _sign_out(self, exchange: Exchange) -> None:
        """End the host session and the login session it came from (signing out everywhere)."""
        token = cookie_value(exchange.head, _SESSION_COOKIE)
        done = f"{self.login_origin}/signed-out".encode("ascii")
        store = self._store()
        if not token or store is None:
            exchange.redirect(done, [(b"Set-Cookie", CLEAR_SESSION_COOKIE)])
            return

        def tx(conn: Any) -> None:
            from kokoa.store import get_session, lookup_session, revoke_session

            found = lookup_session(conn, token, idle_timeout=timedelta(days=36500))
            if found is not None:
                session = get_session(conn, found.session_id)
                revoke_session(conn, session.parent_id or session.id)

        exchange.hold()

        def ended(_: Any) -> None:
            if exchange.waiting():
                exchange.redirect(done, [(b"Set-Cookie", CLEAR_SESSION_COOKIE)])

        store.run(tx).addCallback(ended).addErrback(self._internal_error, exchange)

    def _internal_error(self, failure: Any, exchange: Exchange) -> None:
        log.failure("sign-in step failed", failure)
        if exchange.waiting():
            exchange.refuse(503, "The gateway could not complete this step: try again in a moment.")

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        from twisted.internet import task

        self.recorder.start()
        self._touch = task.LoopingCall(self.flush_use)
        self._touch.clock = self.reactor
        self._touch.start(60.0, now=False).addErrback(lambda f: log.failure("session touch loop stopped", f))

    def stop(self) -> Any:
        if getattr(self, "_touch", None) is not None and self._touch.running:
            self._touch.stop()
        self.flush_use()
        return self.recorder.stop()

    def flush_use(self) -> Any:
        """Write when the sessions used lately were last used (their idle timeouts restart)."""
        used = self.identities.take_used()
        store = self._store()
        if not used or store is None:
            return None
        from kokoa.store import touch_sessions

        return store.run(touch_sessions, used).addErrback(
            lambda f: log.warn("cannot record session use: {why}", why=f.getErrorMessage())
        )


def connection_decision(policies: PolicySet, resource_id: str, client_ip: str) -> Decision:
    """The decision for a TCP connection to a resource's public port: its address rules and whether
    it is public (a port cannot ask anyone to sign in, so "authenticate" is a denial)."""
    decision = policies.decide(resource_id, None, None, client_ip, None)
    if decision.outcome == "authenticate":
        return Decision("deny", f"{decision.reason} (a raw TCP port cannot sign anyone in)", decision.rule_id)
    return decision


#: An internal id (``res_...``, ``user_...``: kokoa.store's new_id), which pages never show.
_INTERNAL_ID = re.compile(r"\b(?:site|key|res|tgt|share|ses|grant|rule|ecode|user|org|role)_[0-9a-z]{8,}\b")


def denial(decision: Decision) -> str:
    """Why a request is denied, for the person who sent it: the decision's reason (the access log's)
    names the user's and roles' ids, which a page must not; this says the same without them."""
    reason = decision.reason
    if reason.startswith("the access configuration of this resource is broken"):
        return "the access settings of this resource are broken (its administrators can see why)"
    if "has no grant to this resource" in reason:
        rule, sep, _ = reason.partition(" requires a grant:")
        if sep and decision.rule_id is not None:
            return f"{rule} requires a grant to this resource, and you hold none"
        return "you hold no grant to this resource (neither you nor any of your roles)"
    return _INTERNAL_ID.sub("…", reason)


def _user_agent(head: Any) -> str | None:
    for name, value in head.headers:
        if name.lower() == b"user-agent":
            return value.decode("latin-1")[:200]
    return None
