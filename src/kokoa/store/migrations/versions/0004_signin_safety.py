"""Sign-in safety: one-time codes bound to the browser that asked for them, and the instance's keys.

``auth_codes.nonce_hash``: the SHA-256 of the resource host's nonce cookie in the browser that was
sent to sign in; the code is redeemed with that cookie only. Codes written before this revision have
none (they live a minute: nothing to carry over).

``instance_keys``: secrets every gateway of a cluster shares, made on first use (the key that seals
the login host's cookies: pending sign-ins, device cookies).

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.schema import CreateColumn

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

TIME = sa.DateTime(timezone=True)


def _nonce_column() -> sa.Column:
    return sa.Column("nonce_hash", sa.String(64), nullable=True)


def upgrade() -> None:
    column = _nonce_column()
    dialect = op.get_context().dialect
    if dialect.name == "sqlite":  # in place (never batch mode's copy-and-rename), as in 0002 and 0003
        op.execute(f"ALTER TABLE auth_codes ADD COLUMN {CreateColumn(column).compile(dialect=dialect)}")
    else:
        op.add_column("auth_codes", column)
    op.create_table(
        "instance_keys",
        sa.Column("name", sa.String(40), nullable=False),
        sa.Column("value", sa.String(200), nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_instance_keys"),
    )


def downgrade() -> None:
    op.drop_table("instance_keys")
    op.drop_column("auth_codes", "nonce_hash")
