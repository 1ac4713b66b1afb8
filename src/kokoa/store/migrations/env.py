"""Alembic's environment for Kokoa: configured from code (kokoa.store._migrate), no alembic.ini.

Online, it runs on the connection passed in ``config.attributes["connection"]`` (or makes one from
``sqlalchemy.url``), in one transaction; on PostgreSQL an advisory lock keeps two gateways starting at
once from migrating together. Offline (``--sql``), it prints the SQL instead.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from kokoa.store._engine import create_store_engine
from kokoa.store._schema import metadata

#: pg_advisory_xact_lock key held while migrating ("kokoa" in ASCII).
MIGRATION_LOCK = 0x6B6F6B6F61


def _run(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=metadata, compare_type=True)
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")
        context.run_migrations()


def _main() -> None:
    config = context.config
    if context.is_offline_mode():
        context.configure(url=config.get_main_option("sqlalchemy.url"), literal_binds=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = create_store_engine(config.get_main_option("sqlalchemy.url") or "")
    try:
        with engine.connect() as connection:
            _run(connection)
            connection.commit()
    finally:
        engine.dispose()


_main()
