"""Resources (HTTP, TCP, UDP) and their targets."""

from __future__ import annotations

from datetime import timedelta

import pytest
from store_support import NOW, count

from kokoa import store as st
from kokoa.store import _schema as s

pytestmark = pytest.mark.sans_io  # repository calls on a connection: no reactor involved


@pytest.fixture
def org(conn):
    return st.create_organization(conn, "Acme")


@pytest.fixture
def site(conn, org):
    return st.create_site(conn, org.id, "home")[0]


def test_http_resources(conn, org):
    web = st.create_resource(conn, org.id, "Web", "http", hostname="App.Example.COM.", now=NOW)
    assert web.id.startswith("res_")
    assert (web.kind, web.hostname, web.path_prefix, web.public_port, web.enabled) == (
        "http",
        "app.example.com",
        "/",
        None,
        True,
    )
    assert st.get_resource(conn, web.id) == web
    wild = st.create_resource(conn, org.id, "All", "http", hostname="*.bücher.de", path_prefix="/api/")
    assert (wild.hostname, wild.path_prefix) == ("*.xn--bcher-kva.de", "/api/")


def test_tcp_and_udp_resources(conn, org):
    ssh = st.create_resource(conn, org.id, "ssh", "tcp", public_port=2222)
    dns = st.create_resource(conn, org.id, "dns", "udp", public_port=53)
    assert (ssh.kind, ssh.public_port, ssh.hostname, ssh.path_prefix) == ("tcp", 2222, None, None)
    assert (dns.kind, dns.public_port) == ("udp", 53)


@pytest.mark.parametrize(
    ("kind", "kw", "field", "message"),
    [
        ("ftp", {}, "kind", "one of http, tcp, udp"),
        ("http", {}, "hostname", "required for HTTP"),
        ("http", {"hostname": "a.example.com", "public_port": 80}, "public_port", "only TCP and UDP"),
        ("http", {"hostname": "bad_host.example.com"}, "hostname", "not a valid hostname"),
        ("http", {"hostname": "10.0.0.1"}, "hostname", "IP address"),
        ("http", {"hostname": "a.*.example.com"}, "hostname", "whole first label"),
        ("http", {"hostname": "*.com"}, "hostname", "two labels"),
        ("http", {"hostname": "a.example.com", "path_prefix": "api"}, "path_prefix", "starting with '/'"),
        ("http", {"hostname": "a.example.com", "path_prefix": "/a/../b"}, "path_prefix", "normalized"),
        ("http", {"hostname": "a.example.com", "path_prefix": "/a?b"}, "path_prefix", "URL path characters"),
        ("tcp", {}, "public_port", "required for TCP"),
        ("udp", {}, "public_port", "required for UDP"),
        ("tcp", {"public_port": 0}, "public_port", "from 1 to 65535"),
        ("tcp", {"public_port": 65536}, "public_port", "from 1 to 65535"),
        ("tcp", {"public_port": "22"}, "public_port", "integer"),
        ("tcp", {"public_port": True}, "public_port", "integer"),
        ("tcp", {"public_port": 22, "hostname": "a.example.com"}, "hostname", "only HTTP"),
        ("udp", {"public_port": 22, "path_prefix": "/"}, "path_prefix", "only HTTP"),
        ("tcp", {"public_port": 22, "enabled": 1}, "enabled", "true or false"),
    ],
)
def test_bad_resources_are_refused(conn, org, kind, kw, field, message):
    with pytest.raises(st.Invalid) as e:
        st.create_resource(conn, org.id, "r", kind, **kw)
    assert e.value.field == field and message in e.value.message
    assert count(conn, s.resources) == 0


def test_hostname_and_path_prefix_are_unique_among_all_http_resources(conn, org):
    st.create_resource(conn, org.id, "a", "http", hostname="app.example.com")
    other = st.create_organization(conn, "Other")
    with pytest.raises(st.Conflict) as e:
        st.create_resource(conn, other.id, "b", "http", hostname="APP.example.com", enabled=False)
    assert e.value.field == "hostname"
    st.create_resource(conn, other.id, "b", "http", hostname="app.example.com", path_prefix="/b")


def test_public_ports_are_unique_among_enabled_resources_of_a_kind(conn, org):
    st.create_resource(conn, org.id, "ssh", "tcp", public_port=2222)
    with pytest.raises(st.Conflict) as e:
        st.create_resource(conn, org.id, "ssh2", "tcp", public_port=2222)
    assert e.value.field == "public_port"
    st.create_resource(conn, org.id, "udp", "udp", public_port=2222)  # another protocol
    spare = st.create_resource(conn, org.id, "spare", "tcp", public_port=2222, enabled=False)
    with pytest.raises(st.Conflict):
        st.update_resource(conn, spare.id, enabled=True)
    assert st.update_resource(conn, spare.id, public_port=2223, enabled=True).enabled


