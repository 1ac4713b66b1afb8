"""API keys: bearer tokens for machine clients, stored hashed.

A key reads ``kk_<8 characters>_<secret>``. The ``kk_<8 characters>`` part is its prefix: stored in
clear, shown in lists so people can tell keys apart, and used to find the key; the whole key is
stored only as a SHA-256 hash (it is a random 256-bit token, so a fast hash is enough, as for site
secrets). The full key is returned once, at creation.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, Table, delete, insert, select, update

from kokoa.secrets import generate_secret, hash_secret, verify_secret

from . import _schema as s
from . import _validate as v
from ._common import (
    DEFAULT_LIMIT,
    ID_ALPHABET,
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
from ._errors import Invalid

KEY_PREFIX = "kk_"
PREFIX_RANDOM_CHARS = 8


@dataclass(frozen=True, slots=True)
class ApiKey:
    """An API key as shown to admins: its prefix, never its secret or hash.

    ``org_id`` None means an instance-wide key (for the operator), not bound to one organization.
    """

    id: str
    org_id: str | None
    name: str
    prefix: str
    scopes: tuple[str, ...]
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None
    created_by: str | None
    created_at: datetime
    updated_at: datetime

    def is_active(self, now: datetime | None = None) -> bool:
        """Neither revoked nor expired."""
        if self.revoked_at is not None:
            return False
        return self.expires_at is None or resolve_now(now) < self.expires_at


def _key(row: Row[Any]) -> ApiKey:
    return ApiKey(
        row.id,
        row.org_id,
        row.name,
        row.prefix,
        tuple(row.scopes),
        row.expires_at,
        row.last_used_at,
        row.revoked_at,
        row.created_by,
        row.created_at,
        row.updated_at,
    )


def new_prefix(conn: Connection, table: Table, marker: str) -> str:
    """A visible prefix ``<marker><8 random characters>`` that no row of ``table`` has yet (API keys,
    share links: any table with a ``prefix`` column)."""
    while True:  # 36**8 prefixes: a clash is rare, and then we draw again
        prefix = marker + "".join(secrets.choice(ID_ALPHABET) for _ in range(PREFIX_RANDOM_CHARS))
        if conn.execute(select(table.c.id).where(table.c.prefix == prefix)).first() is None:
            return prefix


@atomic
def create_api_key(
    conn: Connection,
    name: str,
    *,
    org_id: str | None,
    scopes: list[str] | tuple[str, ...] = (),
    expires_at: datetime | None = None,
    created_by: str | None = None,
    now: datetime | None = None,
) -> tuple[ApiKey, str]:
    """A new key, and the full key: shown this once, only its hash is kept."""
    now = resolve_now(now)
    if org_id is not None:
        get_row(conn, s.organizations, "organization", org_id)
    if created_by is not None:
        get_row(conn, s.users, "user", created_by)
    name = v.name(name)
    checked_scopes = v.scopes(scopes)
    if expires_at is not None and v.aware(expires_at, "expires_at") <= now:
        raise Invalid("expires_at", "must be in the future")
    prefix = new_prefix(conn, s.api_keys, KEY_PREFIX)
    key = f"{prefix}_{generate_secret()}"
    key_id = new_id("key")
    conn.execute(
        insert(s.api_keys).values(
            id=key_id,
            org_id=org_id,
            name=name,
            prefix=prefix,
            secret_hash=hash_secret(key),
            scopes=list(checked_scopes),
            expires_at=expires_at,
            created_by=created_by,
            created_at=now,
            updated_at=now,
        )
    )
    record_change(conn, "api_key", key_id, "create", org_id, now)
    return get_api_key(conn, key_id), key


def get_api_key(conn: Connection, key_id: str) -> ApiKey:
    return _key(get_row(conn, s.api_keys, "api key", key_id))


def list_api_keys(
    conn: Connection,
    *,
    org_id: str | Unset | None = UNSET,
    limit: int = DEFAULT_LIMIT,
    cursor: str | None = None,
) -> Page[ApiKey]:
    """Every key, or an organization's (``org_id=None``: the instance-wide keys)."""
    query = select(s.api_keys)
    if org_id is None:
        query = query.where(s.api_keys.c.org_id.is_(None))
    elif org_id is not UNSET:
        query = query.where(s.api_keys.c.org_id == org_id)
    return paginate(conn, query, s.api_keys, _key, limit, cursor)


