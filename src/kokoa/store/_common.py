"""What every repository shares: ids, the clock, pages, atomic writes, and the change counter."""

from __future__ import annotations

import base64
import binascii
import enum
import functools
import re
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Concatenate, Generic, ParamSpec, TypeVar

from sqlalchemy import (
    Column,
    Connection,
    PrimaryKeyConstraint,
    Row,
    Select,
    Table,
    UniqueConstraint,
    and_,
    insert,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.exc import IntegrityError

from . import _schema as s
from ._errors import Conflict, Invalid, NotFound, StoreError

T = TypeVar("T")
P = ParamSpec("P")
R = TypeVar("R")

#: Characters of the random part of ids: lowercase letters and digits (20 of them: ~103 bits).
ID_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"
ID_RANDOM_CHARS = 20

#: Page sizes: the default, and the most a caller may ask for.
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000

_CHANGES_KEY = "kokoa.store.changes"


class Unset(enum.Enum):
    """The type of :data:`UNSET`: "leave this field as it is" in partial updates."""

    UNSET = 0

    def __repr__(self) -> str:
        return "UNSET"


UNSET = Unset.UNSET


def new_id(prefix: str) -> str:
    """A new random id such as ``site_3kq9...`` (the prefix says what it names)."""
    return prefix + "_" + "".join(secrets.choice(ID_ALPHABET) for _ in range(ID_RANDOM_CHARS))


def utcnow() -> datetime:
    return datetime.now(UTC)


def resolve_now(now: datetime | None) -> datetime:
    """``now`` (tests pass a fixed clock), else the current time; always timezone-aware UTC."""
    if now is None:
        return utcnow()
    if now.tzinfo is None:
        raise ValueError(f"naive datetime {now!r}: pass timezone-aware datetimes")
    return now.astimezone(UTC)


# -- pages -------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of a list; pass ``next_cursor`` back for the next one (None: this was the last)."""

    items: tuple[T, ...]
    next_cursor: str | None


def check_limit(limit: int) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise Invalid("limit", f"must be an integer from 1 to {MAX_LIMIT}")
    return limit


def encode_cursor(*parts: str) -> str:
    return base64.urlsafe_b64encode("\n".join(parts).encode()).decode().rstrip("=")


def decode_cursor(cursor: str, count: int) -> list[str]:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError, TypeError):
        raise Invalid("cursor", "not a cursor from a previous page") from None
    parts = text.split("\n")
    # What we encode is short printable text; anything else would only upset the database.
    if len(parts) != count or not all(p.isprintable() and 0 < len(p) <= 64 for p in parts):
        raise Invalid("cursor", "not a cursor from a previous page")
    return parts


def where_equal(query: Select[Any], table: Table, **filters: Any) -> Select[Any]:
    """``query`` narrowed to rows whose column equals each filter that is not None."""
    for column, value in filters.items():
        if value is not None:
            query = query.where(table.c[column] == value)
    return query


def paginate(
    conn: Connection,
    query: Select[Any],
    table: Table,
    to_item: Callable[[Row[Any]], T],
    limit: int,
    cursor: str | None,
    key: str = "id",
) -> Page[T]:
    """Keyset pagination in creation order: ``(created_at, key)`` ascending (``key`` is unique)."""
    check_limit(limit)
    created, id_ = table.c.created_at, table.c[key]
    if cursor is not None:
        when, last_id = decode_cursor(cursor, 2)
        try:
            after = datetime.fromisoformat(when)
            if after.tzinfo is None or not 1970 <= after.astimezone(UTC).year <= 9998:
                after = None
        except (ValueError, OverflowError):
            after = None
        if after is None:
            raise Invalid("cursor", "not a cursor from a previous page")
        query = query.where(or_(created > after, and_(created == after, id_ > last_id)))
    rows = conn.execute(query.order_by(created, id_).limit(limit + 1)).all()
    items = tuple(to_item(r) for r in rows[:limit])
    next_cursor = None
    if len(rows) > limit:
        last = rows[limit - 1]
        next_cursor = encode_cursor(last.created_at.isoformat(), getattr(last, key))
    return Page(items, next_cursor)


# -- changes -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Change:
    """One configuration write: ``kind`` names the entity ("site", "resource"...), ``op`` what happened."""

    version: int
    kind: str
    object_id: str
    op: str
    org_id: str | None
    at: datetime


#: The PostgreSQL channel on which every configuration change is announced (payload: the version).
NOTIFY_CHANNEL = "kokoa_config"


def record_change(
    conn: Connection, kind: str, object_id: str, op: str, org_id: str | None, now: datetime
) -> Change:
    """Bump the configuration version and log the change, in the caller's transaction.

    The version row is locked until commit, so on PostgreSQL versions become visible in order.
    """
    version = conn.execute(
        update(s.config_version)
        .where(s.config_version.c.id == 1)
        .values(version=s.config_version.c.version + 1)
        .returning(s.config_version.c.version)
    ).scalar_one()
    change = Change(version, kind, object_id, op, org_id, now)
    conn.execute(
        insert(s.changes).values(
            version=version, kind=kind, object_id=object_id, op=op, org_id=org_id, at=now
        )
    )
    conn.info.setdefault(_CHANGES_KEY, []).append(change)
    if conn.dialect.name == "postgresql":
        # Delivered at commit to every gateway that LISTENs: they reload at once.
        conn.execute(
            text("SELECT pg_notify(:channel, :version)"), {"channel": NOTIFY_CHANNEL, "version": str(version)}
        )
    return change


