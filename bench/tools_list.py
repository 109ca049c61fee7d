"""What the tool list costs an agent's context: bytes of the complete `tools/list` response.

Run from the repository root (no database server needed):

    python -m bench.tools_list [--output docs/benchmarks.md]

Measures the response as the real SDK client receives it over the in-memory transport, serialised
as compact JSON, in total and per tool, and writes the table to its section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

from mcp import Client

from bench.report import ROOT, write_section
from todo_mcp.config import load_settings
from todo_mcp.identity import local_identity
from todo_mcp.storage.engine import Database
from todo_mcp.storage.migrations import migrate
from todo_mcp.storage.url import sqlite_target
from todo_mcp.tools.server import build_server

BUDGET = 12_000


def compact(data: Any) -> int:
    return len(json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode())


async def tools_list(read_only: bool) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as scratch:
        target = sqlite_target(Path(scratch) / "tasks.sqlite3")
        await migrate(target)
        db = Database.open(target)
        try:
            settings = load_settings(TODO_MCP_READ_ONLY=read_only)
            server = build_server(db, settings=settings, identity=lambda: local_identity("bench"))
            async with Client(server) as client:
                result = await client.list_tools()
        finally:
            await db.dispose()
    data: dict[str, Any] = result.model_dump(mode="json", by_alias=True, exclude_none=True)
    return data


def render(full: dict[str, Any], read_only: dict[str, Any]) -> str:
    lines = [
        "## Size of the tool list",
        "",
        f"Produced by `python -m bench.tools_list` on {datetime.now(UTC):%Y-%m-%d} (mcp {version('mcp')}).",
        "",
        "The complete `tools/list` response as the SDK client receives it, in compact JSON: what every",
        f"agent pays in context before its first call. Budget: {BUDGET:,} bytes (the official Todoist",
        "server spends 41 KB on its ten task tools). `tests/test_tools.py` holds the same bound.",
        "",
        "| tool | bytes | input schema | output schema |",
        "|---|---:|---:|---:|",
    ]
    for tool in full["tools"]:
        lines.append(
            f"| {tool['name']} | {compact(tool):,} | {compact(tool['inputSchema']):,} "
            f"| {compact(tool.get('outputSchema', {})):,} |"
        )
    lines += [
        f"| **whole response** | **{compact(full):,}** | | |",
        f"| whole response with TODO_MCP_READ_ONLY=true | {compact(read_only):,} | | |",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.tools_list", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--output", default="docs/benchmarks.md", help="markdown file whose section to rewrite; - for none"
    )
    args = parser.parse_args(argv)
    full, read_only = asyncio.run(tools_list(False)), asyncio.run(tools_list(True))
    report = render(full, read_only)
    print(report)
    if args.output != "-":
        path = ROOT / args.output
        write_section("tools-list", report, path)
        print(f"wrote {path}", file=sys.stderr)
    if compact(full) >= BUDGET:
        sys.exit(f"tools/list is {compact(full):,} bytes, over the {BUDGET:,} budget")


if __name__ == "__main__":
    main()
