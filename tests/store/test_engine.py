"""Database URLs and the SQLite connection settings."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from kokoa import store as st
from kokoa.store._engine import SQLITE_BUSY_TIMEOUT_MS, create_store_engine, normalize_url

pytestmark = pytest.mark.sans_io  # no reactor involved


def test_database_url_defaults_to_sqlite_in_the_data_directory(tmp_path):
    assert st.database_url(tmp_path) == f"sqlite:///{tmp_path}/kokoa.db"
    assert st.database_url("data").endswith("/data/kokoa.db") and st.database_url("data").startswith(
        "sqlite:////"
    )


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgresql://u:p@db/kokoa", "postgresql+psycopg://u:p@db/kokoa"),
        ("postgres://db/kokoa", "postgresql+psycopg://db/kokoa"),
        ("postgresql+psycopg://db/kokoa", "postgresql+psycopg://db/kokoa"),
        ("sqlite:////var/lib/kokoa/kokoa.db", "sqlite:////var/lib/kokoa/kokoa.db"),
    ],
)
def test_database_urls_are_normalized(given, expected):
    assert st.database_url("ignored", given) == expected == normalize_url(given)


@pytest.mark.parametrize(
    ("given", "message"), [("mysql://db/kokoa", "unsupported"), ("not a url", "not a database URL")]
)
def test_unsupported_databases_are_refused(given, message):
    with pytest.raises(st.Invalid) as e:
        st.database_url("data", given)
    assert e.value.field == "database" and message in e.value.message


def test_sqlite_connections_use_wal_foreign_keys_and_a_busy_timeout(tmp_path):
    engine = create_store_engine(f"sqlite:///{tmp_path}/kokoa.db")
    try:
        with engine.connect() as conn:
            assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
            assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
            assert conn.execute(text("PRAGMA busy_timeout")).scalar() == SQLITE_BUSY_TIMEOUT_MS
    finally:
        engine.dispose()


def test_sqlite_savepoints_really_roll_back(tmp_path):
    """pysqlite's own transaction handling breaks SAVEPOINT; the engine takes it over."""
    engine = create_store_engine(f"sqlite:///{tmp_path}/kokoa.db")
    try:
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE t (x INTEGER)"))
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO t VALUES (1)"))
            savepoint = conn.begin_nested()
            conn.execute(text("INSERT INTO t VALUES (2)"))
            savepoint.rollback()
        with engine.connect() as conn:
            assert conn.execute(text("SELECT x FROM t")).scalars().all() == [1]
    finally:
        engine.dispose()
