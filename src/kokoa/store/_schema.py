"""The schema, in SQLAlchemy Core: what the repositories query.

The migrations in ``migrations/versions`` build the same tables by hand;
``tests/store/test_migrations.py`` checks that the two agree. Every constraint has an
explicit name, so a violated one can be reported as an error on the right field
(:data:`CONSTRAINT_FIELDS`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
    func,
    text,
    true,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

#: Lengths shared by the schema and validation.
ID_LENGTH = 40
NAME_LENGTH = 100
HOSTNAME_LENGTH = 253
PATH_LENGTH = 1024
EMAIL_LENGTH = 254
#: HTTP resources' load-balancing methods (the first is the default) and the longest HSTS max-age (2 years).
LB_METHODS = ("round_robin", "least_connections")
MAX_HSTS_MAX_AGE = 63_072_000
#: What a target's HTTP health check accepts by default; the longest list of codes and ranges.
DEFAULT_EXPECTED_STATUS = "200-399"
EXPECTED_STATUS_LENGTH = 64


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every engine (SQLite keeps naive UTC text)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: the store takes timezone-aware datetimes only")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


#: JSON documents: JSONB on PostgreSQL, JSON text on SQLite.
JSONDocument = JSON().with_variant(JSONB(), "postgresql")
#: Auto-increment integer keys: BIGINT on PostgreSQL, INTEGER (the rowid) on SQLite.
Serial = BigInteger().with_variant(Integer(), "sqlite")

metadata = MetaData(
    naming_convention={"pk": "pk_%(table_name)s", "fk": "fk_%(table_name)s_%(column_0_name)s"}
)


def _id() -> Column[Any]:
    return Column("id", String(ID_LENGTH), primary_key=True)


def _ref(
    name: str, table: str, ondelete: str | None = "CASCADE", nullable: bool = False, primary_key: bool = False
) -> Column[Any]:
    """A column referencing ``table``'s id (its constraint is named ``fk_<this table>_<name>``)."""
    return Column(
        name,
        String(ID_LENGTH),
        ForeignKey(f"{table}.id", ondelete=ondelete),
        nullable=nullable,
        primary_key=primary_key,
    )


def _timestamps() -> list[Column[Any]]:
    return [
        Column("created_at", UTCDateTime(), nullable=False),
        Column("updated_at", UTCDateTime(), nullable=False),
    ]


config_version = Table(
    "config_version",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("version", BigInteger, nullable=False),
    CheckConstraint("id = 1", name="ck_config_version_single_row"),
)

changes = Table(
    "changes",
    metadata,
    Column("id", Serial, primary_key=True, autoincrement=True),
    Column("version", BigInteger, nullable=False),
    Column("org_id", String(ID_LENGTH), nullable=True),
    Column("kind", String(32), nullable=False),
    Column("object_id", String(ID_LENGTH), nullable=False),
    Column("op", String(16), nullable=False),
    Column("at", UTCDateTime(), nullable=False),
    CheckConstraint("op IN ('create', 'update', 'delete')", name="ck_changes_op"),
    Index("ix_changes_version", "version"),
)

organizations = Table(
    "organizations",
    metadata,
    _id(),
    Column("name", String(NAME_LENGTH), nullable=False),
    *_timestamps(),
)
Index("uq_organizations_name", func.lower(organizations.c.name), unique=True)

users = Table(
    "users",
    metadata,
    _id(),
    Column("email", String(EMAIL_LENGTH), nullable=False),
    Column("display_name", String(NAME_LENGTH), nullable=True),
    Column("password_hash", Text, nullable=True),
    Column("status", String(16), nullable=False),
    *_timestamps(),
    # Revision 0003: the second factor.
    Column("totp_secret", String(64), nullable=True),
    Column("totp_last_step", BigInteger, nullable=True),
    Column("backup_codes", JSONDocument, nullable=True),
    UniqueConstraint("email", name="uq_users_email"),
    CheckConstraint("status IN ('active', 'disabled', 'invited')", name="ck_users_status"),
)

