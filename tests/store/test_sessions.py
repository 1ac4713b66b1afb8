"""Sessions and one-time codes: tokens stored hashed, timeouts, revocation, one use per code."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select
from store_support import NOW

from kokoa import store as st
from kokoa.store import _schema as s

IDLE = timedelta(hours=1)
DAY = timedelta(days=1)


@pytest.fixture
def people(conn):
    org = st.create_organization(conn, "Acme", now=NOW)
    ann = st.create_user(conn, "ann@example.com", password="correct horse", now=NOW)
    st.add_member(conn, org.id, ann.id, st.get_role_by_name(conn, org.id, "Member").id, now=NOW)
    web = st.create_resource(conn, org.id, "web", "http", hostname="app.example.com", now=NOW)
    return org, ann, web


def test_a_session_token_is_stored_hashed_and_found_by_it(conn, people):
    _, ann, _ = people
    session, token = st.create_session(conn, method="password", user_id=ann.id, lifetime=DAY, now=NOW)
    stored = conn.execute(select(s.sessions.c.token_hash)).scalar_one()
    assert token not in stored and stored == st.token_hash(token)
    found = st.lookup_session(conn, token, idle_timeout=IDLE, now=NOW + timedelta(minutes=5))
    assert found is not None and found.session_id == session.id
    assert (found.user_id, found.email, found.role_names) == (ann.id, "ann@example.com", ("Member",))
    assert st.lookup_session(conn, token + "x", idle_timeout=IDLE, now=NOW) is None
    assert st.lookup_session(conn, "short", idle_timeout=IDLE, now=NOW) is None


def test_idle_and_absolute_timeouts(conn, people):
    _, ann, _ = people
    _, token = st.create_session(conn, method="password", user_id=ann.id, lifetime=DAY, now=NOW)
    assert st.lookup_session(conn, token, idle_timeout=IDLE, now=NOW + IDLE - timedelta(seconds=1))
    assert st.lookup_session(conn, token, idle_timeout=IDLE, now=NOW + IDLE) is None
    # use restarts the idle clock, never the absolute one
    later = NOW + timedelta(minutes=50)
    session = st.lookup_session(conn, token, idle_timeout=IDLE, now=later)
    st.touch_sessions(conn, [session.session_id], now=later)
    assert st.lookup_session(conn, token, idle_timeout=IDLE, now=later + timedelta(minutes=50))
    assert st.lookup_session(conn, token, idle_timeout=timedelta(days=9), now=NOW + DAY) is None


def test_a_disabled_user_has_no_session(conn, people):
    _, ann, _ = people
    _, token = st.create_session(conn, method="password", user_id=ann.id, lifetime=DAY, now=NOW)
    st.update_user(conn, ann.id, status="disabled", now=NOW)
    assert st.lookup_session(conn, token, idle_timeout=IDLE, now=NOW) is None
    with pytest.raises(st.Invalid, match="disabled"):
        st.create_session(conn, method="password", user_id=ann.id, lifetime=DAY, now=NOW)


def test_a_code_is_exchanged_once_on_its_host_for_a_child_session(conn, people):
    _, ann, _ = people
    login, _ = st.create_session(conn, method="password", user_id=ann.id, lifetime=DAY, now=NOW)
    code = st.create_auth_code(
        conn,
        host="app.example.com",
        path="/x?y=1",
        method="password",
        parent_id=login.id,
        user_id=ann.id,
        now=NOW,
    )
    assert conn.execute(select(s.auth_codes.c.code_hash)).scalar_one() == st.token_hash(code)
    redeemed = st.redeem_auth_code(
        conn, code, "app.example.com", lifetime=DAY, idle_timeout=IDLE, now=NOW + timedelta(seconds=5)
    )
    assert redeemed is not None
    child, token, path = redeemed
    assert (child.kind, child.parent_id, child.host, path) == ("host", login.id, "app.example.com", "/x?y=1")
    assert st.lookup_session(conn, token, idle_timeout=IDLE, now=NOW).user_id == ann.id
    # used once only
    assert (
        st.redeem_auth_code(conn, code, "app.example.com", lifetime=DAY, idle_timeout=IDLE, now=NOW) is None
    )
    # signing out of the login session ends the child too
    st.revoke_session(conn, login.id, now=NOW)
    assert st.lookup_session(conn, token, idle_timeout=IDLE, now=NOW) is None


def test_a_code_for_another_host_or_too_late_is_refused_and_spent(conn, people):
    _, ann, _ = people
    login, _ = st.create_session(conn, method="password", user_id=ann.id, lifetime=DAY, now=NOW)

    def code():
        return st.create_auth_code(
            conn,
            host="app.example.com",
            path="/",
            method="password",
            parent_id=login.id,
            user_id=ann.id,
            now=NOW,
        )

    wrong_host = code()
    assert (
        st.redeem_auth_code(conn, wrong_host, "evil.example.com", lifetime=DAY, idle_timeout=IDLE, now=NOW)
        is None
    )
    assert (
        st.redeem_auth_code(conn, wrong_host, "app.example.com", lifetime=DAY, idle_timeout=IDLE, now=NOW)
        is None
    )
    late = code()
    too_late = NOW + st.AUTH_CODE_LIFETIME
    assert (
        st.redeem_auth_code(conn, late, "app.example.com", lifetime=DAY, idle_timeout=IDLE, now=too_late)
        is None
    )


def test_a_child_session_never_outlives_its_login_session(conn, people):
    _, ann, _ = people
    login, _ = st.create_session(
        conn, method="password", user_id=ann.id, lifetime=timedelta(hours=2), now=NOW
    )
    code = st.create_auth_code(
        conn, host="app.example.com", path="/", method="password", parent_id=login.id, user_id=ann.id, now=NOW
    )
    child, token, _ = st.redeem_auth_code(
        conn, code, "app.example.com", lifetime=DAY, idle_timeout=DAY, now=NOW
    )
    assert child.expires_at == login.expires_at
    assert st.lookup_session(conn, token, idle_timeout=DAY, now=NOW + timedelta(hours=2)) is None


def test_resource_scoped_sessions(conn, people):
    _, _, web = people
    code = st.create_auth_code(
        conn,
        host="app.example.com",
        path="/",
        method="email",
        resource_id=web.id,
        subject="bob@example.org",
        now=NOW,
    )
    _, token, _ = st.redeem_auth_code(conn, code, "app.example.com", lifetime=DAY, idle_timeout=IDLE, now=NOW)
    found = st.lookup_session(conn, token, idle_timeout=IDLE, now=NOW)
    assert (found.user_id, found.resource_id, found.email, found.role_ids) == (
        None,
        web.id,
        "bob@example.org",
        frozenset(),
    )


def test_revocations_are_configuration_changes_and_lists_show_active_sessions(conn, people):
    _, ann, _ = people
    one, _ = st.create_session(conn, method="password", user_id=ann.id, lifetime=DAY, now=NOW)
    two, _ = st.create_session(conn, method="password", user_id=ann.id, lifetime=DAY, now=NOW)
    before = st.config_version(conn)
    st.revoke_session(conn, one.id, now=NOW)
    assert st.config_version(conn) == before + 1
    assert [x.id for x in st.list_sessions(conn, user_id=ann.id, now=NOW).items] == [two.id]
    assert st.revoke_user_sessions(conn, ann.id, now=NOW) == 1
    assert st.list_sessions(conn, user_id=ann.id, now=NOW).items == ()
    assert len(st.list_sessions(conn, user_id=ann.id, active=False, now=NOW).items) == 2
    assert st.prune_sessions(conn, now=NOW + timedelta(days=3)) == 2


def test_a_code_bound_to_a_nonce_is_redeemed_with_that_nonce_only_and_spent_by_any_try(conn, people):
    _, ann, _ = people
    login, _ = st.create_session(conn, method="password", user_id=ann.id, lifetime=DAY, now=NOW)
    nonce = st.new_token()

    def code() -> str:
        return st.create_auth_code(
            conn,
            host="app.example.com",
            path="/x",
            method="password",
            parent_id=login.id,
            user_id=ann.id,
            nonce_hash=st.token_hash(nonce),
            now=NOW,
        )

    def redeem(made: str, with_nonce: str | None):
        return st.redeem_auth_code(
            conn, made, "app.example.com", lifetime=DAY, idle_timeout=IDLE, nonce=with_nonce, now=NOW
        )

    stored = conn.execute(select(s.auth_codes.c.nonce_hash)).scalars().all()
    assert stored == []
    good = code()
    assert conn.execute(select(s.auth_codes.c.nonce_hash)).scalar_one() == st.token_hash(nonce)
    assert redeem(good, nonce) is not None
    # Another browser's nonce, none, or an empty one: refused, and the code is spent for everyone.
    for wrong in (st.new_token(), None, ""):
        lifted = code()
        assert redeem(lifted, wrong) is None
        assert redeem(lifted, nonce) is None
    # A code minted without a nonce (kokoa connect's) is not redeemed with one.
    cli = st.create_auth_code(
        conn, host="app.example.com", path="/", method="cli", parent_id=login.id, user_id=ann.id, now=NOW
    )
    assert redeem(cli, nonce) is None
    cli = st.create_auth_code(
        conn, host="app.example.com", path="/", method="cli", parent_id=login.id, user_id=ann.id, now=NOW
    )
    assert redeem(cli, None) is not None


def test_the_instance_key_is_made_once_and_shared(conn):
    made = []

    def make() -> bytes:
        made.append(1)
        return bytes(range(32))

    first = st.instance_key(conn, "cookie", make)
    assert first == bytes(range(32)) and st.instance_key(conn, "cookie", make) == first
    assert len(made) == 1
    assert st.instance_key(conn, "other", lambda: b"x" * 32) == b"x" * 32
