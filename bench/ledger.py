"""Tools against a ledger of 1,000,000 changes: each as fast as against one of 1,000.

Two users hold the same 200 tasks each; one has 1,000 recorded changes, the other 1,000,000 (plus
one change item per change, as a write of one task leaves). Every tool runs through the repository
on one pooled connection, alternating between the two users; the median of each is compared.

    python -m bench.ledger [--changes 1000000] [--runs 40] [--output docs/benchmarks.md]

The data set lives in its own database (default todo_ledger_bench_ledger) and is kept between
runs; --rebuild makes it again.
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg

from bench.report import ROOT, write_section
from bench.scale import _server_version, bench_database
from todo_mcp.change_models import ChangeQuery, UndoRequest
from todo_mcp.identity import Actor
from todo_mcp.models import TaskCreate, TaskPatch, TaskQuery
from todo_mcp.storage import repository
from todo_mcp.storage.engine import Database
from todo_mcp.storage.url import parse_database_url

SMALL, BIG = "ledger-small", "ledger-big"
TASKS = 200
SNAPSHOT = """jsonb_build_object('title', 'task ' || {task}, 'description', NULL, 'status', 'pending',
    'priority', 2, 'due_date', NULL, 'due_at', NULL, 'due_tz', NULL,
    'due_sort', '9999-12-31T00:00:00+00:00', 'tags', '[]'::jsonb, 'repeat', NULL, 'repeat_spec', NULL,
    'completed_at', NULL, 'deleted_at', NULL, 'version', {version})"""


@dataclass
class Row:
    name: str
    small_ms: float
    big_ms: float

    @property
    def ratio(self) -> float:
        return self.big_ms / self.small_ms


def _fill_sql(owner: str, changes: int) -> list[str]:
    """The owner's tasks, then `changes` changes of one task each, spread over the last 80 days."""
    return [
        f"""INSERT INTO tasks (owner_id, title, status, priority, due_sort, tags, version, created_at,
                updated_at)
            SELECT '{owner}', 'task ' || n, 'pending', 2, '9999-12-31 00:00+00', '{{}}', 1,
                now() - interval '90 days', now() - interval '90 days'
            FROM generate_series(1, {TASKS}) AS n""",
        f"""INSERT INTO changes (owner_id, at, client, via)
            SELECT '{owner}', now() - interval '80 days' + n * (interval '80 days' / {changes}), 'bench',
                'update_task'
            FROM generate_series(1, {changes}) AS n""",
        f"""INSERT INTO change_tasks (change_id, task_id, owner_id, before, after)
            SELECT c.id, t.id, c.owner_id, {SNAPSHOT.format(task="t.n", version="c.rn")},
                {SNAPSHOT.format(task="t.n", version="c.rn + 1")}
            FROM (SELECT id, owner_id, row_number() OVER (ORDER BY id) AS rn FROM changes
                  WHERE owner_id = '{owner}') AS c
            JOIN (SELECT id, row_number() OVER (ORDER BY id) AS n FROM tasks WHERE owner_id = '{owner}') AS t
                ON t.n = 1 + c.rn % {TASKS}""",
    ]


async def _dataset(name: str, changes: int, rebuild: bool) -> str:
    url = await bench_database(name, rebuild)
    conn = await asyncpg.connect(url)
    try:
        size = f"ledger v1 {changes}"
        if await conn.fetchval("SELECT obj_description('changes'::regclass)") != size:
            started = time.perf_counter()
            await conn.execute("TRUNCATE tasks, changes, change_tasks")
            for statement in [*_fill_sql(SMALL, 1000), *_fill_sql(BIG, changes)]:
                await conn.execute(statement)
            await conn.execute("VACUUM ANALYZE")
            await conn.execute(f"COMMENT ON TABLE changes IS '{size}'")
            print(
                f"built {changes + 1000:,} changes in {time.perf_counter() - started:.0f} s", file=sys.stderr
            )
    finally:
        await conn.close()
    return url


Call = Callable[[Database, str, int], Awaitable[Any]]


async def _first_task(db: Database, owner: str) -> int:
    page = await db.run(
        repository.list_tasks,
        owner=owner,
        query=TaskQuery(sort="oldest", limit=1),
        default_tz="UTC",
        cursor_key=db.cursor_key,
    )
    return page.tasks[0].id


