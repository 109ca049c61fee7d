"""A real MCP server (in memory) whose database connections pass through the counting proxy."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import asyncpg
from mcp import Client
from sqlalchemy.engine import make_url

from tests.wireproxy import WireProxy
from todo_mcp.config import Settings
from todo_mcp.identity import local_identity
from todo_mcp.storage.backends import PostgresBackend
from todo_mcp.storage.engine import Database
from todo_mcp.storage.pool import Pool
from todo_mcp.storage.url import parse_database_url
from todo_mcp.tools.server import build_server

# The production backoff waits seconds for a waking compute; the tests keep its shape, not its length.
FAST_BACKOFF = (0.01, 0.02, 0.04)


@dataclass
class Wire:
    """A server whose database connections pass through the counting proxy."""

    proxy: WireProxy
    db: Database
    client: Client
    application_name: str

    @property
    def invalidations(self) -> list[str]:
        """Why each connection was thrown away, oldest first."""
        return pool_of(self.db).discarded


def pool_of(db: Database) -> Pool:
    """The server's own PostgreSQL pool (for every statement but list queries)."""
    assert isinstance(db.backend, PostgresBackend)
    return db.backend.pool


def list_pool_of(db: Database) -> Pool:
    """The server's PostgreSQL pool for list queries (planned per call)."""
    assert isinstance(db.backend, PostgresBackend)
    return db.backend.list_pool


@asynccontextmanager
async def open_wire(
    pg_url: str, owner: str, settings: Settings, options: str = "", *, statement_timeout: float = 5.0
) -> AsyncIterator[Wire]:
    """The server, its pooled database (one connection) behind a `WireProxy`, and a client."""
    upstream = make_url(pg_url)
    application_name = f"todo-ledger-rt-{uuid.uuid4().hex[:12]}"
    async with WireProxy(upstream.port or 5432, upstream_host=upstream.host or "127.0.0.1") as proxy:
        proxied = upstream.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
        # Unencrypted to the proxy so that its turn log can name the protocol messages.
        target = parse_database_url(f"{proxied}?sslmode=disable&application_name={application_name}{options}")
        db = Database.open(
            target, pool_size=1, connect_backoff=FAST_BACKOFF, statement_timeout=statement_timeout
        )
        principal = local_identity(owner)
        server = build_server(db, settings=settings, identity=lambda: principal)
        try:
            async with Client(server) as client:
                yield Wire(proxy, db, client, application_name)
        finally:
            await db.dispose()


def plain_url(pg_url: str) -> str:
    """The URL as asyncpg itself takes it (without SQLAlchemy's driver name)."""
    return pg_url.replace("postgresql+asyncpg://", "postgresql://")


async def rows_titled(pg_url: str, owner: str, title: str) -> int:
    """How many of `owner`'s tasks are titled `title`, counted directly in the database."""
    conn = await asyncpg.connect(plain_url(pg_url))
    try:
        count: int = await conn.fetchval(
            "SELECT count(*) FROM tasks WHERE owner_id = $1 AND title = $2", owner, title
        )
    finally:
        await conn.close()
    return count
