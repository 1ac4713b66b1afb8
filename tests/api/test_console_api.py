"""The console's routes through a real listener (SQLite and PostgreSQL): ``/me``, ``/me/resources``, what a
Member may not read, the organization's overview and live events, the rule tester and access stats.

Console users are signed in as the login host signs them in: a login session in the store, its token in
the ``__Host-kokoa_login`` cookie, and the ``__Host-kokoa_csrf`` cookie echoed in ``X-CSRF-Token`` on
writes (:class:`kokoa.api.SessionCookieAuthenticator` over a real identity cache).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import pytest_twisted
from api_support import Api, assert_problem, make, org_with_site_and_resource, serving
from twisted.internet import reactor

from kokoa import store as st
from kokoa.api import ApiKeyAuthenticator, SessionCookieAuthenticator
from kokoa.auth._identities import IdentityCache

CSRF = "c" * 43


@dataclass
class User:
    """A console user: their id, and the cookies of their login session."""

    id: str
    email: str
    token: str

    def headers(self, *, csrf: bool = True) -> dict[str, str]:
        headers = {"Cookie": f"__Host-kokoa_login={self.token}; __Host-kokoa_csrf={CSRF}"}
        if csrf:
            headers["X-CSRF-Token"] = CSRF
        return headers


class Console(Api):
    """The API with console sign-ins (the login host's authenticators) besides the instance key."""

    async def as_user(self, user: User, method: str, path: str, body: Any = None, **kw: Any) -> Any:
        headers = {**user.headers(csrf=kw.pop("csrf", True)), **kw.pop("headers", {})}
        return await self.request(method, path, body, key=False, headers=headers, **kw)

    async def user(self, org: str, email: str, role: str, *, name: str | None = None) -> User:
        """A new user with ``role`` in ``org`` (made through the API), signed in."""
        made = await make(self, "/users", {"email": email, "display_name": name})
        roles = {r["name"]: r["id"] for r in (await self.get(f"/orgs/{org}/roles")).json["items"]}
        await make(self, f"/orgs/{org}/members", {"user_id": made["id"], "role_id": roles[role]})
        return await self.sign_in(made["id"], email)

    async def sign_in(self, user_id: str, email: str) -> User:
        _, token = await self.store.run(
            st.create_session, method="password", lifetime=timedelta(hours=1), user_id=user_id
        )
        return User(user_id, email, token)

    async def join(self, org: str, user: User, role: str) -> None:
        roles = {r["name"]: r["id"] for r in (await self.get(f"/orgs/{org}/roles")).json["items"]}
        await make(self, f"/orgs/{org}/members", {"user_id": user.id, "role_id": roles[role]})


@pytest_twisted.async_yield_fixture
async def console(url: str) -> AsyncIterator[Console]:
    store = await st.Store.open(url, reactor)
    try:
        _, key = await store.run(st.create_api_key, "admin", org_id=None, scopes=["*"])
        gate = SimpleNamespace(
            identities=IdentityCache(lambda: store, reactor.seconds, idle_timeout=3600),
            login_origin="https://login.test",
        )
        authenticators = [ApiKeyAuthenticator(store), SessionCookieAuthenticator(store, gate)]
        async with serving(store, key, authenticators=authenticators) as served:
            served.__class__ = Console
            yield served  # type: ignore[misc]
    finally:
        await store.close()


# -- /me ------------------------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_me_for_a_user_lists_their_organizations_and_roles(console):
    acme, _, _ = await org_with_site_and_resource(console, "Acme")
    globex, _, _ = await org_with_site_and_resource(console, "Globex")
    await org_with_site_and_resource(console, "Initech")  # not theirs
    ann = await console.user(acme, "ann@example.com", "Admin", name="Ann A.")
    await console.join(globex, ann, "Member")
    me = await console.as_user(ann, "GET", "/me")
    assert me.status == 200, me.raw
    assert me.json == {
        "kind": "user",
        "user": {"id": ann.id, "email": "ann@example.com", "name": "Ann A."},
        "orgs": [
            {"id": acme, "name": "Acme", "role": "Admin"},
            {"id": globex, "name": "Globex", "role": "Member"},
        ],
    }
    # a GET needs no CSRF header; an unknown or missing cookie is a 401
    assert (await console.as_user(ann, "GET", "/me", csrf=False)).status == 200
    stranger = User("usr_x", "x@example.com", "not-a-token")
    assert_problem(await console.as_user(stranger, "GET", "/me"), 401)
    assert_problem(await console.get("/me", key=False), 401)


@pytest_twisted.ensureDeferred
async def test_me_for_api_keys(console):
    acme, _, _ = await org_with_site_and_resource(console, "Acme")
    globex, _, _ = await org_with_site_and_resource(console, "Globex")
    org_key = await console.create_key(acme, ["read"])
    me = await console.get("/me", key=org_key)
    assert me.status == 200
    assert me.json == {
        "kind": "api_key",
        "key": {"prefix": org_key[:11], "org_id": acme},
        "orgs": [{"id": acme, "name": "Acme", "role": None}],
    }
    instance = (await console.get("/me")).json
    assert instance["kind"] == "api_key" and instance["key"]["org_id"] is None
    assert [o["id"] for o in instance["orgs"]] == [acme, globex]