def test_resource_names_are_unique_per_organization(conn, org):
    st.create_resource(conn, org.id, "ssh", "tcp", public_port=22)
    with pytest.raises(st.Conflict) as e:
        st.create_resource(conn, org.id, "SSH", "tcp", public_port=23)
    assert e.value.field == "name"


def test_update_is_partial_and_checks_the_whole(conn, org):
    web = st.create_resource(conn, org.id, "web", "http", hostname="a.example.com", now=NOW)
    version = st.config_version(conn)
    assert st.update_resource(conn, web.id, now=NOW + timedelta(1)) == web
    assert st.config_version(conn) == version
    moved = st.update_resource(conn, web.id, path_prefix="/app", now=NOW + timedelta(1))
    assert (moved.hostname, moved.path_prefix, moved.updated_at) == (
        "a.example.com",
        "/app",
        NOW + timedelta(1),
    )
    assert st.config_version(conn) == version + 1
    with pytest.raises(st.Invalid) as e:
        st.update_resource(conn, web.id, public_port=80)
    assert e.value.field == "public_port"
    ssh = st.create_resource(conn, org.id, "ssh", "tcp", public_port=22)
    with pytest.raises(st.Invalid):
        st.update_resource(conn, ssh.id, hostname="a.example.com")
    st.create_resource(conn, org.id, "b", "http", hostname="b.example.com")
    with pytest.raises(st.Conflict):
        st.update_resource(conn, web.id, hostname="b.example.com", path_prefix="/")
    assert st.get_resource(conn, web.id) == moved


def test_list_and_delete_resources(conn, org, site):
    web = st.create_resource(conn, org.id, "web", "http", hostname="a.example.com", now=NOW)
    ssh = st.create_resource(conn, org.id, "ssh", "tcp", public_port=22, now=NOW + timedelta(seconds=1))
    other = st.create_organization(conn, "Other")
    st.create_resource(conn, other.id, "dns", "udp", public_port=53, now=NOW)
    assert [r.id for r in st.list_resources(conn, org_id=org.id).items] == [web.id, ssh.id]
    assert len(st.list_resources(conn).items) == 3
    assert [r.id for r in st.list_resources(conn, kind="tcp").items] == [ssh.id]
    with pytest.raises(st.Invalid):
        st.list_resources(conn, kind="ftp")
    st.create_target(conn, web.id, site.id, "10.0.0.1", 80)
    st.create_grant(conn, web.id, role_id=st.get_role_by_name(conn, org.id, st.MEMBER).id)
    st.create_rule(conn, web.id, "deny", 1, path="/admin*")
    st.delete_resource(conn, web.id)
    assert count(conn, s.targets) == count(conn, s.grants) == count(conn, s.rules) == 0
    with pytest.raises(st.NotFound):
        st.delete_resource(conn, web.id)


# -- targets -----------------------------------------------------------------------------------------


def test_targets_take_their_defaults_from_the_resource(conn, org, site):
    web = st.create_resource(conn, org.id, "web", "http", hostname="a.example.com")
    t = st.create_target(conn, web.id, site.id, "app.internal", 8080, now=NOW)
    assert t.id.startswith("tgt_")
    assert (t.scheme, t.weight, t.enabled, t.address) == ("http", 100, True, "app.internal:8080")
    assert t.health_check == st.HealthCheck(path="/")
    assert st.get_target(conn, t.id) == t
    ssh = st.create_resource(conn, org.id, "ssh", "tcp", public_port=22)
    t2 = st.create_target(conn, ssh.id, site.id, "[fd00::1]", 22, weight=0)
    assert (t2.host, t2.address, t2.scheme, t2.weight) == ("fd00::1", "[fd00::1]:22", "tcp", 0)
    assert t2.health_check.path is None
    t3 = st.create_target(conn, ssh.id, site.id, "my_service", 22)  # container names may have '_'
    assert t3.host == "my_service"


def test_health_check_settings(conn, org, site):
    web = st.create_resource(conn, org.id, "web", "http", hostname="a.example.com")
    check = st.HealthCheck(enabled=True, path="/healthz", interval=10, timeout=2, healthy_threshold=1)
    t = st.create_target(conn, web.id, site.id, "10.0.0.1", 443, scheme="https", health_check=check)
    assert t.health_check == check and t.scheme == "https"
    t2 = st.create_target(
        conn, web.id, site.id, "10.0.0.2", 80, health_check={"enabled": True, "interval": 60}
    )
    assert t2.health_check == st.HealthCheck(enabled=True, path="/", interval=60)


