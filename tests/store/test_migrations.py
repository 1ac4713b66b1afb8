"""Migrations: data written at any revision survives the upgrade to head; the schema built by the
migrations is the one the code queries.

When you add a migration NNNN:
  1. add ``fill_NNNN`` below, writing a row to every table that exists at NNNN, the way that version
     of Kokoa would have, and register it in FILLERS;
  2. if NNNN renames or transforms a column, teach ``expected_at_head`` what becomes of older rows.
Every revision is then tested: build it, fill it, upgrade to head, find every row intact.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, column, insert, inspect, select, table, text
from store_support import NOW

from kokoa import store as st
from kokoa.secrets import hash_secret
from kokoa.store import _schema, _users
from kokoa.store._engine import create_store_engine
from kokoa.store._schema import JSONDocument, UTCDateTime

pytestmark = pytest.mark.sans_io  # migrations on a connection: no reactor involved

SITE_SECRET = "site-secret-at-0001"
API_KEY = "kk_abcd1234_" + "k" * 43
PASSWORD = "password at 0001"

Rows = dict[str, list[dict[str, Any]]]


def _insert(
    conn: Connection, name: str, rows: list[dict[str, Any]], types: dict[str, Any] | None = None
) -> None:
    """Insert into ``name`` through a lightweight table clause (not the head schema's Table)."""
    types = types or {}
    columns = [column(c, types.get(c)) for c in rows[0]]
    conn.execute(insert(table(name, *columns)), rows)


def _rows_0001() -> tuple[Rows, dict[str, Any]]:
    """One row (at least) for every table of revision 0001, and the types of their columns."""
    t0, t1 = NOW, NOW + timedelta(seconds=1)
    stamps = {"created_at": t0, "updated_at": t1}
    time = UTCDateTime()
    rows: Rows = {
        "organizations": [{"id": "org_m1", "name": "Acme", **stamps}],
        "users": [
            {
                "id": "user_m1",
                "email": "ann@example.com",
                "display_name": "Ann",
                "password_hash": _users.PASSWORD_HASHER.hash(PASSWORD),
                "status": "active",
                **stamps,
            }
        ],
        "roles": [
            {"id": f"role_m{i}", "org_id": "org_m1", "name": n, "description": "", "builtin": b, **stamps}
            for i, (n, b) in enumerate([("Owner", True), ("Admin", True), ("Member", True), ("Ops", False)])
        ],
        "memberships": [{"org_id": "org_m1", "user_id": "user_m1", "role_id": "role_m0", **stamps}],
        "sites": [
            {
                "id": "site_m1",
                "org_id": "org_m1",
                "name": "home",
                "secret_hash": hash_secret(SITE_SECRET),
                "previous_secret_hash": hash_secret("older"),
                "previous_secret_expires_at": t1,
                "enabled": True,
                "online": True,
                "last_seen_at": t0,
                **stamps,
            }
        ],
        "resources": [
            {
                "id": "res_m1",
                "org_id": "org_m1",
                "name": "web",
                "kind": "http",
                "hostname": "a.example.com",
                "path_prefix": "/",
                "public_port": None,
                "enabled": True,
                **stamps,
            },
            {
                "id": "res_m2",
                "org_id": "org_m1",
                "name": "ssh",
                "kind": "tcp",
                "hostname": None,
                "path_prefix": None,
                "public_port": 2222,
                "enabled": False,
                **stamps,
            },
        ],
        "targets": [
            {
                "id": "tgt_m1",
                "resource_id": "res_m1",
                "site_id": "site_m1",
                "host": "10.0.0.1",
                "port": 80,
                "scheme": "http",
                "weight": 100,
                "enabled": True,
                "hc_enabled": True,
                "hc_path": "/healthz",
                "hc_interval": 30,
                "hc_timeout": 5,
                "hc_healthy_threshold": 2,
                "hc_unhealthy_threshold": 3,
                **stamps,
            }
        ],
        "grants": [
            {
                "id": "grant_m1",
                "resource_id": "res_m1",
                "role_id": "role_m3",
                "user_id": None,
                "created_at": t0,
            },
            {
                "id": "grant_m2",
                "resource_id": "res_m1",
                "role_id": None,
                "user_id": "user_m1",
                "created_at": t0,
            },
        ],
        "rules": [
            {
                "id": "rule_m1",
                "resource_id": "res_m1",
                "priority": 10,
                "action": "deny",
                "cidr": "10.0.0.0/8",
                "path": "/admin*",
                "method": "POST",
                "enabled": True,
                **stamps,
            }
        ],
        "api_keys": [
            {
                "id": "key_m1",
                "org_id": "org_m1",
                "name": "ci",
                "prefix": API_KEY[:11],
                "secret_hash": hash_secret(API_KEY),
                "scopes": ["sites:read"],
                "expires_at": NOW + timedelta(days=365),
                "last_used_at": None,
                "revoked_at": None,
                "created_by": "user_m1",
                **stamps,
            }
        ],
        "audit_log": [
            {  # serial ids: let the database number them, as Kokoa does
                "at": t0,
                "org_id": "org_m1",
                "actor": "user:user_m1",
                "action": "site.update",
                "object_kind": "site",
                "object_id": "site_m1",
                "before": {"name": "house"},
                "after": {"name": "home", "tags": [1, 2]},
                "source_address": "192.0.2.1",
            }
        ],
        "changes": [
            {
                "version": 1,
                "org_id": "org_m1",
                "kind": "site",
                "object_id": "site_m1",
                "op": "create",
                "at": t0,
            }
        ],
    }
    types = {
        name: time
        for name in (
            "created_at",
            "updated_at",
            "previous_secret_expires_at",
            "last_seen_at",
            "expires_at",
            "at",
        )
    } | {
        "last_used_at": time,
        "revoked_at": time,
        "scopes": JSONDocument,
        "before": JSONDocument,
        "after": JSONDocument,
    }
    return rows, types


def _fill(conn: Connection, rows: Rows, types: dict[str, Any]) -> Rows:
    for name, table_rows in rows.items():
        _insert(conn, name, table_rows, types)
    conn.execute(text("UPDATE config_version SET version = 1"))
    rows["config_version"] = [{"id": 1, "version": 1}]
    return rows


def fill_0001(conn: Connection) -> Rows:
    """One row (at least) in every table of revision 0001."""
    return _fill(conn, *_rows_0001())


#: The columns revision 0002 added, with the values rows written before it get.
DEFAULTS_0002: dict[str, dict[str, Any]] = {
    "resources": {"lb_method": "round_robin", "sticky": False, "redirect_https": False, "hsts_max_age": 0},
    "targets": {"tls_verify": True, "tls_server_name": None, "hc_expected_status": "200-399"},
}


def fill_0002(conn: Connection) -> Rows:
    """Revision 0001's rows, with the HTTP settings of 0002 set away from their defaults."""
    rows, types = _rows_0001()
    http, tcp = rows["resources"]
    http |= {
        "lb_method": "least_connections",
        "sticky": True,
        "redirect_https": True,
        "hsts_max_age": 31536000,
    }
    tcp |= DEFAULTS_0002["resources"]
    rows["targets"][0] |= {
        "scheme": "https",
        "tls_verify": False,
        "tls_server_name": "app.internal",
        "hc_expected_status": "200,204,300-308",
    }
    return _fill(conn, rows, types)


#: The columns revision 0003 added, with the values rows written before it get: resources that
#: existed were served to anyone (nothing was enforced), so they stay public.
DEFAULTS_0003: dict[str, dict[str, Any]] = {
    "resources": {
        "public": True,
        "auth_password_hash": None,
        "auth_pin_hash": None,
        "auth_email_allow": None,
    },
    "users": {"totp_secret": None, "totp_last_step": None, "backup_codes": None},
}


def _rows_0003() -> tuple[Rows, dict[str, Any]]:
    """Revision 0002's rows with the identity columns set, and a row in every table 0003 added."""
    rows, types = _rows_0001()
    http, tcp = rows["resources"]
    http |= DEFAULTS_0002["resources"] | {
        "public": False,
        "auth_password_hash": _users.PASSWORD_HASHER.hash("resource password"),
        "auth_pin_hash": _users.PASSWORD_HASHER.hash("123456"),
        "auth_email_allow": ["ann@example.com", "@example.org"],
    }
    tcp |= DEFAULTS_0002["resources"] | DEFAULTS_0003["resources"]
    rows["targets"][0] |= DEFAULTS_0002["targets"]
    rows["users"][0] |= {
        "totp_secret": "JBSWY3DPEHPK3PXP",
        "totp_last_step": 59_000_000,
        "backup_codes": ["ab"],
    }
    t0, t1 = NOW, NOW + timedelta(hours=1)
    rows |= {
        "sessions": [
            {
                "id": "ses_m1",
                "token_hash": "a" * 64,
                "kind": "login",
                "user_id": "user_m1",
                "parent_id": None,
                "resource_id": None,
                "subject": "ann@example.com",
                "method": "password",
                "host": None,
                "created_at": t0,
                "last_seen_at": t0,
                "expires_at": t1,
                "revoked_at": None,
                "source_address": "192.0.2.1",
                "user_agent": "test",
            },
            {
                "id": "ses_m2",
                "token_hash": "b" * 64,
                "kind": "host",
                "user_id": None,
                "parent_id": None,
                "resource_id": "res_m1",
                "subject": "bob@example.org",
                "method": "email",
                "host": "a.example.com",
                "created_at": t0,
                "last_seen_at": t0,
                "expires_at": t1,
                "revoked_at": t0,
                "source_address": None,
                "user_agent": None,
            },
        ],
        "auth_codes": [
            {
                "code_hash": "c" * 64,
                "parent_id": "ses_m1",
                "user_id": "user_m1",
                "resource_id": None,
                "subject": None,
                "method": "password",
                "host": "a.example.com",
                "path": "/x?y=1",
                "created_at": t0,
                "expires_at": t1,
                "used_at": None,
            }
        ],
        "user_tokens": [
            {
                "token_hash": "d" * 64,
                "user_id": "user_m1",
                "purpose": "reset",
                "created_by": "key:kk_abcd1234",
                "created_at": t0,
                "expires_at": t1,
                "used_at": None,
            }
        ],
        "user_identities": [
            {
                "provider": "corp",
                "subject": "sub-1",
                "user_id": "user_m1",
                "email": "ann@example.com",
                "created_at": t0,
            }
        ],
        "share_links": [
            {
                "id": "shl_m1",
                "resource_id": "res_m1",
                "name": "for bob",
                "prefix": "kks_abcd1234",
                "token_hash": hash_secret("kks_abcd1234_secret"),
                "expires_at": t1,
                "max_uses": 3,
                "uses": 1,
                "revoked_at": None,
                "created_by": "user:user_m1",
                "created_at": t0,
                "updated_at": t0,
            }
        ],
        "email_codes": [
            {
                "id": "emc_m1",
                "resource_id": "res_m1",
                "email": "bob@example.org",
                "code_hash": "e" * 64,
                "attempts": 1,
                "created_at": t0,
                "expires_at": t1,
                "used_at": None,
            }
        ],
        "access_log": [
            {
                "at": t0,
                "org_id": "org_m1",
                "resource_id": "res_m1",
                "kind": "request",
                "outcome": "deny",
                "reason": "denied by rule 10",
                "user_id": "user_m1",
                "subject": "ann@example.com",
                "method": "GET",
                "host": "a.example.com",
                "path": "/admin",
                "client_address": "192.0.2.1",
                "rule_id": "rule_m1",
                "count": 3,
            }
        ],
    }
    types |= {
        "last_seen_at": UTCDateTime(),
        "used_at": UTCDateTime(),
        "auth_email_allow": JSONDocument,
        "backup_codes": JSONDocument,
    }
    return rows, types


def fill_0003(conn: Connection) -> Rows:
    return _fill(conn, *_rows_0003())


#: The columns revision 0004 added, with the values rows written before it get.
DEFAULTS_0004: dict[str, dict[str, Any]] = {"auth_codes": {"nonce_hash": None}}


def fill_0004(conn: Connection) -> Rows:
    """Revision 0003's rows, a code bound to a browser's nonce, and the instance's cookie key."""
    rows, types = _rows_0003()
    rows["auth_codes"][0] |= {"nonce_hash": "e" * 64}
    rows["instance_keys"] = [{"name": "cookie", "value": "a2V5" * 11, "created_at": NOW}]
    return _fill(conn, rows, types)


#: Revision -> what fills a database at that revision.
FILLERS: dict[str, Callable[[Connection], Rows]] = {
    "0001": fill_0001,
    "0002": fill_0002,
    "0003": fill_0003,
    "0004": fill_0004,
}


def expected_at_head(revision: str, table_name: str, row: dict[str, Any]) -> dict[str, Any]:
    """What a row written at ``revision`` looks like at head: rows from before a revision that added
    columns get the values that revision gave them."""
    if revision < "0002" and table_name in DEFAULTS_0002:
        row = row | DEFAULTS_0002[table_name]
    if revision < "0003" and table_name in DEFAULTS_0003:
        row = row | DEFAULTS_0003[table_name]
    if revision < "0004" and table_name in DEFAULTS_0004:
        row = row | DEFAULTS_0004[table_name]
    return row


def _key(table_name: str, row: dict[str, Any]) -> dict[str, Any]:
    """The row's primary key, or (for serial ids the database chose) its plain columns."""
    model = _schema.metadata.tables[table_name]
    primary = [c.name for c in model.primary_key.columns]
    if all(name in row for name in primary):
        return {name: row[name] for name in primary}
    return {k: val for k, val in row.items() if model.c[k].type is not JSONDocument and val is not None}


def test_every_revision_has_a_filler():
    assert list(FILLERS) == st.revisions(), (
        "add a fill_NNNN for each new migration (see the module docstring)"
    )


@pytest.mark.parametrize("start", st.revisions())
def test_rows_written_at_any_revision_survive_the_upgrade_to_head(empty_url, start):
    engine = create_store_engine(empty_url)
    try:
        st.upgrade(engine, start)
        assert st.current_revision(engine) == start
        with engine.begin() as conn:
            rows = FILLERS[start](conn)
        st.upgrade(engine)
        assert st.current_revision(engine) == st.head_revision()
        with engine.connect() as conn:
            for table_name, table_rows in rows.items():
                head_table = _schema.metadata.tables[table_name]
                for row in table_rows:
                    expected = expected_at_head(start, table_name, row)
                    key = _key(table_name, expected)
                    found = conn.execute(
                        select(head_table).where(*(head_table.c[k] == val for k, val in key.items()))
                    ).one()
                    assert {k: found._mapping[k] for k in expected} == expected, table_name
            # and the code reads them as it reads its own
            assert st.verify_password(conn, "ann@example.com", PASSWORD) is not None
            assert st.authenticate_site(conn, "site_m1", SITE_SECRET, now=NOW) is not None
            assert st.authenticate_api_key(conn, API_KEY, now=NOW, touch=False) is not None
            snapshot = st.load_snapshot(conn)
            assert [r.id for r in snapshot.resources] == ["res_m1", "res_m2"]
            assert snapshot.targets[0].health_check.path == "/healthz"
            http, tcp = snapshot.resources
            target = snapshot.targets[0]
            if start == "0002":
                assert (http.lb_method, http.sticky, http.redirect_https, http.hsts_max_age) == (
                    "least_connections",
                    True,
                    True,
                    31536000,
                )
                assert (target.tls_verify, target.tls_server_name) == (False, "app.internal")
                assert target.health_check.expected_status == "200,204,300-308"
            else:
                assert (http.lb_method, http.sticky, http.redirect_https, http.hsts_max_age) == (
                    "round_robin",
                    False,
                    False,
                    0,
                )
                assert (target.tls_verify, target.tls_server_name) == (True, None)
                assert target.health_check.expected_status == "200-399"
            assert (tcp.lb_method, tcp.sticky, tcp.hsts_max_age) == ("round_robin", False, 0)
            assert [r.action for r in st.list_rules(conn, "res_m1")] == ["deny"]
            assert st.list_audit(conn).items[0].after == {"name": "home", "tags": [1, 2]}
            # the sequences moved past the filled ids
            assert st.append_audit(conn, "system", "test").id > 1
    finally:
        engine.dispose()


def test_migrations_build_the_schema_the_code_queries(url):
    engine = create_store_engine(url)
    try:
        with engine.connect() as conn, warnings.catch_warnings():
            warnings.simplefilter("ignore")  # SQLite cannot reflect expression indexes: checked below
            context = MigrationContext.configure(
                conn, opts={"compare_type": True, "compare_server_default": True}
            )
            assert compare_metadata(context, _schema.metadata) == []
            inspector = inspect(conn)
            for name, model in _schema.metadata.tables.items():
                checks = {c["name"] for c in inspector.get_check_constraints(name)}
                assert checks >= {c.name for c in model.constraints if c.name and c.name.startswith("ck_")}, (
                    name
                )
            if conn.dialect.name == "sqlite":
                indexes = set(
                    conn.execute(text("SELECT name FROM sqlite_master WHERE type = 'index'")).scalars()
                )
            else:
                indexes = set(conn.execute(text("SELECT indexname FROM pg_indexes")).scalars())
            assert {i.name for t in _schema.metadata.tables.values() for i in t.indexes} <= indexes
    finally:
        engine.dispose()


def test_downgrade_to_base_and_up_again(url):
    engine = create_store_engine(url)
    try:
        st.downgrade(engine, "base")
        assert st.current_revision(engine) is None
        assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
        st.upgrade(engine)
        assert st.current_revision(engine) == st.head_revision()
        with engine.connect() as conn:
            assert st.config_version(conn) == 0
    finally:
        engine.dispose()


def test_upgrade_takes_a_url_too(empty_url):
    st.upgrade(empty_url)
    engine = create_store_engine(empty_url)
    try:
        assert st.current_revision(engine) == st.head_revision()
    finally:
        engine.dispose()


def test_downgrade_from_0002_keeps_every_row(empty_url):
    """0002 only adds columns: going back drops them and nothing else (SQLite drops them in place,
    so no table is copied, and no cascade deletes a resource's targets, grants or rules)."""
    engine = create_store_engine(empty_url)
    try:
        st.upgrade(engine, "0002")
        with engine.begin() as conn:
            rows = fill_0002(conn)
        st.downgrade(engine, "0001")
        with engine.connect() as conn:
            columns = {c["name"] for c in inspect(conn).get_columns("resources")}
            assert "lb_method" not in columns and "hsts_max_age" not in columns
            for table_name, table_rows in rows.items():
                found = conn.execute(text(f"SELECT COUNT(*) FROM {table_name}")).scalar_one()
                assert found == len(table_rows), table_name
            scheme = conn.execute(text("SELECT scheme FROM targets WHERE id = 'tgt_m1'")).scalar_one()
            assert scheme == "https"
        st.upgrade(engine)
        with engine.connect() as conn:
            (target,) = st.load_snapshot(conn).targets
            assert (target.tls_verify, target.tls_server_name) == (True, None)
    finally:
        engine.dispose()