roles = Table(
    "roles",
    metadata,
    _id(),
    _ref("org_id", "organizations"),
    Column("name", String(NAME_LENGTH), nullable=False),
    Column("description", String(500), nullable=False),
    Column("builtin", Boolean(), nullable=False),
    *_timestamps(),
)
Index("uq_roles_org_name", roles.c.org_id, func.lower(roles.c.name), unique=True)

memberships = Table(
    "memberships",
    metadata,
    _ref("org_id", "organizations", primary_key=True),
    _ref("user_id", "users", primary_key=True),
    _ref("role_id", "roles", ondelete=None),
    *_timestamps(),
    Index("ix_memberships_user_id", "user_id"),
    Index("ix_memberships_role_id", "role_id"),
)

sites = Table(
    "sites",
    metadata,
    _id(),
    _ref("org_id", "organizations"),
    Column("name", String(NAME_LENGTH), nullable=False),
    Column("secret_hash", String(100), nullable=False),
    Column("previous_secret_hash", String(100), nullable=True),
    Column("previous_secret_expires_at", UTCDateTime(), nullable=True),
    Column("enabled", Boolean(), nullable=False),
    Column("online", Boolean(), nullable=False),
    Column("last_seen_at", UTCDateTime(), nullable=True),
    *_timestamps(),
)
Index("uq_sites_org_name", sites.c.org_id, func.lower(sites.c.name), unique=True)

resources = Table(
    "resources",
    metadata,
    _id(),
    _ref("org_id", "organizations"),
    Column("name", String(NAME_LENGTH), nullable=False),
    Column("kind", String(8), nullable=False),
    Column("hostname", String(HOSTNAME_LENGTH), nullable=True),
    Column("path_prefix", String(PATH_LENGTH), nullable=True),
    Column("public_port", Integer, nullable=True),
    Column("enabled", Boolean(), nullable=False),
    *_timestamps(),
    # HTTP only (revision 0002); TCP and UDP resources keep the defaults.
    Column("lb_method", String(24), nullable=False, server_default=LB_METHODS[0]),
    Column("sticky", Boolean(), nullable=False, server_default=false()),
    Column("redirect_https", Boolean(), nullable=False, server_default=false()),
    Column("hsts_max_age", Integer, nullable=False, server_default=text("0")),
    # Revision 0003: who may sign in to the resource, besides users with a grant.
    Column("public", Boolean(), nullable=False, server_default=false()),
    Column("auth_password_hash", Text, nullable=True),
    Column("auth_pin_hash", Text, nullable=True),
    Column("auth_email_allow", JSONDocument, nullable=True),
    CheckConstraint("kind IN ('http', 'tcp', 'udp')", name="ck_resources_kind"),
    CheckConstraint("public_port BETWEEN 1 AND 65535", name="ck_resources_public_port"),
    CheckConstraint("lb_method IN ('round_robin', 'least_connections')", name="ck_resources_lb_method"),
    CheckConstraint(f"hsts_max_age BETWEEN 0 AND {MAX_HSTS_MAX_AGE}", name="ck_resources_hsts_max_age"),
    CheckConstraint(
        "(kind = 'http' AND hostname IS NOT NULL AND path_prefix IS NOT NULL AND public_port IS NULL)"
        " OR (kind IN ('tcp', 'udp') AND public_port IS NOT NULL AND hostname IS NULL"
        " AND path_prefix IS NULL)",
        name="ck_resources_fields_per_kind",
    ),
    UniqueConstraint("hostname", "path_prefix", name="uq_resources_hostname_path_prefix"),
)
Index("uq_resources_org_name", resources.c.org_id, func.lower(resources.c.name), unique=True)
Index(
    "uq_resources_enabled_port",
    resources.c.kind,
    resources.c.public_port,
    unique=True,
    sqlite_where=resources.c.enabled,
    postgresql_where=resources.c.enabled,
)

