"""Sign-in sessions and the one-time codes that carry them to a resource's host.

A session token is 256 random bits shown to the browser once (in a cookie); the store keeps its
SHA-256 only, which is enough for a value nobody chose (there is nothing to guess), and lets a
gateway find the session by an index lookup.

Kinds: a ``login`` session lives on the gateway's login host. A resource's host never sees it: the
login host gives the browser a one-time code (:func:`create_auth_code`, valid for a minute, used once,
bound to the host), which the resource's host exchanges (:func:`redeem_auth_code`) for a ``host``
session of its own, a child of the login session: revoking the login session (signing out) revokes
its children. Visitors signed in by a resource's own password, PIN, email code or share link get a
``host`` session with no user and no parent, scoped to that resource (``resource_id``).

Timeouts: a session ends at ``expires_at`` (absolute) and after ``idle_timeout`` without use (the
gateway records use at most once a minute per session, off the request path).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Row, and_, delete, or_, select, update

from . import _schema as s
from . import _validate as v
from ._common import DEFAULT_LIMIT, Page, atomic, get_row, new_id, paginate, record_change, resolve_now
from ._errors import Invalid

SESSION_KINDS = ("login", "host")
#: How long a code from the login host may wait to be exchanged on a resource's host.
AUTH_CODE_LIFETIME = timedelta(seconds=60)


def new_token() -> str:
    """A new random token (43 URL-safe characters, 256 bits)."""
    return secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    """The stored form of a session token or one-time code."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True, slots=True)
class Session:
    """A session as admins and its owner see it (never its token)."""

    id: str
    kind: str
    user_id: str | None
    parent_id: str | None
    resource_id: str | None
    subject: str | None  # the user's email, or the email/share link name of a resource-scoped visitor
    method: str  # how they signed in: password, password+totp, oidc:<provider>, pin, email, share ...
    host: str | None  # host sessions: the resource's host
    created_at: datetime
    last_seen_at: datetime
    expires_at: datetime
    revoked_at: datetime | None
    source_address: str | None
    user_agent: str | None


@dataclass(frozen=True, slots=True)
class SessionIdentity:
    """Who a valid session is, for the gateway: what the policy engine and the upstream headers need.

    ``role_ids`` and ``role_names`` come from the user's memberships (all organizations); a
    resource-scoped session has no user and names its ``resource_id`` instead."""

    session_id: str
    kind: str
    user_id: str | None
    email: str | None
    display_name: str | None
    resource_id: str | None
    method: str
    host: str | None
    role_ids: frozenset[str]
    role_names: tuple[str, ...]
    expires_at: datetime
    last_seen_at: datetime
    #: (organization id, role name) of each membership: the upstream hears a resource's own org's.
    role_orgs: tuple[tuple[str, str], ...] = ()


def _session(row: Row[Any]) -> Session:
    return Session(
        row.id,
        row.kind,
        row.user_id,
        row.parent_id,
        row.resource_id,
        row.subject,
        row.method,
        row.host,
        row.created_at,
        row.last_seen_at,
        row.expires_at,
        row.revoked_at,
        row.source_address,
        row.user_agent,
    )


def _clip(value: str | None, length: int) -> str | None:
    return None if value is None else value[:length]


@atomic
def create_session(
    conn: Connection,
    *,
    method: str,
    lifetime: timedelta,
    kind: str = "login",
    user_id: str | None = None,
    resource_id: str | None = None,
    subject: str | None = None,
    parent_id: str | None = None,
    host: str | None = None,
    source_address: str | None = None,
    user_agent: str | None = None,
    now: datetime | None = None,
) -> tuple[Session, str]:
    """A new session and its token (shown this once). A user's session needs an active user."""
    now = resolve_now(now)
    kind = v.one_of(kind, "kind", SESSION_KINDS)
    if user_id is None and resource_id is None:
        raise Invalid("user_id", "a session belongs to a user or, scoped, to a resource")
    if user_id is not None:
        user = get_row(conn, s.users, "user", user_id)
        if user.status != "active":
            raise Invalid("user_id", f"the user is {user.status}: they cannot sign in")
        subject = user.email
    if resource_id is not None:
        get_row(conn, s.resources, "resource", resource_id)
    if lifetime <= timedelta(0):
        raise Invalid("lifetime", "must be positive")
    token = new_token()
    session_id = new_id("ses")
    conn.execute(
        s.sessions.insert().values(
            id=session_id,
            token_hash=token_hash(token),
            kind=kind,
            user_id=user_id,
            parent_id=parent_id,
            resource_id=resource_id,
            subject=_clip(subject, s.EMAIL_LENGTH),
            method=method[:32],
            host=host,
            created_at=now,
            last_seen_at=now,
            expires_at=now + lifetime,
            source_address=_clip(source_address, 64),
            user_agent=_clip(user_agent, 200),
        )
    )
    return get_session(conn, session_id), token


def get_session(conn: Connection, session_id: str) -> Session:
    return _session(get_row(conn, s.sessions, "session", session_id))


def _valid(row: Any, idle_timeout: timedelta, now: datetime) -> bool:
    return row.revoked_at is None and row.expires_at > now and row.last_seen_at + idle_timeout > now


