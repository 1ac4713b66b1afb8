"""Rate limits: token buckets keyed by string, in bounded memory, and the sign-in throttle built on them.

Pure code: the caller passes the time (``now``, in seconds from any fixed origin) to every call.
"""

from __future__ import annotations

import ipaddress
import math
from collections import OrderedDict
from dataclasses import dataclass

#: Slack for float rounding (in tokens), so that waiting the seconds that
#: :meth:`TokenBucketLimiter.take` returns, or a :class:`Refusal`'s ``retry_after``, is enough.
_EPSILON = 1e-6


def _check_time(now: float) -> None:
    if not math.isfinite(now):
        raise ValueError(f"now must be a finite number of seconds, not {now!r}")


class _Bucket:
    __slots__ = ("tokens", "updated")

    def __init__(self, tokens: float, updated: float) -> None:
        self.tokens = tokens
        self.updated = updated


class TokenBucketLimiter:
    """A bucket of ``capacity`` tokens per key, refilled at ``refill_per_second``; one token per attempt.

    Memory is bounded: at most ``max_keys`` keys. When a new key finds it full, buckets that are
    full again are dropped (they hold nothing a fresh bucket would not); if that frees less than a
    tenth of ``max_keys``, the least recently touched keys go until a tenth is free, so the sweep
    costs O(1) per new key on average. A dropped key starts again with a full bucket.
    """

    def __init__(self, capacity: int, refill_per_second: float, max_keys: int = 100_000) -> None:
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
            raise ValueError(f"capacity must be a whole number of at least 1, not {capacity!r}")
        if not (isinstance(refill_per_second, int | float) and math.isfinite(refill_per_second)):
            raise ValueError(f"refill_per_second must be a finite number, not {refill_per_second!r}")
        if refill_per_second <= 0:
            raise ValueError(f"refill_per_second must be more than 0, not {refill_per_second!r}")
        if isinstance(max_keys, bool) or not isinstance(max_keys, int) or max_keys < 1:
            raise ValueError(f"max_keys must be a whole number of at least 1, not {max_keys!r}")
        self.capacity = capacity
        self.refill_per_second = float(refill_per_second)
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def __len__(self) -> int:
        """The number of keys remembered (at most ``max_keys``)."""
        return len(self._buckets)

    def _tokens(self, bucket: _Bucket, now: float) -> float:
        elapsed = max(0.0, now - bucket.updated)  # a clock going back refills nothing
        return min(float(self.capacity), bucket.tokens + elapsed * self.refill_per_second)

    def _wait(self, tokens: float) -> float:
        return 0.0 if tokens >= 1 - _EPSILON else (1 - tokens) / self.refill_per_second

    def wait(self, key: str, now: float) -> float:
        """Seconds until ``key`` has a token (0.0: now), consuming nothing and touching nothing."""
        _check_time(now)
        bucket = self._buckets.get(key)
        return 0.0 if bucket is None else self._wait(self._tokens(bucket, now))

    def take(self, key: str, now: float) -> float:
        """Consume one of ``key``'s tokens and return 0.0, or return the seconds until one is
        available, consuming nothing."""
        _check_time(now)
        bucket = self._buckets.get(key)
        if bucket is None:
            self._make_room(now)
            self._buckets[key] = _Bucket(self.capacity - 1.0, now)
            return 0.0
        self._buckets.move_to_end(key)
        bucket.tokens = self._tokens(bucket, now)
        bucket.updated = max(bucket.updated, now)
        wait = self._wait(bucket.tokens)
        if wait == 0.0:
            bucket.tokens -= 1
        return wait

    def clear(self, key: str) -> None:
        """Forget ``key``: its next attempt finds a full bucket."""
        self._buckets.pop(key, None)

    def _make_room(self, now: float) -> None:
        """Make room for one more key, if there is none."""
        if len(self._buckets) < self.max_keys:
            return
        full = [key for key, bucket in self._buckets.items() if self._tokens(bucket, now) >= self.capacity]
        for key in full:
            del self._buckets[key]
        target = self.max_keys - max(1, self.max_keys // 10)
        while len(self._buckets) > target:
            self._buckets.popitem(last=False)


@dataclass(frozen=True, slots=True)
class Refusal:
    """A refused sign-in attempt: a message for the user, and whole seconds for a Retry-After header."""

    message: str
    retry_after: int


def _seconds(wait: float) -> int:
    """Whole seconds for ``wait``: 2 for the 2.0000000004 that 1/3 of a token a second can make."""
    return max(1, math.ceil(wait * (1 - 1e-9)))  # short by at most 1e-9 of a token: within _EPSILON


def _address_key(address: str) -> str:
    """The key of a client address: itself, but an IPv6 address's /64 (one host usually has it all)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


def _limiter(name: str, capacity: int, refill_seconds: float, max_keys: int) -> TokenBucketLimiter:
    try:
        return TokenBucketLimiter(capacity, 1 / refill_seconds, max_keys)
    except ValueError as error:
        raise ValueError(f"{name} limit: {error}") from None


class _Pacer:
    """An account-wide pace (the generic cell rate algorithm): ``burst`` attempts at once, then one
    every ``interval`` seconds; an attempt beyond that is *delayed* until its turn, at most
    ``max_delay`` seconds, never refused. Bounded keys, dropped oldest first."""

    def __init__(self, burst: int, interval: float, max_delay: float, max_keys: int) -> None:
        self.burst = burst
        self.interval = interval
        self.max_delay = max_delay
        self.max_keys = max_keys
        self._due: OrderedDict[str, float] = OrderedDict()  # the theoretical time of the next turn

    def __len__(self) -> int:
        return len(self._due)

    def delay(self, key: str, now: float) -> float:
        """Take a turn for ``key``: the seconds to wait before it (0.0: now)."""
        due = max(self._due.pop(key, now), now)
        wait = max(0.0, due - now - (self.burst - 1) * self.interval)
        wait = min(wait, self.max_delay)
        # A held attempt counts from when it runs, so the queue never grows past max_delay.
        self._due[key] = min(due, now + (self.burst - 1) * self.interval + self.max_delay) + self.interval
        while len(self._due) > self.max_keys:
            self._due.popitem(last=False)
        return wait

    def clear(self, key: str) -> None:
        self._due.pop(key, None)


@dataclass(frozen=True, slots=True)
class Verdict:
    """What to do with a sign-in attempt: refuse it (``refusal``), or check it after ``delay`` seconds."""

    refusal: Refusal | None = None
    delay: float = 0.0


def _refusal(wait: float, where: str) -> Refusal:
    seconds = _seconds(wait)
    unit = "second" if seconds == 1 else "seconds"
    return Refusal(f"Too many sign-in attempts {where}. Try again in {seconds} {unit}.", seconds)


class SignInThrottle:
    """Throttling that slows guessers without locking out the account's owner.

    Three limits, on every attempt to prove a secret (an account's password or second factor, a
    resource's password or PIN), each keyed by ``account``:

    - per (account, client address): ``pair_capacity`` attempts (default 5), then one every
      ``pair_refill_seconds`` (60): beyond, refused (429). One guesser, one account.
    - per client address: ``address_capacity`` (20), then one every ``address_refill_seconds`` (3):
      beyond, refused. One guesser, many accounts. IPv6 counts per /64.
    - per account, from browsers that have never signed in to it: ``account_capacity`` (10), then
      one every ``account_refill_seconds`` (30); beyond, the attempt is **delayed** until its turn,
      at most ``max_delay`` seconds (10), never refused. Many guessers, one account: they are slowed,
      and the owner, even from a new address, still gets in after the delay.

    A browser that signed in to the account before carries a device cookie (see
    :mod:`kokoa.auth._sealed`): ``trusted=True`` skips the account-wide pace.
    """

    def __init__(
        self,
        *,
        pair_capacity: int = 5,
        pair_refill_seconds: float = 60.0,
        address_capacity: int = 20,
        address_refill_seconds: float = 3.0,
        account_capacity: int = 10,
        account_refill_seconds: float = 30.0,
        max_delay: float = 10.0,
        max_keys: int = 100_000,
    ) -> None:
        for name, seconds in (
            ("pair_refill_seconds", pair_refill_seconds),
            ("address_refill_seconds", address_refill_seconds),
            ("account_refill_seconds", account_refill_seconds),
        ):
            if not (isinstance(seconds, int | float) and math.isfinite(seconds) and seconds > 0):
                raise ValueError(f"{name} must be a finite number of seconds more than 0, not {seconds!r}")
        if not (isinstance(max_delay, int | float) and math.isfinite(max_delay) and max_delay >= 0):
            raise ValueError(f"max_delay must be a finite number of seconds, at least 0, not {max_delay!r}")
        capacity = account_capacity
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
            raise ValueError(
                f"account limit: capacity must be a whole number of at least 1, not {account_capacity!r}"
            )
        self.pairs = _limiter("account and address", pair_capacity, pair_refill_seconds, max_keys)
        self.addresses = _limiter("address", address_capacity, address_refill_seconds, max_keys)
        self.accounts = _Pacer(account_capacity, float(account_refill_seconds), float(max_delay), max_keys)

    def check(self, account: str, address: str, now: float, *, trusted: bool = False) -> Verdict:
        """The verdict on one attempt on ``account`` from ``address`` (a refusal takes nothing)."""
        account_key = account.lower()
        address_key = _address_key(address)
        pair_key = f"{account_key}\n{address_key}"
        pair_wait = self.pairs.wait(pair_key, now)
        address_wait = self.addresses.wait(address_key, now)
        if pair_wait > 0 or address_wait > 0:
            if pair_wait >= address_wait:
                return Verdict(_refusal(pair_wait, "for this account from your network"))
            return Verdict(_refusal(address_wait, "from your network"))
        self.pairs.take(pair_key, now)
        self.addresses.take(address_key, now)
        if trusted:
            return Verdict()
        return Verdict(delay=self.accounts.delay(account_key, now))

    def succeeded(self, account: str, address: str) -> None:
        """Forget the failed attempts on ``account`` from ``address`` after a successful sign-in (the
        account-wide pace is kept: one success must not give other guessers more tries)."""
        self.pairs.clear(f"{account.lower()}\n{_address_key(address)}")
