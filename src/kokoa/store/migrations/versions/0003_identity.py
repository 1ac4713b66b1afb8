"""Identity and access: sessions, one-time codes and tokens, single sign-on identities, share links,
email codes, second factors, per-resource sign-in alternatives, and the access log.

Resources get ``public`` (no sign-in) and the alternatives to a user's sign-in (a password, a PIN, a
list of email addresses or ``@domains`` that may receive a one-time code). Rows written before this
revision were served to anyone (nothing was enforced): they are marked public, so an upgrade changes
nobody's access; new resources are created protected unless told otherwise.

Users get a TOTP secret, the last time step used (no replay), and their backup codes' hashes.

Columns are added in place on SQLite, as in 0002 (never batch mode's copy-and-rename, which would
cascade-delete through the foreign keys).

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.schema import CreateColumn

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

# Frozen copies of the values at this revision (never import them from kokoa.store._schema).
ID = sa.String(40)
HOSTNAME = sa.String(253)
EMAIL = sa.String(254)
PATH = sa.String(1024)
HASH = sa.String(64)
JSON = sa.JSON().with_variant(JSONB(), "postgresql")
TIME = sa.DateTime(timezone=True)


def _resource_columns() -> list[sa.Column]:
    return [
        sa.Column("public", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("auth_password_hash", sa.Text, nullable=True),
        sa.Column("auth_pin_hash", sa.Text, nullable=True),
        sa.Column("auth_email_allow", JSON, nullable=True),
    ]


def _user_columns() -> list[sa.Column]:
    return [
        sa.Column("totp_secret", sa.String(64), nullable=True),
        sa.Column("totp_last_step", sa.BigInteger, nullable=True),
        sa.Column("backup_codes", JSON, nullable=True),
    ]


def _fk(owner: str, name: str, table: str, ondelete: str = "CASCADE") -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint([name], [f"{table}.id"], name=f"fk_{owner}_{name}", ondelete=ondelete)


def _add(table: str, column: sa.Column) -> None:
    dialect = op.get_context().dialect
    if dialect.name == "sqlite":
        spec = str(CreateColumn(column).compile(dialect=dialect))
        op.execute(f"ALTER TABLE {table} ADD COLUMN {spec}")
        return
    op.add_column(table, column)


def upgrade() -> None:
    for column in _resource_columns():
        _add("resources", column)
    op.execute("UPDATE resources SET public = true")  # they were served to anyone before 0003
    for column in _user_columns():
        _add("users", column)

    op.create_table(
        "sessions",
        sa.Column("id", ID, nullable=False),
        sa.Column("token_hash", HASH, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("user_id", ID, nullable=True),
        sa.Column("parent_id", ID, nullable=True),
        sa.Column("resource_id", ID, nullable=True),
        sa.Column("subject", EMAIL, nullable=True),
        sa.Column("method", sa.String(32), nullable=False),
        sa.Column("host", HOSTNAME, nullable=True),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("last_seen_at", TIME, nullable=False),
        sa.Column("expires_at", TIME, nullable=False),
        sa.Column("revoked_at", TIME, nullable=True),
        sa.Column("source_address", sa.String(64), nullable=True),
        sa.Column("user_agent", sa.String(200), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_sessions"),
        sa.UniqueConstraint("token_hash", name="uq_sessions_token_hash"),
        _fk("sessions", "user_id", "users"),
        _fk("sessions", "parent_id", "sessions"),
        _fk("sessions", "resource_id", "resources"),
        sa.CheckConstraint("kind IN ('login', 'host')", name="ck_sessions_kind"),
        sa.CheckConstraint("user_id IS NOT NULL OR resource_id IS NOT NULL", name="ck_sessions_subject"),
    )
    op.create_index("ix_sessions_user_id", "sessions", ["user_id"])
    op.create_index("ix_sessions_parent_id", "sessions", ["parent_id"])
    op.create_index("ix_sessions_expires_at", "sessions", ["expires_at"])

    op.create_table(
        "auth_codes",
        sa.Column("code_hash", HASH, nullable=False),
        sa.Column("parent_id", ID, nullable=True),
        sa.Column("user_id", ID, nullable=True),
        sa.Column("resource_id", ID, nullable=True),
        sa.Column("subject", EMAIL, nullable=True),
        sa.Column("method", sa.String(32), nullable=False),
        sa.Column("host", HOSTNAME, nullable=False),
        sa.Column("path", PATH, nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("expires_at", TIME, nullable=False),
        sa.Column("used_at", TIME, nullable=True),
        sa.PrimaryKeyConstraint("code_hash", name="pk_auth_codes"),
        _fk("auth_codes", "parent_id", "sessions"),
        _fk("auth_codes", "user_id", "users"),
        _fk("auth_codes", "resource_id", "resources"),
    )
    op.create_index("ix_auth_codes_expires_at", "auth_codes", ["expires_at"])

    op.create_table(
        "user_tokens",
        sa.Column("token_hash", HASH, nullable=False),
        sa.Column("user_id", ID, nullable=False),
        sa.Column("purpose", sa.String(16), nullable=False),
        sa.Column("created_by", sa.String(200), nullable=True),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("expires_at", TIME, nullable=False),
        sa.Column("used_at", TIME, nullable=True),
        sa.PrimaryKeyConstraint("token_hash", name="pk_user_tokens"),
        _fk("user_tokens", "user_id", "users"),
        sa.CheckConstraint("purpose IN ('reset', 'invite', 'setup')", name="ck_user_tokens_purpose"),
    )
    op.create_index("ix_user_tokens_user_id", "user_tokens", ["user_id"])

    op.create_table(
        "user_identities",
        sa.Column("provider", sa.String(32), nullable=False),
        sa.Column("subject", sa.String(255), nullable=False),
        sa.Column("user_id", ID, nullable=False),
        sa.Column("email", EMAIL, nullable=True),
        sa.Column("created_at", TIME, nullable=False),
        sa.PrimaryKeyConstraint("provider", "subject", name="pk_user_identities"),
        _fk("user_identities", "user_id", "users"),
    )
    op.create_index("ix_user_identities_user_id", "user_identities", ["user_id"])

    op.create_table(
        "share_links",
        sa.Column("id", ID, nullable=False),
        sa.Column("resource_id", ID, nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("token_hash", sa.String(100), nullable=False),
        sa.Column("expires_at", TIME, nullable=True),
        sa.Column("max_uses", sa.Integer, nullable=True),
        sa.Column("uses", sa.Integer, nullable=False),
        sa.Column("revoked_at", TIME, nullable=True),
        sa.Column("created_by", sa.String(200), nullable=True),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("updated_at", TIME, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_share_links"),
        sa.UniqueConstraint("prefix", name="uq_share_links_prefix"),
        _fk("share_links", "resource_id", "resources"),
        sa.CheckConstraint("max_uses IS NULL OR max_uses >= 1", name="ck_share_links_max_uses"),
    )
    op.create_index("ix_share_links_resource_id", "share_links", ["resource_id"])

    op.create_table(
        "email_codes",
        sa.Column("id", ID, nullable=False),
        sa.Column("resource_id", ID, nullable=False),
        sa.Column("email", EMAIL, nullable=False),
        sa.Column("code_hash", HASH, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("expires_at", TIME, nullable=False),
        sa.Column("used_at", TIME, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_email_codes"),
        _fk("email_codes", "resource_id", "resources"),
    )
    op.create_index("ix_email_codes_resource_email", "email_codes", ["resource_id", "email"])

    op.create_table(
        "access_log",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True),
        sa.Column("at", TIME, nullable=False),
        sa.Column("org_id", ID, nullable=True),
        sa.Column("resource_id", ID, nullable=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(500), nullable=False),
        sa.Column("user_id", ID, nullable=True),
        sa.Column("subject", EMAIL, nullable=True),
        sa.Column("method", sa.String(16), nullable=True),
        sa.Column("host", HOSTNAME, nullable=True),
        sa.Column("path", PATH, nullable=True),
        sa.Column("client_address", sa.String(64), nullable=True),
        sa.Column("rule_id", ID, nullable=True),
        sa.Column("count", sa.Integer, nullable=False, server_default=sa.text("1")),
        sa.PrimaryKeyConstraint("id", name="pk_access_log"),
    )
    for column in ("at", "org_id", "resource_id", "user_id", "outcome"):
        op.create_index(f"ix_access_log_{column}", "access_log", [column])


def downgrade() -> None:
    for name in ("access_log", "email_codes", "share_links", "user_identities", "user_tokens", "auth_codes"):
        op.drop_table(name)
    op.drop_table("sessions")
    for table, columns in (("users", _user_columns()), ("resources", _resource_columns())):
        for column in reversed(columns):
            op.drop_column(table, column.name)
