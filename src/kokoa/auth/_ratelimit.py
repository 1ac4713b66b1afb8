"""Rate limits: token buckets keyed by string, in bounded memory, and the sign-in limiter built on them.

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


class SignInLimiter:
    """Sign-in attempts, limited per account (5, then one more every minute by default) and per
    client address (20, then one every 3 seconds). Account names are compared case-insensitively;
    IPv6 addresses count per /64 network."""

    def __init__(
        self,
        *,
        account_capacity: int = 5,
        account_refill_seconds: float = 60.0,
        address_capacity: int = 20,
        address_refill_seconds: float = 3.0,
        max_keys: int = 100_000,
    ) -> None:
        for name, seconds in (
            ("account_refill_seconds", account_refill_seconds),
            ("address_refill_seconds", address_refill_seconds),
        ):
            if not (isinstance(seconds, int | float) and math.isfinite(seconds) and seconds > 0):
                raise ValueError(f"{name} must be a finite number of seconds more than 0, not {seconds!r}")
        self.accounts = _limiter("account", account_capacity, account_refill_seconds, max_keys)
        self.addresses = _limiter("address", address_capacity, address_refill_seconds, max_keys)

    def check(self, account: str, address: str, now: float) -> Refusal | None:
        """None if an attempt to sign in to ``account`` from ``address`` may go ahead (it takes a
        token from both limits), else why not and for how long (taking nothing from either)."""
        account_key = account.lower()
        address_key = _address_key(address)
        account_wait = self.accounts.wait(account_key, now)
        address_wait = self.addresses.wait(address_key, now)
        if account_wait > 0 or address_wait > 0:
            if account_wait >= address_wait:
                seconds = _seconds(account_wait)
                where = "for this account"
            else:
                seconds = _seconds(address_wait)
                where = "from your network"
            unit = "second" if seconds == 1 else "seconds"
            return Refusal(f"Too many sign-in attempts {where}. Try again in {seconds} {unit}.", seconds)
        self.accounts.take(account_key, now)
        self.addresses.take(address_key, now)
        return None

    def succeeded(self, account: str) -> None:
        """Forget the failed attempts on ``account`` after a successful sign-in."""
        self.accounts.clear(account.lower())
