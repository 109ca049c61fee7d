"""List queries at scale: one user with 1,000,000 tasks among 1,000 users with 1,000 each.

Each list filter runs on one pooled connection, first for small users (so that the connection's
prepared statements have run many times with a small user's values, which is when PostgreSQL may
switch a statement to a generic plan), then for the big user. The ratio of the big user's median
time to a small user's is what the README promises stays flat.

    python -m bench.scale [--big 1000000] [--users 1000] [--per-user 1000] [--output docs/benchmarks.md]

The data set lives in its own database (default todo_ledger_bench_scale) and is kept between runs
(it takes a minute or two to build); --rebuild makes it again.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import version
from typing import Any

import asyncpg
from sqlalchemy.engine import make_url

from bench.report import ROOT, write_section
from todo_mcp.models import TaskQuery
from todo_mcp.storage import repository
from todo_mcp.storage.engine import Database
from todo_mcp.storage.migrations import migrate
from todo_mcp.storage.url import parse_database_url

ADMIN_URL = os.environ.get("TODO_MCP_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
BIG = "big-user"
TAGS = ("home", "work", "errands", "health", "finance", "garden", "reading", "travel")
RARE_TAG = "tax"  # on 1 task in 1,000
RARE_WORD = "quarterly"  # in 1 title in 1,000; "invoice" is in 1 in 50
WORDS = ("call", "buy", "fix", "write", "plan", "book", "pay", "clean", "send", "read", "check", "order")

# name -> list_tasks arguments; the first two are the ones whose plans can go wrong.
QUERIES: dict[str, dict[str, Any]] = {
    f"tag={RARE_TAG}": {"tag": RARE_TAG, "status": "all"},
    f"search={RARE_WORD}": {"search": RARE_WORD, "status": "all"},
    "tag=work": {"tag": "work"},
    "search=invoice": {"search": "invoice"},
    "no filter (pending, newest)": {},
    "status=all": {"status": "all"},
    "status=completed": {"status": "completed"},
    "priority=urgent": {"priority": "urgent"},
    "sort=due": {"sort": "due"},
    "sort=priority": {"sort": "priority"},
    "due=today": {"due": "today"},
    "due=overdue": {"due": "overdue"},
    "due=overdue_or_today": {"due": "overdue_or_today"},
    "due=upcoming": {"due": "upcoming"},
    "due=none": {"due": "none"},
    "due_before=2026-06-01": {"due_before": "2026-06-01", "sort": "due"},
    "due_after=2026-06-01": {"due_after": "2026-06-01", "sort": "due"},
}


@dataclass
class Row:
    name: str
    small_ms: float
    big_ms: float
    # Tasks on a small user's page (at most the page size), and the big user's time for a page
    # of that many tasks: the same work but for the size of the table behind it.
    small_rows: int
    big_same_ms: float

    @property
    def ratio(self) -> float:
        return self.big_ms / self.small_ms

    @property
    def same_size_ratio(self) -> float:
        return self.big_same_ms / self.small_ms


def _draw(salt: int, modulus: int) -> str:
    """SQL for a value in [0, modulus), drawn from the row's key independently of every other salt."""
    return f"(abs(hashint8(key * {2 * salt + 7919} + {salt})::bigint) % {modulus})"


