"""Alembic environment: the connection comes from todo-ledger (`todo-ledger migrate` or start-up)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlmodel import SQLModel

import todo_mcp.storage.table  # noqa: F401  (registers the tables on the metadata)

config = context.config
target_metadata = SQLModel.metadata

# One migrator at a time per database when several replicas start together.
_LOCK_KEY = 7_402_118_305


def run_migrations(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            connection.execute(text(f"SELECT pg_advisory_xact_lock({_LOCK_KEY})"))
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is None:
    raise SystemExit("Run migrations with `todo-ledger migrate`; it reads DATABASE_URL / DIRECT_URL.")
run_migrations(connection)
