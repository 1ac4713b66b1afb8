"""Handlers: organizations, roles, members, users, API keys, the audit log and the gateway status.

Each write runs in one ``store.run`` transaction together with its audit entry: if either fails,
neither is kept. Objects of another organization are reported as not found.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection

from kokoa import store as st
from kokoa.store import jsonable

from ._call import NO_CONTENT, Call, Reply, created, ok, page
from ._jsonschema import parse_datetime
from ._problems import internal_error, unavailable


def pick(body: dict[str, Any], *names: str) -> dict[str, Any]:
    """The fields of ``body`` among ``names`` (a partial update leaves the others alone)."""
    return {name: body[name] for name in names if name in body}


# -- organizations -----------------------------------------------------------------------------------


async def list_orgs(call: Call) -> Reply:
    principal = call.principal
    assert principal is not None
    if principal.kind == "user":
        orgs = [await call.store.run(st.get_organization, org_id) for org_id, _ in principal.orgs]
        return ok({"items": [jsonable(org) for org in orgs], "next_cursor": None})
    if principal.instance_wide:
        return ok(page(await call.store.run(st.list_organizations, **call.query)))
    org = await call.store.run(st.get_organization, principal.org_id)
    return ok({"items": [jsonable(org)], "next_cursor": None})


async def create_org(call: Call) -> Reply:
    def tx(conn: Connection) -> st.Organization:
        org = st.create_organization(conn, call.body["name"])
        call.audit(
            conn, "organization.create", org_id=org.id, kind="organization", object_id=org.id, after=org
        )
        return org

    org = await call.store.run(tx)
    return created(jsonable(org), f"/orgs/{org.id}")


async def get_org(call: Call) -> Reply:
    return ok(jsonable(await call.store.run(st.get_organization, call.params["org"])))


async def update_org(call: Call) -> Reply:
    org_id = call.params["org"]

    def tx(conn: Connection) -> st.Organization:
        before = st.get_organization(conn, org_id)
        after = st.update_organization(conn, org_id, **pick(call.body, "name"))
        call.audit(
            conn,
            "organization.update",
            org_id=org_id,
            kind="organization",
            object_id=org_id,
            before=before,
            after=after,
        )
        return after

    return ok(jsonable(await call.store.run(tx)))


async def delete_org(call: Call) -> Reply:
    org_id = call.params["org"]

    def tx(conn: Connection) -> None:
        before = st.get_organization(conn, org_id)
        st.delete_organization(conn, org_id)
        call.audit(
            conn, "organization.delete", org_id=org_id, kind="organization", object_id=org_id, before=before
        )

    await call.store.run(tx)
    return NO_CONTENT


# -- roles -------------------------------------------------------------------------------------------


def role_in(conn: Connection, org_id: str, role_id: str) -> st.Role:
    role = st.get_role(conn, role_id)
    if role.org_id != org_id:
        raise st.NotFound("role", role_id)
    return role


async def list_roles(call: Call) -> Reply:
    org_id = call.params["org"]

    def tx(conn: Connection) -> st.Page[st.Role]:
        st.get_organization(conn, org_id)
        return st.list_roles(conn, org_id, **call.query)

    return ok(page(await call.store.run(tx)))


async def create_role(call: Call) -> Reply:
    org_id = call.params["org"]

    def tx(conn: Connection) -> st.Role:
        role = st.create_role(conn, org_id, call.body["name"], **pick(call.body, "description"))
        call.audit(conn, "role.create", org_id=org_id, kind="role", object_id=role.id, after=role)
        return role

    role = await call.store.run(tx)
    return created(jsonable(role), f"/orgs/{org_id}/roles/{role.id}")


async def get_role(call: Call) -> Reply:
    return ok(jsonable(await call.store.run(role_in, call.params["org"], call.params["role"])))


async def update_role(call: Call) -> Reply:
    org_id, role_id = call.params["org"], call.params["role"]

    def tx(conn: Connection) -> st.Role:
        before = role_in(conn, org_id, role_id)
        after = st.update_role(conn, role_id, **pick(call.body, "name", "description"))
        call.audit(
            conn, "role.update", org_id=org_id, kind="role", object_id=role_id, before=before, after=after
        )
        return after

    return ok(jsonable(await call.store.run(tx)))


async def delete_role(call: Call) -> Reply:
    org_id, role_id = call.params["org"], call.params["role"]

    def tx(conn: Connection) -> None:
        before = role_in(conn, org_id, role_id)
        st.delete_role(conn, role_id)
        call.audit(conn, "role.delete", org_id=org_id, kind="role", object_id=role_id, before=before)

    await call.store.run(tx)
    return NO_CONTENT


# -- members -----------------------------------------------------------------------------------------


async def list_members(call: Call) -> Reply:
    org_id = call.params["org"]

    def tx(conn: Connection) -> st.Page[st.Membership]:
        st.get_organization(conn, org_id)
        return st.list_members(conn, org_id, **call.query)

    return ok(page(await call.store.run(tx)))


async def add_member(call: Call) -> Reply:
    org_id, user_id = call.params["org"], call.body["user_id"]

    def tx(conn: Connection) -> st.Membership:
        member = st.add_member(conn, org_id, user_id, call.body["role_id"])
        call.audit(
            conn, "membership.create", org_id=org_id, kind="membership", object_id=user_id, after=member
        )
        return member

    member = await call.store.run(tx)
    return created(jsonable(member), f"/orgs/{org_id}/members/{user_id}")


async def get_member(call: Call) -> Reply:
    return ok(jsonable(await call.store.run(st.get_membership, call.params["org"], call.params["user"])))


async def update_member(call: Call) -> Reply:
    org_id, user_id = call.params["org"], call.params["user"]

    def tx(conn: Connection) -> st.Membership:
        before = st.get_membership(conn, org_id, user_id)
        after = st.set_member_role(conn, org_id, user_id, call.body["role_id"])
        call.audit(
            conn,
            "membership.update",
            org_id=org_id,
            kind="membership",
            object_id=user_id,
            before=before,
            after=after,
        )
        return after

    return ok(jsonable(await call.store.run(tx)))


async def remove_member(call: Call) -> Reply:
    org_id, user_id = call.params["org"], call.params["user"]

    def tx(conn: Connection) -> None:
        before = st.get_membership(conn, org_id, user_id)
        st.remove_member(conn, org_id, user_id)
        call.audit(
            conn, "membership.delete", org_id=org_id, kind="membership", object_id=user_id, before=before
        )

    await call.store.run(tx)
    return NO_CONTENT


# -- users (instance-wide keys only) -----------------------------------------------------------------


async def list_users(call: Call) -> Reply:
    return ok(page(await call.store.run(st.list_users, **call.query)))


async def create_user(call: Call) -> Reply:
    def tx(conn: Connection) -> st.User:
        user = st.create_user(
            conn, call.body["email"], **pick(call.body, "password", "display_name", "status")
        )
        call.audit(conn, "user.create", org_id=None, kind="user", object_id=user.id, after=user)
        return user

    user = await call.store.run(tx)
    return created(jsonable(user), f"/users/{user.id}")


async def get_user(call: Call) -> Reply:
    return ok(jsonable(await call.store.run(st.get_user, call.params["user"])))


async def update_user(call: Call) -> Reply:
    user_id = call.params["user"]

    def tx(conn: Connection) -> st.User:
        before = st.get_user(conn, user_id)
        after = st.update_user(conn, user_id, **pick(call.body, "email", "display_name", "status"))
        if "password" in call.body:
            password = call.body["password"]
            if password is None:
                after = st.set_password_hash(conn, user_id, None)
            else:
                after = st.set_password(conn, user_id, password)
        call.audit(
            conn, "user.update", org_id=None, kind="user", object_id=user_id, before=before, after=after
        )
        return after

    return ok(jsonable(await call.store.run(tx)))


async def delete_user(call: Call) -> Reply:
    user_id = call.params["user"]

    def tx(conn: Connection) -> None:
        before = st.get_user(conn, user_id)
        st.delete_user(conn, user_id)
        call.audit(conn, "user.delete", org_id=None, kind="user", object_id=user_id, before=before)

    await call.store.run(tx)
    return NO_CONTENT


# -- API keys ----------------------------------------------------------------------------------------


def key_in(conn: Connection, org_id: str, key_id: str) -> st.ApiKey:
    key = st.get_api_key(conn, key_id)
    if key.org_id != org_id:
        raise st.NotFound("api key", key_id)
    return key


async def list_api_keys(call: Call) -> Reply:
    org_id = call.params["org"]

    def tx(conn: Connection) -> st.Page[st.ApiKey]:
        st.get_organization(conn, org_id)
        return st.list_api_keys(conn, org_id=org_id, **call.query)

    return ok(page(await call.store.run(tx)))


async def create_api_key(call: Call) -> Reply:
    org_id = call.params["org"]
    expires = call.body.get("expires_at")
    expires_at = None if expires is None else parse_datetime(expires)

    user_id = call.body.get("user_id")

    def tx(conn: Connection) -> tuple[st.ApiKey, str]:
        if user_id is not None:
            try:
                st.get_membership(conn, org_id, user_id)
            except st.NotFound:
                raise st.Invalid("user_id", "is not a member of the organization") from None
        key, secret = st.create_api_key(
            conn,
            call.body["name"],
            org_id=org_id,
            scopes=call.body["scopes"],
            expires_at=expires_at,
            created_by=user_id,
        )
        call.audit(conn, "api_key.create", org_id=org_id, kind="api_key", object_id=key.id, after=key)
        return key, secret

    key, secret = await call.store.run(tx)
    return created({"api_key": jsonable(key), "key": secret}, f"/orgs/{org_id}/api-keys/{key.id}")


async def get_api_key(call: Call) -> Reply:
    return ok(jsonable(await call.store.run(key_in, call.params["org"], call.params["key"])))


async def delete_api_key(call: Call) -> Reply:
    org_id, key_id = call.params["org"], call.params["key"]

    def tx(conn: Connection) -> None:
        before = key_in(conn, org_id, key_id)
        st.delete_api_key(conn, key_id)
        call.audit(conn, "api_key.delete", org_id=org_id, kind="api_key", object_id=key_id, before=before)

    await call.store.run(tx)
    return NO_CONTENT


# -- the audit log and the status --------------------------------------------------------------------


async def list_org_audit(call: Call) -> Reply:
    org_id = call.params["org"]

    def tx(conn: Connection) -> st.Page[st.AuditEntry]:
        st.get_organization(conn, org_id)
        return st.list_audit(conn, org_id=org_id, **call.query)

    return ok(page(await call.store.run(tx)))


async def list_audit(call: Call) -> Reply:
    return ok(page(await call.store.run(st.list_audit, **call.query)))


async def get_status(call: Call) -> Reply:
    status = call.services.status
    if status is None:
        raise unavailable("this process serves no gateway: there is no live status to show")
    result = status()
    if not isinstance(result, dict):
        raise internal_error()
    return ok(result)
