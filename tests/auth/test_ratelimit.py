"""kokoa.auth._ratelimit: token buckets (their bound, liveness and memory) and the sign-in limiter."""

from __future__ import annotations

import dataclasses
import math
from itertools import accumulate

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kokoa.auth._ratelimit import Refusal, SignInLimiter, TokenBucketLimiter

pytestmark = pytest.mark.sans_io

SETTINGS = settings(max_examples=300, deadline=None)

capacities = st.integers(1, 10)
rates = st.floats(0.01, 10.0)
#: Gaps between attempts: bursts (0), small steps, and long pauses.
gaps = st.one_of(st.just(0.0), st.floats(0.0, 2.0), st.floats(0.0, 1000.0))


def times_from(start: float, deltas: list[float]) -> list[float]:
    return list(accumulate(deltas, initial=start))[1:]


# --- TokenBucketLimiter -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((0, 1.0), "capacity"),
        ((-1, 1.0), "capacity"),
        ((1.5, 1.0), "capacity"),
        ((True, 1.0), "capacity"),
        ((1, 0.0), "refill_per_second"),
        ((1, -1.0), "refill_per_second"),
        ((1, math.inf), "refill_per_second"),
        ((1, math.nan), "refill_per_second"),
        ((1, "1"), "refill_per_second"),
        ((1, 1.0, 0), "max_keys"),
        ((1, 1.0, 2.0), "max_keys"),
    ],
)
def test_bad_arguments(args, message):
    with pytest.raises(ValueError, match=message):
        TokenBucketLimiter(*args)


@pytest.mark.parametrize("now", [math.nan, math.inf, -math.inf])
def test_non_finite_time_is_an_error(now):
    limiter = TokenBucketLimiter(1, 1.0)
    with pytest.raises(ValueError, match="finite"):
        limiter.take("k", now)
    with pytest.raises(ValueError, match="finite"):
        limiter.wait("k", now)


