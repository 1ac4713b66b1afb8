"""The first schema: organizations, users, roles, memberships, sites, resources, targets, grants,
rules, API keys, the audit log, and the change counter.

Revision ID: 0001
Revises: (none)
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# Frozen copies of the types at this revision (never import them from kokoa.store._schema).
ID = sa.String(40)
NAME = sa.String(100)
HOSTNAME = sa.String(253)
PATH = sa.String(1024)
TIME = sa.DateTime(timezone=True)
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
SERIAL = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _timestamps() -> list[sa.Column]:
    return [sa.Column("created_at", TIME, nullable=False), sa.Column("updated_at", TIME, nullable=False)]


def _fk(table: str, column: str, target: str, ondelete: str | None = "CASCADE") -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint([column], [f"{target}.id"], name=f"fk_{table}_{column}", ondelete=ondelete)


def upgrade() -> None:
    op.create_table(
        "config_version",
        sa.Column("id", sa.Integer, autoincrement=False, nullable=False),
        sa.Column("version", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_config_version"),
        sa.CheckConstraint("id = 1", name="ck_config_version_single_row"),
    )
    op.execute("INSERT INTO config_version (id, version) VALUES (1, 0)")

    op.create_table(
        "changes",
        sa.Column("id", SERIAL, autoincrement=True, nullable=False),
        sa.Column("version", sa.BigInteger, nullable=False),
        sa.Column("org_id", ID, nullable=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("object_id", ID, nullable=False),
        sa.Column("op", sa.String(16), nullable=False),
        sa.Column("at", TIME, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_changes"),
        sa.CheckConstraint("op IN ('create', 'update', 'delete')", name="ck_changes_op"),
    )
    op.create_index("ix_changes_version", "changes", ["version"])

    op.create_table(
        "organizations",
        sa.Column("id", ID, nullable=False),
        sa.Column("name", NAME, nullable=False),
        *_timestamps(),
        sa.PrimaryKeyConstraint("id", name="pk_organizations"),
    )
    op.create_index("uq_organizations_name", "organizations", [sa.text("lower(name)")], unique=True)

    op.create_table(
        "users",
        sa.Column("id", ID, nullable=False),
        sa.Column("email", sa.String(254), nullable=False),
        sa.Column("display_name", NAME, nullable=True),
        sa.Column("password_hash", sa.Text, nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        *_timestamps(),
        sa.PrimaryKeyConstraint("id", name="pk_users"),
        sa.UniqueConstraint("email", name="uq_users_email"),
        sa.CheckConstraint("status IN ('active', 'disabled', 'invited')", name="ck_users_status"),
    )

    op.create_table(
        "roles",
        sa.Column("id", ID, nullable=False),
        sa.Column("org_id", ID, nullable=False),
        sa.Column("name", NAME, nullable=False),
        sa.Column("description", sa.String(500), nullable=False),
        sa.Column("builtin", sa.Boolean, nullable=False),
        *_timestamps(),
        sa.PrimaryKeyConstraint("id", name="pk_roles"),
        _fk("roles", "org_id", "organizations"),
    )
    op.create_index("uq_roles_org_name", "roles", ["org_id", sa.text("lower(name)")], unique=True)

    op.create_table(
        "memberships",
        sa.Column("org_id", ID, nullable=False),
        sa.Column("user_id", ID, nullable=False),
        sa.Column("role_id", ID, nullable=False),
        *_timestamps(),
        sa.PrimaryKeyConstraint("org_id", "user_id", name="pk_memberships"),
        _fk("memberships", "org_id", "organizations"),
        _fk("memberships", "user_id", "users"),
        _fk("memberships", "role_id", "roles", ondelete=None),
    )
    op.create_index("ix_memberships_user_id", "memberships", ["user_id"])
    op.create_index("ix_memberships_role_id", "memberships", ["role_id"])

    op.create_table(
        "sites",
        sa.Column("id", ID, nullable=False),
        sa.Column("org_id", ID, nullable=False),
        sa.Column("name", NAME, nullable=False),
        sa.Column("secret_hash", sa.String(100), nullable=False),
        sa.Column("previous_secret_hash", sa.String(100), nullable=True),
        sa.Column("previous_secret_expires_at", TIME, nullable=True),
        sa.Column("enabled", sa.Boolean, nullable=False),
        sa.Column("online", sa.Boolean, nullable=False),
        sa.Column("last_seen_at", TIME, nullable=True),
        *_timestamps(),
        sa.PrimaryKeyConstraint("id", name="pk_sites"),
        _fk("sites", "org_id", "organizations"),
    )
    op.create_index("uq_sites_org_name", "sites", ["org_id", sa.text("lower(name)")], unique=True)

    op.create_table(
        "resources",
        sa.Column("id", ID, nullable=False),
        sa.Column("org_id", ID, nullable=False),
        sa.Column("name", NAME, nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("hostname", HOSTNAME, nullable=True),
        sa.Column("path_prefix", PATH, nullable=True),
        sa.Column("public_port", sa.Integer, nullable=True),
        sa.Column("enabled", sa.Boolean, nullable=False),
        *_timestamps(),
        sa.PrimaryKeyConstraint("id", name="pk_resources"),
        _fk("resources", "org_id", "organizations"),
        sa.CheckConstraint("kind IN ('http', 'tcp', 'udp')", name="ck_resources_kind"),
        sa.CheckConstraint("public_port BETWEEN 1 AND 65535", name="ck_resources_public_port"),
        sa.CheckConstraint(
            "(kind = 'http' AND hostname IS NOT NULL AND path_prefix IS NOT NULL AND public_port IS NULL)"
            " OR (kind IN ('tcp', 'udp') AND public_port IS NOT NULL AND hostname IS NULL"
            " AND path_prefix IS NULL)",
            name="ck_resources_fields_per_kind",
        ),
        sa.UniqueConstraint("hostname", "path_prefix", name="uq_resources_hostname_path_prefix"),
    )
    op.create_index("uq_resources_org_name", "resources", ["org_id", sa.text("lower(name)")], unique=True)
    op.create_index(
        "uq_resources_enabled_port",
        "resources",
        ["kind", "public_port"],
        unique=True,
        sqlite_where=sa.text("enabled"),
        postgresql_where=sa.text("enabled"),
    )

    op.create_table(
        "targets",
        sa.Column("id", ID, nullable=False),
        sa.Column("resource_id", ID, nullable=False),
        sa.Column("site_id", ID, nullable=False),
        sa.Column("host", HOSTNAME, nullable=False),
        sa.Column("port", sa.Integer, nullable=False),
        sa.Column("scheme", sa.String(8), nullable=False),
        sa.Column("weight", sa.Integer, nullable=False),
        sa.Column("enabled", sa.Boolean, nullable=False),
        sa.Column("hc_enabled", sa.Boolean, nullable=False),
        sa.Column("hc_path", PATH, nullable=True),
        sa.Column("hc_interval", sa.Integer, nullable=False),
        sa.Column("hc_timeout", sa.Integer, nullable=False),
        sa.Column("hc_healthy_threshold", sa.Integer, nullable=False),
        sa.Column("hc_unhealthy_threshold", sa.Integer, nullable=False),
        *_timestamps(),
        sa.PrimaryKeyConstraint("id", name="pk_targets"),
        _fk("targets", "resource_id", "resources"),
        _fk("targets", "site_id", "sites"),
        sa.CheckConstraint("port BETWEEN 1 AND 65535", name="ck_targets_port"),
        sa.CheckConstraint("scheme IN ('http', 'https', 'tcp', 'udp')", name="ck_targets_scheme"),
        sa.CheckConstraint("weight BETWEEN 0 AND 1000", name="ck_targets_weight"),
        sa.CheckConstraint("hc_interval BETWEEN 1 AND 3600", name="ck_targets_hc_interval"),
        sa.CheckConstraint("hc_timeout BETWEEN 1 AND 300", name="ck_targets_hc_timeout"),
        sa.CheckConstraint("hc_healthy_threshold BETWEEN 1 AND 100", name="ck_targets_hc_healthy_threshold"),
        sa.CheckConstraint(
            "hc_unhealthy_threshold BETWEEN 1 AND 100", name="ck_targets_hc_unhealthy_threshold"
        ),
        sa.UniqueConstraint("resource_id", "site_id", "host", "port", name="uq_targets_endpoint"),
    )
    op.create_index("ix_targets_site_id", "targets", ["site_id"])

    op.create_table(
        "grants",
        sa.Column("id", ID, nullable=False),
        sa.Column("resource_id", ID, nullable=False),
        sa.Column("role_id", ID, nullable=True),
        sa.Column("user_id", ID, nullable=True),
        sa.Column("created_at", TIME, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_grants"),
        _fk("grants", "resource_id", "resources"),
        _fk("grants", "role_id", "roles"),
        _fk("grants", "user_id", "users"),
        sa.CheckConstraint("(role_id IS NULL) <> (user_id IS NULL)", name="ck_grants_one_grantee"),
        sa.UniqueConstraint("resource_id", "role_id", name="uq_grants_resource_role"),
        sa.UniqueConstraint("resource_id", "user_id", name="uq_grants_resource_user"),
    )
    op.create_index("ix_grants_role_id", "grants", ["role_id"])
    op.create_index("ix_grants_user_id", "grants", ["user_id"])

    op.create_table(
        "rules",
        sa.Column("id", ID, nullable=False),
        sa.Column("resource_id", ID, nullable=False),
        sa.Column("priority", sa.Integer, nullable=False),
        sa.Column("action", sa.String(8), nullable=False),
        sa.Column("cidr", sa.String(64), nullable=True),
        sa.Column("path", PATH, nullable=True),
        sa.Column("method", sa.String(16), nullable=True),
        sa.Column("enabled", sa.Boolean, nullable=False),
        *_timestamps(),
        sa.PrimaryKeyConstraint("id", name="pk_rules"),
        _fk("rules", "resource_id", "resources"),
        sa.CheckConstraint("action IN ('allow', 'deny', 'bypass')", name="ck_rules_action"),
        sa.CheckConstraint("priority BETWEEN 0 AND 1000000", name="ck_rules_priority"),
        sa.UniqueConstraint("resource_id", "priority", name="uq_rules_resource_priority"),
    )

    op.create_table(
        "api_keys",
        sa.Column("id", ID, nullable=False),
        sa.Column("org_id", ID, nullable=True),
        sa.Column("name", NAME, nullable=False),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("secret_hash", sa.String(100), nullable=False),
        sa.Column("scopes", JSON, nullable=False),
        sa.Column("expires_at", TIME, nullable=True),
        sa.Column("last_used_at", TIME, nullable=True),
        sa.Column("revoked_at", TIME, nullable=True),
        sa.Column("created_by", ID, nullable=True),
        *_timestamps(),
        sa.PrimaryKeyConstraint("id", name="pk_api_keys"),
        _fk("api_keys", "org_id", "organizations"),
        _fk("api_keys", "created_by", "users", ondelete="SET NULL"),
        sa.UniqueConstraint("prefix", name="uq_api_keys_prefix"),
    )
    op.create_index("ix_api_keys_org_id", "api_keys", ["org_id"])

    op.create_table(
        "audit_log",
        sa.Column("id", SERIAL, autoincrement=True, nullable=False),
        sa.Column("at", TIME, nullable=False),
        sa.Column("org_id", ID, nullable=True),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("action", sa.String(100), nullable=False),
        sa.Column("object_kind", sa.String(32), nullable=True),
        sa.Column("object_id", sa.String(100), nullable=True),
        sa.Column("before", JSON, nullable=True),
        sa.Column("after", JSON, nullable=True),
        sa.Column("source_address", sa.String(64), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_audit_log"),
    )
    for column in ("at", "actor", "action", "object_id", "org_id"):
        op.create_index(f"ix_audit_log_{column}", "audit_log", [column])


def downgrade() -> None:
    for table in (
        "audit_log",
        "api_keys",
        "rules",
        "grants",
        "targets",
        "resources",
        "sites",
        "memberships",
        "roles",
        "users",
        "organizations",
        "changes",
        "config_version",
    ):
        op.drop_table(table)
