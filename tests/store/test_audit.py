"""The audit log: append, filter, page (newest first)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from store_support import NOW

from kokoa import store as st

pytestmark = pytest.mark.sans_io  # repository calls on a connection: no reactor involved


def test_append_keeps_everything_and_makes_objects_json(conn):
    org = st.create_organization(conn, "Acme", now=NOW)
    site, _ = st.create_site(conn, org.id, "home", now=NOW)
    entry = st.append_audit(
        conn,
        "user:user_1",
        "site.update",
        org_id=org.id,
        object_kind="site",
        object_id=site.id,
        before=site,
        after={"name": "house", "tags": ("a", "b"), "when": NOW, "n": 1.5, "ok": True, "none": None},
        source_address="[2001:db8::1]",
        now=NOW,
    )
    assert entry.id >= 1 and entry.at == NOW and entry.source_address == "2001:db8::1"
    assert entry.before["name"] == "home" and entry.before["created_at"] == NOW.isoformat()
    assert entry.after == {
        "name": "house",
        "tags": ["a", "b"],
        "when": NOW.isoformat(),
        "n": 1.5,
        "ok": True,
        "none": None,
    }
    assert st.list_audit(conn).items == (entry,)


@pytest.mark.parametrize(
    ("kw", "field"),
    [
        ({"actor": ""}, "actor"),
        ({"action": "x" * 101}, "action"),
        ({"before": {1: "x"}}, "before"),
        ({"after": object()}, "after"),
        ({"after": float("nan")}, "after"),
        ({"after": [float("inf")]}, "after"),
        ({"source_address": "example.com"}, "source_address"),
    ],
)
def test_bad_entries_are_refused(conn, kw, field):
    kw = {"actor": "system", "action": "x.y"} | kw
    with pytest.raises(st.Invalid) as e:
        st.append_audit(conn, kw.pop("actor"), kw.pop("action"), **kw)
    assert e.value.field == field
    assert st.list_audit(conn).items == ()


@pytest.fixture
def log(conn):
    entries = []
    for i, (actor, action, org, obj) in enumerate(
        [
            ("user:a", "site.create", "org_1", "site_1"),
            ("user:b", "site.update", "org_1", "site_1"),
            ("user:a", "resource.create", "org_2", "res_1"),
            ("key:k", "site.delete", "org_1", "site_1"),
            ("system", "sites.prune", None, None),
        ]
    ):
        kind = None if obj is None else obj.split("_")[0]
        entries.append(
            st.append_audit(
                conn, actor, action, org_id=org, object_kind=kind, object_id=obj, now=NOW + timedelta(hours=i)
            )
        )
    return entries


def ids(page):
    return [e.id for e in page.items]


def test_filters(conn, log):
    a, b, c, d, e = log
    assert ids(st.list_audit(conn)) == [e.id, d.id, c.id, b.id, a.id]
    assert ids(st.list_audit(conn, actor="user:a")) == [c.id, a.id]
    assert ids(st.list_audit(conn, action="site.update")) == [b.id]
    assert ids(st.list_audit(conn, action="site.*")) == [d.id, b.id, a.id]  # not "sites.prune"
    assert ids(st.list_audit(conn, object_id="site_1", org_id="org_1")) == [d.id, b.id, a.id]
    assert ids(st.list_audit(conn, object_kind="res")) == [c.id]
    assert ids(st.list_audit(conn, org_id="org_2")) == [c.id]
    window = st.list_audit(conn, since=NOW + timedelta(hours=1), until=NOW + timedelta(hours=3))
    assert ids(window) == [c.id, b.id]  # since inclusive, until exclusive
    assert ids(st.list_audit(conn, actor="user:a", since=NOW + timedelta(minutes=1))) == [c.id]
    with pytest.raises(st.Invalid) as err:
        st.list_audit(conn, since=NOW.replace(tzinfo=None))
    assert err.value.field == "since"


def test_pages_newest_first(conn, log):
    seen, cursor = [], None
    while True:
        page = st.list_audit(conn, limit=2, cursor=cursor)
        seen += ids(page)
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == [e.id for e in reversed(log)]
    filtered = st.list_audit(conn, actor="user:a", limit=1)
    assert ids(st.list_audit(conn, actor="user:a", limit=1, cursor=filtered.next_cursor)) == [log[0].id]
    for bad in ("!!", st.list_organizations(conn, limit=1).next_cursor or "eA"):
        with pytest.raises(st.Invalid):
            st.list_audit(conn, cursor=bad)
    with pytest.raises(st.Invalid):
        st.list_audit(conn, limit=0)


def test_the_log_outlives_what_it_names(conn):
    org = st.create_organization(conn, "Acme")
    st.append_audit(
        conn, "system", "organization.create", org_id=org.id, object_kind="organization", object_id=org.id
    )
    st.delete_organization(conn, org.id)
    assert [e.object_id for e in st.list_audit(conn, org_id=org.id).items] == [org.id]
