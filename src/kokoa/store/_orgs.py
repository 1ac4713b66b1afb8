"""Organizations, their roles (built-in Owner, Admin, Member, and custom ones), and memberships."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

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
    lock_config,
    new_id,
    paginate,
    record_change,
    resolve_now,
)
from ._errors import Conflict, Invalid, NotFound

#: Roles every organization has, which cannot be renamed or deleted.
OWNER, ADMIN, MEMBER = "Owner", "Admin", "Member"
BUILTIN_ROLES: dict[str, str] = {
    OWNER: "Full control of the organization, including its owners",
    ADMIN: "Manages sites, resources, users and access",
    MEMBER: "Reaches the resources granted to them",
}


@dataclass(frozen=True, slots=True)
class Organization:
    id: str
    name: str
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class Role:
    id: str
    org_id: str
    name: str
    description: str
    builtin: bool
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class Membership:
    org_id: str
    user_id: str
    role_id: str
    role_name: str
    created_at: datetime
    updated_at: datetime


def _org(row: Row[Any]) -> Organization:
    return Organization(row.id, row.name, row.created_at, row.updated_at)


def _role(row: Row[Any]) -> Role:
    return Role(row.id, row.org_id, row.name, row.description, row.builtin, row.created_at, row.updated_at)


def _membership(row: Row[Any]) -> Membership:
    return Membership(row.org_id, row.user_id, row.role_id, row.role_name, row.created_at, row.updated_at)


# -- organizations -----------------------------------------------------------------------------------


@atomic
def create_organization(conn: Connection, name: str, *, now: datetime | None = None) -> Organization:
    """A new organization, with its built-in roles."""
    now = resolve_now(now)
    name = v.name(name)
    _check_org_name_free(conn, name)
    org_id = new_id("org")
    conn.execute(insert(s.organizations).values(id=org_id, name=name, created_at=now, updated_at=now))
    for role_name, description in BUILTIN_ROLES.items():
        conn.execute(
            insert(s.roles).values(
                id=new_id("role"),
                org_id=org_id,
                name=role_name,
                description=description,
                builtin=True,
                created_at=now,
                updated_at=now,
            )
        )
    record_change(conn, "organization", org_id, "create", org_id, now)
    return get_organization(conn, org_id)


def get_organization(conn: Connection, org_id: str) -> Organization:
    return _org(get_row(conn, s.organizations, "organization", org_id))


def list_organizations(
    conn: Connection, *, limit: int = DEFAULT_LIMIT, cursor: str | None = None
) -> Page[Organization]:
    return paginate(conn, select(s.organizations), s.organizations, _org, limit, cursor)


@atomic
def update_organization(
    conn: Connection, org_id: str, *, name: str | Unset = UNSET, now: datetime | None = None
) -> Organization:
    now = resolve_now(now)
    current = get_organization(conn, org_id)
    values: dict[str, Any] = {}
    if name is not UNSET:
        values["name"] = v.name(name)
        if values["name"].lower() != current.name.lower():
            _check_org_name_free(conn, values["name"])
    if values:
        conn.execute(
            update(s.organizations).where(s.organizations.c.id == org_id).values(updated_at=now, **values)
        )
        record_change(conn, "organization", org_id, "update", org_id, now)
    return get_organization(conn, org_id)


@atomic
def delete_organization(conn: Connection, org_id: str, *, now: datetime | None = None) -> None:
    """Delete an organization and everything it owns (roles, memberships, sites, resources, keys)."""
    now = resolve_now(now)
    get_organization(conn, org_id)
    conn.execute(delete(s.organizations).where(s.organizations.c.id == org_id))
    record_change(conn, "organization", org_id, "delete", org_id, now)


def _check_org_name_free(conn: Connection, name: str) -> None:
    taken = conn.execute(
        select(s.organizations.c.id).where(func.lower(s.organizations.c.name) == name.lower())
    ).first()
    if taken is not None:
        raise Conflict("name", s.CONSTRAINT_FIELDS["uq_organizations_name"][1])


# -- roles -------------------------------------------------------------------------------------------


@atomic
def create_role(
    conn: Connection, org_id: str, name: str, *, description: str = "", now: datetime | None = None
) -> Role:
    """A custom role in the organization."""
    now = resolve_now(now)
    get_organization(conn, org_id)
    name = v.name(name)
    description = v.text(description, "description", 500)
    _check_role_name_free(conn, org_id, name)
    role_id = new_id("role")
    conn.execute(
        insert(s.roles).values(
            id=role_id,
            org_id=org_id,
            name=name,
            description=description,
            builtin=False,
            created_at=now,
            updated_at=now,
        )
    )
    record_change(conn, "role", role_id, "create", org_id, now)
    return get_role(conn, role_id)


def get_role(conn: Connection, role_id: str) -> Role:
    return _role(get_row(conn, s.roles, "role", role_id))


def get_role_by_name(conn: Connection, org_id: str, name: str) -> Role:
    """The organization's role with this name (case-insensitive), e.g. ``get_role_by_name(c, org, OWNER)``."""
    row = conn.execute(
        select(s.roles).where(s.roles.c.org_id == org_id, func.lower(s.roles.c.name) == str(name).lower())
    ).one_or_none()
    if row is None:
        raise NotFound("role", f"{org_id}/{name}")
    return _role(row)


