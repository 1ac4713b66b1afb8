"""Users: email, status, and an argon2id password hash that never leaves this module in a dataclass.

Hashing a password takes tens of milliseconds of CPU on purpose. :func:`verify_password` and
:func:`set_password` do it inside the caller's transaction, which is simple but holds the database
thread meanwhile; a login endpoint under load should instead read the hash with
:func:`password_hash_for` and check it with :func:`check_password` in another thread.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Connection, Row, delete, func, insert, select, update

from . import _schema as s
from . import _validate as v
from ._common import (
    DEFAULT_LIMIT,
    UNSET,
    Page,
    Unset,
    atomic,
    get_row,
    new_id,
    paginate,
    record_change,
    resolve_now,
)
from ._errors import Conflict, Invalid, NotFound
from ._orgs import OWNER

USER_STATUSES = ("active", "disabled", "invited")

#: argon2id with argon2-cffi's defaults (RFC 9106's second recommendation: 64 MiB, 3 passes).
PASSWORD_HASHER = PasswordHasher()


@dataclass(frozen=True, slots=True)
class User:
    """A user as shown to admins: no password hash, only whether there is one."""

    id: str
    email: str
    display_name: str | None
    status: str
    has_password: bool
    created_at: datetime
    updated_at: datetime


def _user(row: Row[Any]) -> User:
    return User(
        row.id,
        row.email,
        row.display_name,
        row.status,
        row.password_hash is not None,
        row.created_at,
        row.updated_at,
    )


def hash_password(password: str) -> str:
    """An argon2id hash of ``password`` (checked for length first)."""
    return PASSWORD_HASHER.hash(v.password(password))


def check_password(password_hash: str | None, password: str) -> bool:
    """Whether ``password`` matches ``password_hash``; False for a missing or malformed hash."""
    if password_hash is None or not isinstance(password, str):
        PASSWORD_HASHER.hash("x" * v.PASSWORD_MIN)  # spend the same time: no user enumeration by timing
        return False
    try:
        return PASSWORD_HASHER.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


@atomic
def create_user(
    conn: Connection,
    email: str,
    *,
    password: str | None = None,
    display_name: str | None = None,
    status: str = "active",
    now: datetime | None = None,
) -> User:
    """A new user; without a password they cannot log in with one (single sign-on, invitations)."""
    now = resolve_now(now)
    email = v.email(email)
    display_name = None if display_name is None else v.name(display_name, "display_name")
    status = v.one_of(status, "status", USER_STATUSES)
    password_hash = None if password is None else hash_password(password)
    _check_email_free(conn, email)
    user_id = new_id("user")
    conn.execute(
        insert(s.users).values(
            id=user_id,
            email=email,
            display_name=display_name,
            password_hash=password_hash,
            status=status,
            created_at=now,
            updated_at=now,
        )
    )
    record_change(conn, "user", user_id, "create", None, now)
    return get_user(conn, user_id)


def get_user(conn: Connection, user_id: str) -> User:
    return _user(get_row(conn, s.users, "user", user_id))


def get_user_by_email(conn: Connection, email: str) -> User:
    row = conn.execute(select(s.users).where(s.users.c.email == v.email(email))).one_or_none()
    if row is None:
        raise NotFound("user", email)
    return _user(row)


def list_users(
    conn: Connection,
    *,
    org_id: str | None = None,
    limit: int = DEFAULT_LIMIT,
    cursor: str | None = None,
) -> Page[User]:
    """Every user, or (with ``org_id``) the organization's members."""
    query = select(s.users)
    if org_id is not None:
        members = select(s.memberships.c.user_id).where(s.memberships.c.org_id == org_id)
        query = query.where(s.users.c.id.in_(members))
    return paginate(conn, query, s.users, _user, limit, cursor)