def lookup_session(
    conn: Connection, token: str, *, idle_timeout: timedelta, now: datetime | None = None
) -> SessionIdentity | None:
    """The identity of a valid session with this token, or None (unknown, revoked, expired, idle for
    too long, its login session ended, or its user no longer active: all alike)."""
    now = resolve_now(now)
    if not isinstance(token, str) or not 20 <= len(token) <= 100:
        return None
    row = conn.execute(select(s.sessions).where(s.sessions.c.token_hash == token_hash(token))).one_or_none()
    if row is None or not _valid(row, idle_timeout, now):
        return None
    last_seen, expires = row.last_seen_at, row.expires_at
    if row.parent_id is not None:
        parent = conn.execute(select(s.sessions).where(s.sessions.c.id == row.parent_id)).one_or_none()
        if parent is None or not _valid(parent, idle_timeout, now):
            return None
        last_seen, expires = max(last_seen, parent.last_seen_at), min(expires, parent.expires_at)
    if row.user_id is not None:
        user = lookup_user_identity(conn, row.user_id)
        if user is None:
            return None
        email, display_name, role_ids, role_names = (
            user.email,
            user.display_name,
            user.role_ids,
            user.role_names,
        )
        role_orgs = user.role_orgs
    else:
        email = row.subject if row.method == "email" else None
        display_name, role_ids, role_names, role_orgs = None, frozenset(), (), ()
    return SessionIdentity(
        row.id,
        row.kind,
        row.user_id,
        email,
        display_name,
        row.resource_id,
        row.method,
        row.host,
        role_ids,
        role_names,
        expires,
        last_seen,
        role_orgs,
    )


def lookup_user_identity(conn: Connection, user_id: str, org_id: str | None = None) -> SessionIdentity | None:
    """An active user's identity (email, roles in every organization, or in ``org_id`` only), as a
    session would carry it (``session_id`` is empty); None for an unknown or inactive user, or one
    who is not a member of ``org_id``."""
    user = conn.execute(select(s.users).where(s.users.c.id == user_id)).one_or_none()
    if user is None or user.status != "active":
        return None
    query = (
        select(s.roles.c.id, s.roles.c.name, s.memberships.c.org_id)
        .select_from(s.memberships.join(s.roles, s.roles.c.id == s.memberships.c.role_id))
        .where(s.memberships.c.user_id == user_id)
        .order_by(s.roles.c.name)
    )
    if org_id is not None:
        query = query.where(s.memberships.c.org_id == org_id)
    roles = conn.execute(query).all()
    if org_id is not None and not roles:
        return None
    far = user.created_at + timedelta(days=36500)
    return SessionIdentity(
        "",
        "user",
        user.id,
        user.email,
        user.display_name,
        None,
        "user",
        None,
        frozenset(r.id for r in roles),
        tuple(dict.fromkeys(r.name for r in roles)),
        far,
        user.updated_at,
        tuple((r.org_id, r.name) for r in roles),
    )


def touch_sessions(conn: Connection, session_ids: list[str], *, now: datetime | None = None) -> int:
    """Record that these sessions (and their login sessions) were used now: the idle timeout restarts."""
    now = resolve_now(now)
    if not session_ids:
        return 0
    ids = list(session_ids)
    parents = select(s.sessions.c.parent_id).where(
        s.sessions.c.id.in_(ids), s.sessions.c.parent_id.is_not(None)
    )
    return conn.execute(
        update(s.sessions)
        .where(or_(s.sessions.c.id.in_(ids), s.sessions.c.id.in_(parents)), s.sessions.c.revoked_at.is_(None))
        .values(last_seen_at=now)
    ).rowcount


@atomic
def revoke_session(conn: Connection, session_id: str, *, now: datetime | None = None) -> Session:
    """End a session now, with the host sessions it begot. Every gateway forgets it at once (the
    revocation is a configuration change, which empties their session caches)."""
    now = resolve_now(now)
    current = get_session(conn, session_id)
    conn.execute(
        update(s.sessions)
        .where(
            or_(s.sessions.c.id == session_id, s.sessions.c.parent_id == session_id),
            s.sessions.c.revoked_at.is_(None),
        )
        .values(revoked_at=now)
    )
    record_change(conn, "session", session_id, "delete", None, now)
    return get_session(conn, current.id)


@atomic
def revoke_user_sessions(
    conn: Connection, user_id: str, *, except_id: str | None = None, now: datetime | None = None
) -> int:
    """End every session of a user (after a password change, a disabled account ...), but ``except_id``."""
    now = resolve_now(now)
    query = update(s.sessions).where(s.sessions.c.user_id == user_id, s.sessions.c.revoked_at.is_(None))
    if except_id is not None:
        query = query.where(s.sessions.c.id != except_id, s.sessions.c.parent_id.is_distinct_from(except_id))
    count = conn.execute(query.values(revoked_at=now)).rowcount
    if count:
        record_change(conn, "session", user_id, "delete", None, now)
    return count


