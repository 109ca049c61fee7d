"""One async engine per process, its connection options, and running one operation on it.

PostgreSQL connections run in AUTOCOMMIT with asyncpg's statement cache on and no pre-ping, so
each repository call is one round trip. Every wait is bounded and every failure says whether
anything could have changed:

- Opening a connection fails fast and is retried with backoff only when the refusal was quick
  (a restarting server, a waking Neon compute); a connect timeout is not waited out again.
  Either way nothing was sent: `DatabaseUnavailable`.
- A connection the server closed while it sat idle is noticed at checkout, without a round
  trip, and replaced; a call whose connection turned out closed before its statement was sent
  is retried once.
- A statement that gets no answer within the statement timeout, or whose connection breaks
  after it was sent, may or may not have been applied: `OutcomeUnknown`. It is never retried.
- A connection that failed in any way is discarded, never handed out again.
"""

from __future__ import annotations

import logging
import secrets
import ssl
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Concatenate, ParamSpec, TypeVar

import anyio
import sqlalchemy as sa
from sqlalchemy import event, exc
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from todo_mcp.errors import DatabaseUnavailable, OutcomeUnknown, TodoError, describe_db_error
from todo_mcp.storage.url import DatabaseTarget

log = logging.getLogger(__name__)

# Seconds to wait before each new attempt to open a connection.
CONNECT_BACKOFF = (0.25, 1.0, 2.0)
SQLITE_PRAGMAS = ("journal_mode=WAL", "synchronous=NORMAL", "busy_timeout=30000", "foreign_keys=ON")

P = ParamSpec("P")
T = TypeVar("T")


def _closed_before_send(error: BaseException) -> bool:
    """True when the driver refused to send because the connection was already closed."""
    orig = getattr(error, "orig", None)
    text = str(orig or error).lower()
    return (
        isinstance(error, exc.DBAPIError) and error.connection_invalidated and "connection is closed" in text
    )


def _transient(error: BaseException) -> bool:
    """A quick failure to open a connection that a moment's wait may cure (refused, reset, starting up).

    A timeout is not one: the connect timeout has already waited long enough.
    """
    import asyncpg

    seen: BaseException | None = error
    while seen is not None:
        # A timeout (an OSError too) has waited long enough; a refused certificate, or a server that
        # refused TLS (asyncpg raises a bare ConnectionError), is not cured by waiting.
        if isinstance(seen, TimeoutError | ssl.SSLError) or type(seen) is ConnectionError:
            return False
        if isinstance(seen, OSError | asyncpg.CannotConnectNowError | asyncpg.TooManyConnectionsError):
            return True
        seen = getattr(seen, "orig", None) or seen.__cause__
    return False


def _statement_name() -> str:
    return f"__todo_mcp_{uuid.uuid4().hex}__"


def make_engine(
    target: DatabaseTarget, *, pool_size: int, autocommit: bool, checkout_timeout: float = 30.0
) -> AsyncEngine:
    """An engine for `target`: pooled autocommit connections for serving, or one for migrations."""
    options: dict[str, Any] = {"connect_args": dict(target.connect_args), "pool_pre_ping": False}
    if autocommit:
        options["isolation_level"] = "AUTOCOMMIT"
    if target.dialect == "postgresql":
        options.update(
            pool_size=pool_size, max_overflow=pool_size, pool_recycle=1800, pool_timeout=checkout_timeout
        )
        if target.named_statements:
            # Neon's -pooler host is PgBouncer: asyncpg's numbered statement names could collide on a
            # server connection that other clients used before; unique names cannot.
            options["connect_args"].setdefault("prepared_statement_name_func", _statement_name)
        engine = create_async_engine(target.url, **options)
        event.listen(engine.sync_engine, "checkout", _drop_closed)
        return engine
    options["connect_args"].setdefault("timeout", 30)
    engine = create_async_engine(target.url, **options)
    event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return engine


def _drop_closed(dbapi_connection: Any, record: Any, proxy: Any) -> None:
    # A local check, no round trip: asyncpg has already seen the server hang up.
    raw = getattr(dbapi_connection, "driver_connection", None)
    if raw is not None and raw.is_closed():
        raise exc.DisconnectionError("connection closed while idle")


def _sqlite_pragmas(dbapi_connection: Any, record: Any) -> None:
    cursor = dbapi_connection.cursor()
    for pragma in SQLITE_PRAGMAS:
        cursor.execute(f"PRAGMA {pragma}")
    cursor.close()


