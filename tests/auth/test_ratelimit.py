"""kokoa.auth._ratelimit: token buckets (their bound, liveness and memory) and the sign-in throttle."""

from __future__ import annotations

import dataclasses
import math
from itertools import accumulate

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kokoa.auth._ratelimit import Refusal, SignInThrottle, TokenBucketLimiter, Verdict

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


# --- SignInThrottle -----------------------------------------------------------------------------


def test_refusal_is_a_frozen_dataclass():
    refusal = Refusal("no", 3)
    with pytest.raises(dataclasses.FrozenInstanceError):
        refusal.retry_after = 4  # type: ignore[misc]


def go(verdict: Verdict) -> bool:
    return verdict.refusal is None


def test_five_attempts_per_account_and_address_then_one_a_minute():
    throttle = SignInThrottle()
    for _ in range(5):
        assert go(throttle.check("alice@example.com", "192.0.2.1", 0.0))
    verdict = throttle.check("alice@example.com", "192.0.2.1", 8.0)
    assert verdict.refusal == Refusal(
        "Too many sign-in attempts for this account from your network. Try again in 52 seconds.", 52
    )
    # The same account from another address, and another account from this one, go on.
    assert go(throttle.check("alice@example.com", "198.51.100.7", 8.0))
    assert go(throttle.check("bob@example.com", "192.0.2.1", 8.0))
    assert go(throttle.check("alice@example.com", "192.0.2.1", 60.0))
    assert not go(throttle.check("alice@example.com", "192.0.2.1", 60.0))


def test_accounts_are_case_insensitive():
    throttle = SignInThrottle(pair_capacity=2)
    assert go(throttle.check("Alice@Example.com", "192.0.2.1", 0.0))
    assert go(throttle.check("alice@example.com", "192.0.2.1", 0.0))
    assert not go(throttle.check("ALICE@EXAMPLE.COM", "192.0.2.1", 0.0))


def test_twenty_attempts_per_address_then_one_every_three_seconds():
    throttle = SignInThrottle()
    for i in range(20):
        assert go(throttle.check(f"user{i}@example.com", "192.0.2.1", 0.0))
    verdict = throttle.check("someone@example.com", "192.0.2.1", 1.0)
    assert verdict.refusal == Refusal(
        "Too many sign-in attempts from your network. Try again in 2 seconds.", 2
    )
    assert go(throttle.check("someone@example.com", "192.0.2.2", 1.0))
    assert go(throttle.check("someone@example.com", "192.0.2.1", 3.0))


def test_ipv6_counts_per_64():
    throttle = SignInThrottle(address_capacity=2)
    assert go(throttle.check("a@example.com", "2001:db8:1:2::1", 0.0))
    assert go(throttle.check("b@example.com", "2001:db8:1:2:ffff::9", 0.0))
    assert "network" in throttle.check("c@example.com", "2001:db8:1:2::abcd", 0.0).refusal.message
    assert go(throttle.check("c@example.com", "2001:db8:1:3::1", 0.0))
    assert go(throttle.check("d@example.com", "::ffff:192.0.2.7", 0.0))
    assert go(throttle.check("e@example.com", "192.0.2.7", 0.0))
    assert not go(throttle.check("f@example.com", "192.0.2.7", 0.0))
    assert go(throttle.check("g@example.com", "unix:/run/kokoa.sock", 0.0))


def test_the_account_wide_limit_delays_and_never_refuses():
    """Many guessers on one account: after ten attempts each waits its turn (one every 30 s), at most
    10 s; the owner, from a fresh address, is delayed like them but never refused."""
    throttle = SignInThrottle()
    delays = [throttle.check("owner@example.com", f"203.0.113.{i}", 0.0).delay for i in range(40)]
    assert delays[:10] == [0.0] * 10
    assert delays[10] == pytest.approx(10.0)  # its turn is 30 s away: capped at 10
    assert all(d <= 10.0 for d in delays)
    owner = throttle.check("owner@example.com", "198.51.100.1", 0.5)
    assert owner.refusal is None and 0 < owner.delay <= 10.0


def test_a_trusted_device_skips_the_account_wide_pace():
    throttle = SignInThrottle()
    for i in range(50):
        throttle.check("owner@example.com", f"203.0.113.{i}", 0.0)
    verdict = throttle.check("owner@example.com", "198.51.100.1", 0.0, trusted=True)
    assert verdict == Verdict()
    # ... but not the per-address limits: a stolen device cookie is no licence to guess.
    for _ in range(4):
        throttle.check("owner@example.com", "198.51.100.1", 0.0, trusted=True)
    assert not go(throttle.check("owner@example.com", "198.51.100.1", 0.0, trusted=True))


