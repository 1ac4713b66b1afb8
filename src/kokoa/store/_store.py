"""The Store: an engine, migrated at open, and a thread pool of its own for every blocking call.

Thread pool sizing: SQLite has one writer at a time, and every transaction here takes the write
lock (``BEGIN IMMEDIATE``), so one thread is all SQLite can use; more would only queue on the lock.
PostgreSQL serves concurrent transactions, so it gets :data:`POSTGRES_THREADS` threads and as
many pooled connections. Either can be overridden with ``threads=``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IReactorCore, IReactorThreads
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python import threadable
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

from . import _migrate
from ._common import Change, take_changes
from ._engine import create_store_engine, normalize_url
from ._errors import Invalid, StoreError
from ._snapshot import Snapshot, load_snapshot

T = TypeVar("T")

#: Threads (and pooled connections) for PostgreSQL; SQLite gets one.
POSTGRES_THREADS = 4

_log = Logger()


class StoreClosed(StoreError):
    """The store was closed; no more calls are taken."""

    def __init__(self) -> None:
        super().__init__(None, "the store is closed")


def open_engine(url: str, migrate: bool = True, pool_size: int | None = None) -> tuple[Engine, str]:
    """Blocking: an engine for ``url`` whose schema is at head (migrated if ``migrate``), and that revision.

    The store opens its database with this; a command line without a reactor may use it directly.
    """
    url = normalize_url(url)
    sa_url = make_url(url)
    shown = sa_url.render_as_string(hide_password=True)
    kw: dict[str, Any] = {}
    if sa_url.get_backend_name() == "sqlite":
        directory = Path(sa_url.database or "").parent
        if sa_url.database not in (None, "", ":memory:") and not directory.is_dir():
            raise Invalid("database", f"cannot open {shown}: the directory {directory} does not exist")
    elif pool_size is not None:
        kw = {"pool_size": pool_size, "max_overflow": 0}
    engine = create_store_engine(url, **kw)
    try:
        current = _migrate.check_revision(engine, migrate)
        head = _migrate.head_revision()
        if current != head:
            _log.info(
                "Migrating the database {url} from {current} to {head}", url=shown, current=current, head=head
            )
            _migrate.upgrade(engine)
        return engine, head
    except OperationalError as e:
        engine.dispose()
        raise StoreError("database", f"cannot open {shown}: {e.orig}") from e
    except BaseException:
        engine.dispose()
        raise


class Store:
    """The database, reached from the reactor through a thread pool. Make one with :meth:`open`."""

    def __init__(self, engine: Engine, reactor: IReactorThreads, pool: ThreadPool, revision: str) -> None:
        self.engine = engine
        self.revision = revision
        self._reactor = reactor
        self._pool = pool
        self._subscribers: list[Callable[[tuple[Change, ...]], object]] = []
        self._in_flight = 0
        self._idle: list[Deferred[None]] = []
        self._close_waiters: list[Deferred[None]] = []
        self._closed = False
        # A safety net: close at reactor shutdown if nobody did (the pool's threads would hold the exit).
        self._shutdown_trigger: Any = None
        if IReactorCore.providedBy(reactor):
            self._shutdown_trigger = reactor.addSystemEventTrigger("before", "shutdown", self.close)

    @classmethod
    def open(
        cls, url: str, reactor: IReactorThreads, migrate: bool = True, *, threads: int | None = None
    ) -> Deferred[Store]:
        """Open the database at ``url`` (see :func:`database_url`), upgrading its schema to head, or,
        with ``migrate=False``, failing with :class:`SchemaMismatch` if it is behind."""
        try:
            backend = make_url(normalize_url(url)).get_backend_name()
        except StoreError:
            return fail()
        if threads is None:
            threads = 1 if backend == "sqlite" else POSTGRES_THREADS
        pool = ThreadPool(minthreads=0, maxthreads=threads, name="kokoa-store")
        pool.start()
        pool_size = None if backend == "sqlite" else threads
        d = deferToThreadPool(reactor, pool, open_engine, url, migrate, pool_size)

        def opened(result: tuple[Engine, str]) -> Store:
            return cls(result[0], reactor, pool, result[1])

        def failed(failure: Any) -> Any:
            pool.stop()
            return failure

        return d.addCallbacks(opened, failed)

    @property
    def dialect(self) -> str:
        """The kind of database: "sqlite" or "postgresql"."""
        return self.engine.dialect.name

    def run(self, fn: Callable[..., T], *args: Any, **kw: Any) -> Deferred[T]:
        """Run ``fn(conn, *args, **kw)`` in a transaction on the store's thread pool.

        The transaction commits if ``fn`` returns, and rolls back if it raises (the Deferred then
        fails with that exception). Configuration changes it made go to the subscribers after commit.
        """
        return self._submit(fn, args, kw, None)

    def snapshot(self) -> Deferred[Snapshot]:
        """:func:`load_snapshot` in a transaction that sees one consistent state of the database."""
        isolation = "REPEATABLE READ" if self.dialect == "postgresql" else None
        return self._submit(load_snapshot, (), {}, isolation)

    def subscribe(self, callback: Callable[[tuple[Change, ...]], object]) -> Callable[[], None]:
        """Call ``callback(changes)`` on the reactor thread after each transaction of this store that
        changed the configuration; returns a function that unsubscribes. (Changes made by other
        processes are not seen here: poll :func:`changes_since`, or LISTEN on PostgreSQL.)"""
        self._subscribers.append(callback)
        return lambda: self._subscribers.remove(callback) if callback in self._subscribers else None

    def close(self) -> Deferred[None]:
        """Wait for the calls in flight, then close the connections and stop the threads."""
        done: Deferred[None] = Deferred()
        if self._closed:
            return succeed(None)
        if self._close_waiters:
            self._close_waiters.append(done)
            return done
        self._close_waiters.append(done)
        idle: Deferred[None] = succeed(None)
        if self._in_flight:
            idle = Deferred()
            self._idle.append(idle)
        idle.addCallback(lambda _: deferToThreadPool(self._reactor, self._pool, self.engine.dispose))
        idle.addBoth(self._stopped)
        return done

    def _stopped(self, result: Any) -> None:
        self._pool.stop()
        self._closed = True
        if self._shutdown_trigger is not None:
            self._reactor.removeSystemEventTrigger(self._shutdown_trigger)  # type: ignore[attr-defined]
            self._shutdown_trigger = None
        waiters, self._close_waiters = self._close_waiters, []
        for waiter in waiters:
            if isinstance(result, Failure):
                waiter.errback(result)
            else:
                waiter.callback(None)

    def _submit(
        self, fn: Callable[..., T], args: tuple[Any, ...], kw: dict[str, Any], isolation: str | None
    ) -> Deferred[T]:
        if self._closed or self._close_waiters:
            return fail(StoreClosed())
        self._in_flight += 1
        d = deferToThreadPool(self._reactor, self._pool, self._transact, fn, args, kw, isolation)
        d.addBoth(self._finished)
        d.addCallback(self._deliver)
        return d

    def _transact(
        self, fn: Callable[..., T], args: tuple[Any, ...], kw: dict[str, Any], isolation: str | None
    ) -> tuple[T, tuple[Change, ...]]:
        if threadable.isInIOThread() or threading.current_thread() is threading.main_thread():
            raise RuntimeError("store calls must not run on the reactor thread")
        with self.engine.connect() as conn:
            if isolation is not None:
                conn.execution_options(isolation_level=isolation)
            take_changes(conn)  # drop any left by a transaction that rolled back
            try:
                with conn.begin():
                    result = fn(conn, *args, **kw)
            except DBAPIError as e:
                if e.connection_invalidated:
                    _log.warn("Lost the database connection: {error}", error=e.orig)
                raise
            return result, take_changes(conn)

    def _finished(self, result: Any) -> Any:
        self._in_flight -= 1
        if not self._in_flight:
            waiters, self._idle = self._idle, []
            for waiter in waiters:
                waiter.callback(None)
        return result

    def _deliver(self, outcome: tuple[T, tuple[Change, ...]]) -> T:
        result, changes = outcome
        if changes:
            for callback in list(self._subscribers):
                try:
                    callback(changes)
                except Exception:
                    _log.failure("A store subscriber failed on {count} change(s)", count=len(changes))
        return result
