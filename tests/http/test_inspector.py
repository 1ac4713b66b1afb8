"""kokoa.http._inspector in isolation: rings, watchers, redaction (examples and properties)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.logger import Logger

from kokoa.http import _inspector
from kokoa.http._inspector import (
    BURST,
    MAX_PATH,
    REDACTED,
    SECRET_HEADERS,
    TRUNCATED,
    Inspection,
    Inspector,
    InspectorBusy,
    iso_time,
    redact_headers,
    redact_path,
)
from kokoa.policy import Rule

pytestmark = pytest.mark.sans_io

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


class FakeClock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def entry(n: int) -> dict:
    return {"method": "GET", "path": f"/{n}", "request_headers": [], "response_headers": []}


# ---------------------------------------------------------------------------------------- rings


def test_nobody_watching_keeps_nothing():
    inspector = Inspector()
    assert not inspector.watching("res")
    inspector.record("res", entry(1))
    assert inspector.recent("res") == []


def test_ring_is_bounded_and_oldest_first():
    inspector = Inspector(ring_size=3)
    inspector.watch("res", lambda e: None)
    for n in range(5):
        inspector.record("res", entry(n))
    assert [e["path"] for e in inspector.recent("res")] == ["/2", "/3", "/4"]
    ids = [int(e["id"]) for e in inspector.recent("res")]
    assert ids == sorted(ids) and len(set(ids)) == 3


def test_ids_are_per_gateway_counters_over_resources():
    inspector = Inspector()
    inspector.watch("a", lambda e: None)
    inspector.watch("b", lambda e: None)
    inspector.record("a", entry(1))
    inspector.record("b", entry(2))
    inspector.record("a", entry(3))
    assert [e["id"] for e in inspector.recent("a")] == ["1", "3"]
    assert [e["id"] for e in inspector.recent("b")] == ["2"]


def test_each_watcher_of_the_resource_is_called_and_no_other():
    inspector = Inspector()
    seen_a, seen_a2, seen_b = [], [], []
    inspector.watch("a", seen_a.append)
    inspector.watch("a", seen_a2.append)
    inspector.watch("b", seen_b.append)
    inspector.record("a", entry(1))
    assert [e["path"] for e in seen_a] == ["/1"]
    assert seen_a2 == seen_a
    assert seen_b == []
    assert inspector.watchers == 3


def test_unwatch_is_idempotent_and_the_last_one_drops_the_ring():
    inspector = Inspector()
    seen = []
    first = inspector.watch("res", seen.append)
    second = inspector.watch("res", lambda e: None)
    inspector.record("res", entry(1))
    first()
    first()  # again: nothing, and it does not take the other watcher's place
    assert inspector.watchers == 1
    assert inspector.watching("res")
    assert len(inspector.recent("res")) == 1  # the ring stays while someone watches
    inspector.record("res", entry(2))
    assert len(seen) == 1  # the first watcher is gone
    second()
    assert not inspector.watching("res")
    assert inspector.recent("res") == []
    assert inspector.watchers == 0
    inspector.watch("res", lambda e: None)
    assert inspector.recent("res") == []  # a new watch starts a new ring


def test_busy_beyond_max_watchers_over_all_resources():
    inspector = Inspector(max_watchers=2)
    stop_a = inspector.watch("a", lambda e: None)
    inspector.watch("b", lambda e: None)
    with pytest.raises(InspectorBusy):
        inspector.watch("c", lambda e: None)
    assert not inspector.watching("c")
    stop_a()
    inspector.watch("c", lambda e: None)
    assert inspector.watching("c")


def test_a_watcher_that_raises_is_dropped_and_logged(monkeypatch):
    events: list[dict] = []
    monkeypatch.setattr(_inspector, "log", Logger(observer=events.append))
    inspector = Inspector()
    good: list[dict] = []

    def bad(e: dict) -> None:
        raise RuntimeError("the client went away")

    stop_bad = inspector.watch("res", bad)
    inspector.watch("res", good.append)
    inspector.record("res", entry(1))  # does not raise
    inspector.record("res", entry(2))
    assert [e["path"] for e in good] == ["/1", "/2"]
    assert inspector.watchers == 1
    assert len(events) == 1 and events[0]["log_failure"].check(RuntimeError)
    stop_bad()  # after being dropped: nothing
    assert inspector.watchers == 1


def test_the_only_watcher_raising_ends_the_ring(monkeypatch):
    monkeypatch.setattr(_inspector, "log", Logger(observer=lambda e: None))
    inspector = Inspector()
    inspector.watch("res", lambda e: 1 / 0)
    inspector.record("res", entry(1))
    assert not inspector.watching("res")
    assert inspector.watchers == 0


def test_a_watcher_may_unwatch_itself_while_called():
    inspector = Inspector()
    stops = []
    seen = []

    def once(e: dict) -> None:
        seen.append(e)
        stops[0]()

    stops.append(inspector.watch("res", once))
    other = []
    inspector.watch("res", other.append)
    inspector.record("res", entry(1))
    inspector.record("res", entry(2))
    assert len(seen) == 1 and len(other) == 2


def test_bad_settings():
    with pytest.raises(ValueError):
        Inspector(ring_size=0)
    with pytest.raises(ValueError):
        Inspector(max_watchers=-1)
    with pytest.raises(ValueError):
        Inspector(max_rate=-1)
    with pytest.raises(ValueError):
        Inspector(burst=0)
    with pytest.raises(ValueError):
        Inspector(max_inspected=-1)


def test_record_makes_any_entry_safe():
    inspector = Inspector(max_head_bytes=64)
    inspector.watch("res", lambda e: None)
    inspector.record(
        "res",
        {
            "path": "/x?token=kk_secret123&a=1",
            "request_headers": [(b"Cookie", b"a=b"), (b"X-Big", b"v" * 100)],
            "response_headers": [("Set-Cookie", "s=1")],
        },
    )
    (got,) = inspector.recent("res")
    assert got["path"] == f"/x?token={REDACTED}&a=1"
    assert got["request_headers"] == [
        ["cookie", REDACTED],
        [TRUNCATED, "1 more header fields (109 bytes) not kept"],
    ]
    assert got["response_headers"] == [["set-cookie", REDACTED]]


# ------------------------------------------------------------------------------------ redaction


def test_redaction_examples():
    headers = [
        (b"Host", b"app.test"),
        (b"Cookie", b"__Host-kokoa_session=abc; theme=dark"),
        (b"Authorization", b"Basic dXNlcjpwYXNz"),
        (b"Proxy-Authorization", b"Basic eA=="),
        (b"X-Kokoa-Token", b"whatever"),
        (b"x-KOKOA-anything", b"x"),
        (b"Remote-User", b"ann@example.com"),
        (b"Remote_Email", b"ann@example.com"),
        (b"Remote-Groups", b"admins"),
        (b"Remote-Name", b"Ann"),
        (b"X-Api", b"Bearer KK_abc"),
        (b"Referer", b"https://app.test/?t=kks%5Fabc"),
        (b"Accept", b"text/html"),
        (b"Set-Cookie", b"kokoa_sticky=1"),
    ]
    got = redact_headers(headers)
    assert got == [
        ["host", "app.test"],
        ["cookie", REDACTED],
        ["authorization", REDACTED],
        ["proxy-authorization", REDACTED],
        ["x-kokoa-token", REDACTED],
        ["x-kokoa-anything", REDACTED],
        ["remote-user", REDACTED],
        ["remote_email", REDACTED],
        ["remote-groups", REDACTED],
        ["remote-name", REDACTED],
        ["x-api", REDACTED],
        ["referer", REDACTED],
        ["accept", "text/html"],
        ["set-cookie", REDACTED],
    ]


def test_hide_adds_configured_headers():
    @dataclass
    class Gate:
        drop_headers: frozenset = frozenset({b"x-user", b"x-forwarded-user"})
        token_headers: frozenset = frozenset({b"authorization", b"x-token"})
        drop_prefixes: tuple = (b"x-auth-request-",)

    inspector = Inspector()
    inspector.hide_gate(Gate())
    inspector.watch("res", lambda e: None)
    inspector.record(
        "res",
        {
            "request_headers": [
                ("X-User", "ann"),
                ("X_Forwarded_User", "ann"),
                ("X-Token", "opaque"),
                ("X-Auth-Request-Email", "ann@x"),
                ("X-Other", "fine"),
            ]
        },
    )
    assert inspector.recent("res")[0]["request_headers"] == [
        ["x-user", REDACTED],
        ["x_forwarded_user", REDACTED],
        ["x-token", REDACTED],
        ["x-auth-request-email", REDACTED],
        ["x-other", "fine"],
    ]


def test_a_head_over_the_cap_ends_with_a_marker():
    headers = [(f"h{i}", "v" * 10) for i in range(10)]  # 2 + 10 + 4 = 16 bytes each
    got = redact_headers(headers, max_bytes=50)
    assert got[:3] == [[f"h{i}", "v" * 10] for i in range(3)]
    assert got[3] == [TRUNCATED, "7 more header fields (112 bytes) not kept"]
    assert len(got) == 4
    assert redact_headers(headers, max_bytes=0) == [[TRUNCATED, "10 more header fields (160 bytes) not kept"]]


def test_path_is_cut_and_tokens_go():
    assert redact_path(b"/a" * 2000) == ("/a" * 2000)[:MAX_PATH]
    assert redact_path("/share/kks_abcdef/x") == f"/share/{REDACTED}/x"
    assert redact_path("/p?a=1&key=KK_Zz9-_x&b=2") == f"/p?a=1&key={REDACTED}&b=2"
    assert redact_path("/plain?q=1") == "/plain?q=1"


def test_iso_time():
    assert iso_time(0) == "1970-01-01T00:00:00.000Z"
    assert iso_time(1_700_000_000.25) == "2023-11-14T22:13:20.250Z"


names = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_", min_size=1, max_size=20
)
values = st.binary(max_size=60).map(lambda b: b.decode("latin-1"))
secret_names = st.sampled_from(
    [*sorted(SECRET_HEADERS), "X-Kokoa-Token", "x-kokoa-", "X_KOKOA_ID", "COOKIE", "Remote_User"]
)
tokens = st.builds(
    lambda prefix, case, body: (prefix.upper() if case else prefix) + body,
    st.sampled_from(["kk_", "kks_", "kk%5F", "kks%5f"]),
    st.booleans(),
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=8, max_size=30),
)


def _costs(pairs):
    return sum(len(n) + len(v) + 4 for n, v in pairs)


@SETTINGS
@given(st.lists(st.tuples(names, values), max_size=30), st.integers(min_value=0, max_value=600))
def test_property_shape_order_and_cap(headers, cap):
    got = redact_headers(headers, max_bytes=cap)
    kept = [p for p in got if p[0] != TRUNCATED]
    assert _costs(kept) <= cap
    assert [n for n, _ in kept] == [n.lower() for n, _ in headers[: len(kept)]]
    if len(kept) < len(headers):
        assert got[-1][0] == TRUNCATED
        assert got[-1][1].startswith(f"{len(headers) - len(kept)} more header fields")
    else:
        assert got == kept
    for (name, value), (_, out) in zip(headers, kept, strict=False):
        secret = _inspector.is_secret_header(name.lower()) or _inspector.holds_token(value)
        assert out == (REDACTED if secret else value)
    assert redact_headers(kept, max_bytes=cap) == kept  # redacting again changes nothing


@SETTINGS
@given(
    st.lists(st.tuples(names, values), max_size=10),
    st.lists(st.tuples(secret_names, st.text(min_size=6, max_size=40)), min_size=1, max_size=5),
    st.lists(st.tuples(names, st.tuples(values, tokens, values)), max_size=5),
    st.randoms(use_true_random=False),
)
def test_property_no_secret_survives(plain, secrets, with_tokens, rnd):
    headers = list(plain)
    headers += secrets
    headers += [(name, before + token + after) for name, (before, token, after) in with_tokens]
    rnd.shuffle(headers)
    got = redact_headers([(n.encode("latin-1"), v.encode("utf-8")) for n, v in headers], max_bytes=1 << 20)
    for (name, value), (out_name, out_value) in zip(headers, got, strict=True):
        assert out_name == name.lower()
        if (name, value) in secrets:
            assert out_value == REDACTED
    for _, token, _ in (t for _, t in with_tokens):
        assert not any(token.lower() in v.lower() for _, v in got)
    assert not any(_inspector._TOKEN.search(v) for _, v in got)


@SETTINGS
@given(st.text(max_size=3000), st.lists(tokens, max_size=3), st.randoms(use_true_random=False))
def test_property_path(path, inserted, rnd):
    parts = path.split("/")
    for token in inserted:
        parts.insert(rnd.randint(0, len(parts)), token)
    text = "/".join(parts)
    got = redact_path(text)
    assert len(got) <= MAX_PATH
    assert _inspector._TOKEN.search(got) is None
    if _inspector._TOKEN.search(text) is None:
        assert got == text[:MAX_PATH]


# ----------------------------------------------------------------------------------- inspections


@dataclass
class Decision:
    outcome: str
    reason: str = ""
    rule_id: str | None = None


@dataclass
class Identity:
    user_id: str
    email: str


@dataclass
class Policy:
    rules: tuple


@dataclass
class Target:
    id: str
    site_id: str
    target: str


def test_an_inspection_records_every_field_once_it_ends():
    clock = FakeClock()
    inspector = Inspector(clock=clock)
    seen = []
    inspector.watch("res", seen.append)
    inspection = Inspection(
        inspector,
        "res",
        b"POST",
        b"/api/x?y=1",
        [(b"Host", b"app.test"), (b"Cookie", b"s=1"), (b"Content-Length", b"5")],
        "10.0.0.1",
    )
    rule = Rule("rul_1", 10, "allow", path="/api/*", method="post", cidr="192.0.2.0/24")
    inspection.decided(
        Decision("allow", "ok", "rul_1"), Identity("usr_1", "ann@x.test"), "192.0.2.7", Policy((rule,))
    )
    inspection.served_by(Target("tgt_1", "home", "127.0.0.1:8080"))
    clock.now += 0.0125
    inspection.responded(b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\nSet-Cookie: a=b")
    inspection.bytes_out += 2
    assert seen == []  # recorded once, when it ends
    inspection.finish(5)
    (got,) = seen
    assert got == {
        "id": "1",
        "time": "2023-11-14T22:13:20.000Z",
        "method": "POST",
        "path": "/api/x?y=1",
        "status": 201,
        "duration_ms": 12.5,
        "bytes_in": 5,
        "bytes_out": 2,
        "user": "ann@x.test",
        "client_address": "192.0.2.7",
        "decision": "allow",
        "rule": {
            "id": "rul_1",
            "priority": 10,
            "action": "allow",
            "method": "POST",
            "path": "/api/*",
            "cidr": "192.0.2.0/24",
            "pattern": "rule 10 (allow POST /api/* from 192.0.2.0/24)",
        },
        "target": {"id": "tgt_1", "site_id": "home", "target": "127.0.0.1:8080"},
        "ended": "complete",
        "skipped": 0,
        "request_headers": [["host", "app.test"], ["cookie", REDACTED], ["content-length", "5"]],
        "response_headers": [["content-length", "2"], ["set-cookie", REDACTED]],
    }
    assert inspector.recent("res") == [got]


def test_a_bypass_rule_says_bypass():
    inspector = Inspector()
    inspector.watch("res", lambda e: None)
    inspection = Inspection(inspector, "res", b"GET", b"/public", [], "10.0.0.1")
    rule = Rule("rul_2", 1, "bypass", path="/public")
    inspection.decided(Decision("allow", "", "rul_2"), None, "10.0.0.1", Policy((rule,)))
    inspection.answered(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 3\r\n\r\nno!")
    inspection.finish(0, "client_gone")
    (got,) = inspector.recent("res")
    assert got["decision"] == "bypass"
    assert got["rule"]["id"] == "rul_2" and got["rule"]["action"] == "bypass"
    assert got["user"] is None
    assert (got["status"], got["bytes_out"], got["ended"]) == (403, 3, "client_gone")


def test_an_inspection_without_answer_has_no_status():
    inspector = Inspector()
    inspector.watch("res", lambda e: None)
    Inspection(inspector, "res", b"GET", b"/", [], "10.0.0.1").finish(0, "client_gone")
    (got,) = inspector.recent("res")
    assert got["status"] is None and got["decision"] is None and got["target"] is None
    assert got["response_headers"] == []


def test_an_inspection_ending_after_the_watch_is_not_kept():
    inspector = Inspector()
    stop = inspector.watch("res", lambda e: None)
    inspection = Inspection(inspector, "res", b"GET", b"/", [], "10.0.0.1")
    stop()
    inspection.finish(0)
    assert inspector.recent("res") == []


def test_watchers_get_a_burst_then_max_rate_entries_a_second_and_hear_of_the_rest():
    clock = FakeClock(1000.0)
    inspector = Inspector(max_rate=8, burst=3, clock=clock)
    seen: list[dict] = []
    inspector.watch("res", seen.append)
    for n in range(10):  # a burst: the bucket's 3 pass
        inspector.record("res", entry(n))
    assert [e["path"] for e in seen] == ["/0", "/1", "/2"]
    assert all(e["skipped"] == 0 for e in seen)
    assert len(inspector.recent("res")) == 10  # the ring keeps every one
    clock.now += 0.25  # 2 tokens back
    inspector.record("res", entry(10))
    assert seen[-1]["path"] == "/10" and seen[-1]["skipped"] == 7
    assert [e["skipped"] for e in inspector.recent("res")] == [0] * 11  # (the ring's own: 0)
    inspector.record("res", entry(11))
    assert seen[-1]["path"] == "/11" and seen[-1]["skipped"] == 0
    inspector.record("res", entry(12))  # no token left
    assert len(seen) == 5
    clock.now += 10
    for n in range(13, 18):
        inspector.record("res", entry(n))
    assert [e["path"] for e in seen[5:]] == ["/13", "/14", "/15"]  # never more than the bucket
    assert seen[5]["skipped"] == 1


def test_the_default_bucket_takes_a_page_load_whole():
    inspector = Inspector(clock=FakeClock())
    seen: list[dict] = []
    inspector.watch("res", seen.append)
    for n in range(BURST + 5):
        inspector.record("res", entry(n))
    assert len(seen) == BURST


def test_no_rate_limit():
    inspector = Inspector(max_rate=0)
    seen: list[dict] = []
    inspector.watch("res", seen.append)
    for n in range(500):
        inspector.record("res", entry(n))
    assert len(seen) == 500


def test_an_inspection_is_formatted_once_when_read_and_lets_go_of_the_heads():
    inspector = Inspector(max_rate=1, burst=1)
    seen: list[dict] = []
    inspector.watch("res", seen.append)
    first = Inspection(inspector, "res", b"GET", b"/a", [(b"Cookie", b"x=1")], "10.0.0.1")
    first.finish(0)
    second = Inspection(inspector, "res", b"GET", b"/b", [(b"Cookie", b"x=1")], "10.0.0.1")
    second.finish(0)
    assert [e["path"] for e in seen] == ["/a"]
    assert first.request_headers is None  # formatted for the watcher
    assert second.request_headers is not None  # not delivered: kept as it was, until read
    recent = inspector.recent("res")
    assert [e["path"] for e in recent] == ["/a", "/b"] and recent[0] is seen[0]
    assert second.request_headers is None
    assert inspector.recent("res")[1] is recent[1]  # made once


def test_a_large_answer_is_formatted_and_capped_at_once():
    inspector = Inspector(max_rate=1, burst=1, max_head_bytes=100)
    inspector.watch("res", lambda e: None)
    Inspection(inspector, "res", b"GET", b"/", [], "10.0.0.1").finish(0)  # takes the token
    big = Inspection(inspector, "res", b"GET", b"/", [], "10.0.0.1")
    big.responded(b"HTTP/1.1 200 OK\r\n" + b"".join(b"X-H%d: %s\r\n" % (i, b"v" * 20) for i in range(20)))
    big.finish(0)
    assert big.response is None  # not kept raw
    got = inspector.recent("res")[1]["response_headers"]
    assert got[-1][0] == TRUNCATED and len(got) < 20


@dataclass
class Head:
    method: bytes = b"GET"
    raw_target: bytes = b"/"
    headers: tuple = ()


def test_begin_notes_at_most_max_inspected_requests_a_second_and_counts_the_rest():
    clock = FakeClock(1000.0)
    inspector = Inspector(max_inspected=3, clock=clock)
    assert inspector.begin("res", Head(), "10.0.0.1") is None  # nobody watches
    seen: list[dict] = []
    inspector.watch("res", seen.append)
    noted = [inspector.begin("res", Head(raw_target=b"/%d" % n), "10.0.0.1") for n in range(5)]
    assert [i is not None for i in noted] == [True, True, True, False, False]
    for inspection in noted[:3]:
        inspection.finish(0)
    assert [e["path"] for e in inspector.recent("res")] == ["/0", "/1", "/2"]
    clock.now += 0.5  # 1.5 tokens back
    inspector.begin("res", Head(raw_target=b"/5"), "10.0.0.1").finish(0)
    # (a request not noted counts when it starts: here, before /0 ended)
    assert [(e["path"], e["skipped"]) for e in seen] == [("/0", 2), ("/1", 0), ("/2", 0), ("/5", 0)]
    assert inspector.begin("res", Head(), "10.0.0.1") is None


def test_no_limit_on_noting():
    inspector = Inspector(max_inspected=0, clock=FakeClock())
    inspector.watch("res", lambda e: None)
    assert all(inspector.begin("res", Head(), "10.0.0.1") is not None for _ in range(2000))
