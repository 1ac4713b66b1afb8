"""HTTP resources from the store, as the data plane sees them (``StoreSiteDirectory``): their settings,
their targets that may take requests, health checks, the targets each site's edge may reach, and
changes arriving without a restart (on SQLite and PostgreSQL)."""

from __future__ import annotations

import importlib.util
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest_twisted
from twisted.internet import reactor

from kokoa import store as st
from kokoa.gateway import Site, StaticSiteDirectory, TCPResource
from kokoa.gateway._model import HealthCheck, HTTPResource, HTTPTarget
from kokoa.gateway._store_directory import CombinedDirectory, StoreSiteDirectory
from kokoa.secrets import hash_secret

# The store tests' database fixtures (``url``: SQLite, and PostgreSQL when a server answers), loaded
# by path as tests/api/conftest.py does, so tests/store/conftest.py stays their one definition.
_spec = importlib.util.spec_from_file_location(
    "kokoa_tests_store_fixtures_gateway", Path(__file__).parent.parent / "store" / "conftest.py"
)
assert _spec is not None and _spec.loader is not None
_store_fixtures = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_store_fixtures)
_postgres_server = _store_fixtures._postgres_server
postgres = _store_fixtures.postgres
backend = _store_fixtures.backend
url = _store_fixtures.url


@dataclass
class Served:
    store: st.Store
    directory: StoreSiteDirectory
    org: str
    home: str
    office: str
    changes: list[None]

    async def run(self, fn, *args, **kw):
        result = await self.store.run(fn, *args, **kw)
        await self.directory.refresh()  # (the subscription would too; this waits for it)
        return result


@pytest_twisted.async_yield_fixture
async def served(url: str) -> AsyncIterator[Served]:
    store = await st.Store.open(url, reactor)
    directory = StoreSiteDirectory(reactor, poll_interval=60)
    try:

        def setup(conn):
            org = st.create_organization(conn, "Acme")
            home, _ = st.create_site(conn, org.id, "home")
            office, _ = st.create_site(conn, org.id, "office")
            return org.id, home.id, office.id

        org, home, office = await store.run(setup)
        await directory.attach(store)
        changes: list[None] = []
        directory.subscribe(lambda: changes.append(None))
        yield Served(store, directory, org, home, office, changes)
    finally:
        directory.detach()
        await store.close()


def _resource(served: Served, name: str, **kw):
    return lambda conn: st.create_resource(
        conn, served.org, name, "http", hostname=f"{name}.example.com", **kw
    )


@pytest_twisted.ensureDeferred
async def test_http_resources_carry_their_settings_and_usable_targets(served):
    s = served
    app = await s.run(
        _resource(s, "app", path_prefix="/api", lb_method="least_connections", sticky=True, hsts_max_age=600)
    )

    def targets(conn):
        plain = st.create_target(
            conn,
            app.id,
            s.home,
            "10.0.0.1",
            8080,
            weight=3,
            health_check={"enabled": True, "path": "/healthz", "interval": 10, "expected_status": "200,204"},
        )
        secure = st.create_target(
            conn,
            app.id,
            s.office,
            "fd00::2",
            8443,
            scheme="https",
            tls_verify=False,
            tls_server_name="app.lan",
        )
        st.create_target(conn, app.id, s.home, "10.0.0.3", 80, enabled=False)  # left out: disabled
        st.create_target(conn, app.id, s.home, "10.0.0.4", 80, weight=0)  # left out: draining
        return plain, secure

    plain, secure = await s.run(targets)
    (found,) = s.directory.http_resources()
    assert found == HTTPResource(
        app.id,
        "app",
        "app.example.com",
        "/api",
        (
            HTTPTarget(
                plain.id,
                s.home,
                "10.0.0.1",
                8080,
                scheme="http",
                weight=3,
                health_check=HealthCheck(
                    path="/healthz",
                    interval=10,
                    timeout=5,
                    healthy_threshold=2,
                    unhealthy_threshold=3,
                    expected_status="200,204",
                ),
            ),
            HTTPTarget(
                secure.id,
                s.office,
                "fd00::2",
                8443,
                scheme="https",
                weight=100,
                tls_verify=False,
                tls_server_name="app.lan",
                health_check=None,  # not enabled
            ),
        ),
        enabled=True,
        lb_method="least_connections",
        sticky=True,
        redirect_https=False,
        hsts_max_age=600,
        org_id=app.org_id,
    )
    assert found.targets[0].health_check.kind == "http"
    assert s.directory.tcp_resources() == []  # HTTP resources are not TCP listeners


