"""Plans that stay good for every user on a shared connection, and writes that keep theirs.

PostgreSQL may switch a prepared statement to a generic plan after five executions, a plan made
without the values, and keep it for every later caller on that connection. The server asks for
custom plans when it connects; these tests warm one connection with small users' calls and read
the statement's plan counters, then show the control: without the setting, the same warm-up
gives the big user a generic plan.
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime
from typing import Any

import anyio
import asyncpg
import pytest
from sqlalchemy.engine import make_url

from tests.pgbouncer import running_pgbouncer
from todo_mcp.due import zone_info
from todo_mcp.identity import Actor
from todo_mcp.models import TaskQuery
from todo_mcp.storage import repository
from todo_mcp.storage.backends import Connector
from todo_mcp.storage.engine import Database
from todo_mcp.storage.filters import list_values, statement_for
from todo_mcp.storage.session import PostgresSession, Session, planned_per_call
from todo_mcp.storage.url import parse_database_url

pytestmark = pytest.mark.anyio

SMALL_USERS = 100


@pytest.fixture(scope="module")
async def population(pg_url: str) -> str:
    """A big user (4,000 tasks, 4 tagged "rare") among 100 users with 100 tasks each (10 "rare")."""
    run = uuid.uuid4().hex[:8]
    conn = await asyncpg.connect(pg_url)
    try:
        await conn.execute(
            """
            INSERT INTO tasks (owner_id, title, status, priority, due_sort, tags, version, created_at,
                               updated_at)
            SELECT owner, 'task ' || n, 'pending', 2, '9999-12-31 00:00+00', tags, 1, now(), now()
            FROM (
                SELECT $1 || '-big' AS owner, n,
                       CASE WHEN n % 1000 = 0 THEN ARRAY['rare'] ELSE ARRAY['common'] END AS tags
                FROM generate_series(1, 4000) AS n
                UNION ALL
                SELECT $1 || '-small-' || g, n,
                       CASE WHEN n % 10 = 0 THEN ARRAY['rare'] ELSE ARRAY['common'] END
                FROM generate_series(1, $2::int) AS g, generate_series(1, 100) AS n
            ) AS rows
            ORDER BY n
            """,
            run,
            SMALL_USERS,
        )
        await conn.execute("ANALYZE tasks")
    finally:
        await conn.close()
    return run


@planned_per_call  # read on the connection that ran the list queries
async def _plans(session: Session) -> list[tuple[int, int]]:
    """(generic plans, custom plans) of each statement on this connection that filters by tag."""
    assert isinstance(session, PostgresSession)
    rows = await session.conn.fetch(
        "SELECT generic_plans, custom_plans FROM pg_prepared_statements "
        "WHERE statement LIKE '%tags @>%' AND statement NOT LIKE '%pg_prepared_statements%'"
    )
    return [(row["generic_plans"], row["custom_plans"]) for row in rows]


async def _warm_then_big(database: Database, run: str) -> tuple[list[tuple[int, int]], int]:
    """Ten small users' tag queries, then the big user's; its plan counters and result size."""
    for i in range(10):
        await database.run(
            repository.list_tasks,
            owner=f"{run}-small-{1 + i % SMALL_USERS}",
            query=TaskQuery(tag="rare", status="all"),
            default_tz="UTC",
            cursor_key=database.cursor_key,
        )
    page = await database.run(
        repository.list_tasks,
        owner=f"{run}-big",
        query=TaskQuery(tag="rare", status="all"),
        default_tz="UTC",
        cursor_key=database.cursor_key,
    )
    return await database.run(_plans), len(page.tasks)


async def test_a_connection_warmed_by_small_users_plans_the_big_users_query_for_its_values(
    pg_url: str, population: str
) -> None:
    database = Database.open(parse_database_url(pg_url), pool_size=1)
    try:
        plans, found = await _warm_then_big(database, population)
    finally:
        await database.dispose()
    assert found == 4
    assert plans, "the tag query was not run as a prepared statement"
    assert all(generic == 0 for generic, _ in plans), plans
    assert sum(custom for _, custom in plans) >= 11


async def test_writes_by_id_keep_the_plan_postgresql_settles_on(pg_url: str, population: str) -> None:
    """Completing by id is planned for its first calls only: planning every call costs more than a run."""
    database = Database.open(parse_database_url(pg_url), pool_size=1)
    actor = Actor(f"{population}-small-1", via="complete_task")
    try:
        page = await database.run(
            repository.list_tasks,
            owner=actor.owner,
            query=TaskQuery(limit=12),
            default_tz="UTC",
            cursor_key=database.cursor_key,
        )
        for task in page.tasks:
            await database.run(repository.complete_tasks, actor=actor, ids=[task.id], default_tz="UTC")
        plans = await database.run(_write_plans)
    finally:
        await database.dispose()
    assert plans, "the completion was not run as a prepared statement"
    assert sum(generic for generic, _ in plans) >= 6, plans


async def _write_plans(session: Session) -> list[tuple[int, int]]:
    """(generic plans, custom plans) of each UPDATE on this connection."""
    assert isinstance(session, PostgresSession)
    rows = await session.conn.fetch(
        "SELECT generic_plans, custom_plans FROM pg_prepared_statements "
        "WHERE statement LIKE '%UPDATE tasks%' AND statement NOT LIKE '%pg_prepared_statements%'"
    )
    return [(row["generic_plans"], row["custom_plans"]) for row in rows]


async def test_control_without_custom_plans_the_same_warm_up_gives_a_generic_plan(
    pg_url: str, population: str
) -> None:
    database = Database.open(parse_database_url(pg_url), pool_size=1, connector=Connector(False))
    try:
        plans, found = await _warm_then_big(database, population)
    finally:
        await database.dispose()
    assert found == 4
    assert any(generic > 0 for generic, _ in plans), plans


async def test_a_pooler_that_refuses_the_plan_setting_still_connects_and_says_how_to_set_it(
    pg_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    url = make_url(pg_url)
    connector = Connector()
    with running_pgbouncer((url.host or "127.0.0.1", url.port or 5432)) as bouncer:
        database = Database.open(parse_database_url(bouncer.url(url.database or "")), connector=connector)
        try:
            with caplog.at_level(logging.WARNING, logger="todo_mcp.storage.engine"):
                answers: list[Any] = []

                async def call() -> None:
                    answers.append(await database.run(_select_one))

                async with anyio.create_task_group() as group:  # connections opened at once
                    for _ in range(5):
                        group.start_soon(call)
                answers.append(await database.run(_select_one))
        finally:
            await database.dispose()
    assert answers == [1] * 6
    assert connector.custom_plans is False
    warnings = [record.getMessage() for record in caplog.records if "plan_cache_mode" in record.getMessage()]
    assert len(warnings) == 1
    assert "ALTER ROLE" in warnings[0]


@planned_per_call  # on the connections that ask for custom plans
async def _select_one(session: Session) -> Any:

    assert isinstance(session, PostgresSession)
    return await session.conn.fetchval("SELECT 1")


async def _plan_of(session: Session, query: TaskQuery, owner: str) -> str:
    assert isinstance(session, PostgresSession)
    statement = statement_for(session.sql, query, after=False).compiled(session.sql.compiler)
    values = list_values(session.sql, owner, query, zone_info("UTC"), datetime.now(UTC), None)
    rows = await session.conn.fetch("EXPLAIN (FORMAT JSON) " + statement.sql, *statement.arguments(values))
    return str(rows[0][0])


@pytest.fixture(scope="module")
async def old_user(pg_url: str) -> str:
    """A user with 5,000 tasks, all older than the 45,000 of nine other users."""
    old = f"old-{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(pg_url)
    try:
        await conn.execute(
            """
            INSERT INTO tasks (owner_id, title, status, priority, due_sort, tags, version, created_at,
                               updated_at)
            SELECT CASE WHEN n <= 5000 THEN $1 ELSE $1 || '-other-' || n % 9 END, 'task ' || n, 'pending', 2,
                   '9999-12-31 00:00+00', ARRAY['x'], 1, now(), now()
            FROM generate_series(1, 50000) AS n ORDER BY n
            """,
            old,
        )
        await conn.execute("ANALYZE tasks")
    finally:
        await conn.close()
    return old


@pytest.mark.parametrize("sort", ["newest", "oldest"])
@pytest.mark.parametrize("status", ["pending", "all"])
async def test_a_users_page_never_walks_other_users_rows(
    pg_url: str, old_user: str, sort: str, status: str
) -> None:
    """A user whose tasks are all older than everyone else's: the page comes from their own index.

    Ordered by `id`, the planner would walk the primary key backwards through the other users'
    45,000 newer rows, expecting this user's 10% to turn up early.
    """
    database = Database.open(parse_database_url(pg_url), pool_size=1)
    try:
        plan = await database.run(_plan_of, TaskQuery(sort=sort, status=status), old_user)
    finally:
        await database.dispose()
    assert "tasks_pkey" not in plan, plan
    assert "ix_tasks_owner" in plan, plan
