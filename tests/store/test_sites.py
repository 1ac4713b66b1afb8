"""Sites: secrets shown once, stored hashed, rotated with a grace period; presence."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest
from sqlalchemy import select
from store_support import NOW, count

from kokoa import store as st
from kokoa.secrets import hash_secret
from kokoa.store import _schema as s

pytestmark = pytest.mark.sans_io  # repository calls on a connection: no reactor involved


@pytest.fixture
def org(conn):
    return st.create_organization(conn, "Acme")


def test_create_returns_the_secret_once_and_keeps_its_hash(conn, org):
    site, secret = st.create_site(conn, org.id, "Home lab", now=NOW)
    assert site.id.startswith("site_") and (site.name, site.enabled, site.online, site.last_seen_at) == (
        "Home lab",
        True,
        False,
        None,
    )
    assert len(secret) >= 43
    assert not {"secret_hash", "previous_secret_hash"} & {f.name for f in dataclasses.fields(st.Site)}
    stored = conn.execute(select(s.sites.c.secret_hash).where(s.sites.c.id == site.id)).scalar_one()
    assert stored == hash_secret(secret) and secret not in stored
    assert st.get_site(conn, site.id) == site
    assert st.authenticate_site(conn, site.id, secret) == st.get_site_credentials(conn, site.id)
    assert st.authenticate_site(conn, site.id, secret + "x") is None
    assert st.authenticate_site(conn, "site_nope", secret) is None
    assert st.authenticate_site(conn, site.id, None) is None


def test_a_disabled_site_still_authenticates_and_says_so(conn, org):
    site, secret = st.create_site(conn, org.id, "home", enabled=False)
    credentials = st.authenticate_site(conn, site.id, secret)
    assert credentials is not None and credentials.enabled is False


def test_site_names_are_unique_per_organization(conn, org):
    st.create_site(conn, org.id, "home")
    with pytest.raises(st.Conflict) as e:
        st.create_site(conn, org.id, "HOME")
    assert e.value.field == "name"
    other = st.create_organization(conn, "Other")
    st.create_site(conn, other.id, "home")
    office, _ = st.create_site(conn, org.id, "office")
    with pytest.raises(st.Conflict):
        st.update_site(conn, office.id, name="Home")
    assert count(conn, s.sites) == 3


def test_bad_site_input(conn, org):
    with pytest.raises(st.Invalid) as e:
        st.create_site(conn, org.id, "")
    assert e.value.field == "name"
    with pytest.raises(st.Invalid) as e:
        st.create_site(conn, org.id, "home", enabled="yes")
    assert e.value.field == "enabled"
    with pytest.raises(st.NotFound) as nf:
        st.create_site(conn, "org_nope", "home")
    assert nf.value.kind == "organization"


def test_update_and_delete(conn, org):
    site, _ = st.create_site(conn, org.id, "home", now=NOW)
    updated = st.update_site(conn, site.id, name="house", enabled=False, now=NOW + timedelta(1))
    assert (updated.name, updated.enabled, updated.updated_at) == ("house", False, NOW + timedelta(1))
    res = st.create_resource(conn, org.id, "ssh", "tcp", public_port=2222)
    st.create_target(conn, res.id, site.id, "10.0.0.1", 22)
    st.delete_site(conn, site.id)
    assert count(conn, s.targets) == 0 and count(conn, s.resources) == 1
    with pytest.raises(st.NotFound):
        st.get_site(conn, site.id)


def test_list_sites(conn, org):
    other = st.create_organization(conn, "Other")
    mine = [st.create_site(conn, org.id, f"s{i}")[0] for i in range(3)]
    st.create_site(conn, other.id, "theirs")
    assert {x.id for x in st.list_sites(conn, org_id=org.id).items} == {x.id for x in mine}
    assert len(st.list_sites(conn).items) == 4


def test_rotation_keeps_the_old_secret_valid_for_the_grace_period(conn, org):
    site, old = st.create_site(conn, org.id, "home", now=NOW)
    rotated, new = st.rotate_site_secret(conn, site.id, grace=timedelta(hours=1), now=NOW)
    assert new != old and rotated.previous_secret_expires_at == NOW + timedelta(hours=1)
    just_before = NOW + timedelta(minutes=59, seconds=59)
    assert st.authenticate_site(conn, site.id, new, now=just_before) is not None
    assert st.authenticate_site(conn, site.id, old, now=just_before) is not None
    assert st.authenticate_site(conn, site.id, old, now=NOW + timedelta(hours=1)) is None
    assert st.authenticate_site(conn, site.id, new, now=NOW + timedelta(days=365)) is not None


def test_default_grace_period_is_a_day(conn, org):
    assert timedelta(hours=24) == st.SECRET_GRACE_PERIOD
    site, old = st.create_site(conn, org.id, "home")
    rotated, _ = st.rotate_site_secret(conn, site.id, now=NOW)
    assert rotated.previous_secret_expires_at == NOW + timedelta(hours=24)
    assert st.authenticate_site(conn, site.id, old, now=NOW + timedelta(hours=23)) is not None


def test_rotation_without_grace_revokes_at_once(conn, org):
    site, old = st.create_site(conn, org.id, "home")
    _, new = st.rotate_site_secret(conn, site.id, grace=timedelta(0), now=NOW)
    assert st.authenticate_site(conn, site.id, old, now=NOW) is None
    assert st.authenticate_site(conn, site.id, new, now=NOW) is not None
    with pytest.raises(st.Invalid) as e:
        st.rotate_site_secret(conn, site.id, grace=timedelta(seconds=-1))
    assert e.value.field == "grace"


def test_rotating_again_ends_the_older_secrets_grace(conn, org):
    site, first = st.create_site(conn, org.id, "home")
    _, second = st.rotate_site_secret(conn, site.id, now=NOW)
    _, third = st.rotate_site_secret(conn, site.id, now=NOW)
    assert st.authenticate_site(conn, site.id, first, now=NOW) is None
    assert st.authenticate_site(conn, site.id, second, now=NOW) is not None
    assert st.authenticate_site(conn, site.id, third, now=NOW) is not None
    with pytest.raises(st.NotFound):
        st.rotate_site_secret(conn, "site_nope")


def test_credentials_check_in_memory(conn, org):
    site, old = st.create_site(conn, org.id, "home")
    _, new = st.rotate_site_secret(conn, site.id, grace=timedelta(minutes=5), now=NOW)
    credentials = st.get_site_credentials(conn, site.id)
    assert credentials.accepts(new) and credentials.accepts(old, NOW)
    assert not credentials.accepts(old, NOW + timedelta(minutes=5)) and not credentials.accepts("x", NOW)


def test_presence_is_recorded_without_a_configuration_change(conn, org):
    site, _ = st.create_site(conn, org.id, "home")
    version = st.config_version(conn)
    st.mark_site_seen(conn, site.id, now=NOW)
    assert (st.get_site(conn, site.id).online, st.get_site(conn, site.id).last_seen_at) == (True, NOW)
    st.mark_site_seen(conn, site.id, online=False, now=NOW + timedelta(1))
    seen = st.get_site(conn, site.id)
    assert (seen.online, seen.last_seen_at, seen.updated_at) == (False, NOW + timedelta(1), site.updated_at)
    assert st.config_version(conn) == version
    with pytest.raises(st.NotFound):
        st.mark_site_seen(conn, "site_nope")