def lock_config(conn: Connection) -> None:
    """Take the configuration lock now (PostgreSQL), before reading what a write depends on.

    Every configuration write takes it anyway (:func:`record_change`); taking it first, rather than
    locking other rows, keeps a single lock order, so transactions cannot deadlock on it.
    """
    conn.execute(select(s.config_version.c.version).where(s.config_version.c.id == 1).with_for_update())


def take_changes(conn: Connection) -> tuple[Change, ...]:
    """The changes recorded on ``conn`` since the last call (the Store calls it around transactions)."""
    return tuple(conn.info.pop(_CHANGES_KEY, ()))


def atomic(fn: Callable[Concatenate[Connection, P], R]) -> Callable[Concatenate[Connection, P], R]:
    """Run a repository write in a SAVEPOINT: if it fails, nothing of it stays, and the caller's
    transaction stays usable. Constraint violations become :class:`Conflict` / :class:`Invalid`."""

    @functools.wraps(fn)
    def wrapper(conn: Connection, *args: P.args, **kw: P.kwargs) -> R:
        changes = conn.info.setdefault(_CHANGES_KEY, [])
        mark = len(changes)
        try:
            with conn.begin_nested():
                return fn(conn, *args, **kw)
        except IntegrityError as e:
            del changes[mark:]
            raise integrity_error(e) from e
        except BaseException:
            del changes[mark:]
            raise

    return wrapper


# -- constraint violations ---------------------------------------------------------------------------


def _sqlite_column_keys() -> dict[str, str]:
    """SQLite names a violated unique constraint by its columns ("sites.org_id, sites.name")."""
    keys: dict[str, str] = {}
    for table in s.metadata.tables.values():
        candidates: list[tuple[Any, Sequence[Any]]] = [
            (c.name, list(c.columns))
            for c in table.constraints
            if isinstance(c, UniqueConstraint | PrimaryKeyConstraint)
        ]
        candidates += [(i.name, list(i.expressions)) for i in table.indexes if i.unique]
        for name, columns in candidates:
            if isinstance(name, str) and all(isinstance(c, Column) for c in columns):
                keys[", ".join(f"{table.name}.{c.name}" for c in columns)] = name
    return keys


_SQLITE_KEYS = _sqlite_column_keys()
_SQLITE_UNIQUE = re.compile(r"UNIQUE constraint failed: (?:index '(?P<index>\w+)'|(?P<columns>.+))$")
_SQLITE_CHECK = re.compile(r"CHECK constraint failed: (?P<name>\w+)")
_SQLITE_NOT_NULL = re.compile(r"NOT NULL constraint failed: \w+\.(?P<column>\w+)")


def integrity_error(error: IntegrityError) -> StoreError:
    """The store error for a violated constraint (the repositories check most things before writing;
    this catches the rest, such as a duplicate name inserted by another process at the same moment)."""
    orig = error.orig
    diag = getattr(orig, "diag", None)
    if diag is not None:  # psycopg
        sqlstate = getattr(orig, "sqlstate", None)
        name, column = diag.constraint_name, diag.column_name
        kind = {"23505": "unique", "23514": "check", "23502": "not_null", "23503": "foreign_key"}.get(
            sqlstate or "", "other"
        )
    else:  # sqlite3
        text = str(orig)
        name = column = None
        kind = "other"
        if m := _SQLITE_UNIQUE.search(text):
            kind, name = "unique", m["index"] or _SQLITE_KEYS.get(m["columns"].strip())
        elif m := _SQLITE_CHECK.search(text):
            kind, name = "check", m["name"]
        elif m := _SQLITE_NOT_NULL.search(text):
            kind, column = "not_null", m["column"]
        elif "FOREIGN KEY" in text:
            kind = "foreign_key"
    if kind == "unique":
        field, message = s.CONSTRAINT_FIELDS.get(
            name or "", (None, "an object with these values already exists")
        )
        return Conflict(field, message)
    if kind == "check":
        return Invalid(None, f"the values break the rule {name}")
    if kind == "not_null":
        return Invalid(column, "is required")
    if kind == "foreign_key":
        return Invalid(None, "refers to an object that does not exist (or is still in use)")
    return Invalid(None, "the write breaks a database constraint")


def get_row(conn: Connection, table: Table, kind: str, id: Any) -> Row[Any]:
    """The row of ``table`` with this id, or :class:`NotFound`."""
    if not isinstance(id, str):
        raise NotFound(kind, str(id))
    row = conn.execute(select(table).where(table.c.id == id)).one_or_none()
    if row is None:
        raise NotFound(kind, id)
    return row
