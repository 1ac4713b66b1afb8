"""Shared by the store tests: a fixed clock and a table row counter."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Connection, Table, func, select

#: A fixed clock for tests that depend on time.
NOW = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)


def count(conn: Connection, table: Table) -> int:
    return conn.execute(select(func.count()).select_from(table)).scalar_one()
