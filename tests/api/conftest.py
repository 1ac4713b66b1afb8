"""API fixtures: the real API on a real listening port, over a real Store on SQLite and PostgreSQL.

The database fixtures are the store tests' (``url`` runs each test on both backends; PostgreSQL skips
when unreachable unless KOKOA_REQUIRE_POSTGRES=1); they are loaded from tests/store/conftest.py by
path, so that file stays the one definition. ``api`` serves the API with an instance-wide key (see
``api_support.serving``).
"""

from __future__ import annotations

import importlib.util
from collections.abc import AsyncIterator
from pathlib import Path

import pytest_twisted
from api_support import Api, serving
from twisted.internet import reactor

from kokoa import store as st

_spec = importlib.util.spec_from_file_location(
    "kokoa_tests_store_fixtures", Path(__file__).parent.parent / "store" / "conftest.py"
)
assert _spec is not None and _spec.loader is not None
_store_fixtures = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_store_fixtures)

# The store tests' fixtures, used here unchanged.
_postgres_server = _store_fixtures._postgres_server
postgres = _store_fixtures.postgres
backend = _store_fixtures.backend
url = _store_fixtures.url
_fast_password_hashing = _store_fixtures._fast_password_hashing


@pytest_twisted.async_yield_fixture
async def api(url: str) -> AsyncIterator[Api]:
    store = await st.Store.open(url, reactor)
    try:
        _, key = await store.run(st.create_api_key, "admin", org_id=None, scopes=["*"])
        async with serving(store, key) as served:
            yield served
    finally:
        await store.close()
