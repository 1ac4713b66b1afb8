"""Who is calling (authentication) and what they may do (authorization).

Authentication is a list of :class:`Authenticator`\\ s tried in order; the first that recognizes
credentials in the request decides: :class:`ApiKeyAuthenticator` (``Authorization: Bearer kk_...``),
and, where the API is served on the gateway's login host (``https://login.../api/v1``, for the
console), :class:`SessionCookieAuthenticator`: the login session's cookie, and for every method but
GET and HEAD an ``X-CSRF-Token`` header equal to the ``__Host-kokoa_csrf`` cookie (and an Origin, if
sent, that is the login host's), else 403. Handlers see a :class:`Principal` either way.

An instance-wide key (``org_id`` None) can be refused (403) by an authenticator made with
``instance_keys=False``: the gateway does so on the login host, where only organizations' keys and
console sessions are taken (instance keys go to the ``--api`` listener).

Authorization: an instance-wide key (``org_id`` None) may do everything. An organization's key may act
only under ``/orgs/{its org}`` (and list its own organization). Scopes: ``read`` allows GET only;
``write`` and ``*`` allow everything in the key's reach. Other scope names grant nothing here.
A console user may do everything under an organization where they are an Owner or Admin; with any
other role (Member, a custom role) only the routes marked for members (``/me``, ``/me/resources``,
``GET /orgs`` and ``GET /orgs/{org}``): every other route of that organization is 403.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from twisted.internet.defer import Deferred, fail
from twisted.web.iweb import IRequest

from kokoa.store import ApiKey, Store, authenticate_api_key

from ._problems import forbidden, unauthorized

_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,200}")
READ_SCOPES = frozenset({"read", "write", "*"})
WRITE_SCOPES = frozenset({"write", "*"})
#: Methods that only read, allowed with the ``read`` scope.
SAFE_METHODS = frozenset({"GET", "HEAD"})


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller.

    ``actor`` names them in the audit log (``key:kk_abcd1234``); ``org_id`` None means instance-wide.
    """

    actor: str
    org_id: str | None
    can_read: bool
    can_write: bool
    kind: str = "api_key"
    key_id: str | None = None
    #: A signed-in user's organizations and their role in each (kind "user").
    orgs: tuple[tuple[str, str], ...] = ()
    #: The signed-in user (kind "user").
    user_id: str | None = None

    @classmethod
    def from_api_key(cls, key: ApiKey) -> Principal:
        scopes = set(key.scopes)
        return cls(
            actor=f"key:{key.prefix}",
            org_id=key.org_id,
            can_read=bool(scopes & READ_SCOPES),
            can_write=bool(scopes & WRITE_SCOPES),
            key_id=key.id,
        )

    @property
    def instance_wide(self) -> bool:
        return self.org_id is None


@runtime_checkable
class Authenticator(Protocol):
    """One way of authenticating requests."""

    def authenticate(self, request: IRequest) -> Deferred[Principal | None]:
        """The caller, if the request carries this authenticator's credentials and they are valid;
        None if it carries none of them; a failure with a 401 (or 403) :class:`Problem` if they are
        present but wrong. Never blocks the reactor: database work goes through ``store.run``."""
        ...


#: Why an instance-wide key is refused where ``instance_keys`` is off (the login host's API).
INSTANCE_KEY_REFUSAL = (
    "an instance-wide API key is accepted only on the --api listener, not on the login host: "
    "call the API there, or use an organization's API key"
)


class ApiKeyAuthenticator:
    """``Authorization: Bearer <key>``, checked with the store's :func:`authenticate_api_key`.

    ``instance_keys`` False: an instance-wide key (``org_id`` None, such as ``data/admin.key``) is
    refused with 403 even when valid; organizations' keys (a member's included) work as before. The
    login host's API uses this: instance keys belong on the ``--api`` listener only."""

    def __init__(self, store: Store, *, instance_keys: bool = True) -> None:
        self.store = store
        self.instance_keys = instance_keys

    def authenticate(self, request: IRequest) -> Deferred[Principal | None]:
        headers = request.requestHeaders.getRawHeaders(b"authorization") or []
        if not headers:
            return Deferred.fromCoroutine(_none())
        if len(headers) > 1:
            return fail(unauthorized("send one Authorization header, not several", invalid_token=True))
        scheme, _, token = headers[0].decode("latin-1").strip().partition(" ")
        if scheme.lower() != "bearer":
            return Deferred.fromCoroutine(_none())
        return Deferred.fromCoroutine(self._check(token.strip()))

    async def _check(self, token: str) -> Principal:
        well_formed = _TOKEN.fullmatch(token) is not None  # (keys are kk_, letters, digits, - and _)
        key = await self.store.run(authenticate_api_key, token) if well_formed else None
        if key is None:
            raise unauthorized("the API key is unknown, expired or revoked", invalid_token=True)
        if key.org_id is None and not self.instance_keys:
            raise forbidden(INSTANCE_KEY_REFUSAL)
        return Principal.from_api_key(key)


