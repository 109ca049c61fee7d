"""What a server does once before it serves: the schema brought to date (or checked), and its keys.

The key that signs list cursors is the deployment's: TODO_MCP_CURSOR_SECRET when set, otherwise a
random secret generated on first start and kept in the database, so that every replica shares it.
"""

from __future__ import annotations

import hashlib
import secrets

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from todo_mcp.errors import ConfigError
from todo_mcp.storage.dialect import sql_dialect
from todo_mcp.storage.migrations import HEAD, migrate, revision_of, with_sync_connection
from todo_mcp.storage.table import secrets_table
from todo_mcp.storage.url import DatabaseTarget

CURSOR_KEY_ROW = "cursor"  # the name of its row in server_secrets


def key_from_secret(secret: str) -> bytes:
    """A 32-byte signing key from a secret of any length."""
    return hashlib.sha256(secret.encode()).digest()


def _stored_secret(connection: Connection, name: str) -> str:
    """The secret called `name`, created on first use (concurrent first starts agree on one)."""
    candidate = secrets.token_urlsafe(32)
    insert = sql_dialect(connection.dialect.name).insert(secrets_table)
    connection.execute(insert.values(name=name, value=candidate).on_conflict_do_nothing())
    stored: str = connection.execute(
        sa.select(secrets_table.c.value).where(secrets_table.c.name == name)
    ).scalar_one()
    return stored


async def prepare(
    target: DatabaseTarget, migration_target: DatabaseTarget, *, auto_migrate: bool, cursor_secret: str | None
) -> bytes:
    """Check the schema (one query) and migrate it if due and allowed; return the cursor-signing key.

    A database at the current revision costs one connection and two or three statements; Alembic
    is loaded only when a migration runs.
    """

    def check_and_read_key(connection: Connection) -> tuple[str | None, bytes | None]:
        current = revision_of(connection)
        if current != HEAD:
            return current, None
        return current, key_from_secret(cursor_secret or _stored_secret(connection, CURSOR_KEY_ROW))

    current, key = await with_sync_connection(target, check_and_read_key, autocommit=True)
    if key is not None:
        return key
    if not auto_migrate:
        raise ConfigError(
            f"the database schema is at revision {current or 'none'}, this server needs {HEAD}: "
            "run `todo-ledger migrate` (or set TODO_MCP_AUTO_MIGRATE=true)"
        )
    await migrate(migration_target)
    current, key = await with_sync_connection(target, check_and_read_key, autocommit=True)
    assert key is not None, f"migrated to {current}, not {HEAD}"
    return key