@atomic
def update_user(
    conn: Connection,
    user_id: str,
    *,
    email: str | Unset = UNSET,
    display_name: str | Unset | None = UNSET,
    status: str | Unset = UNSET,
    now: datetime | None = None,
) -> User:
    now = resolve_now(now)
    user = get_user(conn, user_id)
    values: dict[str, Any] = {}
    if email is not UNSET:
        values["email"] = v.email(email)
        if values["email"] != user.email:
            _check_email_free(conn, values["email"])
    if display_name is not UNSET:
        values["display_name"] = None if display_name is None else v.name(display_name, "display_name")
    if status is not UNSET:
        values["status"] = v.one_of(status, "status", USER_STATUSES)
    if values:
        conn.execute(update(s.users).where(s.users.c.id == user_id).values(updated_at=now, **values))
        record_change(conn, "user", user_id, "update", None, now)
    return get_user(conn, user_id)


@atomic
def delete_user(conn: Connection, user_id: str, *, now: datetime | None = None) -> None:
    """Delete a user with their memberships and grants; refused if they are an organization's last Owner."""
    now = resolve_now(now)
    get_user(conn, user_id)
    sole = _orgs_with_sole_owner(conn, user_id)
    if sole:
        raise Conflict("id", f"the user is the only Owner of organization(s) {', '.join(sole)}")
    conn.execute(delete(s.users).where(s.users.c.id == user_id))
    record_change(conn, "user", user_id, "delete", None, now)


@atomic
def set_password(conn: Connection, user_id: str, password: str, *, now: datetime | None = None) -> User:
    """Set (or replace) the user's password."""
    return _set_hash(conn, user_id, hash_password(password), resolve_now(now))


@atomic
def set_password_hash(
    conn: Connection, user_id: str, password_hash: str | None, *, now: datetime | None = None
) -> User:
    """Store a hash made with :func:`hash_password` (None removes the password)."""
    if password_hash is not None and (
        not isinstance(password_hash, str) or not password_hash.startswith("$argon2")
    ):
        raise Invalid("password_hash", "must be an argon2 hash made by hash_password")
    return _set_hash(conn, user_id, password_hash, resolve_now(now))


def _set_hash(conn: Connection, user_id: str, password_hash: str | None, now: datetime) -> User:
    get_user(conn, user_id)
    conn.execute(
        update(s.users).where(s.users.c.id == user_id).values(password_hash=password_hash, updated_at=now)
    )
    record_change(conn, "user", user_id, "update", None, now)
    return get_user(conn, user_id)


def password_hash_for(conn: Connection, email: str) -> tuple[User, str | None] | None:
    """The user with this email and their password hash (for :func:`check_password`), or None."""
    try:
        address = v.email(email)
    except Invalid:
        return None
    row = conn.execute(select(s.users).where(s.users.c.email == address)).one_or_none()
    return None if row is None else (_user(row), row.password_hash)


def verify_password(conn: Connection, email: str, password: str) -> User | None:
    """The active user with this email and password, or None (same answer for every failure).

    Upgrades the stored hash when the hasher's parameters have changed since it was made.
    """
    found = password_hash_for(conn, email)
    user, password_hash = found if found is not None else (None, None)
    if not check_password(password_hash, password) or user is None or user.status != "active":
        return None
    assert password_hash is not None
    if PASSWORD_HASHER.check_needs_rehash(password_hash):
        conn.execute(
            update(s.users).where(s.users.c.id == user.id).values(password_hash=hash_password(password))
        )
    return user


def _check_email_free(conn: Connection, email: str) -> None:
    if conn.execute(select(s.users.c.id).where(s.users.c.email == email)).first() is not None:
        raise Conflict("email", s.CONSTRAINT_FIELDS["uq_users_email"][1])


def _orgs_with_sole_owner(conn: Connection, user_id: str) -> list[str]:
    owner = s.memberships.join(s.roles, s.roles.c.id == s.memberships.c.role_id)
    is_owner = (s.roles.c.builtin.is_(True)) & (s.roles.c.name == OWNER)
    owned = conn.execute(
        select(s.memberships.c.org_id).select_from(owner).where(s.memberships.c.user_id == user_id, is_owner)
    ).scalars()
    sole = []
    for org_id in owned:
        count = conn.execute(
            select(func.count()).select_from(owner).where(s.memberships.c.org_id == org_id, is_owner)
        ).scalar_one()
        if count == 1:
            sole.append(org_id)
    return sole
