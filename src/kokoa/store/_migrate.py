"""Schema migrations (Alembic), configured from code: no alembic.ini at run time.

The scripts live in ``kokoa/store/migrations/versions`` and are written by hand, one per schema change.
"""

from __future__ import annotations

from collections.abc import Callable

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import Connection, Engine

from ._engine import create_store_engine
from ._errors import SchemaMismatch

SCRIPT_LOCATION = "kokoa.store:migrations"


def alembic_config(url: str | None = None) -> Config:
    """An Alembic ``Config`` for Kokoa's migrations (for ``alembic.command`` functions)."""
    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    if url is not None:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def head_revision() -> str:
    """The revision this version of Kokoa runs with."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "no migrations found"
    return head


def revisions() -> list[str]:
    """Every revision, oldest first."""
    script = ScriptDirectory.from_config(alembic_config())
    return [r.revision for r in reversed(list(script.walk_revisions()))]


def current_revision(bind: Engine | Connection) -> str | None:
    """The database's revision; None for a database without Kokoa's schema."""
    if isinstance(bind, Engine):
        with bind.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    return MigrationContext.configure(bind).get_current_revision()


def upgrade(bind: Engine | Connection | str, revision: str = "head") -> None:
    """Migrate the database up to ``revision`` (head by default), in one transaction."""
    _command(bind, command.upgrade, revision)


def downgrade(bind: Engine | Connection | str, revision: str) -> None:
    """Migrate the database down to ``revision`` ("base" for an empty database)."""
    _command(bind, command.downgrade, revision)


def check_revision(bind: Engine | Connection, migrate: bool) -> str | None:
    """Refuse a database this Kokoa cannot run on; returns its revision.

    A database from a newer Kokoa is always refused; one that is behind is refused when
    ``migrate`` is false (the caller upgrades it otherwise).
    """
    current = current_revision(bind)
    head = head_revision()
    if current == head:
        return current
    if current is not None and current not in revisions():
        raise SchemaMismatch(
            current,
            head,
            f"the database is at schema revision {current}, which this version of Kokoa does not know "
            f"(it runs revision {head}): it was migrated by a newer Kokoa; run that version",
        )
    if not migrate:
        where = "has no Kokoa schema yet" if current is None else f"is at schema revision {current}"
        raise SchemaMismatch(
            current,
            head,
            f"the database {where}, but this version of Kokoa needs revision {head}; "
            "start with migrations enabled (without --no-migrate) to upgrade it",
        )
    return current


def _command(bind: Engine | Connection | str, fn: Callable[[Config, str], None], revision: str) -> None:
    if isinstance(bind, str):
        engine = create_store_engine(bind)
        try:
            _command(engine, fn, revision)
        finally:
            engine.dispose()
        return
    if isinstance(bind, Engine):
        with bind.connect() as conn:
            _command(conn, fn, revision)
            conn.commit()
        return
    config = alembic_config()
    config.attributes["connection"] = bind
    try:
        fn(config, revision)
    except CommandError as e:
        raise SchemaMismatch(current_revision(bind), head_revision(), f"migration failed: {e}") from e
