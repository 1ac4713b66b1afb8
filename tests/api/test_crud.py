"""Create, read, update, delete and list every entity through the API, with the audit entries each write
leaves (on SQLite and PostgreSQL)."""

from __future__ import annotations

import pytest_twisted
from api_support import count, make, org_with_site_and_resource

from kokoa import store as st


@pytest_twisted.ensureDeferred
async def test_organizations_crud_with_audit(api):
    org = await make(api, "/orgs", {"name": "Acme"})
    assert set(org) == {"id", "name", "created_at", "updated_at"} and org["name"] == "Acme"
    assert (await api.get(f"/orgs/{org['id']}")).json == org

    renamed = await api.patch(f"/orgs/{org['id']}", {"name": "Acme Corp"})
    assert renamed.status == 200 and renamed.json["name"] == "Acme Corp"
    listed = await api.get("/orgs")
    assert listed.json == {"items": [renamed.json], "next_cursor": None}

    assert (await api.delete(f"/orgs/{org['id']}")).status == 204
    assert (await api.get(f"/orgs/{org['id']}")).status == 404

    entries = await api.audit(None, org_id=org["id"])  # the log outlives the organization
    assert [e["action"] for e in entries] == [
        "organization.delete",
        "organization.update",
        "organization.create",
    ]
    deleted, updated, created = entries
    prefix = api.key.split("_")[0] + "_" + api.key.split("_")[1]
    assert {e["actor"] for e in entries} == {f"key:{prefix}"}
    assert {e["source_address"] for e in entries} == {"127.0.0.1"}
    assert {(e["object_kind"], e["object_id"]) for e in entries} == {("organization", org["id"])}
    assert created["before"] is None and created["after"]["name"] == "Acme"
    assert updated["before"]["name"] == "Acme" and updated["after"]["name"] == "Acme Corp"
    assert deleted["before"]["name"] == "Acme Corp" and deleted["after"] is None


@pytest_twisted.ensureDeferred
async def test_lists_are_paginated(api):
    ids = [(await make(api, "/orgs", {"name": f"org {i}"}))["id"] for i in range(5)]
    seen, cursor, pages = [], None, 0
    while True:
        response = await api.get("/orgs?limit=2" + (f"&cursor={cursor}" if cursor else ""))
        assert response.status == 200
        seen += [o["id"] for o in response.json["items"]]
        pages += 1
        cursor = response.json["next_cursor"]
        if cursor is None:
            break
    assert seen == ids and pages == 3


@pytest_twisted.ensureDeferred
async def test_users_never_show_a_password_and_are_instance_wide(api):
    user = await make(
        api, "/users", {"email": "Ada@Example.com", "password": "correct horse", "display_name": "Ada"}
    )
    assert user["email"] == "ada@example.com" and user["has_password"] is True
    assert "password" not in user and "password_hash" not in user
    got = await api.get(f"/users/{user['id']}")
    assert got.json == user and b"argon2" not in got.raw

    changed = await api.patch(
        f"/users/{user['id']}", {"password": None, "status": "disabled", "display_name": None}
    )
    assert changed.status == 200
    assert (changed.json["has_password"], changed.json["status"], changed.json["display_name"]) == (
        False,
        "disabled",
        None,
    )
    again = await api.patch(f"/users/{user['id']}", {"password": "another secret"})
    assert again.json["has_password"] is True
    assert (await api.get("/users?limit=10")).json["items"] == [again.json]

    entries = await api.audit(object_id=user["id"])
    assert [e["action"] for e in entries] == ["user.update", "user.update", "user.create"]
    assert all(e["org_id"] is None for e in entries)
    assert b"correct horse" not in str(entries).encode() and "argon2" not in str(entries)

    assert (await api.delete(f"/users/{user['id']}")).status == 204
    assert (await api.get(f"/users/{user['id']}")).status == 404


