"""Engines: the database URL, and SQLite set up for a server (WAL, foreign keys, busy timeout)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from ._errors import Invalid

#: SQLite file name inside the data directory.
SQLITE_FILE = "kokoa.db"
#: How long a SQLite connection waits for another process's write lock before failing.
SQLITE_BUSY_TIMEOUT_MS = 10_000


def database_url(data_dir: str | os.PathLike[str], database: str | None = None) -> str:
    """The URL to open: ``database`` if given (``--database``), else SQLite in ``data_dir``.

    ``postgresql://`` URLs use psycopg 3 (``postgresql+psycopg://``).
    """
    if database is None:
        return f"sqlite:///{Path(data_dir).absolute() / SQLITE_FILE}"
    return normalize_url(database)


def normalize_url(database: str) -> str:
    """``database`` with the driver Kokoa uses spelled out; Invalid for what the store cannot open."""
    try:
        url = make_url(database)
    except ArgumentError:
        raise Invalid("database", f"{database!r} is not a database URL") from None
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg")
    if url.drivername not in ("postgresql+psycopg", "sqlite", "sqlite+pysqlite"):
        raise Invalid("database", f"unsupported database {url.drivername!r}: use sqlite:/// or postgresql://")
    return url.render_as_string(hide_password=False)


def create_store_engine(url: str, **kw: Any) -> Engine:
    """An engine for ``url``; on SQLite, every connection gets WAL, foreign keys and a busy timeout."""
    sa_url = make_url(normalize_url(url))
    if sa_url.get_backend_name() == "postgresql":
        kw.setdefault("pool_pre_ping", True)
        return create_engine(sa_url, **kw)
    engine = create_engine(sa_url, **kw)
    _configure_sqlite(engine)
    return engine


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transactions out of the sqlite3 module's hands (it defers BEGIN and breaks SAVEPOINT);
        # the "begin" listener below issues BEGIN itself.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA foreign_keys = ON")
            if engine.url.database not in (None, "", ":memory:"):
                cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = NORMAL")  # safe with WAL: only the last commits may be lost
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # IMMEDIATE takes the write lock at once: a read-then-write transaction cannot fail with
        # "database is locked" half-way (busy_timeout applies to the BEGIN instead).
        conn.exec_driver_sql("BEGIN IMMEDIATE")
