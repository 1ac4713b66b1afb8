"""The Store through its thread pool: open (and migrate), run, subscribe, snapshot, close."""

from __future__ import annotations

import threading
import time

import pytest
import pytest_twisted
from sqlalchemy import text
from twisted.internet import reactor
from twisted.internet.defer import DeferredList, gatherResults

from kokoa import store as st
from kokoa.store import Store, _migrate
from kokoa.store._engine import create_store_engine


def on_a_worker_thread() -> None:
    assert threading.current_thread() is not threading.main_thread()


@pytest_twisted.inlineCallbacks
def test_open_migrates_a_new_database_and_runs_calls_off_the_reactor_thread(empty_url, backend):
    store = yield Store.open(empty_url, reactor)
    try:
        assert store.revision == st.head_revision() and store.dialect == backend
        assert store._pool.max == (1 if backend == "sqlite" else st.POSTGRES_THREADS)

        def create(conn):
            on_a_worker_thread()
            return st.create_organization(conn, "Acme")

        org = yield store.run(create)
        assert (yield store.run(st.get_organization, org.id)) == org
        page = yield store.run(st.list_organizations, limit=1)
        assert page.items == (org,)
    finally:
        yield store.close()


@pytest_twisted.inlineCallbacks
def test_a_failing_call_rolls_back_everything_it_wrote(url):
    store = yield Store.open(url, reactor)
    try:
        org = yield store.run(st.create_organization, "Acme")

        def three_sites(conn):
            on_a_worker_thread()
            for name in ("one", "two", "ONE"):  # the third is a duplicate
                st.create_site(conn, org.id, name)

        with pytest.raises(st.Conflict) as e:
            yield store.run(three_sites)
        assert e.value.field == "name"
        assert (yield store.run(st.list_sites)).items == ()

        def boom(conn):
            st.create_site(conn, org.id, "one")
            raise ValueError("later failure")

        with pytest.raises(ValueError):
            yield store.run(boom)
        assert (yield store.run(st.list_sites)).items == ()
    finally:
        yield store.close()


@pytest_twisted.inlineCallbacks
def test_subscribers_hear_committed_configuration_changes(url, expect_logged_errors):
    store = yield Store.open(url, reactor)
    heard: list[tuple[st.Change, ...]] = []
    threads: list[bool] = []

    def listener(changes):
        threads.append(threading.current_thread() is threading.main_thread())
        heard.append(changes)

    def broken(changes):
        raise RuntimeError("subscriber bug")

    unsubscribe = store.subscribe(listener)
    store.subscribe(broken)
    try:
        org = yield store.run(st.create_organization, "Acme")
        assert [(c.kind, c.op, c.object_id, c.org_id) for c in heard[0]] == [
            ("organization", "create", org.id, org.id)
        ]
        site, _ = yield store.run(st.create_site, org.id, "home")
        assert heard[1][0].kind == "site" and heard[1][0].version == heard[0][0].version + 1
        assert threads == [True, True]  # delivered on the reactor thread

        def failing(conn):
            st.create_site(conn, org.id, "office")
            raise ValueError("no")

        with pytest.raises(ValueError):
            yield store.run(failing)
        yield store.run(st.mark_site_seen, site.id)  # presence: not a configuration change
        with pytest.raises(st.Conflict):
            yield store.run(st.create_site, org.id, "home")
        assert len(heard) == 2
        assert len(expect_logged_errors) == 2 and "subscriber bug" in expect_logged_errors[0]

        changes = yield store.run(st.changes_since, heard[0][0].version - 1)
        assert [c.kind for c in changes] == ["organization", "site"]
        assert (yield store.run(st.config_version)) == heard[1][0].version
        unsubscribe()
        yield store.run(st.update_site, site.id, name="house")
        assert len(heard) == 2
    finally:
        yield store.close()


@pytest_twisted.inlineCallbacks
def test_snapshot_for_the_data_plane(url):
    store = yield Store.open(url, reactor)
    try:

        def build(conn):
            org = st.create_organization(conn, "Acme")
            site, secret = st.create_site(conn, org.id, "home")
            web = st.create_resource(conn, org.id, "web", "http", hostname="a.example.com")
            ssh = st.create_resource(conn, org.id, "ssh", "tcp", public_port=2222, enabled=False)
            st.create_target(conn, web.id, site.id, "10.0.0.1", 80)
            st.create_target(conn, ssh.id, site.id, "10.0.0.1", 22)
            return site, secret, web, ssh

        site, secret, web, ssh = yield store.run(build)
        snap = yield store.snapshot()
        assert snap.version == (yield store.run(st.config_version))
        assert [s.id for s in snap.sites] == [site.id] and snap.site(site.id).accepts(secret)
        assert snap.site("site_nope") is None
        assert [r.id for r in snap.resources] == [web.id, ssh.id] and not snap.resources[1].enabled
        assert [t.address for t in snap.targets_of(ssh.id)] == ["10.0.0.1:22"]
        assert snap == (yield store.run(st.load_snapshot))
        with pytest.raises(Exception):  # noqa: B017 - frozen
            snap.version = 0
    finally:
        yield store.close()


