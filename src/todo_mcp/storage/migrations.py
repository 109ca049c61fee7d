"""The Alembic runner: bring a database to the schema this code needs, or check that it is there."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection

from todo_mcp.storage.engine import make_engine
from todo_mcp.storage.url import DatabaseTarget

T = TypeVar("T")


def migrations_path() -> Path:
    """Migrations ship inside the wheel; in a source checkout they sit at the top of the repository."""
    packaged = Path(__file__).parents[1] / "migrations"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[3] / "migrations"


def _alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(migrations_path()))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The newest revision this code ships."""
    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    assert head is not None
    return head


async def with_sync_connection(target: DatabaseTarget, fn: Callable[[Connection], T]) -> T:
    """Start-up work (before anything is served), so the directory creation may block briefly."""
    if target.dialect == "sqlite":
        Path(target.url.database or "").parent.mkdir(parents=True, exist_ok=True)
    engine = make_engine(target)
    try:
        async with engine.begin() as conn:
            return await conn.run_sync(fn)
    finally:
        await engine.dispose()


async def migrate(target: DatabaseTarget) -> str:
    """Bring the schema to the latest revision; returns it."""

    def upgrade(connection: Connection) -> None:
        command.upgrade(_alembic_config(connection), "head")

    await with_sync_connection(target, upgrade)
    return head_revision()


def revision_of(connection: Connection) -> str | None:
    """The revision the database of `connection` is at (None for an empty database)."""
    return MigrationContext.configure(connection).get_current_revision()


async def current_revision(target: DatabaseTarget) -> str | None:
    """The revision the database is at (None for an empty database)."""
    return await with_sync_connection(target, revision_of)
