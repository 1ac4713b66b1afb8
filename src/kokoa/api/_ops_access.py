"""Handlers: resources' share links, members' sessions and password-reset links, and the access log.

Each write runs in one ``store.run`` transaction together with its audit entry; tokens (a share
link's, a reset link's) are in the response that makes them and never in the audit log. A user is
reached through an organization only while a member of it (else 404).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import quote

from sqlalchemy import Connection

from kokoa import store as st
from kokoa.store import jsonable

from ._call import NO_CONTENT, Call, Reply, created, ok, page
from ._jsonschema import parse_datetime
from ._ops_config import resource_in
from ._problems import forbidden

#: How long a password-reset link made through the API stays valid.
RESET_LIFETIME = timedelta(hours=1)
#: Where the gateway's login host takes a reset token.
RESET_PATH = "/reset"

# -- share links -------------------------------------------------------------------------------------


def link_in(conn: Connection, org_id: str, resource_id: str, link_id: str) -> st.ShareLink:
    resource_in(conn, org_id, resource_id)
    link = st.get_share_link(conn, link_id)
    if link.resource_id != resource_id:
        raise st.NotFound("share link", link_id)
    return link


async def list_share_links(call: Call) -> Reply:
    org_id, resource_id = call.params["org"], call.params["resource"]

    def tx(conn: Connection) -> st.Page[st.ShareLink]:
        resource_in(conn, org_id, resource_id)
        return st.list_share_links(conn, resource_id=resource_id, **call.query)

    return ok(page(await call.store.run(tx)))


async def create_share_link(call: Call) -> Reply:
    org_id, resource_id, body = call.params["org"], call.params["resource"], call.body
    assert call.principal is not None
    actor = call.principal.actor
    expires = body.get("expires_at")
    expires_at = None if expires is None else parse_datetime(expires)

    def tx(conn: Connection) -> tuple[st.ShareLink, str]:
        resource_in(conn, org_id, resource_id)
        link, token = st.create_share_link(
            conn,
            resource_id,
            body["name"],
            expires_at=expires_at,
            max_uses=body.get("max_uses"),
            created_by=actor,
        )
        call.audit(conn, "share_link.create", org_id=org_id, kind="share_link", object_id=link.id, after=link)
        return link, token

    link, token = await call.store.run(tx)
    return created(
        {"share_link": jsonable(link), "token": token},
        f"/orgs/{org_id}/resources/{resource_id}/share-links/{link.id}",
    )


async def get_share_link(call: Call) -> Reply:
    p = call.params
    return ok(jsonable(await call.store.run(link_in, p["org"], p["resource"], p["link"])))


async def revoke_share_link(call: Call) -> Reply:
    org_id, resource_id, link_id = call.params["org"], call.params["resource"], call.params["link"]

    def tx(conn: Connection) -> st.ShareLink:
        before = link_in(conn, org_id, resource_id, link_id)
        after = st.revoke_share_link(conn, link_id)
        call.audit(
            conn,
            "share_link.revoke",
            org_id=org_id,
            kind="share_link",
            object_id=link_id,
            before=before,
            after=after,
        )
        return after

    return ok(jsonable(await call.store.run(tx)))


async def delete_share_link(call: Call) -> Reply:
    org_id, resource_id, link_id = call.params["org"], call.params["resource"], call.params["link"]

    def tx(conn: Connection) -> None:
        before = link_in(conn, org_id, resource_id, link_id)
        st.delete_share_link(conn, link_id)
        call.audit(
            conn, "share_link.delete", org_id=org_id, kind="share_link", object_id=link_id, before=before
        )

    await call.store.run(tx)
    return NO_CONTENT


# -- members' sessions and password-reset links ------------------------------------------------------


def member_in(conn: Connection, org_id: str, user_id: str) -> None:
    """NotFound unless the user is a member of the organization."""
    st.get_organization(conn, org_id)
    try:
        st.get_membership(conn, org_id, user_id)
    except st.NotFound:
        raise st.NotFound("member", user_id) from None


def session_of(conn: Connection, org_id: str, user_id: str, session_id: str) -> st.Session:
    member_in(conn, org_id, user_id)
    session = st.get_session(conn, session_id)
    if session.user_id != user_id:
        raise st.NotFound("session", session_id)
    return session


async def list_user_sessions(call: Call) -> Reply:
    org_id, user_id = call.params["org"], call.params["user"]

    def tx(conn: Connection) -> st.Page[st.Session]:
        member_in(conn, org_id, user_id)
        return st.list_sessions(conn, user_id=user_id, **call.query)

    return ok(page(await call.store.run(tx)))


async def revoke_user_sessions(call: Call) -> Reply:
    org_id, user_id = call.params["org"], call.params["user"]

    def tx(conn: Connection) -> int:
        member_in(conn, org_id, user_id)
        revoked = st.revoke_user_sessions(conn, user_id)
        call.audit(
            conn,
            "user.revoke_sessions",
            org_id=org_id,
            kind="user",
            object_id=user_id,
            after={"revoked": revoked},
        )
        return revoked

    return ok({"revoked": await call.store.run(tx)})


async def revoke_user_session(call: Call) -> Reply:
    org_id, user_id, session_id = call.params["org"], call.params["user"], call.params["session"]

    def tx(conn: Connection) -> None:
        before = session_of(conn, org_id, user_id, session_id)
        after = st.revoke_session(conn, session_id)
        call.audit(
            conn,
            "session.revoke",
            org_id=org_id,
            kind="session",
            object_id=session_id,
            before=before,
            after=after,
        )

    await call.store.run(tx)
    return NO_CONTENT


async def create_password_reset(call: Call) -> Reply:
    """A one-time link to set a new password (the token is shown once, never audited).

    An organization's key may do this only for users who belong to no other organization: the link
    signs in to the user's every membership."""
    org_id, user_id = call.params["org"], call.params["user"]
    principal = call.principal
    assert principal is not None
    now = datetime.now(UTC)
    expires_at = now + RESET_LIFETIME

    def tx(conn: Connection) -> str:
        member_in(conn, org_id, user_id)
        if not principal.instance_wide and any(
            m.org_id != org_id for m in st.list_user_memberships(conn, user_id)
        ):
            raise forbidden("the user belongs to other organizations too: ask the instance's operator")
        token = st.create_user_token(
            conn, user_id, "reset", lifetime=RESET_LIFETIME, created_by=principal.actor, now=now
        )
        call.audit(
            conn,
            "user.password_reset",
            org_id=org_id,
            kind="user",
            object_id=user_id,
            after={"purpose": "reset", "expires_at": expires_at},
        )
        return token

    token = await call.store.run(tx)
    return ok(
        {"token": token, "expires_at": expires_at.isoformat(), "path": f"{RESET_PATH}?token={quote(token)}"}
    )


