"""Handlers for the web console: who is signed in (``/me``), what they may open (``/me/resources``),
and the live picture of an organization.

Nothing here writes: these routes read the store, and the gateway's memory through
:class:`~kokoa.api._call.Services` (None where the API is served without a gateway: 503).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection

from kokoa import store as st

from ._auth import Principal
from ._call import Call, Reply, ok


def _all_organizations(conn: Connection) -> list[st.Organization]:
    orgs: list[st.Organization] = []
    cursor = None
    while True:
        page = st.list_organizations(conn, limit=st.MAX_LIMIT, cursor=cursor)
        orgs += page.items
        cursor = page.next_cursor
        if cursor is None:
            return orgs


def _org_entry(org: st.Organization, role: str | None) -> dict[str, Any]:
    return {"id": org.id, "name": org.name, "role": role}


async def get_me(call: Call) -> Reply:
    """The caller: a console user with their organizations and roles, or an API key with the
    organizations it may act in."""
    principal = call.principal
    assert principal is not None
    if principal.kind == "user":
        return ok(await call.store.run(_user_me, principal))

    def key_tx(conn: Connection) -> list[dict[str, Any]]:
        if principal.instance_wide:
            return [_org_entry(org, None) for org in _all_organizations(conn)]
        return [_org_entry(st.get_organization(conn, principal.org_id), None)]

    prefix = principal.actor.removeprefix("key:")
    orgs = await call.store.run(key_tx)
    return ok({"kind": "api_key", "key": {"prefix": prefix, "org_id": principal.org_id}, "orgs": orgs})


def _user_me(conn: Connection, principal: Principal) -> dict[str, Any]:
    assert principal.user_id is not None
    user = st.get_user(conn, principal.user_id)
    orgs = [_org_entry(st.get_organization(conn, org_id), role) for org_id, role in principal.orgs]
    return {
        "kind": "user",
        "user": {"id": user.id, "email": user.email, "name": user.display_name},
        "orgs": orgs,
    }
