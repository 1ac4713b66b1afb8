"""One-time links for users: stored hashed, used once, before they expire, for their purpose only."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select
from store_support import NOW, count

from kokoa import store as st
from kokoa.store import _schema as s

pytestmark = pytest.mark.sans_io  # repository calls on a connection: no reactor involved

HOUR = timedelta(hours=1)


@pytest.fixture
def ann(conn):
    return st.create_user(conn, "ann@example.com", now=NOW)


def test_a_token_is_stored_hashed_peeked_at_and_used_once(conn, ann):
    token = st.create_user_token(conn, ann.id, "reset", lifetime=HOUR, created_by="key:kk_abcd1234", now=NOW)
    row = conn.execute(select(s.user_tokens)).one()
    assert row.token_hash == st.token_hash(token) and token not in row.token_hash
    assert (row.user_id, row.purpose, row.created_by, row.expires_at) == (
        ann.id,
        "reset",
        "key:kk_abcd1234",
        NOW + HOUR,
    )
    assert st.peek_user_token(conn, token, "reset", now=NOW) == ann
    assert st.peek_user_token(conn, token, "reset", now=NOW) == ann  # peeking does not use it
    assert st.redeem_user_token(conn, token, "reset", now=NOW + timedelta(minutes=5)) == ann
    assert st.redeem_user_token(conn, token, "reset", now=NOW + timedelta(minutes=5)) is None
    assert st.peek_user_token(conn, token, "reset", now=NOW + timedelta(minutes=5)) is None


def test_expired_unknown_and_other_purposes_are_refused(conn, ann):
    token = st.create_user_token(conn, ann.id, "invite", lifetime=HOUR, now=NOW)
    assert st.peek_user_token(conn, token, "reset", now=NOW) is None
    assert st.redeem_user_token(conn, token, "reset", now=NOW) is None
    assert st.redeem_user_token(conn, token, "invite", now=NOW + HOUR) is None
    assert st.peek_user_token(conn, token, "invite", now=NOW + HOUR) is None
    for bad in (token + "x", "short", "", None, 42, "x" * 101):
        assert st.redeem_user_token(conn, bad, "invite", now=NOW) is None
        assert st.peek_user_token(conn, bad, "invite", now=NOW) is None
    assert st.redeem_user_token(conn, token, "invite", now=NOW + HOUR - timedelta(seconds=1)) == ann


def test_a_new_token_replaces_the_earlier_ones_of_its_purpose(conn, ann):
    old = st.create_user_token(conn, ann.id, "reset", lifetime=HOUR, now=NOW)
    invite = st.create_user_token(conn, ann.id, "invite", lifetime=HOUR, now=NOW)
    new = st.create_user_token(conn, ann.id, "reset", lifetime=HOUR, now=NOW)
    assert st.peek_user_token(conn, old, "reset", now=NOW) is None
    assert st.peek_user_token(conn, new, "reset", now=NOW) == ann
    assert st.peek_user_token(conn, invite, "invite", now=NOW) == ann  # another purpose: kept
    bob = st.create_user(conn, "bob@example.com", now=NOW)
    st.create_user_token(conn, bob.id, "reset", lifetime=HOUR, now=NOW)
    assert st.peek_user_token(conn, new, "reset", now=NOW) == ann  # another user's: kept
    assert count(conn, s.user_tokens) == 3


def test_bad_tokens_are_refused(conn, ann):
    for kw, field in [
        ({"purpose": "login"}, "purpose"),
        ({"lifetime": timedelta(0)}, "lifetime"),
        ({"created_by": ""}, "created_by"),
    ]:
        args = {"purpose": "reset", "lifetime": HOUR} | kw
        with pytest.raises(st.Invalid) as e:
            st.create_user_token(conn, ann.id, args.pop("purpose"), **args)
        assert e.value.field == field
    with pytest.raises(st.NotFound):
        st.create_user_token(conn, "user_nope", "reset", lifetime=HOUR)
    assert count(conn, s.user_tokens) == 0
    assert st.create_user_token(conn, ann.id, "setup", lifetime=HOUR)


def test_tokens_go_with_their_user_and_are_not_configuration_changes(conn, ann):
    version = st.config_version(conn)
    token = st.create_user_token(conn, ann.id, "setup", lifetime=HOUR)
    assert st.redeem_user_token(conn, token, "setup") == ann
    assert st.config_version(conn) == version
    st.create_user_token(conn, ann.id, "reset", lifetime=HOUR)
    st.delete_user(conn, ann.id)
    assert count(conn, s.user_tokens) == 0