def test_burst_then_refill():
    limiter = TokenBucketLimiter(3, 0.5)
    assert [limiter.take("k", 100.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.take("k", 100.0) == pytest.approx(2.0)
    assert limiter.take("k", 101.0) == pytest.approx(1.0)  # a refusal consumed nothing
    assert limiter.take("other", 101.0) == 0.0  # keys are independent
    assert limiter.take("k", 102.0) == 0.0
    assert limiter.take("k", 102.0) == pytest.approx(2.0)


def test_wait_neither_consumes_nor_remembers():
    limiter = TokenBucketLimiter(1, 1.0)
    assert limiter.wait("k", 0.0) == 0.0
    assert len(limiter) == 0
    assert limiter.take("k", 0.0) == 0.0
    assert limiter.wait("k", 0.25) == pytest.approx(0.75)
    assert limiter.wait("k", 0.25) == pytest.approx(0.75)
    assert limiter.wait("k", 1.0) == 0.0


def test_clock_going_back_refills_nothing():
    limiter = TokenBucketLimiter(1, 1.0)
    assert limiter.take("k", 10.0) == 0.0
    assert limiter.take("k", 5.0) == pytest.approx(1.0)
    assert limiter.take("k", 10.5) == pytest.approx(0.5)
    assert limiter.take("k", 11.0) == 0.0


def test_clear_forgets_a_key():
    limiter = TokenBucketLimiter(1, 0.001)
    limiter.take("k", 0.0)
    assert limiter.take("k", 0.0) > 0
    limiter.clear("k")
    limiter.clear("never seen")
    assert len(limiter) == 0
    assert limiter.take("k", 0.0) == 0.0


@SETTINGS
@given(capacity=capacities, rate=rates, start=st.floats(-1e6, 1e9), deltas=st.lists(gaps, max_size=60))
def test_never_more_than_capacity_plus_refill(capacity, rate, start, deltas):
    limiter = TokenBucketLimiter(capacity, rate)
    times = times_from(start, deltas)
    allowed = [t for t in times if limiter.take("k", t) == 0.0]
    for i, first in enumerate(allowed):  # every window of allowed attempts
        for j in range(i, len(allowed)):
            assert j - i + 1 <= capacity + (allowed[j] - first) * rate + 1e-5


@SETTINGS
@given(capacity=capacities, rate=rates, start=st.floats(-1e6, 1e9), deltas=st.lists(gaps, max_size=30))
def test_waiting_the_answer_is_enough(capacity, rate, start, deltas):
    limiter = TokenBucketLimiter(capacity, rate)
    now = start
    for gap in deltas:
        now += gap
        wait = limiter.take("k", now)
        assert 0.0 <= wait <= (1 + 1e-5) / rate
        if wait:
            assert limiter.wait("k", now) == wait
            now += wait
            assert limiter.take("k", now) == 0.0


@SETTINGS
@given(
    max_keys=st.integers(1, 12),
    capacity=capacities,
    rate=rates,
    attempts=st.lists(st.tuples(st.integers(0, 30), gaps), max_size=150),
)
def test_memory_is_bounded(max_keys, capacity, rate, attempts):
    limiter = TokenBucketLimiter(capacity, rate, max_keys=max_keys)
    now = 0.0
    for key, gap in attempts:
        now += gap
        limiter.take(str(key), now)
        assert len(limiter) <= max_keys


def test_full_buckets_go_first():
    limiter = TokenBucketLimiter(2, 0.1, max_keys=3)
    limiter.take("busy", 0.0)
    limiter.take("busy", 0.0)  # empty: it has state worth keeping
    limiter.take("a", 1.0)
    limiter.take("b", 2.0)
    limiter.take("new", 15.0)  # "a" and "b" are full again by now; "busy" holds 1.5 tokens
    assert len(limiter) == 2
    assert limiter.take("busy", 15.0) == 0.0
    assert limiter.take("busy", 15.0) > 0


def test_least_recently_touched_go_next():
    limiter = TokenBucketLimiter(1, 1e-6, max_keys=20)
    for i in range(20):
        limiter.take(f"k{i}", float(i))
    limiter.take("k0", 20.0)  # refused, but touched: now the most recent
    limiter.take("new", 21.0)  # nothing is full: a tenth (the two least recently touched) goes
    assert len(limiter) == 19
    assert [i for i in range(20) if limiter.wait(f"k{i}", 22.0) == 0.0] == [1, 2]  # forgotten: full
    assert limiter.wait("new", 22.0) > 0


# --- SignInLimiter ------------------------------------------------------------------------------


def test_refusal_is_a_frozen_dataclass():
    refusal = Refusal("no", 3)
    with pytest.raises(dataclasses.FrozenInstanceError):
        refusal.retry_after = 4  # type: ignore[misc]


def test_five_attempts_per_account_then_one_a_minute():
    limiter = SignInLimiter()
    for i in range(5):
        assert limiter.check("alice@example.com", f"192.0.2.{i}", 0.0) is None
    refusal = limiter.check("alice@example.com", "192.0.2.99", 8.0)
    assert refusal == Refusal("Too many sign-in attempts for this account. Try again in 52 seconds.", 52)
    assert limiter.check("bob@example.com", "192.0.2.99", 8.0) is None
    assert limiter.check("alice@example.com", "192.0.2.99", 59.5) == Refusal(
        "Too many sign-in attempts for this account. Try again in 1 second.", 1
    )
    assert limiter.check("alice@example.com", "192.0.2.99", 60.0) is None
    assert limiter.check("alice@example.com", "192.0.2.99", 60.0) is not None


def test_accounts_are_case_insensitive():
    limiter = SignInLimiter(account_capacity=2)
    assert limiter.check("Alice@Example.com", "192.0.2.1", 0.0) is None
    assert limiter.check("alice@example.com", "192.0.2.2", 0.0) is None
    assert limiter.check("ALICE@EXAMPLE.COM", "192.0.2.3", 0.0) is not None


def test_twenty_attempts_per_address_then_one_every_three_seconds():
    limiter = SignInLimiter()
    for i in range(20):
        assert limiter.check(f"user{i}@example.com", "192.0.2.1", 0.0) is None
    refusal = limiter.check("someone@example.com", "192.0.2.1", 1.0)
    assert refusal == Refusal("Too many sign-in attempts from your network. Try again in 2 seconds.", 2)
    assert limiter.check("someone@example.com", "192.0.2.2", 1.0) is None
    assert limiter.check("someone@example.com", "192.0.2.1", 3.0) is None


def test_ipv6_counts_per_64():
    limiter = SignInLimiter(address_capacity=2)
    assert limiter.check("a@example.com", "2001:db8:1:2::1", 0.0) is None
    assert limiter.check("b@example.com", "2001:db8:1:2:ffff::9", 0.0) is None
    assert "network" in limiter.check("c@example.com", "2001:db8:1:2::abcd", 0.0).message
    assert limiter.check("c@example.com", "2001:db8:1:3::1", 0.0) is None
    # An IPv4-mapped address is the IPv4 address; anything unparsable is a key as it is.
    assert limiter.check("d@example.com", "::ffff:192.0.2.7", 0.0) is None
    assert limiter.check("e@example.com", "192.0.2.7", 0.0) is None
    assert limiter.check("f@example.com", "192.0.2.7", 0.0) is not None
    assert limiter.check("g@example.com", "unix:/run/kokoa.sock", 0.0) is None


def test_refused_by_account_takes_nothing_from_the_address():
    limiter = SignInLimiter()
    for _ in range(5):
        assert limiter.check("alice@example.com", "192.0.2.1", 0.0) is None
    for _ in range(100):
        assert "account" in limiter.check("alice@example.com", "192.0.2.1", 0.0).message
    for i in range(15):  # the address's other 15 attempts are all still there
        assert limiter.check(f"user{i}@example.com", "192.0.2.1", 0.0) is None
    assert "network" in limiter.check("bob@example.com", "192.0.2.1", 0.0).message


def test_refused_by_address_takes_nothing_from_the_account():
    limiter = SignInLimiter()
    for i in range(20):
        assert limiter.check(f"user{i}@example.com", "192.0.2.1", 0.0) is None
    for _ in range(100):
        assert "network" in limiter.check("alice@example.com", "192.0.2.1", 0.0).message
    for i in range(5):  # the account's 5 attempts are all still there
        assert limiter.check("alice@example.com", f"198.51.100.{i}", 0.0) is None
    assert "account" in limiter.check("alice@example.com", "198.51.100.99", 0.0).message


def test_both_refuse_reports_the_longer_wait():
    limiter = SignInLimiter(account_capacity=1, address_capacity=1)
    assert limiter.check("alice@example.com", "192.0.2.1", 0.0) is None
    refusal = limiter.check("alice@example.com", "192.0.2.1", 1.0)
    assert refusal is not None
    assert (refusal.retry_after, "account" in refusal.message) == (59, True)
    limiter = SignInLimiter(account_capacity=1, account_refill_seconds=2.0, address_capacity=1)
    assert limiter.check("alice@example.com", "192.0.2.1", 0.0) is None
    refusal = limiter.check("alice@example.com", "192.0.2.1", 0.0)
    assert refusal is not None
    assert (refusal.retry_after, "network" in refusal.message) == (3, True)


def test_success_clears_the_account():
    limiter = SignInLimiter()
    for _ in range(5):
        limiter.check("alice@example.com", "192.0.2.1", 0.0)
    assert limiter.check("alice@example.com", "192.0.2.1", 0.0) is not None
    limiter.succeeded("ALICE@example.com")
    assert limiter.check("alice@example.com", "192.0.2.1", 0.0) is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"account_capacity": 0}, "account limit: capacity"),
        ({"address_capacity": 0}, "address limit: capacity"),
        ({"account_refill_seconds": 0}, "account_refill_seconds"),
        ({"address_refill_seconds": -3}, "address_refill_seconds"),
        ({"account_refill_seconds": math.inf}, "account_refill_seconds"),
        ({"max_keys": 0}, "max_keys"),
    ],
)
def test_sign_in_limiter_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SignInLimiter(**kwargs)


