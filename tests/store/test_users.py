"""Users and their passwords (argon2id)."""

from __future__ import annotations

import dataclasses

import pytest
from argon2 import PasswordHasher
from sqlalchemy import select
from store_support import NOW, count

from kokoa import store as st
from kokoa.store import _schema as s
from kokoa.store import _users

pytestmark = pytest.mark.sans_io  # repository calls on a connection: no reactor involved


def stored_hash(conn, user_id):
    return conn.execute(select(s.users.c.password_hash).where(s.users.c.id == user_id)).scalar_one()


def test_create_and_read_a_user(conn):
    user = st.create_user(conn, " Ann@Example.COM ", password="correct horse", display_name="Ann", now=NOW)
    assert (user.email, user.display_name, user.status, user.has_password) == (
        "ann@example.com",
        "Ann",
        "active",
        True,
    )
    assert user.id.startswith("user_") and user.created_at == NOW
    assert st.get_user(conn, user.id) == user == st.get_user_by_email(conn, "ANN@example.com")
    assert "password_hash" not in {f.name for f in dataclasses.fields(st.User)}
    assert stored_hash(conn, user.id).startswith("$argon2id$")
    assert not st.create_user(conn, "bob@example.com").has_password


def test_emails_are_unique_whatever_the_case(conn):
    st.create_user(conn, "ann@example.com")
    with pytest.raises(st.Conflict) as e:
        st.create_user(conn, "ANN@example.com")
    assert e.value.field == "email"
    bob = st.create_user(conn, "bob@example.com")
    with pytest.raises(st.Conflict):
        st.update_user(conn, bob.id, email="Ann@Example.com")
    assert count(conn, s.users) == 2


@pytest.mark.parametrize(
    ("kw", "field", "message"),
    [
        ({"email": "no-at-sign"}, "email", "email address"),
        ({"email": "a@b@c"}, "email", "email address"),
        ({"email": "ann@-bad-.com"}, "email", "bad domain"),
        ({"email": "a..b@example.com"}, "email", "not a valid"),
        ({"password": "short"}, "password", "at least 8"),
        ({"password": "x" * 1025}, "password", "at most 1024"),
        ({"status": "sleeping"}, "status", "one of active, disabled, invited"),
        ({"display_name": ""}, "display_name", "empty"),
    ],
)
def test_bad_user_fields_are_refused(conn, kw, field, message):
    kw = {"email": "ann@example.com"} | kw
    with pytest.raises(st.Invalid) as e:
        st.create_user(conn, kw.pop("email"), **kw)
    assert e.value.field == field and message in e.value.message
    assert count(conn, s.users) == 0


def test_internationalized_email_domains_are_stored_in_ascii(conn):
    assert st.create_user(conn, "ann@bücher.de").email == "ann@xn--bcher-kva.de"


def test_verify_password(conn):
    ann = st.create_user(conn, "ann@example.com", password="correct horse")
    assert st.verify_password(conn, "ANN@example.com", "correct horse") == ann
    assert st.verify_password(conn, "ann@example.com", "wrong horse") is None
    assert st.verify_password(conn, "nobody@example.com", "correct horse") is None
    assert st.verify_password(conn, "not an email", "correct horse") is None
    st.create_user(conn, "bob@example.com")
    assert st.verify_password(conn, "bob@example.com", "") is None  # no password set
    st.update_user(conn, ann.id, status="disabled")
    assert st.verify_password(conn, "ann@example.com", "correct horse") is None


def test_set_and_remove_a_password(conn):
    ann = st.create_user(conn, "ann@example.com")
    assert st.set_password(conn, ann.id, "new password!").has_password
    assert st.verify_password(conn, "ann@example.com", "new password!") is not None
    with pytest.raises(st.Invalid):
        st.set_password(conn, ann.id, "short")
    assert st.verify_password(conn, "ann@example.com", "new password!") is not None  # unchanged
    assert not st.set_password_hash(conn, ann.id, None).has_password
    hashed = st.hash_password("third password")
    st.set_password_hash(conn, ann.id, hashed)
    found = st.password_hash_for(conn, "ann@example.com")
    assert found is not None and found[1] == hashed and st.check_password(found[1], "third password")
    assert not st.check_password("not a hash", "third password")
    with pytest.raises(st.Invalid) as e:
        st.set_password_hash(conn, ann.id, "plain text")
    assert e.value.field == "password_hash"
    assert st.password_hash_for(conn, "nobody@example.com") is None
    with pytest.raises(st.NotFound):
        st.set_password(conn, "user_nope", "long enough")


def test_a_hash_made_with_old_parameters_is_upgraded_at_login(conn, monkeypatch):
    ann = st.create_user(conn, "ann@example.com", password="correct horse")
    old = stored_hash(conn, ann.id)
    monkeypatch.setattr(_users, "PASSWORD_HASHER", PasswordHasher(time_cost=2, memory_cost=16, parallelism=1))
    assert st.verify_password(conn, "ann@example.com", "correct horse") is not None
    new = stored_hash(conn, ann.id)
    assert new != old and "m=16,t=2,p=1" in new
    assert st.verify_password(conn, "ann@example.com", "correct horse") is not None


def test_the_default_hasher_is_argon2id_with_rfc_9106_costs(monkeypatch):
    monkeypatch.undo()  # the suite swaps in a cheap hasher
    hasher = _users.PASSWORD_HASHER
    assert hasher.type.name == "ID" and hasher.memory_cost >= 19 * 1024 and hasher.time_cost >= 2


def test_update_user_is_partial(conn):
    ann = st.create_user(conn, "ann@example.com", display_name="Ann")
    version = st.config_version(conn)
    assert st.update_user(conn, ann.id) == ann and st.config_version(conn) == version
    updated = st.update_user(conn, ann.id, display_name=None, status="invited", now=NOW)
    assert (updated.email, updated.display_name, updated.status, updated.updated_at) == (
        "ann@example.com",
        None,
        "invited",
        NOW,
    )
    with pytest.raises(st.Invalid):
        st.update_user(conn, ann.id, status="gone")


def test_list_users_all_or_by_organization(conn):
    org = st.create_organization(conn, "Acme")
    users = [st.create_user(conn, f"u{i}@example.com") for i in range(3)]
    st.add_member(conn, org.id, users[1].id, st.get_role_by_name(conn, org.id, st.MEMBER).id)
    assert [u.id for u in st.list_users(conn).items] == [
        u.id for u in sorted(users, key=lambda u: (u.created_at, u.id))
    ]
    assert [u.id for u in st.list_users(conn, org_id=org.id).items] == [users[1].id]
    page = st.list_users(conn, limit=2)
    assert len(page.items) == 2 and len(st.list_users(conn, limit=2, cursor=page.next_cursor).items) == 1


def test_deleting_a_user_removes_their_memberships_and_grants(conn):
    org = st.create_organization(conn, "Acme")
    ann = st.create_user(conn, "ann@example.com")
    st.add_member(conn, org.id, ann.id, st.get_role_by_name(conn, org.id, st.MEMBER).id)
    res = st.create_resource(conn, org.id, "web", "http", hostname="web.example.com")
    st.create_grant(conn, res.id, user_id=ann.id)
    key, _ = st.create_api_key(conn, "ci", org_id=org.id, created_by=ann.id)
    st.delete_user(conn, ann.id)
    assert count(conn, s.memberships) == 0 and count(conn, s.grants) == 0
    assert st.get_api_key(conn, key.id).created_by is None  # the key stays, its creator is forgotten
    with pytest.raises(st.NotFound):
        st.delete_user(conn, ann.id)