async def _none() -> None:
    return None


async def authenticate(authenticators: list[Authenticator], request: IRequest) -> Principal:
    """The caller, by the first authenticator that recognizes the request; 401 if none does."""
    for authenticator in authenticators:
        principal = await authenticator.authenticate(request)
        if principal is not None:
            return principal
    raise unauthorized("authentication required: send Authorization: Bearer <API key>")


#: Roles whose members may change their organization through the API (others only read it).
WRITER_ROLES = frozenset({"Owner", "Admin"})


def _authorize_user(
    principal: Principal, method: str, org_id: str | None, instance_only: bool, members: bool
) -> None:
    if instance_only:
        raise forbidden("only an instance-wide API key may do this")
    if org_id is None:
        if method not in SAFE_METHODS:
            raise forbidden("only an API key may do this")
        return
    role = dict(principal.orgs).get(org_id)
    if role is None:
        raise forbidden("you are not a member of this organization")
    if role in WRITER_ROLES:
        return
    if members and method in SAFE_METHODS:
        return
    raise forbidden(
        f"your role in this organization ({role}) may see the organization and open its resources "
        "(/me/resources), not read or change its configuration: that takes the Owner or Admin role"
    )


def authorize(
    principal: Principal, method: str, org_id: str | None, *, instance_only: bool, members: bool = False
) -> None:
    """Refuse (403) what ``principal`` may not do: ``method`` on an object of ``org_id`` (None: not
    under an organization) or, with ``instance_only``, anything an organization's key may not do.

    Console users: Owners and Admins of an organization may do everything under it; other roles
    (Member, custom roles) only what the route allows ``members`` (reading the organization itself)."""
    if principal.kind == "user":
        _authorize_user(principal, method, org_id, instance_only, members)
        return
    if method in SAFE_METHODS:
        if not principal.can_read:
            raise forbidden("the API key has no read scope")
    elif not principal.can_write:
        raise forbidden("the API key is read-only (scope read): it may not change anything")
    if principal.instance_wide:
        return
    if instance_only:
        raise forbidden("only an instance-wide API key may do this")
    if org_id is not None and org_id != principal.org_id:
        raise forbidden("the API key belongs to another organization")


class SessionCookieAuthenticator:
    """The login host's session cookie (the console), with a CSRF check on every write.

    ``gate`` is the gateway's :class:`kokoa.auth.AccessGate` (its identity cache and login origin)."""

    COOKIE = b"__Host-kokoa_login"
    CSRF_COOKIE = b"__Host-kokoa_csrf"

    def __init__(self, store: Store, gate: object) -> None:
        self.store = store
        self.gate = gate

    def authenticate(self, request: IRequest) -> Deferred[Principal | None]:
        token = request.getCookie(self.COOKIE)
        if not token:
            return Deferred.fromCoroutine(_none())
        return Deferred.fromCoroutine(self._check(request, token.decode("ascii", "replace")))

    async def _check(self, request: IRequest, token: str) -> Principal:
        from kokoa.auth._identities import SESSION
        from kokoa.store import list_user_memberships

        found = self.gate.identities.resolve(SESSION, token)  # type: ignore[attr-defined]
        if isinstance(found, Deferred):
            found = await found
        identity = found.identity
        if identity is None or found.host is not None or identity.resources:
            raise unauthorized("the session has ended: sign in again")
        method = request.method.decode("latin-1")
        if method not in SAFE_METHODS:
            self._check_csrf(request)
        memberships = await self.store.run(list_user_memberships, identity.user_id)
        orgs = tuple((m.org_id, m.role_name) for m in memberships)
        return Principal(
            actor=f"user:{identity.user_id}",
            org_id=orgs[0][0] if orgs else "",
            can_read=True,
            can_write=any(role in WRITER_ROLES for _, role in orgs),
            kind="user",
            orgs=orgs,
            user_id=identity.user_id,
        )

    def _check_csrf(self, request: IRequest) -> None:
        import hmac

        origin = request.getHeader(b"origin")
        if origin is not None and origin.decode("latin-1") != self.gate.login_origin:  # type: ignore[attr-defined]
            raise forbidden("the request comes from another site (CSRF protection)")
        expected = request.getCookie(self.CSRF_COOKIE) or b""
        sent = request.getHeader(b"x-csrf-token") or b""
        if not expected or not hmac.compare_digest(expected, sent):
            raise forbidden("send the X-CSRF-Token header with the value of the __Host-kokoa_csrf cookie")
