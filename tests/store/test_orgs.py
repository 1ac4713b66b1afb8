"""Organizations, roles and memberships."""

from __future__ import annotations

from datetime import timedelta

import pytest
from store_support import NOW, count

from kokoa import store as st
from kokoa.store import _schema as s

pytestmark = pytest.mark.sans_io  # repository calls on a connection: no reactor involved


def test_an_organization_comes_with_its_builtin_roles(conn):
    org = st.create_organization(conn, "  Acme  ", now=NOW)
    assert org.name == "Acme" and org.created_at == NOW == org.updated_at
    assert st.get_organization(conn, org.id) == org
    assert org.id.startswith("org_") and len(org.id) >= 4 + 16
    roles = st.list_roles(conn, org.id).items
    assert {(r.name, r.builtin) for r in roles} == {("Owner", True), ("Admin", True), ("Member", True)}
    assert st.get_role_by_name(conn, org.id, "owner").name == "Owner"


def test_organization_names_are_unique_whatever_the_case(conn):
    st.create_organization(conn, "Acme")
    with pytest.raises(st.Conflict) as e:
        st.create_organization(conn, "ACME")
    assert e.value.field == "name" and "already exists" in e.value.message
    assert count(conn, s.organizations) == 1 and count(conn, s.roles) == 3


@pytest.mark.parametrize(
    ("name", "message"),
    [("", "empty"), ("   ", "empty"), ("x" * 101, "at most 100"), ("a\nb", "control"), (5, "string")],
)
def test_bad_organization_names_are_refused(conn, name, message):
    with pytest.raises(st.Invalid) as e:
        st.create_organization(conn, name)
    assert e.value.field == "name" and message in e.value.message
    assert count(conn, s.organizations) == 0


def test_update_is_partial_and_a_no_op_changes_nothing(conn):
    org = st.create_organization(conn, "Acme", now=NOW)
    version = st.config_version(conn)
    assert st.update_organization(conn, org.id, now=NOW + timedelta(1)) == org
    assert st.config_version(conn) == version
    renamed = st.update_organization(conn, org.id, name="acme", now=NOW + timedelta(1))
    assert renamed.name == "acme" and renamed.updated_at == NOW + timedelta(1)
    assert st.config_version(conn) == version + 1
    other = st.create_organization(conn, "Other")
    with pytest.raises(st.Conflict):
        st.update_organization(conn, other.id, name="ACME")


def test_missing_objects_are_not_found(conn):
    with pytest.raises(st.NotFound) as e:
        st.get_organization(conn, "org_nope")
    assert (e.value.kind, e.value.id, e.value.field) == ("organization", "org_nope", "id")
    for fn in (st.update_organization, st.delete_organization):
        with pytest.raises(st.NotFound):
            fn(conn, "org_nope")


def test_deleting_an_organization_deletes_everything_it_owns(conn):
    org = st.create_organization(conn, "Acme")
    user = st.create_user(conn, "ann@example.com")
    st.add_member(conn, org.id, user.id, st.get_role_by_name(conn, org.id, st.OWNER).id)
    site, _ = st.create_site(conn, org.id, "home")
    res = st.create_resource(conn, org.id, "ssh", "tcp", public_port=2222)
    st.create_target(conn, res.id, site.id, "10.0.0.1", 22)
    st.create_grant(conn, res.id, user_id=user.id)
    st.create_rule(conn, res.id, "allow", 1, cidr="10.0.0.0/8")
    st.create_api_key(conn, "ci", org_id=org.id)
    st.append_audit(conn, "system", "org.create", org_id=org.id)
    st.delete_organization(conn, org.id)
    for table in (
        s.organizations,
        s.roles,
        s.memberships,
        s.sites,
        s.resources,
        s.targets,
        s.grants,
        s.rules,
    ):
        assert count(conn, table) == 0, table.name
    assert count(conn, s.api_keys) == 0
    assert count(conn, s.users) == 1 and count(conn, s.audit_log) == 1  # users and the log stay


