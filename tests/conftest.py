"""Shared fixtures: a real PostgreSQL database and a real SQLite file, both migrated.

PostgreSQL is required: TODO_MCP_TEST_PG names the server (default: the local one on
127.0.0.1:5432). If it cannot be reached the run fails; it never skips.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import pytest
from mcp import Client
from mcp.server import MCPServer

from tests.forged_tokens import Keys, make_keys
from tests.jwks_server import JWKSServer, running_jwks
from todo_mcp.config import Settings, load_settings
from todo_mcp.identity import Principal, local_identity
from todo_mcp.storage.engine import Database
from todo_mcp.storage.migrations import migrate
from todo_mcp.storage.url import DatabaseTarget, parse_database_url, sqlite_target
from todo_mcp.tools.server import build_server

T = TypeVar("T")

PG_ADMIN_URL = os.environ.get("TODO_MCP_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
BACKENDS = ["sqlite", "postgres"]


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion from sync code, even when an event loop is running here."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


def _pg_url(database: str) -> str:
    base, _, _ = PG_ADMIN_URL.rpartition("/")
    return f"{base}/{database}"


async def _admin(sql: str) -> None:
    try:
        conn = await asyncpg.connect(PG_ADMIN_URL.replace("postgresql+asyncpg", "postgresql"), timeout=10)
    except (OSError, asyncpg.PostgresError) as error:
        raise RuntimeError(
            f"PostgreSQL is required for the tests and is not reachable at {PG_ADMIN_URL}: {error}. "
            "Start it (pg_ctlcluster --skip-systemctl-redirect 15 main start) or set TODO_MCP_TEST_PG."
        ) from error
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A fresh, migrated PostgreSQL database for this test session (dropped afterwards)."""
    name = f"todo_mcp_test_{uuid.uuid4().hex[:12]}"
    run_sync(_admin(f'CREATE DATABASE "{name}"'))
    url = _pg_url(name)
    run_sync(migrate(parse_database_url(url)))
    try:
        yield url
    finally:
        run_sync(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def sqlite_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sqlite") / "todo.sqlite3"
    run_sync(migrate(sqlite_target(path)))
    return path


@pytest.fixture(params=BACKENDS)
def target(request: pytest.FixtureRequest) -> DatabaseTarget:
    """Each test that uses it runs once on SQLite and once on PostgreSQL."""
    if request.param == "postgres":
        return parse_database_url(request.getfixturevalue("pg_url"))
    return sqlite_target(request.getfixturevalue("sqlite_path"))


@pytest.fixture
async def database(target: DatabaseTarget) -> AsyncIterator[Database]:
    db = Database.open(target)
    try:
        yield db
    finally:
        await db.dispose()


@pytest.fixture(scope="module")
def keys() -> Keys:
    """Signing keys (Ed25519, P-256, RSA, and a rogue key that is never published), new per module."""
    return make_keys()


@pytest.fixture
def jwks(keys: Keys) -> Iterator[JWKSServer]:
    """A JWKS endpoint on a loopback port publishing `keys`, for one test."""
    with running_jwks(keys.published) as server:
        yield server


@pytest.fixture
def owner() -> str:
    """A user of its own for each test, so tests never see each other's tasks."""
    return f"user-{uuid.uuid4().hex}"


@pytest.fixture
def settings() -> Settings:
    return load_settings(TODO_MCP_TIMEZONE="UTC")


@pytest.fixture
def server(database: Database, settings: Settings, owner: str) -> MCPServer[Any]:
    principal: Principal = local_identity(owner)
    return build_server(database, settings=settings, identity=lambda: principal)


@pytest.fixture(params=["legacy", "2026-07-28"])
async def client(request: pytest.FixtureRequest, server: MCPServer[Any]) -> AsyncIterator[Client]:
    """The real SDK client, in memory, in both protocol generations."""
    async with Client(server, mode=request.param) as c:
        yield c
