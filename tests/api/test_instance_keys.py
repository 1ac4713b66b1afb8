"""``ApiKeyAuthenticator(store, instance_keys=False)``: the login host's API, where an instance-wide key
is refused (403, pointing to the --api listener) and organizations' keys (a member's too) work."""

from __future__ import annotations

import pytest_twisted
from api_support import assert_problem, make, serving

from kokoa.api import ApiKeyAuthenticator
from kokoa.api._auth import INSTANCE_KEY_REFUSAL


@pytest_twisted.ensureDeferred
async def test_without_instance_keys_an_instance_key_is_refused_and_an_organizations_key_works(api):
    org = (await make(api, "/orgs", {"name": "Acme"}))["id"]
    site = (await make(api, f"/orgs/{org}/sites", {"name": "home"}))["site"]["id"]
    roles = {r["name"]: r["id"] for r in (await api.get(f"/orgs/{org}/roles")).json["items"]}
    user = (await make(api, "/users", {"email": "ann@example.com"}))["id"]
    await make(api, f"/orgs/{org}/members", {"user_id": user, "role_id": roles["Admin"]})
    made = await make(api, f"/orgs/{org}/api-keys", {"name": "ann", "scopes": ["*"], "user_id": user})
    member_key = made["key"]
    org_key = await api.create_key(org, ["write"])
    instance_reader = await api.create_key(None, ["read"])

    login_host = [ApiKeyAuthenticator(api.store, instance_keys=False)]
    async with serving(
        api.store, api.key, authenticators=login_host, status=None, port_available=None
    ) as other:
        # an instance-wide key, valid as it is, is refused everywhere here, with the way to go
        for response in (
            await other.get("/orgs"),
            await other.get(f"/orgs/{org}/sites"),
            await other.post("/orgs", {"name": "Mine"}),
            await other.get("/users"),
            await other.get("/orgs", key=instance_reader),
        ):
            problem = assert_problem(response, 403)
            assert problem["detail"] == INSTANCE_KEY_REFUSAL and "--api listener" in problem["detail"]
        # an organization's key, and a member's, act in their organization as anywhere
        for key in (org_key, member_key):
            assert [o["id"] for o in (await other.get("/orgs", key=key)).json["items"]] == [org]
            assert (await other.get(f"/orgs/{org}/sites/{site}", key=key)).status == 200
        made = await other.post(f"/orgs/{org}/sites", {"name": "more"}, key=org_key)
        assert made.status == 201
        assert_problem(await other.post("/orgs", {"name": "Mine"}, key=org_key), 403)
        # unknown keys and no key stay 401
        assert_problem(await other.get("/orgs", key="kk_nothing_at_all"), 401)
        assert_problem(await other.get("/orgs", key=False), 401)
    assert [o["name"] for o in (await api.get("/orgs")).json["items"]] == ["Acme"]  # nothing else made
    # the default (the --api listener's) takes instance keys
    assert ApiKeyAuthenticator(api.store).instance_keys is True
    assert (await api.get("/users")).status == 200
