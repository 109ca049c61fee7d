"""The server's PostgreSQL connections: a fixed-size pool of asyncpg connections.

Connections open as calls need them, up to the pool size, and then stay open: a call beyond the
size waits for a free one rather than opening a connection for a single call. Checking out and
returning a connection costs no round trip. A connection the server closed while it sat idle
(Neon closes them) is noticed at checkout, without a round trip, and replaced; so is one older
than the recycle age. A connection that failed in any way is discarded, never handed out again.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio

from todo_mcp.storage.session import PreparedCache

if TYPE_CHECKING:
    import asyncpg

log = logging.getLogger(__name__)

RECYCLE_SECONDS = 1800.0


class PoolTimeout(Exception):
    """Every connection of the pool stayed busy for the whole wait."""


def unique_statement_name() -> str:
    """A prepared-statement name no other client of a pooler's server connection can have used."""
    return f"__todo_mcp_{uuid.uuid4().hex}__"


@dataclass(eq=False)
class Pooled:
    """One open connection, its prepared statements, and when it was opened."""

    raw: asyncpg.Connection
    prepared: PreparedCache
    opened: float = field(default_factory=time.monotonic)


@dataclass(eq=False)
class Pool:
    """Up to `size` connections made by `connect`; `named` names prepared statements uniquely."""

    connect: Callable[[], Awaitable[asyncpg.Connection]]
    size: int
    named: bool = True
    recycle: float = RECYCLE_SECONDS
    # Why each connection was thrown away, oldest first (the tests read it).
    discarded: list[str] = field(default_factory=list)
    _idle: deque[Pooled] = field(default_factory=deque)
    _slots: anyio.Semaphore = field(init=False)
    _closed: bool = False

    def __post_init__(self) -> None:
        self._slots = anyio.Semaphore(self.size)

    async def acquire(self, wait: float) -> Pooled:
        """A connection for one call, waiting at most `wait` seconds for a free one.

        Raises:
            PoolTimeout: every connection stayed busy.
            Exception: whatever opening a new connection raised (nothing was sent).
        """
        try:
            self._slots.acquire_nowait()  # the common case, without the cost of a timeout scope
        except anyio.WouldBlock:
            with anyio.move_on_after(wait) as waited:
                await self._slots.acquire()
            if waited.cancelled_caught:
                raise PoolTimeout from None
        try:
            return await self._take()
        except BaseException:
            self._slots.release()
            raise

    async def _take(self) -> Pooled:
        now = time.monotonic()
        while self._idle:
            conn = self._idle.pop()
            if conn.raw.is_closed():
                self._forget(conn, "closed while idle")
            elif now - conn.opened > self.recycle:
                self._forget(conn, "recycled")
                conn.raw.terminate()
            else:
                return conn
        raw = await self.connect()
        return Pooled(raw, PreparedCache(unique_statement_name if self.named else _unnamed))

    def release(self, conn: Pooled) -> None:
        """Give a healthy connection back."""
        if self._closed or conn.raw.is_closed():
            conn.raw.terminate()
        else:
            self._idle.append(conn)
        self._slots.release()

    def discard(self, conn: Pooled, reason: str) -> None:
        """Throw a connection away (it may be mid-statement or broken) without waiting on the network."""
        self._forget(conn, reason)
        conn.raw.terminate()
        self._slots.release()

    def _forget(self, conn: Pooled, reason: str) -> None:
        self.discarded.append(reason)
        log.debug("database connection discarded: %s", reason)

    async def close(self) -> None:
        """Close the idle connections; the busy ones are closed when they come back."""
        self._closed = True
        while self._idle:
            conn = self._idle.pop()
            with anyio.move_on_after(1, shield=True):
                await conn.raw.close()
            if not conn.raw.is_closed():
                conn.raw.terminate()

    def idle(self) -> list[Any]:
        """The idle driver connections (for diagnostics and tests)."""
        return [conn.raw for conn in self._idle]


def _unnamed() -> str | None:
    """No name: asyncpg then prepares unnamed statements (a pooler without prepared statements)."""
    return None
