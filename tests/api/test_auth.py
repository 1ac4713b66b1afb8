"""Authentication by API key (401) and authorization by organization, scope and key kind (403)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest_twisted
from api_support import assert_problem, make, serving
from twisted.internet.defer import fail, succeed

from kokoa import store as st
from kokoa.api import ApiKeyAuthenticator, Authenticator, Principal
from kokoa.api._problems import forbidden, unauthorized


@pytest_twisted.ensureDeferred
async def test_a_missing_key_is_401_with_a_bearer_challenge(api):
    for response in (
        await api.get("/orgs", key=False),
        await api.get("/orgs", key=False, headers={"Authorization": "Basic YWRhOnNlY3JldA=="}),
        await api.post("/orgs", {"name": "Acme"}, key=False),
    ):
        assert_problem(response, 401)
        assert response.header("www-authenticate").startswith("Bearer")
    assert await api.store.run(st.list_organizations) == st.Page((), None)


@pytest_twisted.ensureDeferred
async def test_a_wrong_expired_or_revoked_key_is_401(api):
    past = datetime.now(UTC) - timedelta(hours=2)
    _, expired = await api.store.run(
        st.create_api_key, "old", org_id=None, scopes=["*"], expires_at=past + timedelta(hours=1), now=past
    )
    revoked_key, revoked = await api.store.run(st.create_api_key, "gone", org_id=None, scopes=["*"])
    await api.store.run(st.revoke_api_key, revoked_key.id)
    wrong = api.key[:-4] + ("aaaa" if not api.key.endswith("aaaa") else "bbbb")
    for key in (wrong, "kk_nothing_at_all", "not-a-key", "kk_abcdefgh_\u00e9t\u00e9", expired, revoked):
        response = await api.get("/orgs", key=key)
        assert_problem(response, 401)
        assert 'error="invalid_token"' in response.header("www-authenticate")
    assert (await api.get("/orgs", headers={"Authorization": "Bearer "}, key=False)).status == 401
    twice = await api.client.get(
        api.base + "/api/v1/orgs", headers={"Authorization": [f"Bearer {api.key}", "Bearer kk_other_x"]}
    )
    await twice.content()
    assert twice.code == 401  # one credential, or none: never a choice between two


@pytest_twisted.ensureDeferred
async def test_an_organization_key_acts_only_in_its_organization(api):
    acme = (await make(api, "/orgs", {"name": "Acme"}))["id"]
    other = (await make(api, "/orgs", {"name": "Other"}))["id"]
    other_site = (await make(api, f"/orgs/{other}/sites", {"name": "theirs"}))["site"]["id"]
    key = await api.create_key(acme, ["write"])

    assert (await make(api, f"/orgs/{acme}/sites", {"name": "ours"}, key=key))["site"]["org_id"] == acme
    assert [o["id"] for o in (await api.get("/orgs", key=key)).json["items"]] == [acme]
    for response in (
        await api.get(f"/orgs/{other}", key=key),
        await api.get(f"/orgs/{other}/sites", key=key),
        await api.get(f"/orgs/{other}/sites/{other_site}", key=key),
        await api.post(f"/orgs/{other}/sites", {"name": "x"}, key=key),
        await api.delete(f"/orgs/{other}/sites/{other_site}", key=key),
        await api.get("/orgs/org_doesnotexist/sites", key=key),
        # instance-wide things
        await api.post("/orgs", {"name": "Mine"}, key=key),
        await api.delete(f"/orgs/{acme}", key=key),
        await api.get("/users", key=key),
        await api.post("/users", {"email": "x@example.com"}, key=key),
        await api.get("/audit", key=key),
        await api.get("/status", key=key),
    ):
        assert_problem(response, 403)
    # Another organization's object named under one's own organization is simply not found.
    assert_problem(await api.get(f"/orgs/{acme}/sites/{other_site}", key=key), 404)
    assert (await api.get(f"/orgs/{other}/sites/{other_site}")).status == 200  # untouched


@pytest_twisted.ensureDeferred
async def test_a_read_only_key_may_only_read(api):
    org = (await make(api, "/orgs", {"name": "Acme"}))["id"]
    site = (await make(api, f"/orgs/{org}/sites", {"name": "home"}))["site"]["id"]
    reader = await api.create_key(org, ["read"])
    assert (await api.get(f"/orgs/{org}/sites/{site}", key=reader)).status == 200
    assert (await api.get(f"/orgs/{org}/audit", key=reader)).status == 200
    for response in (
        await api.post(f"/orgs/{org}/sites", {"name": "x"}, key=reader),
        await api.patch(f"/orgs/{org}/sites/{site}", {"name": "y"}, key=reader),
        await api.delete(f"/orgs/{org}/sites/{site}", key=reader),
        await api.post(f"/orgs/{org}/api-keys", {"name": "escalate", "scopes": ["*"]}, key=reader),
    ):
        assert "read-only" in assert_problem(response, 403)["detail"]
    instance_reader = await api.create_key(None, ["read"])
    assert (await api.get("/users", key=instance_reader)).status == 200
    assert_problem(await api.post("/orgs", {"name": "x"}, key=instance_reader), 403)
    # A key with no scope this API knows may do nothing.
    nothing = await api.create_key(org, ["sites:read"])
    assert_problem(await api.get(f"/orgs/{org}/sites", key=nothing), 403)
    assert (await api.get(f"/orgs/{org}/sites")).json["items"][0]["name"] == "home"


class FakeSessions:
    """Stands in for the console's session authenticator (issue 5): a cookie, and a CSRF token on writes."""

    def authenticate(self, request):
        cookie = request.getCookie(b"kokoa_session")
        if cookie is None:
            return succeed(None)  # not this authenticator's credentials: try the next one
        if cookie != b"valid":
            return fail(unauthorized("the session has expired"))
        if request.method not in (b"GET", b"HEAD") and request.getHeader(b"x-csrf-token") != b"token":
            return fail(forbidden("a write needs the session's CSRF token"))
        return succeed(Principal("user:user_ada", None, can_read=True, can_write=True, kind="session"))


@pytest_twisted.ensureDeferred
async def test_authenticators_are_pluggable_for_sessions_to_come(api):
    assert isinstance(FakeSessions(), Authenticator)
    authenticators = [FakeSessions(), ApiKeyAuthenticator(api.store)]
    async with serving(
        api.store, api.key, authenticators=authenticators, status=None, port_available=None
    ) as other:
        session = {"Cookie": "kokoa_session=valid"}
        assert (await other.get("/orgs", key=False, headers=session)).status == 200
        assert_problem(await other.post("/orgs", {"name": "Acme"}, key=False, headers=session), 403)
        created = await other.post(
            "/orgs", {"name": "Acme"}, key=False, headers={**session, "X-CSRF-Token": "token"}
        )
        assert created.status == 201
        assert (await other.audit(created.json["id"]))[0]["actor"] == "user:user_ada"
        assert_problem(await other.get("/orgs", key=False, headers={"Cookie": "kokoa_session=old"}), 401)
        assert_problem(await other.get("/orgs", key=False), 401)
        assert (await other.get("/orgs")).status == 200  # API keys still work
        # Without a gateway: no status to show, and no port to refuse.
        assert_problem(await other.get("/status"), 503)
        tcp = {"name": "ssh", "kind": "tcp", "public_port": 22}
        assert (await other.post(f"/orgs/{created.json['id']}/resources", tcp)).status == 201