def _fill_sql(big: int, users: int, per_user: int) -> str:
    """One INSERT ... SELECT of every task, deterministic (hashes of each row's key).

    Every attribute is drawn on its own (status, priority, due, words, tags do not depend on one
    another). Each user's tasks are spread over the same year and inserted in time order, so the
    ids of the big user and of the others interleave as they would in a live database.
    """
    tags = ", ".join(f"CASE WHEN {_draw(10 + k, 5)} = 0 THEN '{tag}' END" for k, tag in enumerate(TAGS))
    tags += f", CASE WHEN {_draw(30, 1000)} = 0 THEN '{RARE_TAG}' END"
    return f"""
    INSERT INTO tasks (owner_id, title, description, status, priority, due_date, due_at, due_tz, due_sort,
                       tags, version, created_at, updated_at, completed_at)
    SELECT owner, title, CASE WHEN {_draw(1, 3)} = 0 THEN 'notes for ' || title END,
           CASE WHEN done THEN 'completed' ELSE 'pending' END, 1 + {_draw(2, 4)},
           CASE kind WHEN 1 THEN day WHEN 2 THEN (at AT TIME ZONE 'Europe/Paris')::date END,

           CASE WHEN kind = 2 THEN at END,
           CASE WHEN kind = 2 THEN 'Europe/Paris' END,
           CASE kind WHEN 0 THEN '9999-12-31 00:00+00'::timestamptz
                     WHEN 1 THEN day + time '23:59:59' AT TIME ZONE 'UTC' ELSE at END,
           tags, 1, created, created,
           CASE WHEN done THEN created + interval '1 day' END
    FROM (
        SELECT owner, key, {_draw(3, 10)} < 6 AS done, {_draw(4, 3)} AS kind,
               date '2026-01-01' + {_draw(5, 730)}::int - 365 AS day,
               timestamptz '2026-01-01 00:00+00' + ({_draw(5, 730)} - 365) * interval '1 day'
                   + {_draw(6, 96)} * interval '15 minutes' AS at,
               timestamptz '2025-01-01 00:00+00' + pos * interval '365 days' AS created,
               (ARRAY{list(WORDS)!r})[1 + {_draw(7, len(WORDS))}] || ' '
                   || CASE WHEN {_draw(8, 1000)} = 0 THEN '{RARE_WORD} ' ELSE '' END
                   || CASE WHEN {_draw(9, 50)} = 0 THEN 'invoice ' ELSE '' END
                   || 'item ' || n AS title,
               array_remove(ARRAY[{tags}], NULL) AS tags
        FROM (
            SELECT '{BIG}' AS owner, n, n::bigint AS key, n::float8 / {big} AS pos
            FROM generate_series(1, {big}) AS n
            UNION ALL
            SELECT 'small-' || lpad(g::text, 4, '0'), n, g::bigint * 10000000 + n, n::float8 / {per_user}
            FROM generate_series(1, {users}) AS g, generate_series(1, {per_user}) AS n
        ) AS numbered
    ) AS shaped
    ORDER BY created, key
    """


async def build(conn: asyncpg.Connection, big: int, users: int, per_user: int) -> None:
    """Fill the tasks table, with its indexes dropped meanwhile (they are rebuilt at the end).

    One transaction: a build that fails leaves the table as it was, indexes included.
    """
    started = time.perf_counter()
    async with conn.transaction():
        indexes = await conn.fetch(
            "SELECT indexname, indexdef FROM pg_indexes "
            "WHERE tablename = 'tasks' AND indexname <> 'tasks_pkey'"
        )
        for index in indexes:
            await conn.execute(f'DROP INDEX "{index["indexname"]}"')
        await conn.execute("TRUNCATE tasks")
        await conn.execute(_fill_sql(big, users, per_user))
        for index in indexes:
            await conn.execute(index["indexdef"])
    await conn.execute("VACUUM ANALYZE tasks")
    print(f"built {big + users * per_user:,} tasks in {time.perf_counter() - started:.0f} s", file=sys.stderr)


async def bench_database(name: str, rebuild: bool) -> str:
    """The URL of bench database `name`, created when missing (or dropped first, to rebuild) and migrated."""
    admin = await asyncpg.connect(ADMIN_URL)
    try:
        exists = await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if exists and rebuild:
            await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
            exists = None
        if not exists:
            await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    url = make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    await migrate(parse_database_url(url))
    return url


async def _dataset(name: str, big: int, users: int, per_user: int, rebuild: bool) -> str:
    """The URL of the bench database, built when missing or of another size."""
    url = await bench_database(name, rebuild)
    conn = await asyncpg.connect(url)
    try:
        size = f"v2 {big}/{users}/{per_user}"  # v2: every attribute drawn on its own
        stored = await conn.fetchval("SELECT obj_description('tasks'::regclass)")
        if stored != size:
            await build(conn, big, users, per_user)
            await conn.execute(f"COMMENT ON TABLE tasks IS '{size}'")
    finally:
        await conn.close()
    return url


PAGE = 20  # list_tasks' default page size


async def _median_ms(
    db: Database, owners: Callable[[int], str], arguments: dict[str, Any], runs: int
) -> tuple[float, int]:
    """The median time of `runs` calls, and the fewest tasks a page held."""
    times, rows = [], PAGE
    for i in range(runs):
        query = TaskQuery.model_validate({"limit": PAGE, **arguments, "tz": "Europe/Paris"})
        start = time.perf_counter()
        page = await db.run(
            repository.list_tasks, owner=owners(i), query=query, default_tz="UTC", cursor_key=db.cursor_key
        )
        times.append((time.perf_counter() - start) * 1000)
        rows = min(rows, len(page.tasks))
    return statistics.median(times), rows


