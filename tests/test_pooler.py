"""Behind a real PgBouncer in transaction mode without prepared-statement support.

Without the URL option, named prepared statements land on server connections that never
prepared them (the control below sees it happen); with it, twenty concurrent agents see no error.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import anyio
import pytest
from mcp import Client
from sqlalchemy.engine import make_url

from tests.pgbouncer import Bouncer, running_pgbouncer
from todo_mcp.config import Settings
from todo_mcp.identity import Actor, local_identity
from todo_mcp.models import TaskCreate
from todo_mcp.storage import repository
from todo_mcp.storage.engine import Database
from todo_mcp.storage.url import parse_database_url
from todo_mcp.tools.server import build_server

pytestmark = pytest.mark.anyio

CALLERS = 20
ROUNDS = 10


@pytest.fixture(scope="module")
def bouncer(pg_url: str) -> Iterator[Bouncer]:
    url = make_url(pg_url)
    with running_pgbouncer((url.host or "127.0.0.1", url.port or 5432)) as running:
        yield running


def _database(bouncer: Bouncer, pg_url: str, query: str) -> Database:
    url = bouncer.url(make_url(pg_url).database or "") + (f"?{query}" if query else "")
    return Database.open(parse_database_url(url), pool_size=5)


async def _agent_session(database: Database, settings: Settings, errors: list[str]) -> int:
    """One agent's calls through the pooler; returns how many succeeded, appends the failures."""
    principal = local_identity(f"pooled-{uuid.uuid4().hex}")
    succeeded = 0

    async def call(client: Client, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        nonlocal succeeded
        result = await client.call_tool(name, arguments)
        if result.is_error or result.structured_content is None:
            errors.append(f"{name}: {result.content}")
            return {}
        succeeded += 1
        content: dict[str, Any] = result.structured_content
        return content

    async with Client(build_server(database, settings=settings, identity=lambda: principal)) as client:
        for round_ in range(ROUNDS):
            task = await call(client, "add_task", {"title": f"pooled {round_}", "tags": ["pool"]})
            if not task:
                continue
            await call(client, "get_task", {"task_id": task["id"]})
            await call(client, "update_task", {"task_id": task["id"], "priority": "high"})
            await call(client, "list_tasks", {"tag": "pool", "limit": 5})
            await call(client, "complete_task", {"task_ids": [task["id"]]})
    return succeeded


@pytest.mark.parametrize("option", ["pgbouncer=true", "statement_cache_size=0"])
async def test_with_the_pooler_option_twenty_concurrent_agents_see_no_error(
    bouncer: Bouncer, pg_url: str, settings: Settings, option: str
) -> None:
    database = _database(bouncer, pg_url, option)
    errors: list[str] = []
    counts: list[int] = []

    async def session() -> None:
        counts.append(await _agent_session(database, settings, errors))

    try:
        with anyio.fail_after(120):
            async with anyio.create_task_group() as group:
                for _ in range(CALLERS):
                    group.start_soon(session)
    finally:
        await database.dispose()
    assert errors == []
    assert counts == [ROUNDS * 5] * CALLERS


async def test_without_the_option_named_statements_fail_behind_this_pooler(
    bouncer: Bouncer, pg_url: str
) -> None:
    """The control: the same pooler breaks the default configuration, so the test above means something."""
    database = _database(bouncer, pg_url, "")
    owner = f"pooled-{uuid.uuid4().hex}"
    failures: list[str] = []

    async def caller() -> None:
        for _ in range(ROUNDS):
            try:
                actor = Actor(owner, via="test")
                written = await database.run(repository.create_task, actor=actor, data=TaskCreate(title="x"))
                await database.run(repository.get_task, owner=owner, task_id=written.task.id)
            except Exception as error:  # any failure counts; the kind is checked below
                failures.append(str(error))

    try:
        with anyio.fail_after(120):
            async with anyio.create_task_group() as group:
                for _ in range(CALLERS):
                    group.start_soon(caller)
    finally:
        await database.dispose()
    assert failures, "expected the pooler to lose named prepared statements"
    assert any("add ?pgbouncer=true to DATABASE_URL" in failure for failure in failures), failures[:3]
