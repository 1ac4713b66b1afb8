"""The store: schema, migrations and repositories (SQLite by default, PostgreSQL for several gateways).

Opening and running
    ``Store.open(url, reactor, migrate=True)`` opens the database on a thread pool of its own and
    upgrades its schema to head (``migrate=False`` refuses a database that is behind, with
    :class:`SchemaMismatch`). ``store.run(fn, *args, **kw)`` runs ``fn(conn, *args, **kw)`` in one
    transaction on that pool and returns a Deferred; nothing here blocks the reactor thread.
    ``store.close()`` waits for the calls in flight, then stops. ``database_url(data_dir, database)``
    gives the URL: SQLite ``DATA_DIR/kokoa.db`` (WAL mode) unless ``--database postgresql://...``.
    ``open_engine(url)`` is the blocking equivalent for programs without a reactor.

Repositories
    Plain functions taking a SQLAlchemy ``Connection`` first, run through ``store.run``:
    ``store.run(create_site, org_id, "home")``. Each write runs in a SAVEPOINT: if it fails, it leaves
    nothing behind and the caller's transaction stays usable. Rows come back as frozen dataclasses;
    password hashes never do, and secrets (site secrets, API keys) are returned once, at creation.
    Functions that depend on the time take ``now=`` (timezone-aware), for tests.

Errors
    :class:`StoreError` and its subclasses :class:`Invalid` (bad value), :class:`Conflict` (duplicate,
    broken invariant), :class:`NotFound`, :class:`SchemaMismatch`, each with ``field`` and ``message``.

Lists
    Keyset pagination: ``list_*(..., limit=100, cursor=None) -> Page`` with ``items`` and
    ``next_cursor`` (None on the last page); creation order, except the audit log (newest first).
    Rules and memberships of one user are short and come whole.

Changes
    Every configuration write bumps ``config_version`` and appends to ``changes`` in its transaction;
    ``store.subscribe(callback)`` hears this process's changes after commit, ``changes_since(conn, v)``
    everyone's. ``load_snapshot(conn)`` / ``store.snapshot()`` read sites, resources and targets for the
    data plane at one version.
"""

from ._access import (
    RULE_ACTIONS,
    Grant,
    Rule,
    create_grant,
    create_rule,
    delete_grant,
    delete_rule,
    get_grant,
    get_rule,
    list_grants,
    list_rules,
    update_rule,
)
from ._audit import AuditEntry, append_audit, jsonable, list_audit
from ._common import DEFAULT_LIMIT, MAX_LIMIT, NOTIFY_CHANNEL, UNSET, Change, Page, Unset, new_id
from ._engine import database_url
from ._errors import Conflict, Invalid, NotFound, SchemaMismatch, StoreError
from ._keys import (
    ApiKey,
    authenticate_api_key,
    create_api_key,
    delete_api_key,
    get_api_key,
    key_prefix,
    list_api_keys,
    revoke_api_key,
    update_api_key,
)
from ._migrate import current_revision, downgrade, head_revision, revisions, upgrade
from ._orgs import (
    ADMIN,
    BUILTIN_ROLES,
    MEMBER,
    OWNER,
    Membership,
    Organization,
    Role,
    add_member,
    create_organization,
    create_role,
    delete_organization,
    delete_role,
    get_membership,
    get_organization,
    get_role,
    get_role_by_name,
    list_members,
    list_organizations,
    list_roles,
    list_user_memberships,
    remove_member,
    set_member_role,
    update_organization,
    update_role,
)
from ._resources import (
    DEFAULT_EXPECTED_STATUS,
    DEFAULT_WEIGHT,
    LB_METHODS,
    MAX_HSTS_MAX_AGE,
    MAX_WEIGHT,
    RESOURCE_KINDS,
    TARGET_SCHEMES,
    HealthCheck,
    Resource,
    Target,
    create_resource,
    create_target,
    delete_resource,
    delete_target,
    get_resource,
    get_target,
    list_resources,
    list_targets,
    update_resource,
    update_target,
)
from ._sites import (
    SECRET_GRACE_PERIOD,
    Site,
    SiteCredentials,
    authenticate_site,
    create_site,
    delete_site,
    get_site,
    get_site_credentials,
    list_sites,
    mark_site_seen,
    rotate_site_secret,
    update_site,
)
from ._snapshot import Snapshot, changes_since, config_version, load_snapshot, prune_changes
from ._store import POSTGRES_THREADS, Store, StoreClosed, open_engine
from ._users import (
    USER_STATUSES,
    User,
    check_password,
    create_user,
    delete_user,
    get_user,
    get_user_by_email,
    hash_password,
    list_users,
    password_hash_for,
    set_password,
    set_password_hash,
    update_user,
    verify_password,
)

__all__ = [
    "ADMIN",
    "BUILTIN_ROLES",
    "DEFAULT_EXPECTED_STATUS",
    "DEFAULT_LIMIT",
    "DEFAULT_WEIGHT",
    "LB_METHODS",
    "MAX_HSTS_MAX_AGE",
    "MAX_LIMIT",
    "MAX_WEIGHT",
    "MEMBER",
    "NOTIFY_CHANNEL",
    "OWNER",
    "POSTGRES_THREADS",
    "RESOURCE_KINDS",
    "RULE_ACTIONS",
    "SECRET_GRACE_PERIOD",
    "TARGET_SCHEMES",
    "UNSET",
    "USER_STATUSES",
    "ApiKey",
    "AuditEntry",
    "Change",
    "Conflict",
    "Grant",
    "HealthCheck",
    "Invalid",
    "Membership",
    "NotFound",
    "Organization",
    "Page",
    "Resource",
    "Role",
    "Rule",
    "SchemaMismatch",
    "Site",
    "SiteCredentials",
    "Snapshot",
    "Store",
    "StoreClosed",
    "StoreError",
    "Target",
    "Unset",
    "User",
    "add_member",
    "append_audit",
    "authenticate_api_key",
    "authenticate_site",
    "changes_since",
    "check_password",
    "config_version",
    "create_api_key",
    "create_grant",
    "create_organization",
    "create_resource",
    "create_role",
    "create_rule",
    "create_site",
    "create_target",
    "create_user",
    "current_revision",
    "database_url",
    "delete_api_key",
    "delete_grant",
    "delete_organization",
    "delete_resource",
    "delete_role",
    "delete_rule",
    "delete_site",
    "delete_target",
    "delete_user",
    "downgrade",
    "get_api_key",
    "get_grant",
    "get_membership",
    "get_organization",
    "get_resource",
    "get_role",
    "get_role_by_name",
    "get_rule",
    "get_site",
    "get_site_credentials",
    "get_target",
    "get_user",
    "get_user_by_email",
    "hash_password",
    "head_revision",
    "jsonable",
    "key_prefix",
    "list_api_keys",
    "list_audit",
    "list_grants",
    "list_members",
    "list_organizations",
    "list_resources",
    "list_roles",
    "list_rules",
    "list_sites",
    "list_targets",
    "list_user_memberships",
    "list_users",
    "load_snapshot",
    "mark_site_seen",
    "new_id",
    "open_engine",
    "password_hash_for",
    "prune_changes",
    "remove_member",
    "revisions",
    "revoke_api_key",
    "rotate_site_secret",
    "set_member_role",
    "set_password",
    "set_password_hash",
    "update_api_key",
    "update_organization",
    "update_resource",
    "update_role",
    "update_rule",
    "update_site",
    "update_target",
    "update_user",
    "upgrade",
    "verify_password",
]