targets = Table(
    "targets",
    metadata,
    _id(),
    _ref("resource_id", "resources"),
    _ref("site_id", "sites"),
    Column("host", String(HOSTNAME_LENGTH), nullable=False),
    Column("port", Integer, nullable=False),
    Column("scheme", String(8), nullable=False),
    Column("weight", Integer, nullable=False),
    Column("enabled", Boolean(), nullable=False),
    Column("hc_enabled", Boolean(), nullable=False),
    Column("hc_path", String(PATH_LENGTH), nullable=True),
    Column("hc_interval", Integer, nullable=False),
    Column("hc_timeout", Integer, nullable=False),
    Column("hc_healthy_threshold", Integer, nullable=False),
    Column("hc_unhealthy_threshold", Integer, nullable=False),
    *_timestamps(),
    # Revision 0002: TLS to https targets, and the statuses an HTTP health check accepts.
    Column("tls_verify", Boolean(), nullable=False, server_default=true()),
    Column("tls_server_name", String(HOSTNAME_LENGTH), nullable=True),
    Column(
        "hc_expected_status",
        String(EXPECTED_STATUS_LENGTH),
        nullable=False,
        server_default=DEFAULT_EXPECTED_STATUS,
    ),
    CheckConstraint("port BETWEEN 1 AND 65535", name="ck_targets_port"),
    CheckConstraint("scheme IN ('http', 'https', 'tcp', 'udp')", name="ck_targets_scheme"),
    CheckConstraint("weight BETWEEN 0 AND 1000", name="ck_targets_weight"),
    CheckConstraint("hc_interval BETWEEN 1 AND 3600", name="ck_targets_hc_interval"),
    CheckConstraint("hc_timeout BETWEEN 1 AND 300", name="ck_targets_hc_timeout"),
    CheckConstraint("hc_healthy_threshold BETWEEN 1 AND 100", name="ck_targets_hc_healthy_threshold"),
    CheckConstraint("hc_unhealthy_threshold BETWEEN 1 AND 100", name="ck_targets_hc_unhealthy_threshold"),
    UniqueConstraint("resource_id", "site_id", "host", "port", name="uq_targets_endpoint"),
    Index("ix_targets_site_id", "site_id"),
)