@pytest.mark.parametrize(
    ("kw", "field", "message"),
    [
        ({"scheme": "tcp"}, "scheme", "one of http, https"),
        ({"port": 0}, "port", "from 1 to 65535"),
        ({"host": "999.0.0.1"}, "host", "not a valid IP"),
        ({"host": "::g"}, "host", "not a valid IP"),
        ({"host": ""}, "host", "non-empty"),
        ({"host": "a b"}, "host", "not a valid hostname"),
        ({"weight": 1001}, "weight", "from 0 to 1000"),
        ({"weight": -1}, "weight", "from 0 to 1000"),
        ({"health_check": {"interval": 0}}, "health_check.interval", "from 1 to 3600"),
        (
            {"health_check": {"timeout": 20, "interval": 10}},
            "health_check.timeout",
            "longer than the interval",
        ),
        ({"health_check": {"path": "nope"}}, "health_check.path", "starting with '/'"),
        ({"health_check": {"healthy_threshold": 0}}, "health_check.healthy_threshold", "from 1 to 100"),
        ({"health_check": {"unhealthy_threshold": 101}}, "health_check.unhealthy_threshold", "from 1 to 100"),
        ({"health_check": {"enabled": "yes"}}, "health_check.enabled", "true or false"),
        ({"health_check": {"colour": "red"}}, "health_check", "unknown setting"),
        ({"health_check": 5}, "health_check", "HealthCheck"),
    ],
)
def test_bad_targets_are_refused(conn, org, site, kw, field, message):
    web = st.create_resource(conn, org.id, "web", "http", hostname="a.example.com")
    args = {"host": "10.0.0.1", "port": 80} | kw
    with pytest.raises(st.Invalid) as e:
        st.create_target(conn, web.id, site.id, args.pop("host"), args.pop("port"), **args)
    assert e.value.field == field and message in e.value.message
    assert count(conn, s.targets) == 0


def test_tcp_targets_have_no_health_check_path(conn, org, site):
    ssh = st.create_resource(conn, org.id, "ssh", "tcp", public_port=22)
    with pytest.raises(st.Invalid) as e:
        st.create_target(conn, ssh.id, site.id, "10.0.0.1", 22, health_check={"path": "/"})
    assert e.value.field == "health_check.path"
    with pytest.raises(st.Invalid) as e:
        st.create_target(conn, ssh.id, site.id, "10.0.0.1", 22, scheme="udp")
    assert e.value.field == "scheme"


def test_target_references_are_checked(conn, org, site):
    web = st.create_resource(conn, org.id, "web", "http", hostname="a.example.com")
    other = st.create_organization(conn, "Other")
    foreign, _ = st.create_site(conn, other.id, "theirs")
    with pytest.raises(st.Invalid) as e:
        st.create_target(conn, web.id, foreign.id, "10.0.0.1", 80)
    assert e.value.field == "site_id"
    with pytest.raises(st.NotFound) as nf:
        st.create_target(conn, web.id, "site_nope", "10.0.0.1", 80)
    assert nf.value.kind == "site"
    with pytest.raises(st.NotFound) as nf:
        st.create_target(conn, "res_nope", site.id, "10.0.0.1", 80)
    assert nf.value.kind == "resource"


def test_a_target_is_unique_per_resource_site_host_and_port(conn, org, site):
    web = st.create_resource(conn, org.id, "web", "http", hostname="a.example.com")
    st.create_target(conn, web.id, site.id, "10.0.0.1", 80)
    with pytest.raises(st.Conflict) as e:
        st.create_target(conn, web.id, site.id, "10.0.0.1", 80, scheme="https")
    assert e.value.field == "port"
    second = st.create_target(conn, web.id, site.id, "10.0.0.1", 81)
    with pytest.raises(st.Conflict):
        st.update_target(conn, second.id, port=80)


def test_update_list_and_delete_targets(conn, org, site):
    web = st.create_resource(conn, org.id, "web", "http", hostname="a.example.com")
    office, _ = st.create_site(conn, org.id, "office")
    t = st.create_target(conn, web.id, site.id, "10.0.0.1", 80, now=NOW)
    version = st.config_version(conn)
    assert st.update_target(conn, t.id) == t and st.config_version(conn) == version
    moved = st.update_target(conn, t.id, site_id=office.id, weight=5, health_check={"enabled": True}, now=NOW)
    assert (moved.site_id, moved.weight, moved.health_check.enabled, moved.port) == (office.id, 5, True, 80)
    assert st.config_version(conn) == version + 1
    with pytest.raises(st.Invalid):
        st.update_target(conn, t.id, port=-1)
    st.create_target(conn, web.id, site.id, "10.0.0.2", 80)
    assert len(st.list_targets(conn, resource_id=web.id).items) == 2
    assert [x.id for x in st.list_targets(conn, site_id=office.id).items] == [t.id]
    st.delete_target(conn, t.id)
    assert len(st.list_targets(conn).items) == 1
    with pytest.raises(st.NotFound):
        st.get_target(conn, t.id)