@atomic
def update_api_key(
    conn: Connection,
    key_id: str,
    *,
    name: str | Unset = UNSET,
    scopes: list[str] | tuple[str, ...] | Unset = UNSET,
    expires_at: datetime | Unset | None = UNSET,
    now: datetime | None = None,
) -> ApiKey:
    now = resolve_now(now)
    current = get_api_key(conn, key_id)
    values: dict[str, Any] = {}
    if name is not UNSET:
        values["name"] = v.name(name)
    if scopes is not UNSET:
        values["scopes"] = list(v.scopes(scopes))
    if expires_at is not UNSET:
        if expires_at is not None and v.aware(expires_at, "expires_at") <= now:
            raise Invalid("expires_at", "must be in the future")
        values["expires_at"] = expires_at
    if values:
        conn.execute(update(s.api_keys).where(s.api_keys.c.id == key_id).values(updated_at=now, **values))
        record_change(conn, "api_key", key_id, "update", current.org_id, now)
    return get_api_key(conn, key_id)


@atomic
def revoke_api_key(conn: Connection, key_id: str, *, now: datetime | None = None) -> ApiKey:
    """Make the key unusable from now on (kept, with its revocation time, for the record)."""
    now = resolve_now(now)
    current = get_api_key(conn, key_id)
    if current.revoked_at is None:
        conn.execute(
            update(s.api_keys).where(s.api_keys.c.id == key_id).values(revoked_at=now, updated_at=now)
        )
        record_change(conn, "api_key", key_id, "update", current.org_id, now)
    return get_api_key(conn, key_id)


@atomic
def delete_api_key(conn: Connection, key_id: str, *, now: datetime | None = None) -> None:
    now = resolve_now(now)
    current = get_api_key(conn, key_id)
    conn.execute(delete(s.api_keys).where(s.api_keys.c.id == key_id))
    record_change(conn, "api_key", key_id, "delete", current.org_id, now)


def token_prefix(presented: str, marker: str) -> str | None:
    """The prefix of a presented ``<marker><8 characters>_<secret>`` token, or None if it is not one."""
    length = len(marker) + PREFIX_RANDOM_CHARS
    if (
        not isinstance(presented, str)
        or not presented.startswith(marker)
        or len(presented) <= length + 1
        or presented[length] != "_"
    ):
        return None
    return presented[:length]


def key_prefix(presented: str) -> str | None:
    """The prefix of a presented key, or None if it does not look like a Kokoa API key."""
    return token_prefix(presented, KEY_PREFIX)


def authenticate_api_key(
    conn: Connection, presented: str, *, now: datetime | None = None, touch: bool = True
) -> ApiKey | None:
    """The active key matching ``presented``, or None (unknown, wrong, revoked or expired alike).

    With ``touch``, records the use in ``last_used_at`` (not a configuration change).
    """
    now = resolve_now(now)
    prefix = key_prefix(presented)
    if prefix is None:
        return None
    row = conn.execute(select(s.api_keys).where(s.api_keys.c.prefix == prefix)).one_or_none()
    if row is None or not verify_secret(presented, row.secret_hash):
        return None
    key = _key(row)
    if not key.is_active(now):
        return None
    if touch:
        conn.execute(update(s.api_keys).where(s.api_keys.c.id == key.id).values(last_used_at=now))
        key = get_api_key(conn, key.id)
    return key
