"""The access log: every access decision and sign-in event, written in batches by the gateways.

Rows name objects by id without foreign keys (they outlive what they describe) and are kept for the
retention period (:func:`prune_access`). What comes from requests (hosts, paths, subjects) is clipped
to its column, never refused for its length. Lists come newest first.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Connection,
    Integer,
    Row,
    String,
    and_,
    case,
    cast,
    delete,
    func,
    insert,
    or_,
    select,
)

from . import _schema as s
from . import _validate as v
from ._common import (
    DEFAULT_LIMIT,
    Page,
    atomic,
    check_limit,
    decode_cursor,
    encode_cursor,
    resolve_now,
    where_equal,
)
from ._errors import Invalid

ACCESS_KINDS = ("request", "connect", "signin", "signout", "share")
ACCESS_OUTCOMES = ("allow", "deny", "authenticate", "success", "failure")
#: The most one row may count (alike allowed requests aggregated by a gateway).
MAX_ACCESS_COUNT = 2**31 - 1


@dataclass(frozen=True, slots=True)
class AccessEntry:
    id: int
    at: datetime
    org_id: str | None
    resource_id: str | None
    kind: str  # request, connect, signin, signout, share
    outcome: str  # allow, deny, authenticate (sent to sign in), success, failure
    reason: str
    user_id: str | None
    subject: str | None  # the user's email, or a resource-scoped visitor's email or share link
    method: str | None
    host: str | None
    path: str | None
    client_address: str | None
    rule_id: str | None
    count: int  # alike allowed requests within one flush of a gateway's buffer


def _entry(row: Row[Any]) -> AccessEntry:
    return AccessEntry(
        row.id,
        row.at,
        row.org_id,
        row.resource_id,
        row.kind,
        row.outcome,
        row.reason,
        row.user_id,
        row.subject,
        row.method,
        row.host,
        row.path,
        row.client_address,
        row.rule_id,
        row.count,
    )


#: Free-text columns and their lengths: what is longer is clipped.
_TEXT_LENGTHS: dict[str, int] = {
    c.name: c.type.length
    for c in s.access_log.columns
    if isinstance(c.type, String) and c.type.length and c.name not in ("kind", "outcome")
}
_FIELDS = frozenset(c.name for c in s.access_log.columns) - {"id"}


def _text(value: Any, field: str, length: int) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise Invalid(field, "must be a string")
    # What the database cannot store (NUL, lone surrogates) is replaced, not refused.
    value = value.encode("utf-8", "replace").decode("utf-8").replace("\x00", "\ufffd")
    return value[:length]


def _row(entry: Mapping[str, Any], index: int, now: datetime) -> dict[str, Any]:
    where = f"entries[{index}]"
    if not isinstance(entry, Mapping):
        raise Invalid(where, "must be a mapping of access log fields")
    unknown = sorted(set(entry) - _FIELDS)
    if unknown:
        raise Invalid(f"{where}.{unknown[0]}", "is not a field of the access log")
    at = entry.get("at")
    row: dict[str, Any] = {
        "at": now if at is None else v.aware(at, f"{where}.at"),
        "kind": v.one_of(entry.get("kind"), f"{where}.kind", ACCESS_KINDS),
        "outcome": v.one_of(entry.get("outcome"), f"{where}.outcome", ACCESS_OUTCOMES),
        "count": v.integer(entry.get("count", 1), f"{where}.count", 1, MAX_ACCESS_COUNT),
    }
    for name, length in _TEXT_LENGTHS.items():
        row[name] = _text(entry.get(name), f"{where}.{name}", length)
    row["reason"] = row["reason"] or ""
    return row


@atomic
def append_access(
    conn: Connection, entries: Sequence[Mapping[str, Any]], *, now: datetime | None = None
) -> int:
    """Append a batch of rows (each a mapping of the table's fields; ``at`` defaults to now, ``count``
    to 1): all of them, or none if one is invalid. Returns how many were written."""
    now = resolve_now(now)
    rows = [_row(entry, i, now) for i, entry in enumerate(entries)]
    if rows:
        conn.execute(insert(s.access_log), rows)
    return len(rows)


def list_access(
    conn: Connection,
    *,
    org_id: str | None = None,
    resource_id: str | None = None,
    user_id: str | None = None,
    subject: str | None = None,
    kind: str | None = None,
    outcome: str | None = None,
    client_address: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = DEFAULT_LIMIT,
    cursor: str | None = None,
) -> Page[AccessEntry]:
    """Rows matching every filter given, newest first; ``since`` is inclusive, ``until`` exclusive."""
    check_limit(limit)
    a = s.access_log
    if kind is not None:
        v.one_of(kind, "kind", ACCESS_KINDS)
    if outcome is not None:
        v.one_of(outcome, "outcome", ACCESS_OUTCOMES)
    query = where_equal(
        select(a),
        a,
        org_id=org_id,
        resource_id=resource_id,
        user_id=user_id,
        subject=subject,
        kind=kind,
        outcome=outcome,
        client_address=client_address,
    )
    if since is not None:
        query = query.where(a.c.at >= v.aware(since, "since"))
    if until is not None:
        query = query.where(a.c.at < v.aware(until, "until"))
    if cursor is not None:
        (last,) = decode_cursor(cursor, 1)
        if not last.isascii() or not last.isdigit() or len(last) > 18:
            raise Invalid("cursor", "not a cursor from a previous page")
        query = query.where(a.c.id < int(last))
    rows = conn.execute(query.order_by(a.c.id.desc()).limit(limit + 1)).all()
    items = tuple(_entry(r) for r in rows[:limit])
    next_cursor = encode_cursor(str(rows[limit - 1].id)) if len(rows) > limit else None
    return Page(items, next_cursor)


def prune_access(conn: Connection, before: datetime) -> int:
    """Delete the rows from before ``before``; returns how many."""
    a = s.access_log
    return conn.execute(delete(a).where(a.c.at < v.aware(before, "before"))).rowcount


# -- figures for the console -----------------------------------------------------------------------------

#: The kinds of rows that are requests to resources (HTTP requests, TCP connections).
REQUEST_KINDS = ("request", "connect")


def _epoch_bucket(conn: Connection, bucket_seconds: int) -> Any:
    """The SQL of a row's bucket number: whole seconds since the epoch of ``at``, divided by
    ``bucket_seconds`` and rounded down (SQLite keeps naive UTC text, PostgreSQL timestamptz)."""
    at = s.access_log.c.at
    if conn.dialect.name == "sqlite":
        seconds = cast(func.strftime("%s", at), Integer)
        return cast(seconds / bucket_seconds, Integer)  # integers: SQLite divides whole
    return cast(func.floor(func.extract("epoch", at) / bucket_seconds), BigInteger)


def access_totals(conn: Connection, org_id: str, since: datetime) -> list[tuple[str | None, str, int]]:
    """(resource id, outcome, number of requests) of the organization's requests and connections at or
    after ``since`` (aggregated rows count for their ``count``)."""
    a = s.access_log
    query = (
        select(a.c.resource_id, a.c.outcome, func.sum(a.c.count))
        .where(a.c.org_id == org_id, a.c.kind.in_(REQUEST_KINDS), a.c.at >= v.aware(since, "since"))
        .group_by(a.c.resource_id, a.c.outcome)
    )
    return [(r[0], r[1], int(r[2] or 0)) for r in conn.execute(query)]


def access_series(
    conn: Connection, org_id: str, since: datetime, until: datetime, bucket_seconds: int
) -> list[tuple[str | None, int, int, int]]:
    """(resource id, bucket number, allowed, denied) of the organization's requests and connections in
    ``[since, until)``, per bucket of ``bucket_seconds`` counted from the epoch (bucket ``n`` starts at
    ``n * bucket_seconds``), by resource then time; buckets without rows are left out. Requests sent to
    sign in (``authenticate``) are neither allowed nor denied."""
    if isinstance(bucket_seconds, bool) or not isinstance(bucket_seconds, int) or bucket_seconds < 1:
        raise Invalid("bucket", "must be a whole number of seconds, at least 1")
    a = s.access_log
    bucket = _epoch_bucket(conn, bucket_seconds).label("bucket")
    allowed = func.sum(case((a.c.outcome == "allow", a.c.count), else_=0))
    denied = func.sum(case((a.c.outcome == "deny", a.c.count), else_=0))
    query = (
        select(a.c.resource_id, bucket, allowed, denied)
        .where(
            a.c.org_id == org_id,
            a.c.kind.in_(REQUEST_KINDS),
            a.c.at >= v.aware(since, "since"),
            a.c.at < v.aware(until, "until"),
        )
        .group_by(a.c.resource_id, bucket)
        .order_by(a.c.resource_id, bucket)
    )
    return [(r[0], int(r[1]), int(r[2] or 0), int(r[3] or 0)) for r in conn.execute(query)]


def recent_signins(conn: Connection, org_id: str, limit: int = 10) -> list[AccessEntry]:
    """The latest sign-in rows that concern the organization, newest first: those written for it (its
    resources' own passwords, PINs, codes) and its members' own sign-ins to the login host (by user id,
    or, for an attempt that named an account without getting in, by its email address)."""
    check_limit(limit)
    a, m, u = s.access_log, s.memberships, s.users
    members = select(m.c.user_id).where(m.c.org_id == org_id)
    emails = select(u.c.email).where(u.c.id.in_(members))
    query = (
        select(a)
        .where(
            a.c.kind == "signin",
            or_(
                a.c.org_id == org_id,
                and_(a.c.org_id.is_(None), a.c.user_id.in_(members)),
                and_(a.c.org_id.is_(None), a.c.user_id.is_(None), func.lower(a.c.subject).in_(emails)),
            ),
        )
        .order_by(a.c.id.desc())
        .limit(limit)
    )
    return [_entry(r) for r in conn.execute(query)]


def unwritten_entry(entry: Mapping[str, Any]) -> AccessEntry:
    """A row not written yet (the gateway's buffer holds it) as :func:`list_access` will give it once
    written: checked and clipped as :func:`append_access` does, with ``id`` None. Raises Invalid."""
    row = _row(entry, 0, resolve_now(None))
    return AccessEntry(id=None, **row)  # type: ignore[arg-type]
