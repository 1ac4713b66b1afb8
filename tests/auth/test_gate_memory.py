"""The gate's in-memory parts, bounded: the identity cache (LRU, negative answers, emptied on a
configuration change, no stale answer across one) and the access log's buffer (aggregated, capped,
drops counted). A store stand-in whose answers the test releases (these parts only call ``run``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from twisted.internet import task
from twisted.internet.defer import Deferred

from kokoa.auth._identities import NEGATIVE_TTL, SESSION, IdentityCache, Resolved
from kokoa.auth._recorder import AccessRecorder
from kokoa.policy import Decision, Identity


class PendingStore:
    """``run`` returns a Deferred per call; the test answers them."""

    def __init__(self) -> None:
        self.calls: list[tuple[tuple, Deferred]] = []

    def run(self, fn, *args, **kw) -> Deferred:
        d: Deferred = Deferred()
        self.calls.append(((fn, *args), d))
        return d


def found(user: str) -> tuple:
    identity = Identity(user, f"{user}@example.com")
    return identity, datetime.now(UTC) + timedelta(hours=1), f"ses_{user}", "app.example.com", None, None, ()


def cache(store: PendingStore, clock: task.Clock, size: int = 100) -> IdentityCache:
    return IdentityCache(lambda: store, clock.seconds, idle_timeout=3600, max_entries=size)


def test_one_lookup_for_many_waiters_then_answers_from_memory():
    store, clock = PendingStore(), task.Clock()
    identities = cache(store, clock)
    first, second = identities.resolve(SESSION, "t1"), identities.resolve(SESSION, "t1")
    assert len(store.calls) == 1
    store.calls[0][1].callback(found("ann"))
    answers: list[Resolved] = []
    first.addCallback(answers.append)
    second.addCallback(answers.append)
    assert [a.identity.user_id for a in answers] == ["ann", "ann"]
    hit = identities.resolve(SESSION, "t1")
    assert isinstance(hit, Resolved) and hit.identity.user_id == "ann" and len(store.calls) == 1
    assert identities.take_used() == ["ses_ann"]


def test_unknown_tokens_are_remembered_briefly_and_the_cache_is_bounded():
    store, clock = PendingStore(), task.Clock()
    identities = cache(store, clock, size=3)
    identities.resolve(SESSION, "junk")
    store.calls[-1][1].callback(None)
    assert identities.resolve(SESSION, "junk").identity is None and len(store.calls) == 1
    clock.advance(NEGATIVE_TTL)
    identities.resolve(SESSION, "junk")
    assert len(store.calls) == 2
    store.calls[-1][1].callback(None)
    for n in range(10):
        identities.resolve(SESSION, f"t{n}")
        store.calls[-1][1].callback(found(f"u{n}"))
    assert len(identities) == 3  # the least recently used went first
    assert isinstance(identities.resolve(SESSION, "t9"), Resolved)
    assert isinstance(identities.resolve(SESSION, "t0"), Deferred)


def test_a_configuration_change_forgets_everything_and_a_lookup_begun_before_it_answers_no_one_after():
    store, clock = PendingStore(), task.Clock()
    identities = cache(store, clock)
    before = identities.resolve(SESSION, "t")
    identities.clear()  # e.g. the session was revoked meanwhile
    after = identities.resolve(SESSION, "t")
    assert isinstance(after, Deferred) and len(store.calls) == 2  # its own lookup
    store.calls[0][1].callback(found("ann"))  # the old answer
    assert before.called and not after.called
    assert isinstance(identities.resolve(SESSION, "t"), Deferred)  # the old answer was not kept
    store.calls[1][1].callback(None)
    results: list[Resolved] = []
    after.addCallback(results.append)
    assert results[0].identity is None


def test_the_access_log_buffer_aggregates_allowed_requests_and_counts_what_it_drops():
    store, clock = PendingStore(), task.Clock()
    recorder = AccessRecorder(lambda: store, clock, max_pending=3, retention_days=30)
    allow = Decision("allow", "granted")
    for _ in range(5):
        if not recorder.allowed_again("res", "u1", "192.0.2.1", allow):
            recorder.record(
                "request", "allow", "granted", resource_id="res", user_id="u1", client_address="192.0.2.1"
            )
    assert len(recorder) == 1
    for n in range(4):
        recorder.record("request", "deny", f"denied {n}", resource_id="res", client_address="192.0.2.1")
    assert len(recorder) == 3 and recorder.dropped == 2
    recorder.flush()
    (_, *args), d = store.calls[0]
    rows = args[0]
    assert sorted(r["count"] for r in rows) == [1, 1, 5] and len(recorder) == 0
    d.callback(len(rows))
    assert recorder.written == 3 and recorder.dropped == 0  # reported (logged) and reset
