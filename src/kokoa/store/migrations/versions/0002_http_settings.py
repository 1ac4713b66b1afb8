"""HTTP resources' settings: load balancing, stickiness, the redirect to HTTPS and HSTS on resources;
TLS verification, the TLS server name and the health check's expected statuses on targets.

Every new column has a server default, so existing rows get a value (the behaviour they had).

SQLite: the columns are added in place (``ALTER TABLE ... ADD COLUMN``, with the CHECK constraints
written inline), never by batch mode's copy-and-rename. Copying would drop the ``resources`` table,
which with foreign keys on deletes every target, grant and rule through ON DELETE CASCADE, and would
lose the expression indexes (``lower(name)``) that SQLite cannot reflect.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.schema import CreateColumn

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# Frozen copies of the values at this revision (never import them from kokoa.store._schema).
HOSTNAME = sa.String(253)
MAX_HSTS_MAX_AGE = 63_072_000

RESOURCE_COLUMNS: list[tuple[sa.Column, str | None]] = [
    (
        sa.Column("lb_method", sa.String(24), nullable=False, server_default="round_robin"),
        "lb_method IN ('round_robin', 'least_connections')",
    ),
    (sa.Column("sticky", sa.Boolean, nullable=False, server_default=sa.false()), None),
    (sa.Column("redirect_https", sa.Boolean, nullable=False, server_default=sa.false()), None),
    (
        sa.Column("hsts_max_age", sa.Integer, nullable=False, server_default=sa.text("0")),
        f"hsts_max_age BETWEEN 0 AND {MAX_HSTS_MAX_AGE}",
    ),
]

TARGET_COLUMNS: list[tuple[sa.Column, str | None]] = [
    (sa.Column("tls_verify", sa.Boolean, nullable=False, server_default=sa.true()), None),
    (sa.Column("tls_server_name", HOSTNAME, nullable=True), None),
    (sa.Column("hc_expected_status", sa.String(64), nullable=False, server_default="200-399"), None),
]


def _add(table: str, column: sa.Column, check: str | None) -> None:
    """Add ``column`` (and its CHECK constraint ``ck_<table>_<column>``) to an existing table."""
    name = f"ck_{table}_{column.name}"
    dialect = op.get_context().dialect
    if dialect.name == "sqlite":
        spec = str(CreateColumn(column).compile(dialect=dialect))
        constraint = f" CONSTRAINT {name} CHECK ({check})" if check else ""
        op.execute(f"ALTER TABLE {table} ADD COLUMN {spec}{constraint}")
        return
    op.add_column(table, column)
    if check:
        op.create_check_constraint(name, table, check)


def upgrade() -> None:
    for column, check in RESOURCE_COLUMNS:
        _add("resources", column, check)
    for column, check in TARGET_COLUMNS:
        _add("targets", column, check)


def downgrade() -> None:
    # SQLite (3.35+) drops a column in place when only its own constraints name it, as here.
    for table, columns in (("targets", TARGET_COLUMNS), ("resources", RESOURCE_COLUMNS)):
        for column, _ in reversed(columns):
            op.drop_column(table, column.name)
