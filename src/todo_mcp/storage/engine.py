"""The process's database: its connections, and running one repository operation on them.

PostgreSQL is served from the server's own pool of asyncpg connections (`todo_mcp.storage.pool`)
in autocommit, with each statement prepared once per connection, so that a repository call is one
round trip. The SQLite default runs through SQLAlchemy. Every wait is bounded and every failure
says whether anything could have changed:

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
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Concatenate, ParamSpec, TypeVar

import anyio
from sqlalchemy import event, exc
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from todo_mcp.errors import (
    DatabaseMisconfigured,
    DatabaseUnavailable,
    OutcomeUnknown,
    TodoError,
    describe_db_error,
)
from todo_mcp.storage.backends import Backend, Connector, Fault, Lease, PostgresBackend, SqliteBackend
from todo_mcp.storage.pool import PoolTimeout
from todo_mcp.storage.session import PLANNED_PER_CALL, Session
from todo_mcp.storage.url import DatabaseTarget

log = logging.getLogger(__name__)

# Seconds to wait before each new attempt to open a connection.
CONNECT_BACKOFF = (0.25, 1.0, 2.0)
SQLITE_PRAGMAS = ("journal_mode=WAL", "synchronous=NORMAL", "busy_timeout=30000", "foreign_keys=ON")

P = ParamSpec("P")
T = TypeVar("T")


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


def make_engine(target: DatabaseTarget, *, pool_size: int = 1) -> AsyncEngine:
    """A SQLAlchemy engine for `target`: for migrations and start-up work, and for serving SQLite."""
    options: dict[str, Any] = {"connect_args": dict(target.connect_args), "pool_pre_ping": False}
    if target.dialect == "postgresql":
        return create_async_engine(target.url, pool_size=pool_size, **options)
    options["connect_args"].setdefault("timeout", 30)
    engine = create_async_engine(target.url, **options)
    event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_connection: Any, record: Any) -> None:
    cursor = dbapi_connection.cursor()
    for pragma in SQLITE_PRAGMAS:
        cursor.execute(f"PRAGMA {pragma}")
    cursor.close()


@dataclass
class Database:
    """The process's connections; every transport and route shares them."""

    target: DatabaseTarget
    backend: Backend
    connect_backoff: tuple[float, ...] = CONNECT_BACKOFF
    statement_timeout: float = 5.0
    # Signs list cursors: the deployment's key (see storage.startup), or one of this process's own.
    cursor_key: bytes = field(default_factory=lambda: secrets.token_bytes(32))
    # Problems of the deployment already logged (see `_warn_once`).
    _warned: set[str] = field(default_factory=set, repr=False)

    @classmethod
    def open(
        cls,
        target: DatabaseTarget,
        *,
        pool_size: int = 10,
        connect_backoff: tuple[float, ...] = CONNECT_BACKOFF,
        statement_timeout: float = 5.0,
        cursor_key: bytes | None = None,
        connector: Connector | None = None,
    ) -> Database:
        """Connections to `target`; none is opened until the first call."""
        backend: Backend
        if target.dialect == "postgresql":
            backend = PostgresBackend(target, pool_size, connector)
        else:
            engine = make_engine(target)
            engine.update_execution_options(isolation_level="AUTOCOMMIT")
            backend = SqliteBackend(engine)
        database = cls(target, backend, connect_backoff=connect_backoff, statement_timeout=statement_timeout)
        if cursor_key is not None:
            database.cursor_key = cursor_key
        return database

    async def run(
        self,
        operation: Callable[Concatenate[Session, P], Awaitable[T]],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """Run one repository operation on a pooled autocommit connection, within the statement timeout."""
        per_call_plans = operation in PLANNED_PER_CALL
        for attempt in (1, 2):
            lease = await self._checkout(per_call_plans)
            try:
                with anyio.fail_after(self.statement_timeout):
                    result = await operation(lease.session, *args, **kwargs)
            except TodoError:
                await self.backend.release(lease)  # the database answered: a refusal, not a fault
                raise
            except TimeoutError:
                await self._discard(lease, "no answer within the statement timeout")
                raise OutcomeUnknown(f"no answer within {self.statement_timeout:g} s") from None
            except BaseException as error:
                fault = self.backend.fault(error)
                await self._discard(lease, fault.value if fault else f"failed: {type(error).__name__}")
                if fault is Fault.UNSENT and attempt == 1:
                    log.info("database connection was closed; retrying on a new one")
                    continue
                if fault is Fault.UNSENT:
                    raise DatabaseUnavailable(describe_db_error(error)) from error
                if fault is Fault.POOLED:
                    self._warn_once(fault.value)
                    raise DatabaseMisconfigured(fault.value) from None
                if fault is Fault.BROKEN:
                    raise OutcomeUnknown(describe_db_error(error)) from error
                raise
            await self.backend.release(lease)
            return result
        raise AssertionError("unreachable")  # pragma: no cover

    def _warn_once(self, problem: str) -> None:
        """Log a problem of the deployment once per process, not once per call."""
        if problem not in self._warned:
            self._warned.add(problem)
            log.error("%s (logged once)", problem)

    async def _discard(self, lease: Lease, reason: str) -> None:
        with anyio.CancelScope(shield=True), anyio.move_on_after(1):
            await self.backend.discard(lease, reason)

    async def _checkout(self, per_call_plans: bool) -> Lease:
        """A pooled connection; opening a new one is retried with backoff (a waking Neon compute).

        Nothing has been sent when opening fails, so retrying cannot repeat a write.
        """
        for delay in (*self.connect_backoff, None):
            try:
                return await self.backend.checkout(self.statement_timeout, per_call_plans=per_call_plans)
            except (PoolTimeout, exc.TimeoutError):
                raise DatabaseUnavailable(
                    f"every pooled connection stayed busy for {self.statement_timeout:g} s"
                ) from None
            except Exception as error:  # whatever the driver raised while opening: nothing was sent
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
        await self.backend.check_reachable()

    async def dispose(self) -> None:
        """Close every connection."""
        await self.backend.dispose()
