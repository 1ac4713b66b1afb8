"""Share links, members' sessions, password-reset links and the access log through the API (on SQLite
and PostgreSQL), with the audit entries each write leaves and a 4xx for each bad input."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest_twisted
from api_support import assert_problem, count, make, org_with_site_and_resource

from kokoa import store as st
from kokoa.api import _schemas
from kokoa.store import _share_links

DAY = timedelta(days=1)


async def member(api, org: str, email: str) -> str:
    """A new user, made a Member of ``org``: their id."""
    user = await make(api, "/users", {"email": email})
    roles = (await api.get(f"/orgs/{org}/roles")).json["items"]
    role = next(r["id"] for r in roles if r["name"] == "Member")
    await make(api, f"/orgs/{org}/members", {"user_id": user["id"], "role_id": role})
    return user["id"]


def test_the_share_link_limit_is_the_stores():
    assert _schemas.MAX_SHARE_LINK_USES == _share_links.MAX_SHARE_LINK_USES


# -- share links -------------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_share_links_crud_with_audit(api):
    org, _, resource = await org_with_site_and_resource(api)
    links = f"/orgs/{org}/resources/{resource}/share-links"
    made = await make(api, links, {"name": "guests"})
    link, token = made["share_link"], made["token"]
    assert set(made) == {"share_link", "token"} and token.startswith(link["prefix"] + "_")
    assert link["prefix"].startswith("kks_") and link["resource_id"] == resource
    assert (link["name"], link["uses"], link["max_uses"], link["expires_at"], link["revoked_at"]) == (
        "guests",
        0,
        None,
        None,
        None,
    )
    assert link["created_by"] == "key:" + api.key[:11]
    assert (await api.get(f"{links}/{link['id']}")).json == link
    assert (await api.get(links)).json == {"items": [link], "next_cursor": None}
    assert await api.store.run(st.redeem_share_link, token, count_use=False) is not None

    revoked = await api.post(f"{links}/{link['id']}/revoke")
    assert revoked.status == 200 and revoked.json["revoked_at"] is not None
    assert await api.store.run(st.redeem_share_link, token, count_use=False) is None
    again = await api.post(f"{links}/{link['id']}/revoke")
    assert again.json == revoked.json

    assert (await api.delete(f"{links}/{link['id']}")).status == 204
    assert_problem(await api.get(f"{links}/{link['id']}"), 404)
    assert_problem(await api.delete(f"{links}/{link['id']}"), 404)
    assert (await api.get(links)).json["items"] == []

    entries = await api.audit(org, object_kind="share_link")
    assert [e["action"] for e in entries] == [
        "share_link.delete",
        "share_link.revoke",
        "share_link.revoke",
        "share_link.create",
    ]
    assert entries[-1]["after"] == link and entries[0]["before"]["revoked_at"] is not None
    audit = await api.get(f"/orgs/{org}/audit")
    assert token not in audit.raw.decode() and token[13:] not in audit.raw.decode()


@pytest_twisted.ensureDeferred
async def test_share_links_with_an_expiry_and_a_number_of_uses(api):
    org, _, resource = await org_with_site_and_resource(api)
    expires = (datetime.now(UTC) + DAY).replace(microsecond=0)
    made = await make(
        api,
        f"/orgs/{org}/resources/{resource}/share-links",
        {"name": "once", "expires_at": expires.isoformat(), "max_uses": 1},
    )
    link = made["share_link"]
    assert datetime.fromisoformat(link["expires_at"]) == expires and link["max_uses"] == 1
    assert await api.store.run(st.redeem_share_link, made["token"], count_use=True) is not None
    assert await api.store.run(st.redeem_share_link, made["token"], count_use=True) is None
    got = await api.get(f"/orgs/{org}/resources/{resource}/share-links/{link['id']}")
    assert got.json["uses"] == 1
    nulls = await make(
        api,
        f"/orgs/{org}/resources/{resource}/share-links",
        {"name": "open", "expires_at": None, "max_uses": None},
    )
    assert (nulls["share_link"]["expires_at"], nulls["share_link"]["max_uses"]) == (None, None)


@pytest_twisted.ensureDeferred
async def test_bad_share_links_are_refused(api):
    org, _, resource = await org_with_site_and_resource(api)
    links = f"/orgs/{org}/resources/{resource}/share-links"
    past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    for body, field in (
        ({"name": "x", "colour": "red"}, "colour"),
        ({"name": 5}, "name"),
        ({}, "name"),
        ({"name": ""}, "name"),
        ({"name": "x", "max_uses": 0}, "max_uses"),
        ({"name": "x", "max_uses": "3"}, "max_uses"),
        ({"name": "x", "max_uses": 1.5}, "max_uses"),
        ({"name": "x", "max_uses": _schemas.MAX_SHARE_LINK_USES + 1}, "max_uses"),
        ({"name": "x", "expires_at": past}, "expires_at"),
        ({"name": "x", "expires_at": "tomorrow"}, "expires_at"),
        ({"name": "x", "expires_at": "2030-01-01T00:00:00"}, "expires_at"),  # no offset
    ):
        response = await api.post(links, body)
        assert_problem(response, 422)
        assert list(response.fields) == [field], (body, response.json)
    ssh = await make(api, f"/orgs/{org}/resources", {"name": "ssh", "kind": "tcp", "public_port": 2222})
    response = await api.post(f"/orgs/{org}/resources/{ssh['id']}/share-links", {"name": "x"})
    assert assert_problem(response, 422) and list(response.fields) == ["resource_id"]
    assert_problem(await api.post(links, data=b"{", headers={"Content-Type": "application/json"}), 400)

    # Another organization's resource, or link, is not found here.
    other_org, _, other_resource = await org_with_site_and_resource(api, "Other")
    theirs = f"/orgs/{other_org}/resources/{other_resource}/share-links"
    assert_problem(await api.post(f"/orgs/{org}/resources/{other_resource}/share-links", {"name": "x"}), 404)
    assert_problem(await api.get(f"/orgs/{org}/resources/{other_resource}/share-links"), 404)
    their_link = (await make(api, theirs, {"name": "theirs"}))["share_link"]["id"]
    for response in (
        await api.get(f"{links}/{their_link}"),
        await api.post(f"{links}/{their_link}/revoke"),
        await api.delete(f"{links}/{their_link}"),
        await api.get(f"{links}/share_nope"),
        await api.get(f"/orgs/org_nope/resources/{resource}/share-links"),
    ):
        assert_problem(response, 404)
    assert await count(api, "share_links") == 1
    key = await api.create_key(org, ["write"])
    assert_problem(await api.get(theirs, key=key), 403)
    read_only = await api.create_key(org, ["read"])
    assert_problem(await api.post(links, {"name": "x"}, key=read_only), 403)
    assert (await api.get(links, key=read_only)).status == 200


# -- sessions ----------------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_members_sessions_are_listed_and_revoked(api):
    org, _, _ = await org_with_site_and_resource(api)
    ann = await member(api, org, "ann@example.com")
    bob = await member(api, org, "bob@example.com")
    sessions = []
    for _ in range(3):
        session, _ = await api.store.run(st.create_session, method="password", user_id=ann, lifetime=DAY)
        sessions.append(session.id)
    bobs, _ = await api.store.run(st.create_session, method="password", user_id=bob, lifetime=DAY)

    listed = await api.get(f"/orgs/{org}/users/{ann}/sessions?limit=2")
    assert listed.status == 200 and [s["id"] for s in listed.json["items"]] == sessions[:2]
    first = listed.json["items"][0]
    assert (first["user_id"], first["method"], first["kind"], first["revoked_at"]) == (
        ann,
        "password",
        "login",
        None,
    )
    rest = await api.get(f"/orgs/{org}/users/{ann}/sessions?cursor={listed.json['next_cursor']}")
    assert [s["id"] for s in rest.json["items"]] == sessions[2:]

    assert (await api.delete(f"/orgs/{org}/users/{ann}/sessions/{sessions[0]}")).status == 204
    assert (await api.store.run(st.get_session, sessions[0])).revoked_at is not None
    assert_problem(await api.delete(f"/orgs/{org}/users/{ann}/sessions/{bobs.id}"), 404)  # Bob's
    assert_problem(await api.delete(f"/orgs/{org}/users/{ann}/sessions/ses_nope"), 404)
    listed = await api.get(f"/orgs/{org}/users/{ann}/sessions")
    assert [s["id"] for s in listed.json["items"]] == sessions[1:]

    revoked = await api.post(f"/orgs/{org}/users/{ann}/sessions/revoke")
    assert revoked.status == 200 and revoked.json == {"revoked": 2}
    assert (await api.get(f"/orgs/{org}/users/{ann}/sessions")).json["items"] == []
    assert (await api.post(f"/orgs/{org}/users/{ann}/sessions/revoke")).json == {"revoked": 0}
    assert [s["id"] for s in (await api.get(f"/orgs/{org}/users/{bob}/sessions")).json["items"]] == [bobs.id]

    entries = await api.audit(org)
    assert [(e["action"], e["object_id"]) for e in entries[:3]] == [
        ("user.revoke_sessions", ann),
        ("user.revoke_sessions", ann),
        ("session.revoke", sessions[0]),
    ]
    assert entries[1]["after"] == {"revoked": 2} and entries[2]["after"]["revoked_at"] is not None


@pytest_twisted.ensureDeferred
async def test_sessions_of_non_members_are_not_found(api):
    org, _, _ = await org_with_site_and_resource(api)
    other, _, _ = await org_with_site_and_resource(api, "Other")
    carol = await member(api, other, "carol@example.com")
    session, _ = await api.store.run(st.create_session, method="password", user_id=carol, lifetime=DAY)
    for response in (
        await api.get(f"/orgs/{org}/users/{carol}/sessions"),
        await api.post(f"/orgs/{org}/users/{carol}/sessions/revoke"),
        await api.delete(f"/orgs/{org}/users/{carol}/sessions/{session.id}"),
        await api.post(f"/orgs/{org}/users/{carol}/password-reset"),
        await api.get(f"/orgs/{org}/users/user_nope/sessions"),
        await api.get(f"/orgs/org_nope/users/{carol}/sessions"),
    ):
        assert_problem(response, 404)
    assert (await api.store.run(st.get_session, session.id)).revoked_at is None
    response = await api.get(f"/orgs/{org}/users/{carol}/sessions?limit=0")
    assert assert_problem(response, 422) and list(response.fields) == ["limit"]


# -- password-reset links ----------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_a_password_reset_link_is_made_once_and_never_audited(api):
    org, _, _ = await org_with_site_and_resource(api)
    ann = await member(api, org, "ann@example.com")
    before = datetime.now(UTC)
    response = await api.post(f"/orgs/{org}/users/{ann}/password-reset")
    assert response.status == 200
    token, expires = response.json["token"], datetime.fromisoformat(response.json["expires_at"])
    assert response.json["path"] == f"/reset?token={token}"
    assert before + timedelta(minutes=59) < expires <= datetime.now(UTC) + timedelta(hours=1)
    user = await api.store.run(st.peek_user_token, token, "reset")
    assert user is not None and user.id == ann
    assert await api.store.run(st.peek_user_token, token, "invite") is None

    second = (await api.post(f"/orgs/{org}/users/{ann}/password-reset")).json["token"]
    assert await api.store.run(st.peek_user_token, token, "reset") is None  # replaced
    assert (await api.store.run(st.redeem_user_token, second, "reset")).id == ann

    entries = await api.audit(org, action="user.password_reset")
    assert len(entries) == 2 and entries[0]["object_id"] == ann
    assert entries[0]["after"]["purpose"] == "reset"
    raw = (await api.get(f"/orgs/{org}/audit")).raw.decode()
    assert token not in raw and second not in raw


@pytest_twisted.ensureDeferred
async def test_an_organization_key_resets_only_its_own_users(api):
    org, _, _ = await org_with_site_and_resource(api)
    other, _, _ = await org_with_site_and_resource(api, "Other")
    ann = await member(api, org, "ann@example.com")
    both = await member(api, org, "both@example.com")
    roles = (await api.get(f"/orgs/{other}/roles")).json["items"]
    await make(api, f"/orgs/{other}/members", {"user_id": both, "role_id": roles[0]["id"]})
    key = await api.create_key(org, ["write"])

    assert (await api.post(f"/orgs/{org}/users/{ann}/password-reset", key=key)).status == 200
    refused = await api.post(f"/orgs/{org}/users/{both}/password-reset", key=key)
    assert "other organizations" in assert_problem(refused, 403)["detail"]
    assert (await api.post(f"/orgs/{org}/users/{both}/password-reset")).status == 200  # instance key
    assert await count(api, "user_tokens") == 2
    assert_problem(await api.post(f"/orgs/{other}/users/{both}/password-reset", key=key), 403)


# -- the access log ----------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_the_access_log_is_filtered_and_paged(api):
    org, _, resource = await org_with_site_and_resource(api)
    other, _, _ = await org_with_site_and_resource(api, "Other")
    now = datetime.now(UTC).replace(microsecond=0)

    def row(**kw):
        return {"at": now, "kind": "request", "outcome": "allow", "reason": "grant", "org_id": org} | kw

    await api.store.run(
        st.append_access,
        [
            row(resource_id=resource, user_id="user_1", subject="ann@example.com", count=4),
            row(outcome="deny", reason="rule", client_address="10.0.0.1", at=now + timedelta(minutes=1)),
            row(kind="signin", outcome="failure", reason="password", at=now + timedelta(minutes=2)),
            row(org_id=other, reason="theirs"),
        ],
    )

    async def reasons(path: str, **kw) -> list[str]:
        response = await api.get(path, **kw)
        assert response.status == 200, response.json
        return [e["reason"] for e in response.json["items"]]

    log = f"/orgs/{org}/access-log"
    assert await reasons(log) == ["password", "rule", "grant"]
    assert await reasons(f"{log}?resource_id={resource}") == ["grant"]
    assert await reasons(f"{log}?user_id=user_1") == await reasons(f"{log}?subject=ann@example.com")
    assert await reasons(f"{log}?kind=signin") == await reasons(f"{log}?outcome=failure") == ["password"]
    assert await reasons(f"{log}?client_address=10.0.0.1") == ["rule"]
    since = (now + timedelta(minutes=1)).isoformat().replace("+00:00", "Z")
    assert await reasons(f"{log}?since={since}") == ["password", "rule"]
    assert await reasons(f"{log}?until={since}") == ["grant"]
    entry = (await api.get(f"{log}?resource_id={resource}")).json["items"][0]
    assert (entry["count"], entry["user_id"], entry["org_id"], entry["kind"]) == (4, "user_1", org, "request")

    page = await api.get(f"{log}?limit=2")
    assert len(page.json["items"]) == 2 and page.json["next_cursor"]
    assert await reasons(f"{log}?limit=2&cursor={page.json['next_cursor']}") == ["grant"]

    assert await reasons("/access-log") == ["theirs", "password", "rule", "grant"]
    assert await reasons(f"/access-log?org_id={other}") == ["theirs"]
    key = await api.create_key(org, ["read"])
    assert await reasons(log, key=key) == ["password", "rule", "grant"]
    assert_problem(await api.get("/access-log", key=key), 403)
    assert_problem(await api.get(f"/orgs/{other}/access-log", key=key), 403)
    assert_problem(await api.get("/orgs/org_nope/access-log"), 404)
    for query, field in (
        ("kind=visit", "kind"),
        ("outcome=maybe", "outcome"),
        ("since=yesterday", "since"),
        ("limit=0", "limit"),
        ("cursor=eA", "cursor"),
        ("subject=" + "s" * 255, "subject"),
    ):
        response = await api.get(f"{log}?{query}")
        assert assert_problem(response, 422) and list(response.fields) == [field], query


# -- invitations -------------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_an_invitation_makes_an_invited_member_and_a_one_time_link(api):
    org, _, _ = await org_with_site_and_resource(api)
    roles = {r["name"]: r["id"] for r in (await api.get(f"/orgs/{org}/roles")).json["items"]}
    response = await api.post(
        f"/orgs/{org}/invitations", {"email": "Newbie@Example.com", "role_id": roles["Admin"]}
    )
    assert response.status == 201
    invited, token = response.json["user"], response.json["token"]
    assert (invited["email"], invited["status"], invited["has_password"]) == (
        "newbie@example.com",
        "invited",
        False,
    )
    assert response.json["path"] == f"/invite?token={token}"
    membership = (await api.get(f"/orgs/{org}/members/{invited['id']}")).json
    assert membership["role_name"] == "Admin"
    assert (await api.store.run(st.peek_user_token, token, "invite")).id == invited["id"]
    entries = await api.audit(org, action="user.invite")
    assert entries[0]["after"]["email"] == "newbie@example.com" and token not in str(entries)
    # someone with an account already, a role of another organization, bad input: refused, nothing made
    again = await api.post(
        f"/orgs/{org}/invitations", {"email": "newbie@example.com", "role_id": roles["Admin"]}
    )
    assert_problem(again, 409)
    other = (await api.post("/orgs", {"name": "Other"})).json["id"]
    foreign = {r["name"]: r["id"] for r in (await api.get(f"/orgs/{other}/roles")).json["items"]}["Member"]
    wrong = await api.post(f"/orgs/{org}/invitations", {"email": "x@example.com", "role_id": foreign})
    assert_problem(wrong, 422)
    assert_problem(
        await api.post(f"/orgs/{org}/invitations", {"email": "not an email", "role_id": roles["Member"]}), 422
    )
    assert_problem(await api.post(f"/orgs/{org}/invitations", {"email": "y@example.com"}), 422)
    users = (await api.get("/users")).json["items"]
    assert {u["email"] for u in users} & {"x@example.com", "y@example.com"} == set()