@dataclass
class Database:
    """The process's engine; every transport and route shares it."""

    target: DatabaseTarget
    engine: AsyncEngine
    connect_backoff: tuple[float, ...] = CONNECT_BACKOFF
    statement_timeout: float = 5.0
    # Signs list cursors: the deployment's key (see storage.startup), or one of this process's own.
    cursor_key: bytes = field(default_factory=lambda: secrets.token_bytes(32))

    @classmethod
    def open(
        cls,
        target: DatabaseTarget,
        *,
        pool_size: int = 5,
        connect_backoff: tuple[float, ...] = CONNECT_BACKOFF,
        statement_timeout: float = 5.0,
        cursor_key: bytes | None = None,
    ) -> Database:
        """A pool for `target`; no connection is opened until the first call."""
        # Waiting for a pooled connection longer than a statement may take gains nothing.
        engine = make_engine(target, pool_size=pool_size, autocommit=True, checkout_timeout=statement_timeout)
        database = cls(
            target=target, engine=engine, connect_backoff=connect_backoff, statement_timeout=statement_timeout
        )
        if cursor_key is not None:
            database.cursor_key = cursor_key
        return database

    async def run(
        self,
        operation: Callable[Concatenate[AsyncConnection, P], Awaitable[T]],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """Run one repository operation on a pooled autocommit connection, within the statement timeout."""
        for attempt in (1, 2):
            conn = await self._connect()
            try:
                with anyio.fail_after(self.statement_timeout):
                    result = await operation(conn, *args, **kwargs)
            except exc.DBAPIError as error:
                await _discard(conn)
                if attempt == 1 and _closed_before_send(error):
                    log.info("database connection was closed; retrying on a new one")
                    continue
                if error.connection_invalidated:
                    raise OutcomeUnknown(describe_db_error(error)) from error
                raise
            except TimeoutError:
                await _discard(conn)
                raise OutcomeUnknown(f"no answer within {self.statement_timeout:g} s") from None
            except TodoError:
                await _release(conn)  # the database answered: a refusal, not a fault
                raise
            except BaseException:
                await _discard(conn)
                raise
            await _release(conn)
            return result
        raise AssertionError("unreachable")  # pragma: no cover

    async def _connect(self) -> AsyncConnection:
        """A pooled connection; opening a new one is retried with backoff (a waking Neon compute).

        Nothing has been sent when opening fails, so retrying cannot repeat a write.
        """
        for delay in (*self.connect_backoff, None):
            try:
                return await self.engine.connect()
            except exc.TimeoutError:
                raise DatabaseUnavailable(
                    f"every pooled connection stayed busy for {self.statement_timeout:g} s"
                ) from None
            except (exc.DBAPIError, OSError) as error:
                if delay is None or not _transient(error):
                    raise DatabaseUnavailable(self._connect_failure(error)) from error
                log.warning(
                    "cannot connect to the database (%s); retrying in %.1fs", describe_db_error(error), delay
                )
                await anyio.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    def _connect_failure(self, error: BaseException) -> str:
        """The driver's reason, or for a timeout (which has no text) how long it waited."""
        seen: BaseException | None = error
        while seen is not None:
            if isinstance(seen, TimeoutError):
                return f"no connection within {float(self.target.connect_args.get('timeout', 0)):g} s"
            seen = getattr(seen, "orig", None) or seen.__cause__
        return describe_db_error(error)

    async def check_reachable(self) -> None:
        """One `SELECT 1` on a pooled connection (readiness)."""
        async with self.engine.connect() as conn:
            await conn.execute(sa.text("SELECT 1"))

    async def dispose(self) -> None:
        """Close every pooled connection."""
        await self.engine.dispose()


async def _release(conn: AsyncConnection) -> None:
    """Give a healthy connection back to the pool, even while the caller is being cancelled."""
    with anyio.CancelScope(shield=True):
        await conn.close()


async def _discard(conn: AsyncConnection) -> None:
    """Throw a connection away (it may be mid-statement or broken) without waiting on the network."""
    with anyio.CancelScope(shield=True), anyio.move_on_after(1):
        await conn.invalidate()
    with anyio.CancelScope(shield=True), anyio.move_on_after(1):
        await conn.close()
