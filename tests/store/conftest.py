"""Store fixtures: every test that takes ``url``, ``engine`` or ``conn`` runs on SQLite and on PostgreSQL.

PostgreSQL tests use a fresh database each (copied from a migrated template made once per session)
on the server named by KOKOA_TEST_POSTGRES (default postgresql://postgres@127.0.0.1:5432/test). If the
server cannot be reached they skip, saying why, unless KOKOA_REQUIRE_POSTGRES=1 (as in CI): then they fail.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator

import pytest
from argon2 import PasswordHasher
from sqlalchemy import Connection, Engine
from sqlalchemy.engine import make_url

from kokoa.store import _users, upgrade
from kokoa.store._engine import create_store_engine

POSTGRES_URL = os.environ.get("KOKOA_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
REQUIRE_POSTGRES = os.environ.get("KOKOA_REQUIRE_POSTGRES") == "1"


class _Postgres:
    """The test server: creates and drops randomly named databases over an autocommit connection."""

    def __init__(self, url: str) -> None:
        import psycopg

        self.url = make_url(url).set(drivername="postgresql+psycopg")
        self._admin = psycopg.connect(
            self._conninfo(self.url.database or "postgres"), autocommit=True, connect_timeout=3
        )
        self.template: str | None = None
        self.shared: list[str] = []

    def _conninfo(self, database: str) -> str:
        u = self.url
        parts = {
            "host": u.host or "127.0.0.1",
            "port": u.port or 5432,
            "user": u.username,
            "dbname": database,
        }
        if u.password:
            parts["password"] = u.password
        return " ".join(f"{k}={v}" for k, v in parts.items() if v is not None)

    def create(self, template: str | None = None) -> str:
        name = "kokoa_test_" + secrets.token_hex(6)
        clause = f" TEMPLATE {template}" if template else ""
        self._admin.execute(f"CREATE DATABASE {name}{clause}")
        return name

    def drop(self, name: str) -> None:
        self._admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def url_of(self, name: str) -> str:
        return self.url.set(database=name).render_as_string(hide_password=False)

    def migrated_template(self) -> str:
        if self.template is None:
            name = self.create()
            upgrade(self.url_of(name))
            self.template = name
        return self.template

    def close(self) -> None:
        for url in self.shared:
            self.drop(make_url(url).database or "")
        if self.template is not None:
            self.drop(self.template)
        self._admin.close()


@pytest.fixture(scope="session")
def _postgres_server() -> Iterator[_Postgres | str]:
    """The server, or why it is unreachable."""
    try:
        server = _Postgres(POSTGRES_URL)
    except Exception as e:  # any failure to connect: report it in the skip reason
        u = make_url(POSTGRES_URL)
        reason = " ".join(str(e).split())
        yield f"PostgreSQL not reachable at {u.host or '127.0.0.1'}:{u.port or 5432}: {reason}"
        return
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def postgres(_postgres_server: _Postgres | str) -> _Postgres:
    if isinstance(_postgres_server, str):
        if REQUIRE_POSTGRES:
            pytest.fail(f"{_postgres_server} (KOKOA_REQUIRE_POSTGRES=1)", pytrace=False)
        pytest.skip(_postgres_server)
    return _postgres_server


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def empty_url(backend: str, tmp_path, request: pytest.FixtureRequest) -> Iterator[str]:
    """A database without any schema."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'kokoa.db'}"
        return
    server: _Postgres = request.getfixturevalue("postgres")
    name = server.create()
    try:
        yield server.url_of(name)
    finally:
        server.drop(name)


@pytest.fixture
def url(backend: str, tmp_path, request: pytest.FixtureRequest) -> Iterator[str]:
    """A database migrated to head."""
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'kokoa.db'}"
        upgrade(url)
        yield url
        return
    server: _Postgres = request.getfixturevalue("postgres")
    name = server.create(template=server.migrated_template())
    try:
        yield server.url_of(name)
    finally:
        server.drop(name)


@pytest.fixture
def engine(url: str) -> Iterator[Engine]:
    engine = create_store_engine(url)
    try:
        yield engine
    finally:
        engine.dispose()


@pytest.fixture(scope="session")
def _shared_engines(_postgres_server: _Postgres | str) -> Iterator[dict[str, Engine]]:
    """One migrated database per backend for the whole session (see ``conn``); disposed of before
    the PostgreSQL server fixture drops the databases."""
    engines: dict[str, Engine] = {}
    yield engines
    for engine in engines.values():
        engine.dispose()


@pytest.fixture
def conn(backend: str, _shared_engines: dict[str, Engine], tmp_path_factory, request) -> Iterator[Connection]:
    """A connection in a transaction that is rolled back after the test, for calling repository
    functions directly: each test starts from the same empty, migrated database."""
    if backend not in _shared_engines:
        if backend == "sqlite":
            url = f"sqlite:///{tmp_path_factory.mktemp('shared') / 'kokoa.db'}"
            upgrade(url)
        else:
            server: _Postgres = request.getfixturevalue("postgres")
            url = server.url_of(server.create(template=server.migrated_template()))
            server.shared.append(url)
        _shared_engines[backend] = create_store_engine(url)
    elif backend == "postgresql":
        request.getfixturevalue("postgres")  # skip or fail as for the first test
    with _shared_engines[backend].connect() as conn:
        conn.begin()
        try:
            yield conn
        finally:
            conn.rollback()


@pytest.fixture(autouse=True)
def _fast_password_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    """argon2id with tiny costs: the real costs only slow the tests down."""
    monkeypatch.setattr(_users, "PASSWORD_HASHER", PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))