#: How long an invitation link stays valid.
INVITE_LIFETIME = timedelta(days=7)


async def create_invitation(call: Call) -> Reply:
    """Invite someone by email: a user (status ``invited``, no password) who is a member with the given
    role at once, and a one-time link (shown once) to choose a password. Someone who already has an
    account is added with ``POST .../members`` instead (409 here)."""
    org_id, body = call.params["org"], call.body
    principal = call.principal
    assert principal is not None
    now = datetime.now(UTC)
    expires_at = now + INVITE_LIFETIME

    def tx(conn: Connection) -> tuple[st.User, str]:
        st.get_organization(conn, org_id)
        role = st.get_role(conn, body["role_id"])
        if role.org_id != org_id:
            raise st.Invalid("role_id", "is not a role of this organization")
        user = st.create_user(conn, body["email"], status="invited", now=now)
        st.add_member(conn, org_id, user.id, role.id, now=now)
        token = st.create_user_token(
            conn, user.id, "invite", lifetime=INVITE_LIFETIME, created_by=principal.actor, now=now
        )
        call.audit(
            conn,
            "user.invite",
            org_id=org_id,
            kind="user",
            object_id=user.id,
            after={"email": user.email, "role": role.name, "expires_at": expires_at},
        )
        return user, token

    user, token = await call.store.run(tx)
    reply = {
        "user": jsonable(user),
        "token": token,
        "expires_at": expires_at.isoformat(),
        "path": f"/invite?token={quote(token)}",
    }
    return created(reply, f"/orgs/{org_id}/members/{user.id}")


# -- the access log ----------------------------------------------------------------------------------


async def list_org_access_log(call: Call) -> Reply:
    org_id = call.params["org"]

    def tx(conn: Connection) -> st.Page[st.AccessEntry]:
        st.get_organization(conn, org_id)
        return st.list_access(conn, org_id=org_id, **call.query)

    return ok(page(await call.store.run(tx)))


async def list_access_log(call: Call) -> Reply:
    return ok(page(await call.store.run(st.list_access, **call.query)))
