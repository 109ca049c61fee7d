"""The Alembic runner: bring a database to the schema this code needs, or check that it is there.

Checking is one query of Alembic's version table against `HEAD`; Alembic itself is imported only
when a migration runs (a test keeps `HEAD` equal to the newest migration's revision).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from todo_mcp.storage.engine import make_engine
from todo_mcp.storage.url import DatabaseTarget

if TYPE_CHECKING:
    from alembic.config import Config

# The newest revision in migrations/versions.
HEAD = "0004"

T = TypeVar("T")


def migrations_path() -> Path:
    """Migrations ship inside the wheel; in a source checkout they sit at the top of the repository."""
    packaged = Path(__file__).parents[1] / "migrations"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[3] / "migrations"


def _alembic_config(connection: Connection | None = None) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(migrations_path()))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The newest revision this code ships, as Alembic finds it in the migration scripts."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    assert head is not None
    return head


async def with_sync_connection(
    target: DatabaseTarget, fn: Callable[[Connection], T], *, autocommit: bool = False
) -> T:
    """Start-up work (before anything is served), so the directory creation may block briefly.

    `fn` runs in one transaction, or with `autocommit` each statement on its own.
    """
    if target.dialect == "sqlite":
        Path(target.url.database or "").parent.mkdir(parents=True, exist_ok=True)
    engine = make_engine(target)
    try:
        if autocommit:
            async with engine.connect() as conn:
                await conn.execution_options(isolation_level="AUTOCOMMIT")
                return await conn.run_sync(fn)
        async with engine.begin() as conn:
            return await conn.run_sync(fn)
    finally:
        await engine.dispose()


async def migrate(target: DatabaseTarget) -> str:
    """Bring the schema to the latest revision; returns it."""

    def upgrade(connection: Connection) -> None:
        from alembic import command

        command.upgrade(_alembic_config(connection), "head")

    await with_sync_connection(target, upgrade)
    return HEAD


def revision_of(connection: Connection) -> str | None:
    """The revision the database of `connection` is at (None for an empty database): one query."""
    try:
        found: str | None = connection.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
    except sa.exc.DBAPIError:
        # No version table: nothing was ever migrated. (On an autocommit connection, see
        # `with_sync_connection`, the failed statement leaves nothing to roll back.)
        return None
    return found


async def current_revision(target: DatabaseTarget) -> str | None:
    """The revision the database is at (None for an empty database)."""
    return await with_sync_connection(target, revision_of)
