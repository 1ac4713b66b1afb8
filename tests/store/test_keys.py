"""API keys: shown once, stored hashed, found by prefix; expiry, revocation, last use."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select
from store_support import NOW, count

from kokoa import store as st
from kokoa.store import _schema as s

pytestmark = pytest.mark.sans_io  # repository calls on a connection: no reactor involved


@pytest.fixture
def org(conn):
    return st.create_organization(conn, "Acme")


def test_create_returns_the_key_once_and_stores_its_hash(conn, org):
    key, secret = st.create_api_key(
        conn, "CI", org_id=org.id, scopes=["sites:read", "sites:read", "*"], now=NOW
    )
    assert key.id.startswith("key_") and key.prefix.startswith("kk_") and len(key.prefix) == 11
    assert secret.startswith(key.prefix + "_") and len(secret) > 50
    assert (key.name, key.scopes, key.org_id, key.expires_at, key.last_used_at, key.revoked_at) == (
        "CI",
        ("sites:read", "*"),
        org.id,
        None,
        None,
        None,
    )
    stored = conn.execute(select(s.api_keys.c.secret_hash).where(s.api_keys.c.id == key.id)).scalar_one()
    assert stored.startswith("sha256:") and secret[12:] not in stored
    assert st.get_api_key(conn, key.id) == key
    assert st.key_prefix(secret) == key.prefix


def test_authenticate_finds_the_key_and_records_its_use(conn, org):
    key, secret = st.create_api_key(conn, "CI", org_id=org.id, now=NOW)
    version = st.config_version(conn)
    found = st.authenticate_api_key(conn, secret, now=NOW + timedelta(minutes=1))
    assert found is not None and found.id == key.id and found.last_used_at == NOW + timedelta(minutes=1)
    assert st.config_version(conn) == version  # use is not a configuration change
    untouched = st.authenticate_api_key(conn, secret, now=NOW + timedelta(minutes=2), touch=False)
    assert untouched is not None and untouched.last_used_at == NOW + timedelta(minutes=1)


@pytest.mark.parametrize(
    "presented", ["", "kk_", "kk_abcdefgh", "kk_abcdefgh_", "xx_abcdefgh_secret", "kk_abcdefghXsecret", None]
)
def test_malformed_keys_are_refused(conn, presented):
    assert st.authenticate_api_key(conn, presented) is None


def test_wrong_secret_with_a_known_prefix_is_refused(conn, org):
    key, secret = st.create_api_key(conn, "CI", org_id=org.id)
    assert st.authenticate_api_key(conn, secret[:-1] + ("A" if secret[-1] != "A" else "B")) is None
    assert st.authenticate_api_key(conn, key.prefix + "_" + "x" * 43) is None


def test_expired_keys_are_refused(conn, org):
    key, secret = st.create_api_key(conn, "CI", org_id=org.id, expires_at=NOW + timedelta(days=1), now=NOW)
    assert st.authenticate_api_key(conn, secret, now=NOW + timedelta(hours=23)) is not None
    assert st.authenticate_api_key(conn, secret, now=NOW + timedelta(days=1)) is None
    assert not st.get_api_key(conn, key.id).is_active(NOW + timedelta(days=2))
    with pytest.raises(st.Invalid) as e:
        st.create_api_key(conn, "old", org_id=org.id, expires_at=NOW, now=NOW)
    assert e.value.field == "expires_at" and "future" in e.value.message
    with pytest.raises(st.Invalid) as e:
        st.create_api_key(conn, "naive", org_id=org.id, expires_at=NOW.replace(tzinfo=None))
    assert e.value.field == "expires_at"


def test_revoked_keys_are_refused(conn, org):
    key, secret = st.create_api_key(conn, "CI", org_id=org.id)
    revoked = st.revoke_api_key(conn, key.id, now=NOW)
    assert revoked.revoked_at == NOW and not revoked.is_active(NOW)
    assert st.revoke_api_key(conn, key.id, now=NOW + timedelta(1)).revoked_at == NOW  # once
    assert st.authenticate_api_key(conn, secret) is None


@pytest.mark.parametrize(
    ("kw", "field"),
    [
        ({"scopes": "sites:read"}, "scopes"),
        ({"scopes": ["Sites"]}, "scopes"),
        ({"scopes": ["sites read"]}, "scopes"),
        ({"scopes": [5]}, "scopes"),
        ({"name": ""}, "name"),
    ],
)
def test_bad_keys_are_refused(conn, org, kw, field):
    kw = {"name": "CI"} | kw
    with pytest.raises(st.Invalid) as e:
        st.create_api_key(conn, kw.pop("name"), org_id=org.id, **kw)
    assert e.value.field == field
    assert count(conn, s.api_keys) == 0


def test_key_references_are_checked(conn):
    with pytest.raises(st.NotFound) as e:
        st.create_api_key(conn, "CI", org_id="org_nope")
    assert e.value.kind == "organization"
    with pytest.raises(st.NotFound) as e:
        st.create_api_key(conn, "CI", org_id=None, created_by="user_nope")
    assert e.value.kind == "user"


def test_list_update_and_delete_keys(conn, org):
    mine, _ = st.create_api_key(conn, "mine", org_id=org.id)
    instance, _ = st.create_api_key(conn, "operator", org_id=None, scopes=["*"])
    assert {k.id for k in st.list_api_keys(conn).items} == {mine.id, instance.id}
    assert [k.id for k in st.list_api_keys(conn, org_id=org.id).items] == [mine.id]
    assert [k.id for k in st.list_api_keys(conn, org_id=None).items] == [instance.id]
    updated = st.update_api_key(
        conn, mine.id, name="renamed", scopes=["sites:write"], expires_at=NOW, now=NOW - timedelta(1)
    )
    assert (updated.name, updated.scopes, updated.expires_at) == ("renamed", ("sites:write",), NOW)
    assert st.update_api_key(conn, mine.id, expires_at=None).expires_at is None
    with pytest.raises(st.Invalid):
        st.update_api_key(conn, mine.id, expires_at=NOW, now=NOW)
    st.delete_api_key(conn, mine.id)
    with pytest.raises(st.NotFound) as e:
        st.get_api_key(conn, mine.id)
    assert e.value.kind == "api key"
