"""Who may reach a resource (grants to roles or users) and the rules over client address, path and
method (allow, deny, or bypass authentication), evaluated in priority order, lowest first.

The store keeps and checks them; the policy engine enforces them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, delete, insert, select, update

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
    where_equal,
)
from ._errors import Conflict, Invalid

RULE_ACTIONS = ("allow", "deny", "bypass")
MAX_PRIORITY = 1_000_000


@dataclass(frozen=True, slots=True)
class Grant:
    """Access to a resource for a role's holders or for one user (exactly one of the two is set)."""

    id: str
    resource_id: str
    role_id: str | None
    user_id: str | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Rule:
    """A rule matches when every condition set matches (none set: every request)."""

    id: str
    resource_id: str
    priority: int
    action: str  # "allow", "deny" or "bypass" (authentication)
    cidr: str | None  # client address within this network
    path: str | None  # request path; "*" matches any run of characters
    method: str | None  # HTTP method, upper case
    enabled: bool
    created_at: datetime
    updated_at: datetime


def _grant(row: Row[Any]) -> Grant:
    return Grant(row.id, row.resource_id, row.role_id, row.user_id, row.created_at)


def _rule(row: Row[Any]) -> Rule:
    return Rule(
        row.id,
        row.resource_id,
        row.priority,
        row.action,
        row.cidr,
        row.path,
        row.method,
        row.enabled,
        row.created_at,
        row.updated_at,
    )


# -- grants ------------------------------------------------------------------------------------------


@atomic
def create_grant(
    conn: Connection,
    resource_id: str,
    *,
    role_id: str | None = None,
    user_id: str | None = None,
    now: datetime | None = None,
) -> Grant:
    """Give a role of the resource's organization, or one of its members, access to the resource."""
    now = resolve_now(now)
    resource = get_row(conn, s.resources, "resource", resource_id)
    if (role_id is None) == (user_id is None):
        raise Invalid("role_id", "give exactly one of role_id and user_id")
    g = s.grants
    if role_id is not None:
        role = get_row(conn, s.roles, "role", role_id)
        if role.org_id != resource.org_id:
            raise Invalid("role_id", "the role belongs to another organization than the resource")
        if conn.execute(select(g.c.id).where(g.c.resource_id == resource_id, g.c.role_id == role_id)).first():
            raise Conflict("role_id", s.CONSTRAINT_FIELDS["uq_grants_resource_role"][1])
    else:
        get_row(conn, s.users, "user", user_id)
        member = conn.execute(
            select(s.memberships.c.user_id).where(
                s.memberships.c.org_id == resource.org_id, s.memberships.c.user_id == user_id
            )
        ).first()
        if member is None:
            raise Invalid("user_id", "the user is not a member of the resource's organization")
        if conn.execute(select(g.c.id).where(g.c.resource_id == resource_id, g.c.user_id == user_id)).first():
            raise Conflict("user_id", s.CONSTRAINT_FIELDS["uq_grants_resource_user"][1])
    grant_id = new_id("grant")
    conn.execute(
        insert(g).values(
            id=grant_id, resource_id=resource_id, role_id=role_id, user_id=user_id, created_at=now
        )
    )
    record_change(conn, "grant", grant_id, "create", resource.org_id, now)
    return get_grant(conn, grant_id)


def get_grant(conn: Connection, grant_id: str) -> Grant:
    return _grant(get_row(conn, s.grants, "grant", grant_id))


def list_grants(
    conn: Connection,
    *,
    resource_id: str | None = None,
    role_id: str | None = None,
    user_id: str | None = None,
    limit: int = DEFAULT_LIMIT,
    cursor: str | None = None,
) -> Page[Grant]:
    query = where_equal(select(s.grants), s.grants, resource_id=resource_id, role_id=role_id, user_id=user_id)
    return paginate(conn, query, s.grants, _grant, limit, cursor)


@atomic
def delete_grant(conn: Connection, grant_id: str, *, now: datetime | None = None) -> None:
    now = resolve_now(now)
    grant = get_grant(conn, grant_id)
    resource = get_row(conn, s.resources, "resource", grant.resource_id)
    conn.execute(delete(s.grants).where(s.grants.c.id == grant_id))
    record_change(conn, "grant", grant_id, "delete", resource.org_id, now)


