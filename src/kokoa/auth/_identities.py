"""Who a request's credentials are, from memory: a cache of sessions and tokens in front of the store.

The request path asks :meth:`IdentityCache.resolve`; a hit answers at once, a miss (or an entry older
than ``revalidate`` seconds) asks the store once, however many requests wait for that answer. Every
configuration change empties the cache (revoking a session, disabling a user, changing a role or a
share link are all configuration changes), so no gateway keeps honouring what was revoked. Use of a
session is written back in batches (:meth:`flush_use`), which restarts its idle timeout.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from kokoa.policy import Identity

log = Logger()

#: Seconds a cached answer is trusted before it is read again (idle timeouts of sessions used on
#: other gateways, expiries): configuration changes empty the cache at once anyway.
REVALIDATE = 60.0
#: Seconds an unknown token is remembered as unknown (garbage must not reach the database each time).
NEGATIVE_TTL = 5.0

SESSION = "session"
API_KEY = "api_key"
SHARE = "share"


def identity_of(found: Any) -> Identity:
    """The policy's :class:`Identity` for a :class:`kokoa.store.SessionIdentity`."""
    if found.user_id is not None:
        return Identity(found.user_id, found.email or "", found.role_ids, found.role_names)
    kind = found.method.partition(":")[0]  # share:<link id> -> share
    label = found.email or kind
    return Identity(f"{kind}:{found.session_id}", label, resources=frozenset({found.resource_id}))


class Resolved:
    """A cached answer: the identity (None: no valid credential), the session id to mark as used,
    the host a host session is bound to, and a display name for the upstream."""

    __slots__ = (
        "decisions",
        "display_name",
        "fetched",
        "groups",
        "host",
        "identity",
        "org_id",
        "session_id",
        "until",
    )

    def __init__(
        self,
        identity: Identity | None,
        until: float,
        fetched: float,
        session_id: str | None = None,
        host: str | None = None,
        display_name: str | None = None,
        org_id: str | None = None,
        groups: tuple[tuple[str, str], ...] = (),
    ) -> None:
        self.identity = identity
        self.until = until
        self.fetched = fetched
        self.session_id = session_id
        self.host = host
        self.display_name = display_name
        #: An API key's organization: the credential is good on that organization's resources only.
        self.org_id = org_id
        #: (organization id, role name) of the user's memberships: the upstream hears its own org's.
        self.groups = groups
        #: resource id -> (decision, identity headers), for resources whose decision depends on the
        #: identity alone (no rules): made once per cached credential, not per request.
        self.decisions: dict[str, tuple] = {}