@pytest_twisted.inlineCallbacks
def test_postgres_runs_calls_in_parallel_sqlite_one_at_a_time(url, backend):
    store = yield Store.open(url, reactor)
    try:
        org = yield store.run(st.create_organization, "Acme")

        def slow(conn, i):
            time.sleep(0.1)
            return threading.current_thread().name, st.create_site(conn, org.id, f"site {i}")[0].name

        started = time.monotonic()
        results = yield gatherResults([store.run(slow, i) for i in range(4)], consumeErrors=True)
        elapsed = time.monotonic() - started
        assert sorted(name for _, name in results) == [f"site {i}" for i in range(4)]
        threads = {thread for thread, _ in results}
        if backend == "sqlite":
            assert len(threads) == 1 and elapsed >= 0.4
        else:
            assert len(threads) == 4 and elapsed < 0.35
    finally:
        yield store.close()


@pytest_twisted.inlineCallbacks
def test_close_waits_for_calls_in_flight_then_refuses_more(url):
    store = yield Store.open(url, reactor)

    def slow(conn):
        time.sleep(0.1)
        return st.create_organization(conn, "Acme").name

    pending = store.run(slow)
    closed = store.close()
    again = store.close()
    assert (yield pending) == "Acme"
    yield closed
    yield again
    with pytest.raises(st.StoreClosed):
        yield store.run(st.list_organizations)
    yield store.close()
    engine = create_store_engine(url)
    try:
        with engine.connect() as conn:
            assert [o.name for o in st.list_organizations(conn).items] == ["Acme"]
    finally:
        engine.dispose()


@pytest_twisted.inlineCallbacks
def test_without_migrations_an_empty_database_is_refused(empty_url):
    with pytest.raises(st.SchemaMismatch) as e:
        yield Store.open(empty_url, reactor, migrate=False)
    head = st.head_revision()
    assert (e.value.current, e.value.head) == (None, head)
    assert "no Kokoa schema" in e.value.message and f"needs revision {head}" in e.value.message
    assert "migrations enabled" in e.value.message
    engine = create_store_engine(empty_url)
    try:
        assert st.current_revision(engine) is None  # nothing was written
    finally:
        engine.dispose()


@pytest_twisted.inlineCallbacks
def test_without_migrations_an_old_database_is_refused_naming_both_revisions(url, monkeypatch):
    real = _migrate.revisions()
    monkeypatch.setattr(_migrate, "revisions", lambda: [*real, "9000"])
    monkeypatch.setattr(_migrate, "head_revision", lambda: "9000")
    with pytest.raises(st.SchemaMismatch) as e:
        yield Store.open(url, reactor, migrate=False)
    assert (e.value.current, e.value.head) == (real[-1], "9000")
    assert f"at schema revision {real[-1]}" in e.value.message and "needs revision 9000" in e.value.message


@pytest_twisted.inlineCallbacks
def test_at_head_without_migrations_opens(url):
    store = yield Store.open(url, reactor, migrate=False)
    yield store.close()


@pytest_twisted.inlineCallbacks
def test_a_database_from_a_newer_kokoa_is_refused(url):
    engine = create_store_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = 'f00d'"))
    finally:
        engine.dispose()
    for migrate in (True, False):
        with pytest.raises(st.SchemaMismatch) as e:
            yield Store.open(url, reactor, migrate=migrate)
        assert "newer Kokoa" in e.value.message and "f00d" in e.value.message


@pytest_twisted.inlineCallbacks
def test_bad_urls_fail_clearly(tmp_path):
    with pytest.raises(st.Invalid) as e:
        yield Store.open("mysql://localhost/kokoa", reactor)
    assert e.value.field == "database" and "unsupported" in e.value.message
    with pytest.raises(st.Invalid) as e:
        yield Store.open(f"sqlite:///{tmp_path}/missing/kokoa.db", reactor)
    assert "does not exist" in e.value.message
    with pytest.raises(st.StoreError) as e:
        yield Store.open("postgresql://kokoa:hunter2@127.0.0.1:1/kokoa?connect_timeout=2", reactor)
    assert "cannot open" in e.value.message and "hunter2" not in e.value.message


@pytest_twisted.inlineCallbacks
def test_two_owners_demoting_each_other_at_once_leave_one_owner(url):
    store = yield Store.open(url, reactor)
    try:

        def setup(conn):
            org = st.create_organization(conn, "Acme")
            owner = st.get_role_by_name(conn, org.id, st.OWNER)
            users = [st.create_user(conn, f"{n}@example.com") for n in ("ann", "bob")]
            for user in users:
                st.add_member(conn, org.id, user.id, owner.id)
            return org.id, [u.id for u in users], st.get_role_by_name(conn, org.id, st.ADMIN).id

        org_id, user_ids, admin_id = yield store.run(setup)
        outcomes = yield DeferredList(
            [store.run(st.set_member_role, org_id, user_id, admin_id) for user_id in user_ids],
            consumeErrors=True,
        )
        succeeded = [ok for ok, _ in outcomes]
        assert sorted(succeeded) == [False, True]
        assert next(r for ok, r in outcomes if not ok).check(st.Conflict)
        members = yield store.run(st.list_members, org_id)
        assert sorted(m.role_name for m in members.items) == ["Admin", "Owner"]
    finally:
        yield store.close()