def test_lists_are_paged_with_a_cursor(conn):
    names = [f"org {i}" for i in range(5)]
    for i, name in enumerate(names):
        st.create_organization(conn, name, now=NOW + timedelta(seconds=i // 2))  # some share a time
    seen, cursor = [], None
    while True:
        page = st.list_organizations(conn, limit=2, cursor=cursor)
        seen += [o.name for o in page.items]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    whole = st.list_organizations(conn, limit=5)
    assert seen == [o.name for o in whole.items] and sorted(seen) == names  # creation order, each once
    assert [o.name for o in whole.items][4] == "org 4" and whole.next_cursor is None


@pytest.mark.parametrize(
    ("limit", "cursor", "field"),
    [
        (0, None, "limit"),
        (1001, None, "limit"),
        (True, None, "limit"),
        (10, "garbage!", "cursor"),
        (10, "eA", "cursor"),
        (10, "MjAzMC0wMS0wMlQwMzowNDowNQpvcmdfeA", "cursor"),
    ],
)
def test_bad_page_requests_are_refused(conn, limit, cursor, field):
    with pytest.raises(st.Invalid) as e:
        st.list_organizations(conn, limit=limit, cursor=cursor)
    assert e.value.field == field


# -- roles -------------------------------------------------------------------------------------------


def test_custom_roles(conn):
    org = st.create_organization(conn, "Acme")
    role = st.create_role(conn, org.id, "Developers", description="devs", now=NOW)
    assert (role.name, role.description, role.builtin) == ("Developers", "devs", False)
    assert st.get_role(conn, role.id) == role
    with pytest.raises(st.Conflict) as e:
        st.create_role(conn, org.id, "developers")
    assert e.value.field == "name"
    with pytest.raises(st.Conflict):
        st.create_role(conn, org.id, "owner")
    other = st.create_organization(conn, "Other")
    assert st.create_role(conn, other.id, "Developers").org_id == other.id  # unique per organization
    updated = st.update_role(conn, role.id, name="Devs", description="")
    assert (updated.name, updated.description) == ("Devs", "")
    with pytest.raises(st.Invalid) as e:
        st.create_role(conn, org.id, "Long", description="x" * 501)
    assert e.value.field == "description"
    st.delete_role(conn, role.id)
    with pytest.raises(st.NotFound):
        st.get_role(conn, role.id)
    with pytest.raises(st.NotFound):
        st.get_role_by_name(conn, org.id, "Devs")


def test_builtin_roles_cannot_be_renamed_or_deleted(conn):
    org = st.create_organization(conn, "Acme")
    owner = st.get_role_by_name(conn, org.id, st.OWNER)
    with pytest.raises(st.Invalid) as e:
        st.update_role(conn, owner.id, name="Boss")
    assert e.value.field == "name" and "built-in" in e.value.message
    assert st.update_role(conn, owner.id, description="The boss").description == "The boss"
    with pytest.raises(st.Invalid):
        st.delete_role(conn, owner.id)


def test_a_role_in_use_cannot_be_deleted_and_its_grants_go_with_it(conn):
    org = st.create_organization(conn, "Acme")
    role = st.create_role(conn, org.id, "Ops")
    user = st.create_user(conn, "ann@example.com")
    st.add_member(conn, org.id, user.id, role.id)
    res = st.create_resource(conn, org.id, "web", "http", hostname="web.example.com")
    st.create_grant(conn, res.id, role_id=role.id)
    with pytest.raises(st.Conflict) as e:
        st.delete_role(conn, role.id)
    assert "1 member(s)" in e.value.message
    st.set_member_role(conn, org.id, user.id, st.get_role_by_name(conn, org.id, st.MEMBER).id)
    st.delete_role(conn, role.id)
    assert st.list_grants(conn, resource_id=res.id).items == ()


# -- memberships -------------------------------------------------------------------------------------


def test_memberships(conn):
    org = st.create_organization(conn, "Acme")
    ann = st.create_user(conn, "ann@example.com")
    bob = st.create_user(conn, "bob@example.com")
    owner = st.get_role_by_name(conn, org.id, st.OWNER)
    member = st.get_role_by_name(conn, org.id, st.MEMBER)
    m = st.add_member(conn, org.id, ann.id, owner.id, now=NOW)
    assert (m.org_id, m.user_id, m.role_id, m.role_name, m.created_at) == (
        org.id,
        ann.id,
        owner.id,
        "Owner",
        NOW,
    )
    st.add_member(conn, org.id, bob.id, member.id, now=NOW)
    with pytest.raises(st.Conflict) as e:
        st.add_member(conn, org.id, bob.id, member.id)
    assert e.value.field == "user_id"
    assert [x.user_id for x in st.list_members(conn, org.id).items] == sorted([ann.id, bob.id])
    first = st.list_members(conn, org.id, limit=1)
    second = st.list_members(conn, org.id, limit=1, cursor=first.next_cursor)
    assert {first.items[0].user_id, second.items[0].user_id} == {ann.id, bob.id}
    assert [x.org_id for x in st.list_user_memberships(conn, ann.id)] == [org.id]
    assert st.set_member_role(conn, org.id, bob.id, owner.id).role_name == "Owner"
    st.remove_member(conn, org.id, bob.id)
    with pytest.raises(st.NotFound):
        st.get_membership(conn, org.id, bob.id)


def test_membership_references_are_checked(conn):
    org = st.create_organization(conn, "Acme")
    other = st.create_organization(conn, "Other")
    ann = st.create_user(conn, "ann@example.com")
    foreign_role = st.get_role_by_name(conn, other.id, st.MEMBER)
    with pytest.raises(st.Invalid) as e:
        st.add_member(conn, org.id, ann.id, foreign_role.id)
    assert e.value.field == "role_id"
    with pytest.raises(st.NotFound) as nf:
        st.add_member(conn, org.id, "user_nope", foreign_role.id)
    assert nf.value.kind == "user"
    with pytest.raises(st.NotFound):
        st.add_member(conn, org.id, ann.id, "role_nope")
    assert count(conn, s.memberships) == 0


def test_an_organization_keeps_at_least_one_owner(conn):
    org = st.create_organization(conn, "Acme")
    ann = st.create_user(conn, "ann@example.com")
    bob = st.create_user(conn, "bob@example.com")
    owner = st.get_role_by_name(conn, org.id, st.OWNER)
    admin = st.get_role_by_name(conn, org.id, st.ADMIN)
    st.add_member(conn, org.id, ann.id, owner.id)
    with pytest.raises(st.Conflict) as e:
        st.set_member_role(conn, org.id, ann.id, admin.id)
    assert "at least one Owner" in e.value.message
    with pytest.raises(st.Conflict):
        st.remove_member(conn, org.id, ann.id)
    with pytest.raises(st.Conflict) as e:
        st.delete_user(conn, ann.id)
    assert org.id in e.value.message
    st.add_member(conn, org.id, bob.id, owner.id)
    st.set_member_role(conn, org.id, ann.id, admin.id)
    with pytest.raises(st.Conflict):
        st.remove_member(conn, org.id, bob.id)
    st.remove_member(conn, org.id, ann.id)
    assert [m.user_id for m in st.list_members(conn, org.id).items] == [bob.id]


def test_a_failing_write_leaves_nothing_of_itself(conn, monkeypatch):
    """create_organization writes the organization, three roles, then the change: fail at the end."""
    from kokoa.store import _orgs

    def boom(*args, **kw):
        raise RuntimeError("disk on fire")

    st.create_organization(conn, "Before")
    monkeypatch.setattr(_orgs, "record_change", boom)
    with pytest.raises(RuntimeError):
        st.create_organization(conn, "Acme")
    assert [o.name for o in st.list_organizations(conn).items] == ["Before"]
    assert count(conn, s.roles) == 3
    monkeypatch.undo()
    assert st.create_organization(conn, "Acme").name == "Acme"  # the connection is still usable


@pytest.mark.parametrize(
    "text",
    [
        "0001-01-01T00:00:00+23:59\nx",  # overflows when converted to UTC
        "9999-12-31T23:59:59-23:59\nx",
        "2026-01-01T00:00:00+00:00\nid\x00",  # a NUL: PostgreSQL refuses it in text
        "2026-01-01T00:00:00+00:00\n" + "x" * 200,
    ],
)
def test_cursors_that_would_upset_the_database_are_refused(conn, text):
    import base64

    cursor = base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")
    with pytest.raises(st.Invalid) as e:
        st.list_organizations(conn, limit=10, cursor=cursor)
    assert e.value.field == "cursor"


def test_audit_cursors_must_be_small_numbers(conn):
    import base64

    for text in ("١٢٣", "9" * 40):  # Arabic-Indic digits pass isdigit(); a huge number overflows
        cursor = base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")
        with pytest.raises(st.Invalid):
            st.list_audit(conn, cursor=cursor)