class IdentityCache:
    """Sessions, API keys and share-link tokens, resolved once and kept (bounded, LRU)."""

    def __init__(
        self,
        store: Callable[[], Any],
        clock: Callable[[], float],
        *,
        idle_timeout: float,
        max_entries: int = 100_000,
    ) -> None:
        self._store = store  # returns the Store, or None while it opens
        self._clock = clock
        self.idle_timeout = idle_timeout
        self.max_entries = max_entries
        self._entries: OrderedDict[tuple[str, str], Resolved] = OrderedDict()
        self._waiting: dict[tuple[int, str, str], list[Deferred[Resolved]]] = {}
        self._generation = 0
        self._used: set[str] = set()
        self.lookups = 0

    def clear(self) -> None:
        """Forget everything (called on every configuration change)."""
        self._entries.clear()
        self._generation += 1

    def __len__(self) -> int:
        return len(self._entries)

    def resolve(self, kind: str, token: str) -> Resolved | Deferred[Resolved]:
        """The cached answer for this credential, or a Deferred for the store's."""
        key = (kind, token)
        now = self._clock()
        entry = self._entries.get(key)
        if entry is not None and now < entry.until and now - entry.fetched < REVALIDATE:
            self._entries.move_to_end(key)
            if entry.session_id is not None:
                self._used.add(entry.session_id)
            return entry
        d: Deferred[Resolved] = Deferred()
        # Waiters join a lookup of the same generation only: one begun before a revocation (a
        # configuration change) must not answer a request that arrived after it.
        waiting_key = (self._generation, kind, token)
        waiters = self._waiting.get(waiting_key)
        if waiters is not None:
            waiters.append(d)
            return d
        self._waiting[waiting_key] = [d]
        self._fetch(key, self._generation)
        return d

    def _fetch(self, key: tuple[str, str], generation: int) -> None:
        store = self._store()
        if store is None:
            self._deliver(key, generation, Resolved(None, 0.0, self._clock()))
            return
        self.lookups += 1
        kind, token = key
        d = store.run(_LOOKUPS[kind], token, timedelta(seconds=self.idle_timeout))
        d.addCallback(lambda found: self._deliver(key, generation, found))
        d.addErrback(self._failed, key, generation)

    def _deliver(self, key: tuple[str, str], generation: int, found: Any) -> None:
        now = self._clock()
        if isinstance(found, Resolved):
            resolved = found
        elif found is None:
            resolved = Resolved(None, now + NEGATIVE_TTL, now)
        else:
            identity, expires_at, session_id, host, display_name, org_id, groups = found
            remaining = (expires_at - datetime.now(UTC)).total_seconds()
            resolved = Resolved(
                identity, now + remaining, now, session_id, host, display_name, org_id, groups
            )
            if session_id is not None:
                self._used.add(session_id)
        if generation == self._generation and resolved.until > now:
            self._entries[key] = resolved
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
        for waiter in self._waiting.pop((generation, *key), []):
            waiter.callback(resolved)

    def _failed(self, failure: Any, key: tuple[str, str], generation: int) -> None:
        log.warn("cannot check a credential: {why}", why=failure.getErrorMessage())
        # Fail closed, and do not remember it: the next request asks again.
        resolved = Resolved(None, 0.0, self._clock())
        for waiter in self._waiting.pop((generation, *key), []):
            waiter.callback(resolved)

    def take_used(self) -> list[str]:
        """The sessions used since the last call (to write their last use)."""
        used, self._used = self._used, set()
        return sorted(used)


# -- lookups, run in the store's thread ----------------------------------------------------------------


def _session(conn: Any, token: str, idle: timedelta) -> tuple | None:
    from kokoa.store import lookup_session

    found = lookup_session(conn, token, idle_timeout=idle)
    if found is None:
        return None
    expires = min(found.expires_at, found.last_seen_at + idle)
    return (
        identity_of(found),
        expires,
        found.session_id,
        found.host,
        found.display_name,
        None,
        found.role_orgs,
    )


def _api_key(conn: Any, token: str, idle: timedelta) -> tuple | None:
    """An organization's API key made for a member acts as that member, in that organization only
    (their roles there, and the organization's resources), while the key, the user and the
    membership last."""
    from kokoa.store import authenticate_api_key, lookup_user_identity

    key = authenticate_api_key(conn, token, touch=False)
    if key is None or key.created_by is None or key.org_id is None:
        return None
    user = lookup_user_identity(conn, key.created_by, key.org_id)
    if user is None:
        return None
    expires = key.expires_at or datetime.now(UTC) + timedelta(days=3650)
    return identity_of(user), expires, None, None, user.display_name, key.org_id, user.role_orgs


def _share(conn: Any, token: str, idle: timedelta) -> tuple | None:
    """A share link's token as a bearer token: for links without a use count (a token sent with
    every request cannot be counted per visit; links with ``max_uses`` open in a browser only)."""
    from kokoa.store import redeem_share_link

    link = redeem_share_link(conn, token, count_use=False)
    if link is None or link.max_uses is not None:
        return None
    identity = Identity(f"share:{link.id}", link.name, resources=frozenset({link.resource_id}))
    expires = link.expires_at or datetime.now(UTC) + timedelta(days=3650)
    return identity, expires, None, None, None, None, ()


_LOOKUPS = {SESSION: _session, API_KEY: _api_key, SHARE: _share}