grants = Table(
    "grants",
    metadata,
    _id(),
    _ref("resource_id", "resources"),
    _ref("role_id", "roles", nullable=True),
    _ref("user_id", "users", nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
    CheckConstraint("(role_id IS NULL) <> (user_id IS NULL)", name="ck_grants_one_grantee"),
    UniqueConstraint("resource_id", "role_id", name="uq_grants_resource_role"),
    UniqueConstraint("resource_id", "user_id", name="uq_grants_resource_user"),
    Index("ix_grants_role_id", "role_id"),
    Index("ix_grants_user_id", "user_id"),
)

rules = Table(
    "rules",
    metadata,
    _id(),
    _ref("resource_id", "resources"),
    Column("priority", Integer, nullable=False),
    Column("action", String(8), nullable=False),
    Column("cidr", String(64), nullable=True),
    Column("path", String(PATH_LENGTH), nullable=True),
    Column("method", String(16), nullable=True),
    Column("enabled", Boolean(), nullable=False),
    *_timestamps(),
    CheckConstraint("action IN ('allow', 'deny', 'bypass')", name="ck_rules_action"),
    CheckConstraint("priority BETWEEN 0 AND 1000000", name="ck_rules_priority"),
    UniqueConstraint("resource_id", "priority", name="uq_rules_resource_priority"),
)

api_keys = Table(
    "api_keys",
    metadata,
    _id(),
    _ref("org_id", "organizations", nullable=True),
    Column("name", String(NAME_LENGTH), nullable=False),
    Column("prefix", String(16), nullable=False),
    Column("secret_hash", String(100), nullable=False),
    Column("scopes", JSONDocument, nullable=False),
    Column("expires_at", UTCDateTime(), nullable=True),
    Column("last_used_at", UTCDateTime(), nullable=True),
    Column("revoked_at", UTCDateTime(), nullable=True),
    _ref("created_by", "users", ondelete="SET NULL", nullable=True),
    *_timestamps(),
    UniqueConstraint("prefix", name="uq_api_keys_prefix"),
    Index("ix_api_keys_org_id", "org_id"),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("id", Serial, primary_key=True, autoincrement=True),
    Column("at", UTCDateTime(), nullable=False),
    Column("org_id", String(ID_LENGTH), nullable=True),  # no foreign key: the log outlives what it names
    Column("actor", String(200), nullable=False),
    Column("action", String(100), nullable=False),
    Column("object_kind", String(32), nullable=True),
    Column("object_id", String(100), nullable=True),
    Column("before", JSONDocument, nullable=True),
    Column("after", JSONDocument, nullable=True),
    Column("source_address", String(64), nullable=True),
    Index("ix_audit_log_at", "at"),
    Index("ix_audit_log_actor", "actor"),
    Index("ix_audit_log_action", "action"),
    Index("ix_audit_log_object_id", "object_id"),
    Index("ix_audit_log_org_id", "org_id"),
)

# -- revision 0003: identity and access ----------------------------------------------------------------

#: Sessions: "login" on the login host; "host", set by a one-time code on a resource's host (a child of
#: a login session, or, for a resource's own password, PIN, email code or share link, of nothing).
sessions = Table(
    "sessions",
    metadata,
    _id(),
    Column("token_hash", String(64), nullable=False),
    Column("kind", String(16), nullable=False),
    _ref("user_id", "users", nullable=True),
    _ref("parent_id", "sessions", nullable=True),
    _ref("resource_id", "resources", nullable=True),
    Column("subject", String(EMAIL_LENGTH), nullable=True),
    Column("method", String(32), nullable=False),
    Column("host", String(HOSTNAME_LENGTH), nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("last_seen_at", UTCDateTime(), nullable=False),
    Column("expires_at", UTCDateTime(), nullable=False),
    Column("revoked_at", UTCDateTime(), nullable=True),
    Column("source_address", String(64), nullable=True),
    Column("user_agent", String(200), nullable=True),
    UniqueConstraint("token_hash", name="uq_sessions_token_hash"),
    CheckConstraint("kind IN ('login', 'host')", name="ck_sessions_kind"),
    CheckConstraint("user_id IS NOT NULL OR resource_id IS NOT NULL", name="ck_sessions_subject"),
    Index("ix_sessions_user_id", "user_id"),
    Index("ix_sessions_parent_id", "parent_id"),
    Index("ix_sessions_expires_at", "expires_at"),
)

#: One-time codes that a resource's host exchanges for a host session (short-lived, used once).
auth_codes = Table(
    "auth_codes",
    metadata,
    Column("code_hash", String(64), primary_key=True),
    _ref("parent_id", "sessions", nullable=True),
    _ref("user_id", "users", nullable=True),
    _ref("resource_id", "resources", nullable=True),
    Column("subject", String(EMAIL_LENGTH), nullable=True),
    Column("method", String(32), nullable=False),
    Column("host", String(HOSTNAME_LENGTH), nullable=False),
    Column("path", String(PATH_LENGTH), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("expires_at", UTCDateTime(), nullable=False),
    Column("used_at", UTCDateTime(), nullable=True),
    # SHA-256 of the nonce cookie of the browser that asked (the code is redeemed with it only);
    # None for kokoa connect's codes (bound to its loopback listener instead).
    Column("nonce_hash", String(64), nullable=True),
    Index("ix_auth_codes_expires_at", "expires_at"),
)

#: Keys of the instance that every gateway shares (the key that seals the login host's cookies).
instance_keys = Table(
    "instance_keys",
    metadata,
    Column("name", String(40), primary_key=True),
    Column("value", String(200), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
)

#: One-time links for a user: set a password (``setup``, ``invite``) or reset it (``reset``).
user_tokens = Table(
    "user_tokens",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    _ref("user_id", "users"),
    Column("purpose", String(16), nullable=False),
    Column("created_by", String(200), nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("expires_at", UTCDateTime(), nullable=False),
    Column("used_at", UTCDateTime(), nullable=True),
    CheckConstraint("purpose IN ('reset', 'invite', 'setup')", name="ck_user_tokens_purpose"),
    Index("ix_user_tokens_user_id", "user_id"),
)

#: Single sign-on: which user an OpenID Connect provider's subject is.
user_identities = Table(
    "user_identities",
    metadata,
    Column("provider", String(32), primary_key=True),
    Column("subject", String(255), primary_key=True),
    _ref("user_id", "users"),
    Column("email", String(EMAIL_LENGTH), nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Index("ix_user_identities_user_id", "user_id"),
)

share_links = Table(
    "share_links",
    metadata,
    _id(),
    _ref("resource_id", "resources"),
    Column("name", String(NAME_LENGTH), nullable=False),
    Column("prefix", String(16), nullable=False),
    Column("token_hash", String(100), nullable=False),
    Column("expires_at", UTCDateTime(), nullable=True),
    Column("max_uses", Integer, nullable=True),
    Column("uses", Integer, nullable=False),
    Column("revoked_at", UTCDateTime(), nullable=True),
    Column("created_by", String(200), nullable=True),
    *_timestamps(),
    UniqueConstraint("prefix", name="uq_share_links_prefix"),
    CheckConstraint("max_uses IS NULL OR max_uses >= 1", name="ck_share_links_max_uses"),
    Index("ix_share_links_resource_id", "resource_id"),
)

email_codes = Table(
    "email_codes",
    metadata,
    _id(),
    _ref("resource_id", "resources"),
    Column("email", String(EMAIL_LENGTH), nullable=False),
    Column("code_hash", String(64), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("expires_at", UTCDateTime(), nullable=False),
    Column("used_at", UTCDateTime(), nullable=True),
    Index("ix_email_codes_resource_email", "resource_id", "email"),
)

#: Every access decision and sign-in event (kept for the retention period).
access_log = Table(
    "access_log",
    metadata,
    Column("id", Serial, primary_key=True, autoincrement=True),
    Column("at", UTCDateTime(), nullable=False),
    Column("org_id", String(ID_LENGTH), nullable=True),  # no foreign keys: the log outlives what it names
    Column("resource_id", String(ID_LENGTH), nullable=True),
    Column("kind", String(16), nullable=False),
    Column("outcome", String(16), nullable=False),
    Column("reason", String(500), nullable=False),
    Column("user_id", String(ID_LENGTH), nullable=True),
    Column("subject", String(EMAIL_LENGTH), nullable=True),
    Column("method", String(16), nullable=True),
    Column("host", String(HOSTNAME_LENGTH), nullable=True),
    Column("path", String(PATH_LENGTH), nullable=True),
    Column("client_address", String(64), nullable=True),
    Column("rule_id", String(ID_LENGTH), nullable=True),
    # Allowed requests alike (same resource, who, address, rule and reason) within one flush of the
    # gateway's buffer are one row with their number; every refusal is a row of its own.
    Column("count", Integer, nullable=False, server_default=text("1")),
    Index("ix_access_log_at", "at"),
    Index("ix_access_log_org_id", "org_id"),
    Index("ix_access_log_resource_id", "resource_id"),
    Index("ix_access_log_user_id", "user_id"),
    Index("ix_access_log_outcome", "outcome"),
)

#: A violated constraint's name -> (the field to report, what to say).
CONSTRAINT_FIELDS: dict[str, tuple[str, str]] = {
    "uq_organizations_name": ("name", "an organization with this name already exists"),
    "uq_users_email": ("email", "a user with this email address already exists"),
    "uq_roles_org_name": ("name", "a role with this name already exists in the organization"),
    "pk_memberships": ("user_id", "the user is already a member of the organization"),
    "uq_sites_org_name": ("name", "a site with this name already exists in the organization"),
    "uq_resources_org_name": ("name", "a resource with this name already exists in the organization"),
    "uq_resources_hostname_path_prefix": (
        "hostname",
        "another HTTP resource already serves this hostname and path prefix",
    ),
    "uq_resources_enabled_port": (
        "public_port",
        "another enabled resource of this kind already listens on this public port",
    ),
    "uq_targets_endpoint": ("port", "the resource already has this target on this site"),
    "uq_grants_resource_role": ("role_id", "the role already has access to the resource"),
    "uq_grants_resource_user": ("user_id", "the user already has access to the resource"),
    "uq_rules_resource_priority": ("priority", "another rule of the resource has this priority"),
    "uq_api_keys_prefix": ("prefix", "an API key with this prefix already exists"),
    "uq_share_links_prefix": ("prefix", "a share link with this prefix already exists"),
}
