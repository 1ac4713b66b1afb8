"""The database's own constraints, behind the repositories' checks: a write that slips past the
checks (another process inserting the same name at the same moment) still gets a clear error."""

from __future__ import annotations

import pytest
from sqlalchemy import insert
from store_support import NOW, count

from kokoa import store as st
from kokoa.store import _schema as s
from kokoa.store._common import atomic

pytestmark = pytest.mark.sans_io  # repository calls on a connection: no reactor involved

STAMPS = {"created_at": NOW, "updated_at": NOW}


@atomic
def raw_insert(conn, table, **values):
    conn.execute(insert(table).values(**values))


@pytest.fixture
def org(conn):
    return st.create_organization(conn, "Acme")


def site_row(org_id, name="home", **kw):
    row = {
        "org_id": org_id,
        "name": name,
        "secret_hash": "sha256:x",
        "enabled": True,
        "online": False,
        **STAMPS,
    }
    return {"id": st.new_id("site")} | row | kw


def test_unique_expression_index(conn, org):
    with pytest.raises(st.Conflict) as e:
        raw_insert(conn, s.sites, **site_row(org.id, "HOME", id="site_a"), previous_secret_hash=None)
        raw_insert(conn, s.sites, **site_row(org.id, "home"))
    assert (e.value.field, e.value.message) == ("name", s.CONSTRAINT_FIELDS["uq_sites_org_name"][1])
    assert count(conn, s.sites) == 1  # the first write stays; the failed one left nothing


def test_unique_constraint_partial_index_and_composite_key(conn, org):
    user = st.create_user(conn, "ann@example.com")
    with pytest.raises(st.Conflict) as e:
        raw_insert(conn, s.users, id="user_x", email="ann@example.com", status="active", **STAMPS)
    assert e.value.field == "email"
    port = {"org_id": org.id, "kind": "tcp", "public_port": 22, "enabled": True, **STAMPS}
    raw_insert(conn, s.resources, id="res_a", name="a", **port)
    with pytest.raises(st.Conflict) as e:
        raw_insert(conn, s.resources, id="res_b", name="b", **port)
    assert e.value.field == "public_port"
    role = st.get_role_by_name(conn, org.id, st.MEMBER)
    st.add_member(conn, org.id, user.id, role.id)
    with pytest.raises(st.Conflict) as e:
        raw_insert(conn, s.memberships, org_id=org.id, user_id=user.id, role_id=role.id, **STAMPS)
    assert e.value.field == "user_id"


def test_check_not_null_and_foreign_key_violations(conn, org):
    bad_kind = {"org_id": org.id, "name": "x", "kind": "ftp", "public_port": 22, "enabled": True, **STAMPS}
    with pytest.raises(st.Invalid) as e:
        raw_insert(conn, s.resources, id="res_a", **bad_kind)
    assert "the values break the rule ck_resources_" in e.value.message
    with pytest.raises(st.Invalid) as e:
        raw_insert(conn, s.organizations, id="org_x", name=None, **STAMPS)
    assert e.value.field == "name" and e.value.message == "is required"
    with pytest.raises(st.Invalid) as e:
        raw_insert(conn, s.sites, **site_row("org_nope"))
    assert "does not exist" in e.value.message
    assert st.list_sites(conn).items == ()  # and the connection is still usable