def test_the_pace_recovers():
    throttle = SignInThrottle(account_capacity=2, account_refill_seconds=10.0)
    assert [throttle.check("a", f"192.0.2.{i}", 0.0).delay for i in range(3)] == [0.0, 0.0, 10.0]
    # After a quiet minute the burst is back.
    assert [throttle.check("a", f"192.0.2.{i}", 100.0).delay for i in range(10, 12)] == [0.0, 0.0]


def test_refused_by_pair_takes_nothing_from_the_address():
    throttle = SignInThrottle()
    for _ in range(5):
        assert go(throttle.check("alice@example.com", "192.0.2.1", 0.0))
    for _ in range(100):
        assert "account" in throttle.check("alice@example.com", "192.0.2.1", 0.0).refusal.message
    for i in range(15):  # the address's other 15 attempts are all still there
        assert go(throttle.check(f"user{i}@example.com", "192.0.2.1", 0.0))
    assert "from your network. " in throttle.check("bob@example.com", "192.0.2.1", 0.0).refusal.message


def test_success_clears_the_pair_only():
    throttle = SignInThrottle()
    for _ in range(5):
        throttle.check("alice@example.com", "192.0.2.1", 0.0)
        throttle.check("alice@example.com", "192.0.2.2", 0.0)
    throttle.succeeded("ALICE@example.com", "192.0.2.1")
    assert go(throttle.check("alice@example.com", "192.0.2.1", 0.0))
    assert not go(throttle.check("alice@example.com", "192.0.2.2", 0.0))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"account_capacity": 0}, "account limit: capacity"),
        ({"pair_capacity": 0}, "account and address limit: capacity"),
        ({"address_capacity": 0}, "address limit: capacity"),
        ({"account_refill_seconds": 0}, "account_refill_seconds"),
        ({"address_refill_seconds": -3}, "address_refill_seconds"),
        ({"pair_refill_seconds": math.inf}, "pair_refill_seconds"),
        ({"max_delay": -1}, "max_delay"),
        ({"max_keys": 0}, "max_keys"),
    ],
)
def test_sign_in_throttle_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SignInThrottle(**kwargs)


@SETTINGS
@given(
    attempts=st.lists(
        st.tuples(
            st.sampled_from(["a", "A", "b", "c"]),
            st.sampled_from(["192.0.2.1", "192.0.2.2"]),
            gaps,
            st.booleans(),
        ),
        max_size=120,
    )
)
def test_sign_in_limits_hold_and_delays_are_bounded(attempts):
    throttle = SignInThrottle(pair_capacity=3, pair_refill_seconds=10.0, address_capacity=5, max_delay=7.0)
    allowed: dict[str, list[float]] = {}
    now = 0.0
    for account, address, gap, trusted in attempts:
        now += gap
        verdict = throttle.check(account, address, now, trusted=trusted)
        assert 0.0 <= verdict.delay <= 7.0
        if verdict.refusal is None:
            allowed.setdefault(f"{account.lower()} {address}", []).append(now)
            allowed.setdefault(address, []).append(now)
        else:
            refusal = verdict.refusal
            assert verdict.delay == 0.0
            assert refusal.retry_after >= 1
            assert f"Try again in {refusal.retry_after} second" in refusal.message
    for key, times in allowed.items():
        capacity, rate = (3, 1 / 10) if " " in key else (5, 1 / 3)
        for i, first in enumerate(times):
            for j in range(i, len(times)):
                assert j - i + 1 <= capacity + (times[j] - first) * rate + 1e-5


@SETTINGS
@given(gaps_list=st.lists(gaps, max_size=80))
def test_the_pace_holds_its_rate(gaps_list):
    """Attempts run (arrival + delay) no faster than the burst plus one per interval, whenever the
    delay was not capped."""
    throttle = SignInThrottle(account_capacity=3, account_refill_seconds=5.0, max_delay=1000.0)
    runs = []
    now = 0.0
    for gap in gaps_list:
        now += gap
        runs.append(now + throttle.check("a", f"192.0.2.{len(runs) % 250}", now).delay)
    runs.sort()
    for i, first in enumerate(runs):
        for j in range(i, len(runs)):
            assert j - i + 1 <= 3 + (runs[j] - first) / 5.0 + 1e-5
