"""The audit log: who did what to which object, when and from where, with the object before and after.

Entries are appended, never changed. They name objects by id without foreign keys, so they outlive
what they describe. Lists come newest first.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, insert, select

from . import _schema as s
from . import _validate as v
from ._common import DEFAULT_LIMIT, Page, check_limit, decode_cursor, encode_cursor, resolve_now, where_equal
from ._errors import Invalid


@dataclass(frozen=True, slots=True)
class AuditEntry:
    id: int
    at: datetime
    org_id: str | None
    actor: str  # e.g. "user:user_...", "key:key_...", "system"
    action: str  # e.g. "site.create", "resource.update"
    object_kind: str | None
    object_id: str | None
    before: Any
    after: Any
    source_address: str | None


def _entry(row: Row[Any]) -> AuditEntry:
    return AuditEntry(
        row.id,
        row.at,
        row.org_id,
        row.actor,
        row.action,
        row.object_kind,
        row.object_id,
        row.before,
        row.after,
        row.source_address,
    )


def jsonable(value: Any, field: str = "value") -> Any:
    """``value`` as JSON data: dataclasses become objects, datetimes ISO 8601 text, tuples lists."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name), field) for f in dataclasses.fields(value)}
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            raise Invalid(field, "object keys must be strings")
        return {k: jsonable(item, field) for k, item in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(item, field) for item in value]
    if value is None or isinstance(value, str | int | float | bool):
        if isinstance(value, float) and not math.isfinite(value):
            raise Invalid(field, "NaN and infinities are not JSON")
        return value
    raise Invalid(field, f"{type(value).__name__} cannot be stored as JSON")


def append_audit(
    conn: Connection,
    actor: str,
    action: str,
    *,
    org_id: str | None = None,
    object_kind: str | None = None,
    object_id: str | None = None,
    before: Any = None,
    after: Any = None,
    source_address: str | None = None,
    now: datetime | None = None,
) -> AuditEntry:
    """Append an entry (in the caller's transaction: write it with the change it records)."""
    now = resolve_now(now)
    values = {
        "at": now,
        "org_id": org_id,
        "actor": v.name(actor, "actor", 200),
        "action": v.name(action, "action", 100),
        "object_kind": None if object_kind is None else v.name(object_kind, "object_kind", 32),
        "object_id": None if object_id is None else v.name(object_id, "object_id", 100),
        "before": jsonable(before, "before"),
        "after": jsonable(after, "after"),
        "source_address": None if source_address is None else v.ip_address(source_address, "source_address"),
    }
    entry_id = conn.execute(insert(s.audit_log).values(**values).returning(s.audit_log.c.id)).scalar_one()
    return _entry(conn.execute(select(s.audit_log).where(s.audit_log.c.id == entry_id)).one())


def list_audit(
    conn: Connection,
    *,
    org_id: str | None = None,
    actor: str | None = None,
    action: str | None = None,
    object_kind: str | None = None,
    object_id: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = DEFAULT_LIMIT,
    cursor: str | None = None,
) -> Page[AuditEntry]:
    """Entries matching every filter given, newest first. ``action`` ending in ``*`` matches a prefix
    (``"site.*"``); ``since`` is inclusive, ``until`` exclusive."""
    check_limit(limit)
    a = s.audit_log
    query = where_equal(
        select(a), a, org_id=org_id, actor=actor, object_kind=object_kind, object_id=object_id
    )
    if action is not None:
        if action.endswith("*"):
            query = query.where(a.c.action.startswith(action[:-1], autoescape=True))
        else:
            query = query.where(a.c.action == action)
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