# -- rules -------------------------------------------------------------------------------------------


def _rule_values(
    resource: Row[Any], priority: Any, action: Any, cidr: Any, path: Any, method: Any, enabled: Any
) -> dict[str, Any]:
    if resource.kind != "http" and (path is not None or method is not None):
        field = "path" if path is not None else "method"
        raise Invalid(field, f"{resource.kind.upper()} resources match on the client address only")
    return {
        "resource_id": resource.id,
        "priority": v.integer(priority, "priority", 0, MAX_PRIORITY),
        "action": v.one_of(action, "action", RULE_ACTIONS),
        "cidr": None if cidr is None else v.cidr(cidr),
        "path": None if path is None else v.path(path, "path", allow_glob=True),
        "method": None if method is None else v.method(method),
        "enabled": v.boolean(enabled, "enabled"),
    }


def _check_priority_free(
    conn: Connection, resource_id: str, priority: int, exclude: str | None = None
) -> None:
    query = select(s.rules.c.id).where(s.rules.c.resource_id == resource_id, s.rules.c.priority == priority)
    if exclude is not None:
        query = query.where(s.rules.c.id != exclude)
    if conn.execute(query).first():
        raise Conflict("priority", s.CONSTRAINT_FIELDS["uq_rules_resource_priority"][1])


@atomic
def create_rule(
    conn: Connection,
    resource_id: str,
    action: str,
    priority: int,
    *,
    cidr: str | None = None,
    path: str | None = None,
    method: str | None = None,
    enabled: bool = True,
    now: datetime | None = None,
) -> Rule:
    """A rule of the resource; ``priority`` orders the rules (lowest first) and is unique per resource."""
    now = resolve_now(now)
    resource = get_row(conn, s.resources, "resource", resource_id)
    values = _rule_values(resource, priority, action, cidr, path, method, enabled)
    _check_priority_free(conn, resource_id, values["priority"])
    rule_id = new_id("rule")
    conn.execute(insert(s.rules).values(id=rule_id, created_at=now, updated_at=now, **values))
    record_change(conn, "rule", rule_id, "create", resource.org_id, now)
    return get_rule(conn, rule_id)


def get_rule(conn: Connection, rule_id: str) -> Rule:
    return _rule(get_row(conn, s.rules, "rule", rule_id))


def list_rules(conn: Connection, resource_id: str) -> list[Rule]:
    """The resource's rules in evaluation order (a short list: not paginated)."""
    query = select(s.rules).where(s.rules.c.resource_id == resource_id).order_by(s.rules.c.priority)
    return [_rule(r) for r in conn.execute(query)]


@atomic
def update_rule(
    conn: Connection,
    rule_id: str,
    *,
    priority: int | Unset = UNSET,
    action: str | Unset = UNSET,
    cidr: str | Unset | None = UNSET,
    path: str | Unset | None = UNSET,
    method: str | Unset | None = UNSET,
    enabled: bool | Unset = UNSET,
    now: datetime | None = None,
) -> Rule:
    """Change some of a rule's fields (None clears a condition)."""
    now = resolve_now(now)
    current = get_rule(conn, rule_id)
    resource = get_row(conn, s.resources, "resource", current.resource_id)

    def pick(new: Any, old: Any) -> Any:
        return old if new is UNSET else new

    values = _rule_values(
        resource,
        pick(priority, current.priority),
        pick(action, current.action),
        pick(cidr, current.cidr),
        pick(path, current.path),
        pick(method, current.method),
        pick(enabled, current.enabled),
    )
    _check_priority_free(conn, current.resource_id, values["priority"], exclude=rule_id)
    changed = {k: val for k, val in values.items() if getattr(current, k) != val}
    if changed:
        conn.execute(update(s.rules).where(s.rules.c.id == rule_id).values(updated_at=now, **changed))
        record_change(conn, "rule", rule_id, "update", resource.org_id, now)
    return get_rule(conn, rule_id)


@atomic
def delete_rule(conn: Connection, rule_id: str, *, now: datetime | None = None) -> None:
    now = resolve_now(now)
    current = get_rule(conn, rule_id)
    resource = get_row(conn, s.resources, "resource", current.resource_id)
    conn.execute(delete(s.rules).where(s.rules.c.id == rule_id))
    record_change(conn, "rule", rule_id, "delete", resource.org_id, now)
