"""HTTP resources' settings (load balancing, stickiness, redirect to HTTPS, HSTS) and their targets'
(TLS verification and server name, the statuses a health check expects)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as some
from sqlalchemy import insert
from store_support import NOW, count

from kokoa import store as st
from kokoa.store import _schema as s
from kokoa.store import _validate as v
from kokoa.store._common import atomic

pytestmark = pytest.mark.sans_io  # repository calls on a connection: no reactor involved


@pytest.fixture
def org(conn):
    return st.create_organization(conn, "Acme")


@pytest.fixture
def site(conn, org):
    return st.create_site(conn, org.id, "home")[0]


@pytest.fixture
def web(conn, org):
    return st.create_resource(conn, org.id, "web", "http", hostname="a.example.com")


def _http_settings(resource: st.Resource) -> tuple:
    return (resource.lb_method, resource.sticky, resource.redirect_https, resource.hsts_max_age)


# -- resources ---------------------------------------------------------------------------------------


def test_http_resources_have_defaults_and_take_every_setting(conn, org, web):
    assert _http_settings(web) == ("round_robin", False, False, 0)
    app = st.create_resource(
        conn,
        org.id,
        "app",
        "http",
        hostname="app.example.com",
        lb_method="least_connections",
        sticky=True,
        redirect_https=True,
        hsts_max_age=st.MAX_HSTS_MAX_AGE,
    )
    assert _http_settings(app) == ("least_connections", True, True, 63_072_000)
    assert st.get_resource(conn, app.id) == app


def test_updates_of_http_settings_are_partial_and_counted(conn, web):
    version = st.config_version(conn)
    assert st.update_resource(conn, web.id, lb_method="round_robin") == web
    assert st.config_version(conn) == version  # nothing changed: no new version
    sticky = st.update_resource(conn, web.id, sticky=True, hsts_max_age=3600, now=NOW)
    assert _http_settings(sticky) == ("round_robin", True, False, 3600)
    assert st.config_version(conn) == version + 1
    again = st.update_resource(conn, web.id, redirect_https=True, name="Web")
    assert _http_settings(again) == ("round_robin", True, True, 3600) and again.name == "Web"


@pytest.mark.parametrize(
    ("kw", "field", "message"),
    [
        ({"lb_method": "random"}, "lb_method", "one of round_robin, least_connections"),
        ({"lb_method": None}, "lb_method", "one of round_robin"),
        ({"sticky": "yes"}, "sticky", "true or false"),
        ({"sticky": 1}, "sticky", "true or false"),
        ({"redirect_https": None}, "redirect_https", "true or false"),
        ({"hsts_max_age": -1}, "hsts_max_age", "from 0 to 63072000"),
        ({"hsts_max_age": 63_072_001}, "hsts_max_age", "from 0 to 63072000"),
        ({"hsts_max_age": True}, "hsts_max_age", "integer"),
        ({"hsts_max_age": "3600"}, "hsts_max_age", "integer"),
    ],
)
def test_bad_http_settings_are_refused(conn, org, kw, field, message):
    with pytest.raises(st.Invalid) as e:
        st.create_resource(conn, org.id, "r", "http", hostname="r.example.com", **kw)
    assert e.value.field == field and message in e.value.message
    assert count(conn, s.resources) == 0


@pytest.mark.parametrize(
    ("kw", "field", "message"),
    [
        ({"lb_method": "least_connections"}, "lb_method", "only HTTP resources"),
        ({"sticky": True}, "sticky", "only HTTP resources"),
        ({"redirect_https": True}, "redirect_https", "only HTTP resources"),
        ({"hsts_max_age": 60}, "hsts_max_age", "only HTTP resources"),
        ({"hsts_max_age": False}, "hsts_max_age", "only HTTP resources"),  # not an integer, though == 0
        ({"sticky": 0}, "sticky", "only HTTP resources"),
    ],
)
@pytest.mark.parametrize("kind", ["tcp", "udp"])
def test_tcp_and_udp_resources_refuse_http_settings(conn, org, kind, kw, field, message):
    with pytest.raises(st.Invalid) as e:
        st.create_resource(conn, org.id, "r", kind, public_port=2222, **kw)
    assert e.value.field == field and message in e.value.message
    ssh = st.create_resource(conn, org.id, "r", kind, public_port=2222)
    with pytest.raises(st.Invalid) as e:
        st.update_resource(conn, ssh.id, **kw)
    assert e.value.field == field
    assert st.get_resource(conn, ssh.id) == ssh


def test_tcp_resources_take_the_defaults_as_given(conn, org):
    """As a resource reads back (defaults included), it may be written back."""
    ssh = st.create_resource(
        conn,
        org.id,
        "ssh",
        "tcp",
        public_port=22,
        lb_method="round_robin",
        sticky=False,
        redirect_https=False,
        hsts_max_age=0,
    )
    assert _http_settings(ssh) == ("round_robin", False, False, 0)
    assert st.update_resource(conn, ssh.id, sticky=False, public_port=23).public_port == 23


def test_the_database_refuses_what_slips_past_the_checks(conn, org):
    @atomic
    def raw(conn, **values):
        conn.execute(
            insert(s.resources).values(
                id=st.new_id("res"),
                org_id=org.id,
                name="r",
                kind="http",
                hostname="r.example.com",
                path_prefix="/",
                enabled=True,
                created_at=NOW,
                updated_at=NOW,
                **values,
            )
        )

    for values in ({"lb_method": "random"}, {"hsts_max_age": -1}, {"hsts_max_age": 63_072_001}):
        with pytest.raises(st.Invalid) as e:
            raw(conn, **values)
        assert "ck_resources_" in e.value.message
    raw(conn)  # the server defaults fill the rest
    assert _http_settings(st.list_resources(conn).items[0]) == ("round_robin", False, False, 0)


# -- targets -----------------------------------------------------------------------------------------


def test_https_targets_take_tls_settings(conn, web, site):
    t = st.create_target(conn, web.id, site.id, "10.0.0.1", 443, scheme="https")
    assert (t.tls_verify, t.tls_server_name) == (True, None)
    t2 = st.create_target(
        conn,
        web.id,
        site.id,
        "10.0.0.2",
        443,
        scheme="https",
        tls_verify=False,
        tls_server_name="Backend.Lan.",
    )
    assert (t2.tls_verify, t2.tls_server_name) == (False, "backend.lan")
    assert st.get_target(conn, t2.id) == t2
    t3 = st.update_target(conn, t.id, tls_server_name="my_service.internal")
    assert t3.tls_server_name == "my_service.internal"
    assert st.update_target(conn, t3.id, tls_server_name=None).tls_server_name is None


@pytest.mark.parametrize(
    ("kw", "field", "message"),
    [
        ({"tls_verify": False}, "tls_verify", "only https targets"),
        ({"tls_server_name": "a.example.com"}, "tls_server_name", "only https targets"),
        ({"scheme": "https", "tls_verify": "no"}, "tls_verify", "true or false"),
        ({"scheme": "https", "tls_server_name": "10.0.0.1"}, "tls_server_name", "IP address"),
        ({"scheme": "https", "tls_server_name": "*.example.com"}, "tls_server_name", "wildcards"),
        ({"scheme": "https", "tls_server_name": ""}, "tls_server_name", "non-empty"),
        ({"scheme": "https", "tls_server_name": 5}, "tls_server_name", "non-empty string"),
        ({"health_check": {"expected_status": "2xx"}}, "health_check.expected_status", "'2xx' is not"),
        ({"health_check": {"expected_status": 200}}, "health_check.expected_status", "must be a string"),
    ],
)
def test_bad_target_settings_are_refused(conn, web, site, kw, field, message):
    with pytest.raises(st.Invalid) as e:
        st.create_target(conn, web.id, site.id, "10.0.0.1", 443, **kw)
    assert e.value.field == field and message in e.value.message
    assert count(conn, s.targets) == 0


def test_tcp_targets_refuse_tls_and_status_settings(conn, org, site):
    ssh = st.create_resource(conn, org.id, "ssh", "tcp", public_port=22)
    for kw, field in (
        ({"tls_verify": False}, "tls_verify"),
        ({"tls_server_name": "ssh.lan"}, "tls_server_name"),
        ({"health_check": {"expected_status": "200"}}, "health_check.expected_status"),
    ):
        with pytest.raises(st.Invalid) as e:
            st.create_target(conn, ssh.id, site.id, "10.0.0.1", 22, **kw)
        assert e.value.field == field
    t = st.create_target(
        conn, ssh.id, site.id, "10.0.0.1", 22, tls_verify=True, health_check={"enabled": True}
    )
    assert (t.tls_verify, t.tls_server_name, t.health_check.expected_status) == (True, None, "200-399")
    assert t.health_check.path is None  # a TCP check


def test_leaving_https_resets_the_tls_settings(conn, web, site):
    t = st.create_target(
        conn, web.id, site.id, "10.0.0.1", 443, scheme="https", tls_verify=False, tls_server_name="b.lan"
    )
    with pytest.raises(st.Invalid) as e:  # settings given with the move are refused, not dropped
        st.update_target(conn, t.id, scheme="http", tls_verify=False)
    assert e.value.field == "tls_verify"
    plain = st.update_target(conn, t.id, scheme="http", port=80)
    assert (plain.scheme, plain.tls_verify, plain.tls_server_name) == ("http", True, None)
    back = st.update_target(conn, t.id, scheme="https")
    assert (back.tls_verify, back.tls_server_name) == (True, None)


def test_expected_status_of_http_health_checks(conn, web, site):
    t = st.create_target(conn, web.id, site.id, "10.0.0.1", 80)
    assert t.health_check.expected_status == "200-399"
    checked = st.update_target(
        conn,
        t.id,
        health_check={"enabled": True, "path": "/healthz", "expected_status": " 200 , 204,300-308"},
    )
    assert checked.health_check == st.HealthCheck(
        enabled=True, path="/healthz", expected_status="200,204,300-308"
    )
    assert st.get_target(conn, t.id).health_check.expected_status == "200,204,300-308"


def test_snapshots_carry_the_settings(conn, org, site):
    app = st.create_resource(
        conn, org.id, "app", "http", hostname="app.example.com", lb_method="least_connections", sticky=True
    )
    st.create_target(
        conn,
        app.id,
        site.id,
        "10.0.0.1",
        443,
        scheme="https",
        tls_verify=False,
        tls_server_name="app.lan",
        health_check={"enabled": True, "expected_status": "200"},
    )
    snapshot = st.load_snapshot(conn)
    (resource,) = snapshot.resources
    (target,) = snapshot.targets_of(app.id)
    assert (resource.lb_method, resource.sticky) == ("least_connections", True)
    assert (target.tls_verify, target.tls_server_name, target.health_check.expected_status) == (
        False,
        "app.lan",
        "200",
    )


# -- the expected status, without a database ---------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "normalized"),
    [
        ("200-399", "200-399"),
        ("200,204", "200,204"),
        (" 200 , 204 ", "200,204"),
        ("100-599", "100-599"),
        ("200-200", "200-200"),
        ("301,302,200-204", "301,302,200-204"),
    ],
)
def test_good_expected_statuses(value, normalized):
    assert v.expected_status(value) == normalized


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "separated by commas"),
        ("200,", "separated by commas"),
        (",200", "separated by commas"),
        ("200,,204", "separated by commas"),
        ("2xx", "is not a status code"),
        ("20", "is not a status code"),
        ("2000", "is not a status code"),
        ("200-", "is not a status code"),
        ("200 - 399", "is not a status code"),
        ("٢٠٠", "is not a status code"),  # digits, but not ASCII ones
        ("099", "from 100 to 599"),
        ("600", "from 100 to 599"),
        ("200-600", "from 100 to 599"),
        ("399-200", "from the lower code"),
        (",".join(["200"] * 17), "at most 64"),
        (None, "must be a string"),
    ],
)
def test_bad_expected_statuses(value, message):
    with pytest.raises(st.Invalid) as e:
        v.expected_status(value, "expected_status")
    assert e.value.field == "expected_status" and message in e.value.message


@given(some.text(alphabet="0123456789-, 5\n", max_size=30) | some.text(max_size=30))
def test_any_text_is_a_valid_expected_status_or_invalid(value):
    try:
        result = v.expected_status(value)
    except st.Invalid as e:
        assert e.field == "health_check.expected_status"
    else:
        assert v.expected_status(result) == result and " " not in result and len(result) <= 64