@pytest_twisted.ensureDeferred
async def test_roles_and_members(api):
    org = (await make(api, "/orgs", {"name": "Acme"}))["id"]
    roles = (await api.get(f"/orgs/{org}/roles")).json["items"]
    builtin = {r["name"]: r for r in roles}
    assert set(builtin) == {"Owner", "Admin", "Member"} and all(r["builtin"] for r in roles)

    ops = await make(api, f"/orgs/{org}/roles", {"name": "Ops", "description": "runs things"})
    assert ops["builtin"] is False and ops["org_id"] == org
    ops = (await api.patch(f"/orgs/{org}/roles/{ops['id']}", {"description": "runs everything"})).json
    assert (await api.get(f"/orgs/{org}/roles/{ops['id']}")).json == ops

    ada = await make(api, "/users", {"email": "ada@example.com"})
    bob = await make(api, "/users", {"email": "bob@example.com"})
    owner = await make(api, f"/orgs/{org}/members", {"user_id": ada["id"], "role_id": builtin["Owner"]["id"]})
    assert (owner["user_id"], owner["role_name"]) == (ada["id"], "Owner")
    member = await make(api, f"/orgs/{org}/members", {"user_id": bob["id"], "role_id": ops["id"]})
    assert member["role_name"] == "Ops"
    assert (await api.get(f"/orgs/{org}/members/{bob['id']}")).json == member
    assert [m["user_id"] for m in (await api.get(f"/orgs/{org}/members")).json["items"]] == [
        ada["id"],
        bob["id"],
    ]

    # The role is held: it cannot be deleted, nor the last Owner demoted or removed.
    held = await api.delete(f"/orgs/{org}/roles/{ops['id']}")
    assert held.status == 409 and "id" in held.fields
    last_owner = await api.patch(f"/orgs/{org}/members/{ada['id']}", {"role_id": ops["id"]})
    assert last_owner.status == 409 and "role_id" in last_owner.fields
    assert (await api.delete(f"/orgs/{org}/members/{ada['id']}")).status == 409
    builtin_delete = await api.delete(f"/orgs/{org}/roles/{builtin['Member']['id']}")
    assert builtin_delete.status == 422

    moved = await api.patch(f"/orgs/{org}/members/{bob['id']}", {"role_id": builtin["Member"]["id"]})
    assert moved.status == 200 and moved.json["role_name"] == "Member"
    assert (await api.delete(f"/orgs/{org}/roles/{ops['id']}")).status == 204
    assert (await api.delete(f"/orgs/{org}/members/{bob['id']}")).status == 204
    assert (await api.get(f"/orgs/{org}/members/{bob['id']}")).status == 404

    actions = [e["action"] for e in await api.audit(org)]
    assert actions == [
        "membership.delete",
        "role.delete",
        "membership.update",
        "membership.create",
        "membership.create",
        "role.update",
        "role.create",
        "organization.create",
    ]


@pytest_twisted.ensureDeferred
async def test_site_secrets_are_shown_once(api):
    org = (await make(api, "/orgs", {"name": "Acme"}))["id"]
    created = await make(api, f"/orgs/{org}/sites", {"name": "home"})
    site, secret = created["site"], created["secret"]
    assert site["name"] == "home" and site["enabled"] is True and site["online"] is False
    assert len(secret) >= 32

    got = await api.get(f"/orgs/{org}/sites/{site['id']}")
    assert got.json == site and secret.encode() not in got.raw
    listed = await api.get(f"/orgs/{org}/sites")
    assert listed.json["items"] == [site] and secret.encode() not in listed.raw

    rotated = await api.post(f"/orgs/{org}/sites/{site['id']}/rotate-secret", {"grace_seconds": 60})
    assert rotated.status == 201 and rotated.json["secret"] != secret
    assert rotated.json["site"]["previous_secret_expires_at"] is not None
    no_body = await api.post(f"/orgs/{org}/sites/{site['id']}/rotate-secret")
    assert no_body.status == 201
    credentials = await api.store.run(st.authenticate_site, site["id"], no_body.json["secret"])
    assert credentials is not None

    disabled = await api.patch(f"/orgs/{org}/sites/{site['id']}", {"enabled": False, "name": "Home"})
    assert (disabled.json["enabled"], disabled.json["name"]) == (False, "Home")

    entries = await api.audit(org, action="site.*")
    assert [e["action"] for e in entries] == [
        "site.update",
        "site.rotate_secret",
        "site.rotate_secret",
        "site.create",
    ]
    for secret_shown in (secret, rotated.json["secret"], no_body.json["secret"]):
        assert secret_shown not in str(entries)
    assert entries[0]["before"]["enabled"] is True and entries[0]["after"]["enabled"] is False

    assert (await api.delete(f"/orgs/{org}/sites/{site['id']}")).status == 204
    assert (await api.get(f"/orgs/{org}/sites/{site['id']}")).status == 404