def list_roles(
    conn: Connection, org_id: str, *, limit: int = DEFAULT_LIMIT, cursor: str | None = None
) -> Page[Role]:
    query = select(s.roles).where(s.roles.c.org_id == org_id)
    return paginate(conn, query, s.roles, _role, limit, cursor)


@atomic
def update_role(
    conn: Connection,
    role_id: str,
    *,
    name: str | Unset = UNSET,
    description: str | Unset = UNSET,
    now: datetime | None = None,
) -> Role:
    now = resolve_now(now)
    role = get_role(conn, role_id)
    values: dict[str, Any] = {}
    if name is not UNSET:
        values["name"] = v.name(name)
        if role.builtin and values["name"] != role.name:
            raise Invalid("name", f"the built-in role {role.name} cannot be renamed")
        if values["name"].lower() != role.name.lower():
            _check_role_name_free(conn, role.org_id, values["name"])
    if description is not UNSET:
        values["description"] = v.text(description, "description", 500)
    if values:
        conn.execute(update(s.roles).where(s.roles.c.id == role_id).values(updated_at=now, **values))
        record_change(conn, "role", role_id, "update", role.org_id, now)
    return get_role(conn, role_id)


@atomic
def delete_role(conn: Connection, role_id: str, *, now: datetime | None = None) -> None:
    """Delete a custom role and its grants; refused while members hold it."""
    now = resolve_now(now)
    role = get_role(conn, role_id)
    if role.builtin:
        raise Invalid("id", f"the built-in role {role.name} cannot be deleted")
    holders = conn.execute(
        select(func.count()).select_from(s.memberships).where(s.memberships.c.role_id == role_id)
    ).scalar_one()
    if holders:
        raise Conflict(
            "id", f"{holders} member(s) still have the role {role.name}; give them another role first"
        )
    conn.execute(delete(s.roles).where(s.roles.c.id == role_id))
    record_change(conn, "role", role_id, "delete", role.org_id, now)


def _check_role_name_free(conn: Connection, org_id: str, name: str) -> None:
    taken = conn.execute(
        select(s.roles.c.id).where(s.roles.c.org_id == org_id, func.lower(s.roles.c.name) == name.lower())
    ).first()
    if taken is not None:
        raise Conflict("name", s.CONSTRAINT_FIELDS["uq_roles_org_name"][1])


# -- memberships -------------------------------------------------------------------------------------


def _membership_query() -> Any:
    return select(s.memberships, s.roles.c.name.label("role_name")).join(
        s.roles, s.roles.c.id == s.memberships.c.role_id
    )


