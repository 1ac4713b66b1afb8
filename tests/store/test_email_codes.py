"""Email codes: six digits stored hashed, a bounded number per address, a bounded number of tries, one use."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select
from store_support import NOW, count

from kokoa import store as st
from kokoa.store import _schema as s

pytestmark = pytest.mark.sans_io  # repository calls on a connection: no reactor involved

ANN = "ann@example.com"


@pytest.fixture
def web(conn):
    org = st.create_organization(conn, "Acme", now=NOW)
    return st.create_resource(conn, org.id, "web", "http", hostname="app.example.com", now=NOW)


def _wrong(code: str) -> str:
    return f"{(int(code) + 1) % 1_000_000:06d}"


def test_a_code_is_six_digits_stored_hashed_and_used_once(conn, web):
    code = st.create_email_code(conn, web.id, " Ann@Example.COM", now=NOW)
    assert len(code) == 6 and code.isdigit()
    row = conn.execute(select(s.email_codes)).one()
    assert (row.email, row.attempts, row.used_at) == (ANN, 0, None)
    assert (
        row.expires_at == NOW + timedelta(minutes=10)
        and code not in row.code_hash
        and len(row.code_hash) == 64
    )
    assert st.verify_email_code(conn, web.id, "ANN@example.com", code, now=NOW + timedelta(minutes=9))
    assert not st.verify_email_code(conn, web.id, ANN, code, now=NOW + timedelta(minutes=9))  # used


def test_a_code_is_bound_to_its_resource_and_address(conn, web):
    other = st.create_resource(conn, web.org_id, "api", "http", hostname="api.example.com", now=NOW)
    code = st.create_email_code(conn, web.id, ANN, now=NOW)
    assert not st.verify_email_code(conn, other.id, ANN, code, now=NOW)
    assert not st.verify_email_code(conn, web.id, "bob@example.com", code, now=NOW)
    assert st.verify_email_code(conn, web.id, ANN, code, now=NOW)


def test_an_expired_code_is_refused(conn, web):
    code = st.create_email_code(conn, web.id, ANN, lifetime=timedelta(minutes=1), now=NOW)
    assert not st.verify_email_code(conn, web.id, ANN, code, now=NOW + timedelta(minutes=1))
    fresh = st.create_email_code(conn, web.id, ANN, lifetime=timedelta(minutes=1), now=NOW)
    assert st.verify_email_code(conn, web.id, ANN, fresh, now=NOW + timedelta(seconds=59))


def test_wrong_tries_count_against_every_live_code_until_they_die(conn, web):
    first = st.create_email_code(conn, web.id, ANN, now=NOW)
    second = st.create_email_code(conn, web.id, ANN, now=NOW)
    wrong = next(c for c in (_wrong(first), _wrong(_wrong(first))) if c != second)
    for _ in range(4):
        assert not st.verify_email_code(conn, web.id, ANN, wrong, now=NOW)
    assert conn.execute(select(s.email_codes.c.attempts)).scalars().all() == [4, 4]
    assert st.verify_email_code(conn, web.id, ANN, first, now=NOW)  # 4 wrong tries: still alive

    third = st.create_email_code(conn, web.id, ANN, now=NOW)
    for bad in ("", "12345", "1234567", "abcdef", None, "\uff11\uff12\uff13\uff14\uff15\uff16"):
        assert not st.verify_email_code(conn, web.id, ANN, bad, now=NOW)  # malformed codes are tries too
    assert not st.verify_email_code(conn, web.id, ANN, third, now=NOW)  # dead after 5 wrong tries


def test_wrong_tries_are_kept_when_the_caller_commits(engine):
    """A wrong code returns False (no exception), so the transaction commits the tries it counted."""
    with engine.begin() as conn:
        org = st.create_organization(conn, "Acme")
        web = st.create_resource(conn, org.id, "web", "http", hostname="app.example.com")
        code = st.create_email_code(conn, web.id, ANN)
    with engine.begin() as conn:
        assert not st.verify_email_code(conn, web.id, ANN, _wrong(code))
    with engine.connect() as conn:
        assert conn.execute(select(s.email_codes.c.attempts)).scalar_one() == 1


def test_max_attempts_is_the_callers(conn, web):
    code = st.create_email_code(conn, web.id, ANN, now=NOW)
    assert not st.verify_email_code(conn, web.id, ANN, _wrong(code), max_attempts=1, now=NOW)
    assert not st.verify_email_code(conn, web.id, ANN, code, max_attempts=1, now=NOW)
    assert st.verify_email_code(conn, web.id, ANN, code, max_attempts=3, now=NOW)


def test_a_right_code_uses_up_the_others(conn, web):
    first = st.create_email_code(conn, web.id, ANN, now=NOW)
    second = st.create_email_code(conn, web.id, ANN, now=NOW)
    assert st.verify_email_code(conn, web.id, ANN, second, now=NOW)
    assert not st.verify_email_code(conn, web.id, ANN, first, now=NOW)


def test_at_most_five_live_codes_per_address(conn, web):
    for _ in range(st.MAX_LIVE_EMAIL_CODES):
        st.create_email_code(conn, web.id, ANN, now=NOW)
    with pytest.raises(st.Conflict) as e:
        st.create_email_code(conn, web.id, ANN, now=NOW)
    assert e.value.field == "email" and "still valid" in e.value.message
    st.create_email_code(conn, web.id, "bob@example.com", now=NOW)  # another address has its own
    # expired codes make room (and are deleted)
    later = NOW + timedelta(minutes=10)
    assert st.create_email_code(conn, web.id, ANN, now=later)
    assert count(conn, s.email_codes) == 2


def test_a_used_code_makes_room(conn, web):
    codes = [st.create_email_code(conn, web.id, ANN, now=NOW) for _ in range(st.MAX_LIVE_EMAIL_CODES)]
    assert st.verify_email_code(conn, web.id, ANN, codes[0], now=NOW)
    assert st.create_email_code(conn, web.id, ANN, now=NOW)


def test_bad_requests_are_refused(conn, web):
    with pytest.raises(st.Invalid) as e:
        st.create_email_code(conn, web.id, "not an address")
    assert e.value.field == "email"
    with pytest.raises(st.Invalid) as e:
        st.create_email_code(conn, web.id, ANN, lifetime=timedelta(0))
    assert e.value.field == "lifetime"
    with pytest.raises(st.NotFound):
        st.create_email_code(conn, "res_nope", ANN)
    assert count(conn, s.email_codes) == 0
    assert not st.verify_email_code(conn, web.id, "not an address", "123456")


def test_codes_are_not_configuration_changes(conn, web):
    version = st.config_version(conn)
    code = st.create_email_code(conn, web.id, ANN)
    st.verify_email_code(conn, web.id, ANN, code)
    assert st.config_version(conn) == version