@pytest_twisted.ensureDeferred
async def test_resources_and_targets(api):
    org, site, http = await org_with_site_and_resource(api)
    resource = (await api.get(f"/orgs/{org}/resources/{http}")).json
    assert (resource["kind"], resource["hostname"], resource["path_prefix"], resource["public_port"]) == (
        "http",
        "wiki.acme.example",
        "/",
        None,
    )
    ssh = await make(api, f"/orgs/{org}/resources", {"name": "ssh", "kind": "tcp", "public_port": 2222})
    assert ssh["public_port"] == 2222 and ssh["hostname"] is None
    tcp_only = await api.get(f"/orgs/{org}/resources?kind=tcp")
    assert [r["id"] for r in tcp_only.json["items"]] == [ssh["id"]]
    moved = await api.patch(f"/orgs/{org}/resources/{ssh['id']}", {"public_port": 2223, "name": "SSH"})
    assert (moved.json["public_port"], moved.json["name"]) == (2223, "SSH")

    base = f"/orgs/{org}/resources/{http}/targets"
    target = await make(
        api, base, {"site_id": site, "host": "10.0.0.5", "port": 8080, "health_check": {"enabled": True}}
    )
    assert (target["scheme"], target["weight"], target["health_check"]["path"]) == ("http", 100, "/")
    assert target["health_check"]["enabled"] is True
    changed = await api.patch(f"{base}/{target['id']}", {"weight": 0, "health_check": {"interval": 10}})
    assert changed.json["weight"] == 0
    assert (changed.json["health_check"]["interval"], changed.json["health_check"]["enabled"]) == (10, True)
    assert (await api.get(f"{base}/{target['id']}")).json == changed.json
    assert (await api.get(base)).json["items"] == [changed.json]
    assert (await api.delete(f"{base}/{target['id']}")).status == 204
    assert (await api.get(f"{base}/{target['id']}")).status == 404

    assert (await api.delete(f"/orgs/{org}/resources/{ssh['id']}")).status == 204
    assert [r["id"] for r in (await api.get(f"/orgs/{org}/resources")).json["items"]] == [http]
    kinds = [(e["action"], e["object_kind"]) for e in await api.audit(org, object_kind="target")]
    assert kinds == [("target.delete", "target"), ("target.update", "target"), ("target.create", "target")]


@pytest_twisted.ensureDeferred
async def test_grants_and_rules(api):
    org, _, resource = await org_with_site_and_resource(api)
    member_role = next(
        r for r in (await api.get(f"/orgs/{org}/roles")).json["items"] if r["name"] == "Member"
    )
    user = await make(api, "/users", {"email": "ada@example.com"})
    await make(api, f"/orgs/{org}/members", {"user_id": user["id"], "role_id": member_role["id"]})

    grants = f"/orgs/{org}/resources/{resource}/grants"
    to_role = await make(api, grants, {"role_id": member_role["id"]})
    to_user = await make(api, grants, {"user_id": user["id"]})
    assert (to_role["role_id"], to_role["user_id"], to_user["user_id"]) == (
        member_role["id"],
        None,
        user["id"],
    )
    assert (await api.get(f"{grants}/{to_user['id']}")).json == to_user
    assert [g["id"] for g in (await api.get(grants)).json["items"]] == [to_role["id"], to_user["id"]]
    assert (await api.delete(f"{grants}/{to_role['id']}")).status == 204
    assert [g["id"] for g in (await api.get(grants)).json["items"]] == [to_user["id"]]

    rules = f"/orgs/{org}/resources/{resource}/rules"
    late = await make(api, rules, {"priority": 20, "action": "deny"})
    early = await make(api, rules, {"priority": 10, "action": "allow", "cidr": "10.0.0.0/8", "method": "get"})
    middle = await make(api, rules, {"priority": 15, "action": "bypass", "path": "/public/*"})
    assert early["method"] == "GET"
    first = await api.get(f"{rules}?limit=2")
    assert [r["priority"] for r in first.json["items"]] == [10, 15] and first.json["next_cursor"]
    second = await api.get(f"{rules}?limit=2&cursor={first.json['next_cursor']}")
    assert [r["id"] for r in second.json["items"]] == [late["id"]] and second.json["next_cursor"] is None

    cleared = await api.patch(f"{rules}/{early['id']}", {"cidr": None, "enabled": False})
    assert (cleared.json["cidr"], cleared.json["enabled"]) == (None, False)
    assert (await api.get(f"{rules}/{early['id']}")).json == cleared.json
    assert (await api.delete(f"{rules}/{middle['id']}")).status == 204
    assert (await api.get(f"{rules}/{middle['id']}")).status == 404
    actions = [e["action"] for e in await api.audit(org, action="rule.*")]
    assert actions == ["rule.delete", "rule.update", "rule.create", "rule.create", "rule.create"]