@SETTINGS
@given(
    attempts=st.lists(
        st.tuples(st.sampled_from(["a", "A", "b", "c"]), st.sampled_from(["192.0.2.1", "192.0.2.2"]), gaps),
        max_size=120,
    )
)
def test_sign_in_limits_hold_and_retry_after_is_enough(attempts):
    limiter = SignInLimiter(account_capacity=3, account_refill_seconds=10.0, address_capacity=5)
    allowed: dict[str, list[float]] = {}
    now = 0.0
    for account, address, gap in attempts:
        now += gap
        refusal = limiter.check(account, address, now)
        if refusal is None:
            allowed.setdefault(account.lower(), []).append(now)
            allowed.setdefault(address, []).append(now)
        else:
            assert refusal.retry_after >= 1
            assert f"Try again in {refusal.retry_after} second" in refusal.message
            # Waiting it out is enough for this pair, when nothing else happens meanwhile.
            assert limiter.accounts.wait(account.lower(), now + refusal.retry_after) == 0.0
            assert limiter.addresses.wait(address, now + refusal.retry_after) == 0.0
    for key, times in allowed.items():
        capacity, rate = (5, 1 / 3) if key.startswith("192.") else (3, 1 / 10)
        for i, first in enumerate(times):
            for j in range(i, len(times)):
                assert j - i + 1 <= capacity + (times[j] - first) * rate + 1e-5
