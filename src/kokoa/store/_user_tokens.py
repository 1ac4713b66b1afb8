"""One-time links for users: set a first password (``setup``, ``invite``) or a new one (``reset``).

A token is 256 random bits (see :func:`._sessions.new_token`), put in a link and stored as its SHA-256
only. It is used once, and only before it expires; making a new token for a user and purpose deletes
the earlier ones. Tokens are not configuration: no change is recorded.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, Connection, delete, insert, select, update

from . import _schema as s
from . import _validate as v
from ._common import atomic, get_row, resolve_now
from ._errors import Invalid
from ._sessions import new_token, token_hash
from ._users import User, get_user

USER_TOKEN_PURPOSES = ("reset", "invite", "setup")


@atomic
def create_user_token(
    conn: Connection,
    user_id: str,
    purpose: str,
    *,
    lifetime: timedelta,
    created_by: str | None = None,
    now: datetime | None = None,
) -> str:
    """A new token for the user (shown this once); the user's earlier tokens of this purpose are deleted.

    ``created_by`` names who asked for it (an audit actor such as ``key:kk_abcd1234``)."""
    now = resolve_now(now)
    get_row(conn, s.users, "user", user_id)
    purpose = v.one_of(purpose, "purpose", USER_TOKEN_PURPOSES)
    if lifetime <= timedelta(0):
        raise Invalid("lifetime", "must be positive")
    if created_by is not None:
        created_by = v.name(created_by, "created_by", 200)
    t = s.user_tokens
    conn.execute(delete(t).where(t.c.user_id == user_id, t.c.purpose == purpose))
    token = new_token()
    conn.execute(
        insert(t).values(
            token_hash=token_hash(token),
            user_id=user_id,
            purpose=purpose,
            created_by=created_by,
            created_at=now,
            expires_at=now + lifetime,
        )
    )
    return token


def _valid(token: str, purpose: str, now: datetime) -> tuple[ColumnElement[bool], ...] | None:
    if not isinstance(token, str) or not 20 <= len(token) <= 100 or not isinstance(purpose, str):
        return None
    c = s.user_tokens.c
    return (c.token_hash == token_hash(token), c.purpose == purpose, c.used_at.is_(None), c.expires_at > now)


def peek_user_token(
    conn: Connection, token: str, purpose: str, *, now: datetime | None = None
) -> User | None:
    """The user of a valid token, leaving it unused (to show the form that will use it); else None."""
    conditions = _valid(token, purpose, resolve_now(now))
    if conditions is None:
        return None
    user_id = conn.execute(select(s.user_tokens.c.user_id).where(*conditions)).scalar_one_or_none()
    return None if user_id is None else get_user(conn, user_id)


@atomic
def redeem_user_token(
    conn: Connection, token: str, purpose: str, *, now: datetime | None = None
) -> User | None:
    """Use a token: its user, or None (unknown, used, expired or for another purpose alike).

    The token is claimed by one conditional UPDATE: of two concurrent redemptions, one wins."""
    now = resolve_now(now)
    conditions = _valid(token, purpose, now)
    if conditions is None:
        return None
    t = s.user_tokens
    user_id = conn.execute(
        update(t).where(*conditions).values(used_at=now).returning(t.c.user_id)
    ).scalar_one_or_none()
    return None if user_id is None else get_user(conn, user_id)