@pytest_twisted.ensureDeferred
async def test_resources_without_targets_and_disabled_ones_are_listed(served):
    s = served
    empty = await s.run(_resource(s, "empty"))
    off = await s.run(_resource(s, "off", enabled=False))
    await s.run(st.create_target, off.id, s.home, "10.0.0.9", 80)
    listed = {r.name: r for r in s.directory.http_resources()}
    assert listed["empty"] == HTTPResource(
        empty.id, "empty", "empty.example.com", "/", (), org_id=empty.org_id
    )
    assert listed["off"].enabled is False and len(listed["off"].targets) == 1


@pytest_twisted.ensureDeferred
async def test_edges_may_reach_the_http_targets_of_enabled_resources(served):
    s = served
    app = await s.run(_resource(s, "app"))
    off = await s.run(_resource(s, "off", enabled=False))
    ssh = await s.run(lambda conn: st.create_resource(conn, s.org, "ssh", "tcp", public_port=2222))

    def targets(conn):
        st.create_target(conn, app.id, s.home, "10.0.0.1", 8080)
        st.create_target(conn, app.id, s.home, "fd00::1", 443, scheme="https")
        st.create_target(conn, app.id, s.office, "app.office.lan", 80)
        st.create_target(conn, app.id, s.home, "10.0.0.2", 80, enabled=False)
        st.create_target(conn, app.id, s.home, "10.0.0.3", 80, weight=0)
        st.create_target(conn, off.id, s.home, "10.0.0.4", 80)
        st.create_target(conn, ssh.id, s.home, "10.0.0.5", 22)

    await s.run(targets)
    assert s.directory.targets_for(s.home) == {"10.0.0.1:8080", "[fd00::1]:443", "10.0.0.5:22"}
    assert s.directory.targets_for(s.office) == {"app.office.lan:80"}
    assert s.directory.targets_for("site_nope") == set()

    await s.run(st.update_resource, off.id, enabled=True)
    assert "10.0.0.4:80" in s.directory.targets_for(s.home)
    await s.run(st.update_resource, app.id, enabled=False)
    assert s.directory.targets_for(s.office) == set()


@pytest_twisted.ensureDeferred
async def test_changes_arrive_without_a_restart(served):
    s = served
    app = await s.run(_resource(s, "app"))
    target = await s.run(st.create_target, app.id, s.home, "10.0.0.1", 443, scheme="https")
    before = len(s.changes)
    await s.run(st.update_resource, app.id, redirect_https=True, lb_method="least_connections")
    await s.run(st.update_target, target.id, tls_server_name="app.lan", health_check={"enabled": True})
    assert len(s.changes) == before + 2
    (found,) = s.directory.http_resources()
    assert (found.redirect_https, found.lb_method) == (True, "least_connections")
    (t,) = found.targets
    assert t.tls_server_name == "app.lan" and t.health_check == HealthCheck(path="/", interval=30)
    await s.run(st.delete_target, target.id)
    assert s.directory.http_resources()[0].targets == ()
    await s.run(st.delete_resource, app.id)
    assert s.directory.http_resources() == []


@pytest_twisted.ensureDeferred
async def test_the_combined_directory_adds_the_stores_http_resources(served):
    s = served
    app = await s.run(_resource(s, "app"))
    await s.run(st.create_target, app.id, s.home, "10.0.0.1", 8080)
    file_directory = StaticSiteDirectory(
        [Site("lab", "Lab", hash_secret("secret"))], [TCPResource("ssh", "lab", "tcp:2222", "127.0.0.1", 22)]
    )
    combined = CombinedDirectory(file_directory, s.directory)
    assert [r.id for r in combined.http_resources()] == [app.id]
    assert combined.targets_for(s.home) == {"10.0.0.1:8080"}
    assert combined.targets_for("lab") == {"127.0.0.1:22"}
