"""The store: schema, migrations and repositories (SQLite by default, PostgreSQL for several gateways)."""
