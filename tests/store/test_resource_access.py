"""A resource's access settings in the store: public by kind, its own password, PIN and email list
(hashed, checked), and what changing them does to the sessions they opened."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select
from store_support import NOW

from kokoa import store as st
from kokoa.store import _schema as s


@pytest.fixture
def org(conn):
    return st.create_organization(conn, "Acme", now=NOW)


def test_http_resources_are_protected_and_tcp_ones_public_by_default(conn, org):
    web = st.create_resource(conn, org.id, "web", "http", hostname="a.example.com", now=NOW)
    ssh = st.create_resource(conn, org.id, "ssh", "tcp", public_port=2222, now=NOW)
    assert (web.public, ssh.public) == (False, True)
    assert st.create_resource(conn, org.id, "open", "http", hostname="b.example.com", public=True).public


def test_a_resources_own_credentials_are_hashed_and_checked(conn, org):
    web = st.create_resource(
        conn,
        org.id,
        "web",
        "http",
        hostname="a.example.com",
        auth_password="open sesame",
        auth_pin="654321",
        auth_email_allow=["Bob@Example.org", "@Guests.example", "bob@example.org"],
        now=NOW,
    )
    assert (web.has_password, web.has_pin) == (True, True)
    assert web.auth_email_allow == ("@guests.example", "bob@example.org")
    row = conn.execute(select(s.resources).where(s.resources.c.id == web.id)).one()
    assert row.auth_password_hash.startswith("$argon2id$") and "open sesame" not in row.auth_password_hash
    assert st.check_password(row.auth_pin_hash, "654321") and not st.check_password(row.auth_pin_hash, "1")
    assert st.email_allowed(web, "anyone@guests.example") and not st.email_allowed(web, "eve@example.org")
    cleared = st.update_resource(
        conn, web.id, auth_password=None, auth_pin=None, auth_email_allow=[], now=NOW
    )
    assert (cleared.has_password, cleared.has_pin, cleared.auth_email_allow) == (False, False, ())


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"auth_pin": "1234"}, "auth_pin"),  # too short to resist guessing
        ({"auth_pin": "12345a"}, "auth_pin"),
        ({"auth_pin": "1" * 13}, "auth_pin"),
        ({"auth_password": "short"}, "auth_password"),
        ({"auth_email_allow": "bob@example.org"}, "auth_email_allow"),
        ({"auth_email_allow": ["not an address"]}, "auth_email_allow[0]"),
        ({"auth_email_allow": ["@bad_domain!"]}, "auth_email_allow[0]"),
        ({"auth_email_allow": [f"u{i}@example.org" for i in range(101)]}, "auth_email_allow"),
    ],
)
def test_bad_credentials_are_refused_and_nothing_is_written(conn, org, fields, field):
    with pytest.raises(st.Invalid) as refused:
        st.create_resource(conn, org.id, "web", "http", hostname="a.example.com", now=NOW, **fields)
    assert refused.value.field == field
    assert st.list_resources(conn, org_id=org.id).items == ()


def test_tcp_resources_have_no_sign_in_page(conn, org):
    with pytest.raises(st.Invalid, match="sign-in page"):
        st.create_resource(conn, org.id, "ssh", "tcp", public_port=2222, auth_pin="654321", now=NOW)


def test_a_new_pin_ends_the_sessions_the_old_one_opened(conn, org):
    web = st.create_resource(
        conn, org.id, "web", "http", hostname="a.example.com", auth_pin="654321", now=NOW
    )
    day = timedelta(days=1)
    by_pin, _ = st.create_session(conn, kind="host", method="pin", lifetime=day, resource_id=web.id, now=NOW)
    by_mail, _ = st.create_session(
        conn, kind="host", method="email", lifetime=day, resource_id=web.id, now=NOW
    )
    st.update_resource(conn, web.id, auth_pin="111222", now=NOW)
    assert st.get_session(conn, by_pin.id).revoked_at is not None
    assert st.get_session(conn, by_mail.id).revoked_at is None  # the email list did not change
    st.update_resource(conn, web.id, auth_email_allow=["@example.org"], now=NOW)
    assert st.get_session(conn, by_mail.id).revoked_at is not None
