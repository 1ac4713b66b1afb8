"""Sites and resources written to the store by another process reach running gateways."""

from __future__ import annotations

import os
import secrets
import socket

import pytest

from kokoa import store as st

from .harness import Deployment, EchoTarget, free_port, wait_for
from .test_tcp_resources import echo_once

pytestmark = pytest.mark.e2e
POSTGRES = os.environ.get("KOKOA_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


def write(url: str, fn, *args, **kw):
    """One transaction against the gateway's database, from this (another) process."""
    engine, _ = st.open_engine(url, migrate=False)
    try:
        with engine.begin() as conn:
            return fn(conn, *args, **kw)
    finally:
        engine.dispose()


def add_tcp_resource(conn, org_id: str, site_id: str, port: int, target_port: int) -> str:
    resource = st.create_resource(conn, org_id, f"svc-{port}", "tcp", public_port=port)
    st.create_target(conn, resource.id, site_id, "127.0.0.1", target_port)
    return resource.id


def refused(port: int, host: str = "127.0.0.1") -> bool:
    try:
        socket.create_connection((host, port), timeout=5).close()
    except ConnectionRefusedError:
        return True
    return False


@pytest.fixture
def echo():
    target = EchoTarget()
    yield target
    target.close()


def test_a_site_and_resource_written_to_the_store_are_served_without_restart(tmp_path, echo):
    d = Deployment(tmp_path)
    try:
        d.start_gateway()
        url = st.database_url(d.data)
        org = write(url, st.create_organization, "Acme")
        site, secret = write(url, st.create_site, org.id, "home")
        port = free_port()
        resource_id = write(url, add_tcp_resource, org.id, site.id, port, echo.port)
        d.gateway.wait_log(f"tcp:{port} -> site {site.id!r}")

        d.sites[site.id] = secret
        d.start_edge(site.id, "tls")
        d.wait_tunnels(site.id, 2)
        assert echo_once(port) == b"hello kokoa"
        wait_for(lambda: write(url, st.get_site, site.id).online, "the site to show as online")

        write(url, st.update_resource, resource_id, enabled=False)
        wait_for(lambda: refused(port), "the disabled resource's listener to close")
        write(url, st.update_site, site.id, enabled=False)
        wait_for(lambda: d.tunnels(site.id) == 0, "the disabled site's edge to be disconnected")
        d.edges[0].wait_log("SITE_DISABLED")
    finally:
        d.stop()


@pytest.fixture
def postgres_database():
    try:
        import psycopg

        admin = psycopg.connect(POSTGRES, autocommit=True, connect_timeout=3)
    except Exception as e:  # any reason the server is unusable
        if os.environ.get("KOKOA_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"PostgreSQL is required (KOKOA_REQUIRE_POSTGRES=1) but not reachable: {e}")
        pytest.skip(f"PostgreSQL not reachable at {POSTGRES}: {e}")
    name = "kokoa_e2e_" + secrets.token_hex(6)
    admin.execute(f"CREATE DATABASE {name}")
    yield POSTGRES.rsplit("/", 1)[0] + "/" + name
    admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    admin.close()


def test_two_gateways_on_one_postgresql_see_each_others_changes(tmp_path, echo, postgres_database):
    gateways = []
    try:
        for n, interface in enumerate(("127.0.0.1", "127.0.0.2")):
            d = Deployment(tmp_path / f"gw{n}")
            d.root.mkdir()
            d.database = postgres_database
            d.extra_config = f'resource_interface = "{interface}"'
            if gateways:  # the store is initialized: share its admin key
                d.data.mkdir(mode=0o700)
                (d.data / "admin.key").write_text(gateways[0].admin_key)
            d.start_gateway()
            gateways.append(d)
        url = st.database_url(tmp_path, postgres_database)
        org = write(url, st.create_organization, "Acme")
        site, secret = write(url, st.create_site, org.id, "home")
        port = free_port()
        resource_id = write(url, add_tcp_resource, org.id, site.id, port, echo.port)
        for d in gateways:
            d.gateway.wait_log(f"tcp:{port}")
            d.sites[site.id] = secret
            d.start_edge(site.id, "tls", extra=["--connections", "1"])
            d.wait_tunnels(site.id, 1)
        for host in ("127.0.0.1", "127.0.0.2"):
            with socket.create_connection((host, port), timeout=10) as s:
                s.sendall(b"ping")
                assert s.recv(4) == b"ping"
        write(url, st.update_resource, resource_id, enabled=False)
        for host in ("127.0.0.1", "127.0.0.2"):
            # Within a second: LISTEN/NOTIFY, not the 2 s safety-net poll.
            wait_for(lambda host=host: refused(port, host), f"the listener on {host} to close", timeout=1.0)
    finally:
        for d in gateways:
            d.stop()


def test_rotating_a_site_secret_keeps_the_old_one_for_the_grace_period(tmp_path):
    d = Deployment(tmp_path)
    try:
        d.start_gateway()
        org = d.api("GET", "/orgs")["items"][0]["id"]
        made = d.api("POST", f"/orgs/{org}/sites", {"name": "home"})
        site, first = made["site"]["id"], made["secret"]
        second = d.api("POST", f"/orgs/{org}/sites/{site}/rotate-secret", {})["secret"]
        d.start_edge(site, "tls", secret=first, extra=["--connections", "1"])  # old: in its grace
        d.start_edge(site, "tls", secret=second, extra=["--connections", "1"])  # new
        d.wait_tunnels(site, 2)
        # A second rotation with no grace: the first secret had lost its grace already (one
        # previous secret is kept), the second loses it now; edges using either are cut off.
        third = d.api("POST", f"/orgs/{org}/sites/{site}/rotate-secret", {"grace_seconds": 0})["secret"]
        wait_for(lambda: d.tunnels(site) == 0, "edges with revoked secrets to be disconnected")
        d.edges[0].wait_log("the edge's secret is no longer valid")
        d.start_edge(site, "tls", secret=third, extra=["--connections", "1"])
        d.wait_tunnels(site, 1)
    finally:
        d.stop()
