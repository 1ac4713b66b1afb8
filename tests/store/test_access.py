"""Access grants (to roles or users) and rules (stored and checked here, enforced by the policy)."""

from __future__ import annotations

import pytest
from store_support import NOW, count

from kokoa import store as st
from kokoa.store import _schema as s

pytestmark = pytest.mark.sans_io  # repository calls on a connection: no reactor involved


@pytest.fixture
def org(conn):
    return st.create_organization(conn, "Acme")


@pytest.fixture
def web(conn, org):
    return st.create_resource(conn, org.id, "web", "http", hostname="a.example.com")


@pytest.fixture
def ann(conn, org):
    user = st.create_user(conn, "ann@example.com")
    st.add_member(conn, org.id, user.id, st.get_role_by_name(conn, org.id, st.MEMBER).id)
    return user


def test_grants_to_roles_and_users(conn, org, web, ann):
    role = st.get_role_by_name(conn, org.id, st.MEMBER)
    by_role = st.create_grant(conn, web.id, role_id=role.id, now=NOW)
    by_user = st.create_grant(conn, web.id, user_id=ann.id, now=NOW)
    assert by_role.id.startswith("grant_") and (by_role.role_id, by_role.user_id) == (role.id, None)
    assert (by_user.role_id, by_user.user_id, by_user.created_at) == (None, ann.id, NOW)
    assert st.get_grant(conn, by_role.id) == by_role
    assert {g.id for g in st.list_grants(conn, resource_id=web.id).items} == {by_role.id, by_user.id}
    assert [g.id for g in st.list_grants(conn, role_id=role.id).items] == [by_role.id]
    assert [g.id for g in st.list_grants(conn, user_id=ann.id).items] == [by_user.id]
    st.delete_grant(conn, by_role.id)
    assert [g.id for g in st.list_grants(conn).items] == [by_user.id]
    with pytest.raises(st.NotFound):
        st.delete_grant(conn, by_role.id)


def test_bad_grants_are_refused(conn, org, web, ann):
    role = st.get_role_by_name(conn, org.id, st.MEMBER)
    with pytest.raises(st.Invalid) as e:
        st.create_grant(conn, web.id)
    assert e.value.field == "role_id" and "exactly one" in e.value.message
    with pytest.raises(st.Invalid):
        st.create_grant(conn, web.id, role_id=role.id, user_id=ann.id)
    other = st.create_organization(conn, "Other")
    with pytest.raises(st.Invalid) as e:
        st.create_grant(conn, web.id, role_id=st.get_role_by_name(conn, other.id, st.MEMBER).id)
    assert e.value.field == "role_id" and "another organization" in e.value.message
    stranger = st.create_user(conn, "bob@example.com")
    with pytest.raises(st.Invalid) as e:
        st.create_grant(conn, web.id, user_id=stranger.id)
    assert e.value.field == "user_id" and "not a member" in e.value.message
    with pytest.raises(st.NotFound):
        st.create_grant(conn, "res_nope", role_id=role.id)
    with pytest.raises(st.NotFound):
        st.create_grant(conn, web.id, user_id="user_nope")
    st.create_grant(conn, web.id, role_id=role.id)
    st.create_grant(conn, web.id, user_id=ann.id)
    with pytest.raises(st.Conflict) as e:
        st.create_grant(conn, web.id, role_id=role.id)
    assert e.value.field == "role_id"
    with pytest.raises(st.Conflict) as e:
        st.create_grant(conn, web.id, user_id=ann.id)
    assert e.value.field == "user_id"
    assert count(conn, s.grants) == 2


def test_rules(conn, web):
    deny = st.create_rule(conn, web.id, "deny", 20, path="/admin*", method="post", now=NOW)
    allow = st.create_rule(conn, web.id, "allow", 10, cidr="10.0.0.0/8")
    bypass = st.create_rule(conn, web.id, "bypass", 30, cidr="2001:db8::/32", path="/public/")
    assert deny.id.startswith("rule_")
    assert (deny.action, deny.priority, deny.path, deny.method, deny.cidr, deny.enabled) == (
        "deny",
        20,
        "/admin*",
        "POST",
        None,
        True,
    )
    assert bypass.cidr == "2001:db8::/32"
    assert [r.id for r in st.list_rules(conn, web.id)] == [allow.id, deny.id, bypass.id]
    assert st.get_rule(conn, deny.id) == deny
    updated = st.update_rule(conn, deny.id, method=None, priority=5, enabled=False)
    assert (updated.method, updated.priority, updated.enabled, updated.path) == (None, 5, False, "/admin*")
    assert [r.id for r in st.list_rules(conn, web.id)] == [deny.id, allow.id, bypass.id]
    with pytest.raises(st.Conflict) as e:
        st.update_rule(conn, bypass.id, priority=10)
    assert e.value.field == "priority"
    st.delete_rule(conn, allow.id)
    assert [r.id for r in st.list_rules(conn, web.id)] == [deny.id, bypass.id]
    with pytest.raises(st.NotFound):
        st.get_rule(conn, allow.id)


@pytest.mark.parametrize(
    ("action", "priority", "kw", "field", "message"),
    [
        ("permit", 1, {}, "action", "one of allow, deny, bypass"),
        ("allow", -1, {}, "priority", "from 0 to 1000000"),
        ("allow", 1_000_001, {}, "priority", "from 0 to 1000000"),
        ("allow", "1", {}, "priority", "integer"),
        ("allow", 1, {"cidr": "10.0.0.1/8"}, "cidr", "did you mean 10.0.0.0/8"),
        ("allow", 1, {"cidr": "nowhere"}, "cidr", "not a network"),
        ("allow", 1, {"path": "admin"}, "path", "starting with '/'"),
        ("allow", 1, {"path": "/a b"}, "path", "URL path characters"),
        ("allow", 1, {"method": "GET POST"}, "method", "HTTP method"),
        ("allow", 1, {"enabled": None}, "enabled", "true or false"),
    ],
)
def test_bad_rules_are_refused(conn, web, action, priority, kw, field, message):
    with pytest.raises(st.Invalid) as e:
        st.create_rule(conn, web.id, action, priority, **kw)
    assert e.value.field == field and message in e.value.message
    assert count(conn, s.rules) == 0


def test_tcp_rules_match_on_addresses_only(conn, org):
    ssh = st.create_resource(conn, org.id, "ssh", "tcp", public_port=22)
    with pytest.raises(st.Invalid) as e:
        st.create_rule(conn, ssh.id, "deny", 1, path="/")
    assert e.value.field == "path"
    with pytest.raises(st.Invalid) as e:
        st.create_rule(conn, ssh.id, "deny", 1, method="GET")
    assert e.value.field == "method"
    assert st.create_rule(conn, ssh.id, "allow", 1, cidr="192.168.1.7").cidr == "192.168.1.7/32"


def test_duplicate_priorities_conflict(conn, web):
    st.create_rule(conn, web.id, "allow", 1)
    with pytest.raises(st.Conflict) as e:
        st.create_rule(conn, web.id, "deny", 1)
    assert e.value.field == "priority"
