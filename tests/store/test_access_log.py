"""The access log: batches appended (clipped, checked), filtered, paged newest first, and pruned."""

from __future__ import annotations

from datetime import timedelta

import pytest
from store_support import NOW, count

from kokoa import store as st
from kokoa.store import _schema as s

pytestmark = pytest.mark.sans_io  # repository calls on a connection: no reactor involved


def _row(**kw):
    return {"at": NOW, "kind": "request", "outcome": "allow", "reason": "grant"} | kw


def test_append_keeps_every_field(conn):
    full = _row(
        org_id="org_1",
        resource_id="res_1",
        outcome="deny",
        reason="rule",
        user_id="user_1",
        subject="ann@example.com",
        method="GET",
        host="app.example.com",
        path="/x?y=1",
        client_address="2001:db8::1",
        rule_id="rule_1",
        count=3,
    )
    assert st.append_access(conn, [full, {"kind": "signin", "outcome": "success"}], now=NOW) == 2
    newest, first = st.list_access(conn).items
    assert isinstance(first, st.AccessEntry) and first.id < newest.id
    assert {k: getattr(first, k) for k in full} == full
    assert (newest.at, newest.kind, newest.outcome, newest.reason, newest.count, newest.user_id) == (
        NOW,
        "signin",
        "success",
        "",
        1,
        None,
    )
    assert st.append_access(conn, []) == 0


def test_long_and_odd_values_are_clipped_not_refused(conn):
    st.append_access(
        conn,
        [_row(reason="r" * 600, host="h" * 300, path="/" + "p" * 2000, subject="s" * 300, method="M" * 20)],
    )
    st.append_access(conn, [_row(path="/a\x00b\udc80", client_address="1" * 80)])
    odd, long = st.list_access(conn).items
    assert (len(long.reason), len(long.host), len(long.path), len(long.subject), len(long.method)) == (
        500,
        s.HOSTNAME_LENGTH,
        s.PATH_LENGTH,
        s.EMAIL_LENGTH,
        16,
    )
    assert odd.path == "/a\ufffdb?" and len(odd.client_address) == 64


@pytest.mark.parametrize(
    ("entry", "field"),
    [
        (_row(kind="visit"), "entries[1].kind"),
        (_row(kind=None), "entries[1].kind"),
        (_row(outcome="maybe"), "entries[1].outcome"),
        (_row(count=0), "entries[1].count"),
        (_row(count="2"), "entries[1].count"),
        (_row(at=NOW.replace(tzinfo=None)), "entries[1].at"),
        (_row(host=5), "entries[1].host"),
        (_row(colour="red"), "entries[1].colour"),
        (_row(id=7), "entries[1].id"),
    ],
)
def test_bad_entries_refuse_the_whole_batch(conn, entry, field):
    with pytest.raises(st.Invalid) as e:
        st.append_access(conn, [_row(), entry])
    assert e.value.field == field
    assert count(conn, s.access_log) == 0


def test_filters(conn):
    st.append_access(
        conn,
        [
            _row(org_id="org_a", resource_id="res_1", user_id="user_1", subject="ann@example.com"),
            _row(org_id="org_a", resource_id="res_2", outcome="deny", client_address="10.0.0.1"),
            _row(org_id="org_b", kind="signin", outcome="failure", at=NOW + timedelta(hours=1)),
        ],
    )
    ids = [e.id for e in st.list_access(conn).items]
    newest, middle, oldest = ids

    def found(**kw):
        return [e.id for e in st.list_access(conn, **kw).items]

    assert found(org_id="org_a") == [middle, oldest]
    assert found(resource_id="res_1") == [oldest]
    assert found(user_id="user_1") == found(subject="ann@example.com") == [oldest]
    assert found(kind="signin") == found(outcome="failure") == [newest]
    assert found(outcome="deny") == found(client_address="10.0.0.1") == [middle]
    assert found(since=NOW + timedelta(hours=1)) == [newest]
    assert found(until=NOW + timedelta(hours=1)) == [middle, oldest]
    assert found(org_id="org_a", outcome="allow") == [oldest]
    assert found(org_id="org_c") == []
    for kw, field in [({"kind": "visit"}, "kind"), ({"outcome": "x"}, "outcome"), ({"limit": 0}, "limit")]:
        with pytest.raises(st.Invalid) as e:
            st.list_access(conn, **kw)
        assert e.value.field == field
    with pytest.raises(st.Invalid) as e:
        st.list_access(conn, since=NOW.replace(tzinfo=None))
    assert e.value.field == "since"


def test_pages_newest_first(conn):
    st.append_access(conn, [_row(reason=str(i)) for i in range(5)])
    seen, cursor = [], None
    while True:
        page = st.list_access(conn, limit=2, cursor=cursor)
        seen += [e.reason for e in page.items]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == ["4", "3", "2", "1", "0"]
    for bad in ("???", "eA", "LTE"):  # not base64 / not a number / a negative number
        with pytest.raises(st.Invalid) as e:
            st.list_access(conn, cursor=bad)
        assert e.value.field == "cursor"


def test_prune_deletes_what_is_older(conn):
    st.append_access(conn, [_row(at=NOW - timedelta(days=d), reason=str(d)) for d in (0, 29, 31, 40)])
    assert st.prune_access(conn, NOW - timedelta(days=30)) == 2
    assert sorted(e.reason for e in st.list_access(conn).items) == ["0", "29"]
    assert st.prune_access(conn, NOW - timedelta(days=30)) == 0
    with pytest.raises(st.Invalid):
        st.prune_access(conn, NOW.replace(tzinfo=None))