def list_sessions(
    conn: Connection,
    *,
    user_id: str | None = None,
    resource_id: str | None = None,
    active: bool = True,
    limit: int = DEFAULT_LIMIT,
    cursor: str | None = None,
    now: datetime | None = None,
) -> Page[Session]:
    """Sessions of a user or of a resource (scoped ones), by default only those not revoked or expired."""
    now = resolve_now(now)
    query = select(s.sessions)
    if user_id is not None:
        query = query.where(s.sessions.c.user_id == user_id)
    if resource_id is not None:
        query = query.where(s.sessions.c.resource_id == resource_id)
    if active:
        query = query.where(s.sessions.c.revoked_at.is_(None), s.sessions.c.expires_at > now)
    return paginate(conn, query, s.sessions, _session, limit, cursor)


# -- one-time codes ----------------------------------------------------------------------------------


@atomic
def create_auth_code(
    conn: Connection,
    *,
    host: str,
    path: str,
    method: str,
    parent_id: str | None = None,
    user_id: str | None = None,
    resource_id: str | None = None,
    subject: str | None = None,
    nonce_hash: str | None = None,
    now: datetime | None = None,
) -> str:
    """A one-time code that ``host`` exchanges for a host session; ``path`` is where the browser goes
    next on that host (a path and query, checked by the caller). ``nonce_hash`` (:func:`token_hash`
    of the browser's nonce cookie on ``host``) binds it to that browser: it is redeemed only with
    the nonce."""
    now = resolve_now(now)
    if parent_id is None and resource_id is None:
        raise Invalid("parent_id", "a code carries a login session or a resource-scoped sign-in")
    code = new_token()
    conn.execute(
        s.auth_codes.insert().values(
            code_hash=token_hash(code),
            parent_id=parent_id,
            user_id=user_id,
            resource_id=resource_id,
            subject=_clip(subject, s.EMAIL_LENGTH),
            method=method[:32],
            host=host,
            path=path[: s.PATH_LENGTH],
            created_at=now,
            expires_at=now + AUTH_CODE_LIFETIME,
            nonce_hash=nonce_hash,
        )
    )
    return code


@atomic
def redeem_auth_code(
    conn: Connection,
    code: str,
    host: str,
    *,
    lifetime: timedelta,
    idle_timeout: timedelta,
    source_address: str | None = None,
    user_agent: str | None = None,
    nonce: str | None = None,
    now: datetime | None = None,
) -> tuple[Session, str, str] | None:
    """Exchange a code on ``host`` for a host session: (session, its token, the path to go to).

    ``nonce`` is the browser's nonce cookie: a code minted for a nonce is redeemed with that nonce
    only, a code minted without one without one. None for a code that is unknown, used, expired, for
    another host or another browser, or whose login session has ended (alike: nothing to learn from
    the difference). A code presented at all is spent, so a code lifted from a URL is worthless once
    its browser arrived, and a code a browser did not ask for dies in it."""
    now = resolve_now(now)
    if not isinstance(code, str) or not 20 <= len(code) <= 100:
        return None
    hashed = token_hash(code)
    # Claim it first: of two exchanges of one code, one updates the row and the other nothing.
    claimed = conn.execute(
        update(s.auth_codes)
        .where(
            s.auth_codes.c.code_hash == hashed,
            s.auth_codes.c.used_at.is_(None),
            s.auth_codes.c.expires_at > now,
        )
        .values(used_at=now)
    ).rowcount
    if claimed != 1:
        return None
    row = conn.execute(select(s.auth_codes).where(s.auth_codes.c.code_hash == hashed)).one()
    if row.host != host:
        return None
    sent = token_hash(nonce) if nonce else None
    if row.nonce_hash is None or sent is None:
        if row.nonce_hash != sent:
            return None
    elif not hmac.compare_digest(row.nonce_hash, sent):
        return None
    expires_in = lifetime
    if row.parent_id is not None:
        parent = conn.execute(select(s.sessions).where(s.sessions.c.id == row.parent_id)).one_or_none()
        if parent is None or not _valid(parent, idle_timeout, now):
            return None
        expires_in = min(lifetime, parent.expires_at - now)
    session, token = create_session(
        conn,
        kind="host",
        method=row.method,
        lifetime=expires_in,
        user_id=row.user_id,
        resource_id=row.resource_id,
        subject=row.subject,
        parent_id=row.parent_id,
        host=host,
        source_address=source_address,
        user_agent=user_agent,
        now=now,
    )
    return session, token, row.path


def prune_sessions(
    conn: Connection, *, now: datetime | None = None, keep: timedelta = timedelta(days=1)
) -> int:
    """Delete sessions that ended more than ``keep`` ago, and spent or expired codes; returns how many."""
    now = resolve_now(now)
    cutoff = now - keep
    codes = s.auth_codes.c
    count = conn.execute(delete(s.auth_codes).where(or_(codes.expires_at < now, codes.used_at.is_not(None))))
    sessions = s.sessions.c
    ended = or_(
        sessions.expires_at < cutoff, and_(sessions.revoked_at.is_not(None), sessions.revoked_at < cutoff)
    )
    return count.rowcount + conn.execute(delete(s.sessions).where(ended)).rowcount