def _calls(tasks: dict[str, int]) -> dict[str, Call]:
    """Each tool's repository call, for an owner and the run's number."""

    def actor(owner: str) -> Actor:
        return Actor(owner, via="bench", client="bench")

    async def changes_page(db: Database, owner: str, _: int) -> Any:
        return await db.run(
            repository.list_changes, owner=owner, query=ChangeQuery(), cursor_key=db.cursor_key
        )

    async def history(db: Database, owner: str, _: int) -> Any:
        query = ChangeQuery(task_id=tasks[owner] + 1, limit=5)  # both histories fill the page
        return await db.run(repository.list_changes, owner=owner, query=query, cursor_key=db.cursor_key)

    return {
        "add_task": lambda db, owner, i: db.run(
            repository.create_task, actor=actor(owner), data=TaskCreate(title=f"new {i}")
        ),
        "list_tasks": lambda db, owner, _: db.run(
            repository.list_tasks, owner=owner, query=TaskQuery(), default_tz="UTC", cursor_key=db.cursor_key
        ),
        "get_task": lambda db, owner, _: db.run(repository.get_task, owner=owner, task_id=tasks[owner]),
        "update_task": lambda db, owner, i: db.run(
            repository.update_task, actor=actor(owner), task_id=tasks[owner], patch=TaskPatch(title=f"t {i}")
        ),
        "complete_task": lambda db, owner, i: db.run(
            repository.complete_tasks, actor=actor(owner), ids=[tasks[owner] + 2 + i], default_tz="UTC"
        ),
        "delete_task": lambda db, owner, i: db.run(
            repository.delete_tasks, actor=actor(owner), ids=[tasks[owner] + 100 + i]
        ),
        "list_changes": changes_page,
        "list_changes task_id": history,
        "undo_changes dry_run": lambda db, owner, _: db.run(
            repository.undo_changes, actor=actor(owner), request=UndoRequest(last=3, dry_run=True)
        ),
        "undo_changes": lambda db, owner, _: db.run(
            repository.undo_changes, actor=actor(owner), request=UndoRequest()
        ),
    }


async def measure(url: str, runs: int) -> list[Row]:
    db = Database.open(parse_database_url(f"{url}?sslmode=disable"), pool_size=1, statement_timeout=60)
    try:
        tasks = {owner: await _first_task(db, owner) for owner in (SMALL, BIG)}
        rows = []
        for name, call in _calls(tasks).items():
            times: dict[str, list[float]] = {SMALL: [], BIG: []}
            for i in range(runs + 3):
                for owner in (SMALL, BIG):
                    start = time.perf_counter()
                    await call(db, owner, i)
                    if i >= 3:  # the first calls prepare the statement
                        times[owner].append((time.perf_counter() - start) * 1000)
            row = Row(name, statistics.median(times[SMALL]), statistics.median(times[BIG]))
            rows.append(row)
            print(
                f"{name:24} 1k {row.small_ms:6.2f} ms  1M {row.big_ms:6.2f} ms  {row.ratio:.2f}",
                file=sys.stderr,
            )
    finally:
        await db.dispose()
    return rows


def render(rows: list[Row], *, changes: int, command: str, pg: str) -> str:
    lines = [
        "## Tools with a large ledger",
        "",
        f"Produced by `{command}` (from the repository root) on {datetime.now(UTC):%Y-%m-%d}.",
        "",
        f"Two users with {TASKS} tasks each; one has 1,000 recorded changes, the other {changes:,}. Each",
        "tool runs through the repository on one pooled connection, alternating between the two users",
        "(undo_changes undoes that user's last change each time, walking back). Median per user; the",
        "goal is a ratio of at most 1.2 for every tool.",
        "",
        f"| tool | 1,000 changes (ms) | {changes:,} changes (ms) | ratio |",
        "|---|---:|---:|---:|",
    ]
    lines += [f"| {r.name} | {r.small_ms:.2f} | {r.big_ms:.2f} | {r.ratio:.2f} |" for r in rows]
    lines += ["", f"Environment: Python {platform.python_version()}, PostgreSQL {pg} on 127.0.0.1.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.ledger", description=__doc__.split("\n")[0])
    parser.add_argument("--changes", type=int, default=1_000_000, help="changes of the big ledger")
    parser.add_argument("--runs", type=int, default=40, help="timed calls per tool and user")
    parser.add_argument("--database", default="todo_ledger_bench_ledger", help="database kept between runs")
    parser.add_argument("--rebuild", action="store_true", help="build the data set again")
    parser.add_argument("--output", default="docs/benchmarks.md", help="markdown file to update; - for none")
    args = parser.parse_args(argv)

    async def run() -> tuple[list[Row], str]:
        url = await _dataset(args.database, args.changes, args.rebuild)
        return await measure(url, args.runs), await _server_version(url)

    rows, pg = asyncio.run(run())
    shown = ["python -m bench.ledger", *(argv if argv is not None else sys.argv[1:])]
    report = render(rows, changes=args.changes, command=" ".join(shown), pg=pg)
    print(report)
    if args.output != "-":
        write_section("ledger", report, ROOT / args.output)


if __name__ == "__main__":
    main()
