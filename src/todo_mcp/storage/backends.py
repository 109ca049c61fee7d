"""Where a `Database` gets its connections: the server's asyncpg pool, or SQLAlchemy for SQLite.

Each backend lends a `Session` for one operation, takes it back healthy or throws it away, and
says of a failure whether the statement could have reached the database.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import sqlalchemy as sa
from sqlalchemy import exc

from todo_mcp.storage.pool import Pool, Pooled
from todo_mcp.storage.session import PostgresSession, Session, SqliteSession
from todo_mcp.storage.url import DatabaseTarget

if TYPE_CHECKING:
    import asyncpg
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

log = logging.getLogger(__name__)

# Asked for at start-up by the connections that serve list queries: a prepared statement is
# planned for the values of each call. Otherwise PostgreSQL may settle on a generic plan after five
# calls, made for whichever user's values came first, and keep it for every user on that
# connection (a user with a million tasks then pays for a plan made for a user with a hundred).
CUSTOM_PLANS = {"plan_cache_mode": "force_custom_plan"}


class Fault(enum.Enum):
    """What a failed call's error says about its statement."""

    UNSENT = "the connection was closed before the statement was sent"
    BROKEN = "the connection broke after the statement was sent"
    # Nothing ran: the statement was never found. A configuration problem of the deployment.
    POOLED = (
        "a connection pooler lost the server's prepared statement, so nothing ran; the operator must add "
        "?pgbouncer=true to DATABASE_URL (a pooler in transaction mode without prepared statements)"
    )


@dataclass(frozen=True)
class Lease:
    """A session lent to one operation, and what the backend needs to take it back."""

    session: Session
    handle: Any


class Backend(Protocol):
    """Lends sessions; see the module docstring."""

    async def checkout(self, wait: float, *, per_call_plans: bool = False) -> Lease:
        """A session, waiting at most `wait` seconds for a pooled connection to be free.

        With `per_call_plans`, on a connection that plans each statement for its values.
        """

    async def release(self, lease: Lease) -> None:
        """Take back a healthy session."""

    async def discard(self, lease: Lease, reason: str) -> None:
        """Throw a session's connection away without waiting on the network."""

    def fault(self, error: BaseException) -> Fault | None:
        """Whether `error` broke the connection, and if so, before or after sending; None otherwise."""

    async def check_reachable(self) -> None:
        """One `SELECT 1`."""

    async def dispose(self) -> None:
        """Close every connection."""


@dataclass
class Connector:
    """Opens asyncpg connections, asking for custom plans on those that serve list queries.

    A pooler may refuse the start-up parameter (PgBouncer accepts only a few); the first refusal is
    logged, remembered, and the connection opened without it.
    """

    custom_plans: bool = True

    async def __call__(self, *, per_call_plans: bool = True, **kwargs: Any) -> asyncpg.Connection:
        """`asyncpg.connect` with these arguments, plus the plan setting if asked and still accepted."""
        import asyncpg

        if per_call_plans and self.custom_plans:
            settings = {**kwargs.get("server_settings", {}), **CUSTOM_PLANS}
            try:
                return await asyncpg.connect(**{**kwargs, "server_settings": settings})
            except asyncpg.PostgresError as error:
                if "plan_cache_mode" not in str(error):
                    raise
                if self.custom_plans:  # connections opened at once are all refused: log the first
                    self.custom_plans = False
                    log.warning(
                        "the database (or a pooler in front of it) refuses plan_cache_mode at connection "
                        "start-up (%s); set it on the role instead: ALTER ROLE <user> SET plan_cache_mode = "
                        "force_custom_plan",
                        error,
                    )
        return await asyncpg.connect(**kwargs)


class PostgresBackend:
    """The server's own pools of asyncpg connections (see `todo_mcp.storage.pool`).

    `pool` serves every statement that finds its rows by id, keeping the plans PostgreSQL makes;
    `list_pool` serves the operations marked `planned_per_call`. Each holds up to `pool_size`.
    """

    def __init__(self, target: DatabaseTarget, pool_size: int, connector: Connector | None = None) -> None:
        url = target.url
        self.connector = connector or Connector()
        self._kwargs = dict(
            host=url.host,
            port=url.port,
            user=url.username,
            password=url.password,
            database=url.database,
            **target.connect_args,
        )
        self.pool = Pool(self._open, pool_size, named=target.named_statements)
        self.list_pool = Pool(self._open_for_lists, pool_size, named=target.named_statements)

    async def _open(self) -> asyncpg.Connection:
        return await self.connector(per_call_plans=False, **self._kwargs)

    async def _open_for_lists(self) -> asyncpg.Connection:
        return await self.connector(per_call_plans=True, **self._kwargs)

    async def checkout(self, wait: float, *, per_call_plans: bool = False) -> Lease:
        """A pooled connection (no round trip unless a new one must be opened)."""
        pool = self.list_pool if per_call_plans else self.pool
        conn = await pool.acquire(wait)
        return Lease(PostgresSession(conn.raw, conn.prepared), (pool, conn))

    async def release(self, lease: Lease) -> None:
        """Back into its pool."""
        pool, conn = lease.handle
        pool.release(conn)

    async def discard(self, lease: Lease, reason: str) -> None:
        """Terminated at once (no goodbye to the server: it may be gone)."""
        pool, conn = lease.handle
        pool.discard(conn, reason)

    def fault(self, error: BaseException) -> Fault | None:
        """Asyncpg refuses to send on a closed connection; any other connection error came after."""
        import asyncpg

        if isinstance(error, asyncpg.InterfaceError) and "connection is closed" in str(error):
            return Fault.UNSENT
        if isinstance(error, asyncpg.InvalidSQLStatementNameError):
            return Fault.POOLED
        if isinstance(error, OSError | asyncpg.ConnectionDoesNotExistError | asyncpg.InterfaceError):
            return Fault.BROKEN
        return None

    async def check_reachable(self) -> None:
        """`SELECT 1` on a pooled connection."""
        conn: Pooled = await self.pool.acquire(5.0)
        try:
            await conn.raw.fetchval("SELECT 1")
        except BaseException:
            self.pool.discard(conn, "readiness check failed")
            raise
        self.pool.release(conn)

    async def dispose(self) -> None:
        """Close both pools."""
        await self.pool.close()
        await self.list_pool.close()


class SqliteBackend:
    """SQLAlchemy's pool of aiosqlite connections to the embedded file."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def checkout(self, wait: float, *, per_call_plans: bool = False) -> Lease:
        """A pooled SQLAlchemy connection (SQLite plans every statement as it runs)."""
        conn: AsyncConnection = await self.engine.connect()
        return Lease(SqliteSession(conn), conn)

    async def release(self, lease: Lease) -> None:
        """Closed, which returns it to SQLAlchemy's pool."""
        await lease.handle.close()

    async def discard(self, lease: Lease, reason: str) -> None:
        """Invalidated, so that SQLAlchemy's pool opens a new one."""
        await lease.handle.invalidate()
        await lease.handle.close()

    def fault(self, error: BaseException) -> Fault | None:
        """A file database has no connection to lose; SQLAlchemy says when it thinks otherwise."""
        if isinstance(error, exc.DBAPIError) and error.connection_invalidated:
            return Fault.BROKEN
        return None

    async def check_reachable(self) -> None:
        """`SELECT 1`."""
        async with self.engine.connect() as conn:
            await conn.execute(sa.text("SELECT 1"))

    async def dispose(self) -> None:
        """Close SQLAlchemy's pool."""
        await self.engine.dispose()
