"""The stdio server (what Claude Desktop runs): tools listed at once, storage loaded beside them.

On the embedded SQLite default the tool list is answered before the storage layer (SQLAlchemy,
the SQLite driver, the schema check) has loaded: those imports run in a worker thread from the
first moment, and the database opens as soon as they are done. A tool call that arrives earlier
waits for it (bounded). A database named by DATABASE_URL is opened before serving instead, so
that a wrong URL or an unmigrated schema ends the command with one clear line.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import anyio

from todo_mcp.config import Settings
from todo_mcp.errors import DatabaseUnavailable, TodoError
from todo_mcp.identity import local_identity
from todo_mcp.tools.server import build_server

if TYPE_CHECKING:
    from todo_mcp.storage.engine import Database

log = logging.getLogger(__name__)

# How long a tool call waits for the storage layer to load and the database to open.
LOAD_TIMEOUT = 30.0
# What the storage layer imports, loaded in the worker thread: the modules, and the SQLite driver
# and dialect the engine would otherwise import on the event loop when it is created.
STORAGE_MODULES = (
    "todo_mcp.storage.engine",
    "todo_mcp.storage.startup",
    "aiosqlite",
    "sqlalchemy.dialects.sqlite.aiosqlite",
)

Opener = Callable[[Settings], Awaitable["Database"]]


def _import_storage() -> None:
    """Import the storage layer, and run the deferred repository module (on its first attribute)."""
    for name in STORAGE_MODULES:
        importlib.import_module(name)
    from todo_mcp.tools.deferred import repository

    assert callable(repository.get_task)


class EmbeddedStorage:
    """The embedded database of a stdio server, loading while the handshake is answered."""

    def __init__(self, settings: Settings, opener: Opener) -> None:
        """Load with `opener` (which prepares the schema and opens the database) for `settings`."""
        self._settings = settings
        self._opener = opener
        self._ready = anyio.Event()
        self.database: Database | None = None
        self.error: BaseException | None = None

    async def load(self) -> None:
        """Import the storage layer (in a worker thread), then open the database; never raises."""
        try:
            await anyio.to_thread.run_sync(_import_storage)
            self.database = await self._opener(self._settings)
        except Exception as error:
            self.error = error
            log.error("the task database could not be opened: %s", error)
        finally:
            self._ready.set()

    async def opened(self) -> Database:
        """The open database, once loaded; DatabaseUnavailable if it could not be opened."""
        with anyio.fail_after(LOAD_TIMEOUT):
            await self._ready.wait()
        if self.database is None:
            reason = str(self.error) if isinstance(self.error, TodoError | OSError) else "see the server log"
            raise DatabaseUnavailable(reason)
        return self.database


async def serve_stdio(settings: Settings, opener: Opener, *, embedded: bool) -> None:
    """Serve MCP over stdio for the configured user until stdin ends.

    The embedded database loads beside the handshake; at the end its loading is waited for (so a
    first start always leaves a migrated file) and any failure is raised for the command line.
    """
    principal = local_identity(settings.user_id)
    if not embedded:
        database = await opener(settings)
        try:
            await build_server(database, settings=settings, identity=lambda: principal).run_stdio_async()
        finally:
            await database.dispose()
        return
    storage = EmbeddedStorage(settings, opener)
    server = build_server(storage.opened, settings=settings, identity=lambda: principal)
    try:
        async with anyio.create_task_group() as group:
            group.start_soon(storage.load)
            await server.run_stdio_async()
    finally:
        if storage.database is not None:
            await storage.database.dispose()
    if storage.error is not None:
        raise storage.error