@atomic
def add_member(
    conn: Connection, org_id: str, user_id: str, role_id: str, *, now: datetime | None = None
) -> Membership:
    """Make the user a member of the organization with this role."""
    now = resolve_now(now)
    get_organization(conn, org_id)
    get_row(conn, s.users, "user", user_id)
    _check_role_of(conn, org_id, role_id)
    exists = conn.execute(
        select(s.memberships.c.user_id).where(
            s.memberships.c.org_id == org_id, s.memberships.c.user_id == user_id
        )
    ).first()
    if exists is not None:
        raise Conflict("user_id", s.CONSTRAINT_FIELDS["pk_memberships"][1])
    conn.execute(
        insert(s.memberships).values(
            org_id=org_id, user_id=user_id, role_id=role_id, created_at=now, updated_at=now
        )
    )
    record_change(conn, "membership", user_id, "create", org_id, now)
    return get_membership(conn, org_id, user_id)


def get_membership(conn: Connection, org_id: str, user_id: str) -> Membership:
    row = conn.execute(
        _membership_query().where(s.memberships.c.org_id == org_id, s.memberships.c.user_id == user_id)
    ).one_or_none()
    if row is None:
        raise NotFound("membership", f"{org_id}/{user_id}")
    return _membership(row)


def list_members(
    conn: Connection, org_id: str, *, limit: int = DEFAULT_LIMIT, cursor: str | None = None
) -> Page[Membership]:
    query = _membership_query().where(s.memberships.c.org_id == org_id)
    return paginate(conn, query, s.memberships, _membership, limit, cursor, key="user_id")


def list_user_memberships(conn: Connection, user_id: str) -> list[Membership]:
    """Every organization the user belongs to (a short list: not paginated)."""
    query = _membership_query().where(s.memberships.c.user_id == user_id).order_by(s.memberships.c.created_at)
    return [_membership(r) for r in conn.execute(query)]


@atomic
def set_member_role(
    conn: Connection, org_id: str, user_id: str, role_id: str, *, now: datetime | None = None
) -> Membership:
    now = resolve_now(now)
    current = get_membership(conn, org_id, user_id)
    role = _check_role_of(conn, org_id, role_id)
    if current.role_id != role_id:
        if current.role_name == OWNER and role.name != OWNER:
            _check_other_owner(conn, org_id, user_id)
        conn.execute(
            update(s.memberships)
            .where(s.memberships.c.org_id == org_id, s.memberships.c.user_id == user_id)
            .values(role_id=role_id, updated_at=now)
        )
        record_change(conn, "membership", user_id, "update", org_id, now)
    return get_membership(conn, org_id, user_id)


@atomic
def remove_member(conn: Connection, org_id: str, user_id: str, *, now: datetime | None = None) -> None:
    now = resolve_now(now)
    current = get_membership(conn, org_id, user_id)
    if current.role_name == OWNER:
        _check_other_owner(conn, org_id, user_id)
    conn.execute(
        delete(s.memberships).where(s.memberships.c.org_id == org_id, s.memberships.c.user_id == user_id)
    )
    record_change(conn, "membership", user_id, "delete", org_id, now)


def _check_role_of(conn: Connection, org_id: str, role_id: str) -> Role:
    role = get_role(conn, role_id)
    if role.org_id != org_id:
        raise Invalid("role_id", "the role belongs to another organization")
    return role


def _check_other_owner(conn: Connection, org_id: str, user_id: str) -> None:
    """Refuse to leave an organization without an Owner (under the configuration lock, so two
    owners demoting each other at once cannot both succeed)."""
    lock_config(conn)
    others = conn.execute(
        select(func.count())
        .select_from(s.memberships.join(s.roles, s.roles.c.id == s.memberships.c.role_id))
        .where(
            s.memberships.c.org_id == org_id,
            s.memberships.c.user_id != user_id,
            s.roles.c.builtin.is_(True),
            s.roles.c.name == OWNER,
        )
    ).scalar_one()
    if not others:
        raise Conflict(
            "role_id", "an organization must keep at least one Owner; make someone else Owner first"
        )
