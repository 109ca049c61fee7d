"""Latency per tool when each database round trip costs a region-away delay; writes docs/benchmarks.md.

Every operation goes through the real in-memory MCP client, the server and a pooled engine whose
connection passes through `tests.wireproxy.WireProxy`, which counts client→server turns and holds
each turn back by `--delay-ms` (one simulated round-trip time). Each operation is warmed up once
(statement preparation), then timed `--iterations` times with fresh arguments, locally (no delay)
and with the delay.

    python -m bench.round_trips [--delay-ms 20] [--iterations 20] [--output docs/benchmarks.md]

PostgreSQL: TODO_MCP_TEST_PG (default postgresql://postgres@127.0.0.1:5432/postgres); a database
of its own is created and dropped.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

import asyncpg
from mcp import Client
from mcp.types import CallToolResult, GetPromptResult, ReadResourceResult
from sqlalchemy.engine import make_url

from bench.report import write_section
from tests.wireproxy import WireProxy
from todo_mcp.config import load_settings
from todo_mcp.identity import local_identity
from todo_mcp.storage.backends import PostgresBackend
from todo_mcp.storage.engine import Database
from todo_mcp.storage.migrations import migrate
from todo_mcp.storage.url import parse_database_url
from todo_mcp.tools.server import build_server

ROOT = Path(__file__).resolve().parents[1]
ADMIN_URL = os.environ.get("TODO_MCP_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
OWNER = "bench-user"
# Timed once more each right after the pooled connection was dropped.
RECONNECTS = ("get_task", "complete_task (3 ids)")
RECONNECTED = "first call on a new connection"

Result = CallToolResult | ReadResourceResult | GetPromptResult
# An operation gets the iteration number, so that each timed call sends arguments of its own.
Operation = Callable[[int], Awaitable[Result]]


@dataclass
class Sample:
    turns: list[int] = field(default_factory=list)
    local_ms: list[float] = field(default_factory=list)
    delayed_ms: list[float] = field(default_factory=list)


def _check(name: str, result: Result) -> None:
    if isinstance(result, CallToolResult) and result.is_error and "conflict" not in name:
        raise RuntimeError(f"{name} failed: {result.content}")


def _data(result: Result) -> dict[str, Any]:
    assert isinstance(result, CallToolResult)
    data: dict[str, Any] | None = result.structured_content
    if result.is_error or data is None:
        raise RuntimeError(f"call failed: {result.content}")
    return data


# Creations made up front for undo_changes to undo, one per call (more than the calls it makes).
UNDOABLE = 120


async def _operations(c: Client) -> dict[str, Operation]:
    async def add(**arguments: Any) -> dict[str, Any]:
        return _data(await c.call_tool("add_task", arguments))

    seeded = [
        await add(title=f"seed {n}", priority="high", tags=["home"], due="2020-01-01", description="milk")
        for n in range(12)
    ]
    ids = [task["id"] for task in seeded]
    page2 = _data(await c.call_tool("list_tasks", {"limit": 2}))["next_cursor"]
    checked_id = ids[0]
    versions = {"checked": _data(await c.call_tool("get_task", {"task_id": checked_id}))["version"]}
    run = uuid.uuid4().hex[:8]

    def tool(name: str, arguments: Callable[[int], dict[str, Any]]) -> Operation:
        return lambda i: c.call_tool(name, arguments(i))

    weekly = {"id": (await add(title="weekly", due="2026-12-03", repeat="FREQ=WEEKLY;BYDAY=MO,TH"))["id"]}

    undoable = [(await add(title=f"undo me {n}"))["change_id"] for n in range(UNDOABLE)]

    async def undo_one(i: int) -> Result:
        return await c.call_tool("undo_changes", {"change_ids": [undoable.pop()]})

    async def complete_repeating(i: int) -> Result:
        result = await c.call_tool("complete_task", {"task_ids": [weekly["id"]]})
        weekly["id"] = _data(result)["results"][0]["next"]["id"]
        return result

    async def update_checked(i: int) -> Result:
        result = await c.call_tool(
            "update_task",
            {"task_id": checked_id, "title": f"checked {i}", "expected_version": versions["checked"]},
        )
        versions["checked"] = _data(result)["version"]
        return result

    return {
        "add_task": tool("add_task", lambda i: {"title": f"bench {i}", "tags": ["bench"]}),
        "add_task (client_request_id)": tool(
            "add_task", lambda i: {"title": "keyed", "client_request_id": f"{run}-{i}"}
        ),
        "add_task (retry, same client_request_id)": tool(
            "add_task", lambda i: {"title": "keyed", "client_request_id": f"{run}-0"}
        ),
        "list_tasks": tool("list_tasks", lambda i: {"limit": 10 + i % 5}),
        "list_tasks (status, priority, tag)": tool(
            "list_tasks", lambda i: {"status": "all", "priority": "high", "tag": "home"}
        ),
        "list_tasks (search)": tool("list_tasks", lambda i: {"search": "milk" if i % 2 else "seed"}),
        "list_tasks (due=overdue_or_today)": tool(
            "list_tasks", lambda i: {"due": "overdue_or_today", "tz": "Europe/Paris" if i % 2 else "UTC"}
        ),
        "list_tasks (cursor, page 2)": tool("list_tasks", lambda i: {"limit": 2, "cursor": page2}),
        "get_task": tool("get_task", lambda i: {"task_id": ids[i % len(ids)]}),
        "update_task": tool(
            "update_task", lambda i: {"task_id": ids[1], "priority": ("low", "urgent")[i % 2]}
        ),
        "update_task (expected_version)": update_checked,
        "update_task (version conflict)": tool(
            "update_task", lambda i: {"task_id": ids[2], "title": "stale", "expected_version": 1}
        ),
        "complete_task": tool("complete_task", lambda i: {"task_ids": [ids[3 + i % 3]]}),
        "complete_task (3 ids)": tool("complete_task", lambda i: {"task_ids": ids[6:9]}),
        "delete_task": tool("delete_task", lambda i: {"task_ids": [ids[9]]}),
        "delete_task (restore)": tool("delete_task", lambda i: {"task_ids": [ids[9]], "restore": True}),
        "delete_task (3 ids)": tool("delete_task", lambda i: {"task_ids": ids[9:12]}),
        "delete_task (restore, 3 ids)": tool(
            "delete_task", lambda i: {"task_ids": ids[9:12], "restore": True}
        ),
        "complete_task (repeating: makes the next occurrence)": complete_repeating,
        "list_changes": tool("list_changes", lambda i: {"limit": 10 + i % 5}),
        "list_changes (one task's history)": tool("list_changes", lambda i: {"task_id": ids[1 + i % 2]}),
        "undo_changes (dry run, last 3)": tool("undo_changes", lambda i: {"last": 3, "dry_run": True}),
        "undo_changes (one change, by id)": undo_one,
        "resource task://{id}": lambda i: c.read_resource(f"task://{ids[i % len(ids)]}"),
        "prompt plan_day": lambda i: c.get_prompt("plan_day", {"tz": "Asia/Tokyo" if i % 2 else "UTC"}),
    }


async def _timed(proxy: WireProxy, name: str, operation: Operation, i: int) -> tuple[int, float]:
    with proxy.measure() as measurement:
        start = time.perf_counter()
        result = await operation(i)
        elapsed = (time.perf_counter() - start) * 1000
    _check(name, result)
    return measurement.count, elapsed


async def _after_hang_up(
    proxy: WireProxy, db: Database, name: str, operation: Operation
) -> tuple[int, float]:
    """The operation right after the server side hung up on the idle pooled connection."""
    closed = asyncio.Event()
    assert isinstance(db.backend, PostgresBackend)
    (driver,) = db.backend.pool.idle()
    driver.add_termination_listener(lambda _connection: closed.set())
    await proxy.drop_all()
    await asyncio.wait_for(closed.wait(), 10)
    return await _timed(proxy, name, operation, 0)


async def measure(delay_ms: float, iterations: int) -> tuple[dict[str, Sample], str]:
    admin_url = ADMIN_URL.replace("postgresql+asyncpg", "postgresql")
    name = f"todo_mcp_bench_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(admin_url)
    server_version = await admin.fetchval("SHOW server_version")
    await admin.execute(f'CREATE DATABASE "{name}"')
    upstream = make_url(admin_url).set(database=name)
    try:
        await migrate(parse_database_url(upstream.render_as_string(hide_password=False)))
        async with WireProxy(upstream.port or 5432, upstream_host=upstream.host or "127.0.0.1") as proxy:
            proxied = upstream.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
            db = Database.open(parse_database_url(f"{proxied}?sslmode=disable"), pool_size=1)
            principal = local_identity(OWNER)
            server = build_server(
                db, settings=load_settings(TODO_MCP_TIMEZONE="UTC"), identity=lambda: principal
            )
            samples: dict[str, Sample] = {}
            try:
                async with Client(server) as c:
                    operations = await _operations(c)
                    for op_name, operation in operations.items():
                        samples[op_name] = Sample()
                        _check(op_name, await operation(0))
                    for delay, field_name in ((0.0, "local_ms"), (delay_ms / 1000, "delayed_ms")):
                        proxy.turn_delay = delay
                        for i in range(1, iterations + 1):
                            for op_name, operation in operations.items():
                                turns, elapsed = await _timed(proxy, op_name, operation, i)
                                samples[op_name].turns.append(turns)
                                getattr(samples[op_name], field_name).append(elapsed)
                    for op_name in RECONNECTS:
                        sample = samples[f"{op_name}, {RECONNECTED}"] = Sample()
                        for delay, field_name in ((0.0, "local_ms"), (delay_ms / 1000, "delayed_ms")):
                            proxy.turn_delay = delay
                            for _ in range(max(3, iterations // 4)):
                                turns, elapsed = await _after_hang_up(proxy, db, op_name, operations[op_name])
                                sample.turns.append(turns)
                                getattr(sample, field_name).append(elapsed)
            finally:
                await db.dispose()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
    return samples, str(server_version)


def _turns(values: list[int]) -> str:
    low, high = min(values), max(values)
    return str(low) if low == high else f"{low}-{high}"


def render(samples: dict[str, Sample], *, delay_ms: float, iterations: int, command: str, pg: str) -> str:
    delay = f"{delay_ms:g}"
    lines = [
        "## Database round trips per operation",
        "",
        f"Produced by `{command}` (from the repository root) on {datetime.now(UTC):%Y-%m-%d}.",
        "",
        "Each operation runs through the real in-memory MCP client and server, and a pooled engine whose",
        "connection passes through a TCP proxy (`tests/wireproxy.py`) that counts client→server turns",
        f"(round trips) and, for the last column, holds every turn back by {delay} ms: a client one",
        "region away from its Neon database. Every operation was warmed up once (the first use of a",
        "statement on a connection adds one turn to prepare it); each timed call sends arguments of its",
        f"own. p50 of {iterations} calls per column; latency includes the MCP client and server.",
        "",
        f"| operation | database round trips | p50 local (ms) | p50 at {delay} ms per round trip (ms) |",
        "|---|---:|---:|---:|",
    ]
    for name, sample in samples.items():
        lines.append(
            f"| {name} | {_turns(sample.turns)} | {statistics.median(sample.local_ms):.1f} "
            f"| {statistics.median(sample.delayed_ms):.1f} |"
        )
    lines += [
        "",
        f'The rows "{RECONNECTED}" show the price of a connection that the server closed while it',
        "sat idle (Neon does this): the pool notices at checkout, without a round trip, and opens a new",
        "connection, and the call succeeds. Here the new connection costs one round trip (startup with",
        "trust authentication); SCRAM password authentication adds two and TLS to Neon one to three",
        "more. Then the statement is prepared (one round trip) and run (one), and nothing else: the id",
        "lists of complete_task and delete_task travel as `text[]`, which asyncpg encodes natively (a",
        "`bigint[]` parameter would make it look the type up on each new connection: six round trips).",
        "",
        f"Environment: Python {platform.python_version()}, PostgreSQL {pg} on 127.0.0.1, "
        f"SQLAlchemy {version('sqlalchemy')}, asyncpg {version('asyncpg')}, mcp {version('mcp')}.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.round_trips", description=__doc__.split("\n")[0])
    parser.add_argument("--delay-ms", type=float, default=20.0, help="simulated round-trip time (ms)")
    parser.add_argument("--iterations", type=int, default=20, help="timed calls per operation and column")
    parser.add_argument(
        "--output", default="docs/benchmarks.md", help="markdown file whose section to rewrite; - for none"
    )
    args = parser.parse_args(argv)

    samples, pg = asyncio.run(measure(args.delay_ms, args.iterations))
    shown = ["python -m bench.round_trips", *(argv if argv is not None else sys.argv[1:])]
    report = render(
        samples, delay_ms=args.delay_ms, iterations=args.iterations, command=" ".join(shown), pg=pg
    )
    print(report)
    if args.output != "-":
        path = ROOT / args.output
        write_section("round-trips", report, path)
        print(f"wrote {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