@pytest_twisted.ensureDeferred
async def test_api_keys_are_shown_once_and_work(api):
    org = (await make(api, "/orgs", {"name": "Acme"}))["id"]
    created = await make(api, f"/orgs/{org}/api-keys", {"name": "ci", "scopes": ["write"]})
    key, secret = created["api_key"], created["key"]
    assert secret.startswith(key["prefix"] + "_") and key["org_id"] == org and key["scopes"] == ["write"]

    # The new key works, in its organization.
    site = await make(api, f"/orgs/{org}/sites", {"name": "home"}, key=secret)
    entries = await api.audit(org, object_id=site["site"]["id"])
    assert entries[0]["actor"] == f"key:{key['prefix']}"

    got = await api.get(f"/orgs/{org}/api-keys/{key['id']}")
    assert got.json["id"] == key["id"] and got.json["last_used_at"] is not None
    listed = await api.get(f"/orgs/{org}/api-keys")
    assert [k["id"] for k in listed.json["items"]] == [key["id"]]
    assert secret.encode() not in got.raw + listed.raw
    assert secret not in str(await api.audit(org))

    assert (await api.delete(f"/orgs/{org}/api-keys/{key['id']}")).status == 204
    assert (await api.get(f"/orgs/{org}/sites", key=secret)).status == 401
    assert await count(api, "api_keys") == 1  # the instance key only


@pytest_twisted.ensureDeferred
async def test_audit_filters(api):
    org = (await make(api, "/orgs", {"name": "Acme"}))["id"]
    for name in ("a", "b", "c"):
        await make(api, f"/orgs/{org}/sites", {"name": name})
    everything = await api.audit(org)
    assert [e["action"] for e in everything] == ["site.create"] * 3 + ["organization.create"]
    newest = everything[0]
    assert await api.audit(org, action="organization.create") == everything[3:]
    assert await api.audit(org, object_id=newest["object_id"]) == [newest]
    assert await api.audit(org, since=newest["at"].replace("+00:00", "Z")) == [newest]
    assert await api.audit(org, until=newest["at"].replace("+", "%2B")) == everything[1:]
    assert await api.audit(org, actor="key:nobody") == []
    page = await api.get(f"/orgs/{org}/audit?limit=3")
    rest = await api.get(f"/orgs/{org}/audit?cursor={page.json['next_cursor']}")
    assert page.json["items"] + rest.json["items"] == everything
    # The instance-wide log has every organization's entries, filterable by organization.
    assert (await api.audit(None, org_id=org)) == everything


@pytest_twisted.ensureDeferred
async def test_status_and_openapi(api):
    api.status = {"sites": {"site_x": {"online": True}}, "resources": []}
    response = await api.get("/status")
    assert response.status == 200 and response.json == api.status
    document = await api.get("/openapi.json", key=False)
    assert document.status == 200 and document.json["openapi"] == "3.1.0"