async def measure(url: str, users: int, runs: int) -> list[Row]:
    """Per query: warm the one connection with small users' calls, then time small and big."""
    db = Database.open(parse_database_url(f"{url}?sslmode=disable"), pool_size=1, statement_timeout=60)

    def small(i: int) -> str:
        return f"small-{1 + (i * 37) % users:04d}"

    rows = []
    try:
        for name, arguments in QUERIES.items():
            await _median_ms(db, small, arguments, 10)  # warm: past PostgreSQL's five custom plans
            small_ms, small_rows = await _median_ms(db, small, arguments, runs)
            big_ms, _ = await _median_ms(db, lambda _: BIG, arguments, runs)
            big_same_ms = big_ms
            if small_rows < PAGE:
                same = {**arguments, "limit": max(small_rows, 1)}
                big_same_ms, _ = await _median_ms(db, lambda _: BIG, same, runs)
            rows.append(Row(name, small_ms, big_ms, small_rows, big_same_ms))
            print(f"{name:32} small {small_ms:7.2f} ms  big {big_ms:7.2f} ms", file=sys.stderr)
    finally:
        await db.dispose()
    return rows


def render(rows: list[Row], *, big: int, users: int, per_user: int, command: str, pg: str) -> str:
    lines = [
        "## List queries at scale",
        "",
        f"Produced by `{command}` (from the repository root) on {datetime.now(UTC):%Y-%m-%d}.",
        "",
        f"One user holds {big:,} tasks; {users:,} other users hold {per_user:,} each. Each query runs",
        "through the repository on one pooled connection: ten calls for small users first (past the",
        "five executions after which PostgreSQL may give a prepared statement a generic plan), then",
        f"the median of the timed calls for small users and for the big user (page size {PAGE}, time",
        "zone Europe/Paris). Where a small user's page holds fewer tasks (a rare tag: one task in a",
        "thousand), the big user's page is full and costs more to build and send, so the big user is",
        "also timed for a page of as many tasks as the small user's (`same page`): that ratio is the",
        "one that measures the size of the table. The goal: at most 1.5× for tag and search, 1.2× for",
        "every other filter, at the same page size.",
        "",
        "| query | tasks on a small user's page | small user (ms) | big user (ms) | big ÷ small "
        "| big user, same page (ms) | same page ÷ small |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r.name} | {r.small_rows} | {r.small_ms:.2f} | {r.big_ms:.2f} | {r.ratio:.2f} "
            f"| {r.big_same_ms:.2f} | **{r.same_size_ratio:.2f}** |"
        )
    lines += [
        "",
        f"Environment: Python {platform.python_version()}, PostgreSQL {pg} on 127.0.0.1, "
        f"SQLAlchemy {version('sqlalchemy')}, asyncpg {version('asyncpg')}.",
        "",
    ]
    return "\n".join(lines)


async def _server_version(url: str) -> str:
    conn = await asyncpg.connect(url)
    try:
        return str(await conn.fetchval("SHOW server_version"))
    finally:
        await conn.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__.split("\n")[0])
    parser.add_argument("--big", type=int, default=1_000_000, help="tasks of the big user")
    parser.add_argument("--users", type=int, default=1000, help="number of small users")
    parser.add_argument("--per-user", type=int, default=1000, help="tasks of each small user")
    parser.add_argument("--runs", type=int, default=15, help="timed calls per query and user kind")
    parser.add_argument("--database", default="todo_ledger_bench_scale", help="database kept between runs")
    parser.add_argument("--rebuild", action="store_true", help="build the data set again")
    parser.add_argument("--output", default="docs/benchmarks.md", help="markdown file to update; - for none")
    args = parser.parse_args(argv)

    async def run() -> tuple[list[Row], str]:
        url = await _dataset(args.database, args.big, args.users, args.per_user, args.rebuild)
        return await measure(url, args.users, args.runs), await _server_version(url)

    rows, pg = asyncio.run(run())
    shown = ["python -m bench.scale", *(argv if argv is not None else sys.argv[1:])]
    report = render(
        rows, big=args.big, users=args.users, per_user=args.per_user, command=" ".join(shown), pg=pg
    )
    print(report)
    if args.output != "-":
        write_section("scale", report, ROOT / args.output)


if __name__ == "__main__":
    main()
