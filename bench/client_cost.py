"""What the official Python SDK client adds to a list_tasks call, against a bare MCPServer's tool.

The SDK client validates every structured result against the tool's output schema. This measures
the time it adds per call: its median latency minus a raw JSON-RPC client's (`bench.rawclient`),
both over Streamable HTTP on loopback (2026-07-28 protocol), for

- todo-ledger's list_tasks (a page of 20 tasks, its declared output schema), and
- a bare MCPServer tool that returns the very same page as a plain dict.

The ratio of the two is the cost of todo-ledger's output schema to its clients.

    python -m bench.client_cost [--calls 300] [--output docs/benchmarks.md]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

from mcp import Client

from bench.bare import bare_server, running
from bench.rawclient import RawClient
from bench.report import ROOT, write_section
from tests.http_helpers import SCRIPT, clean_env, free_port

ROUNDS = 5
OURS = "todo-ledger list_tasks"
BARE = "bare MCPServer, same page as a dict"


async def _median_ms(call: Callable[[], Awaitable[Any]], calls: int) -> float:
    for _ in range(20):
        await call()
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        await call()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


class Clients:
    """A raw client and an SDK client of one server, both connected for the whole run."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.stack = AsyncExitStack()
        self.raw = RawClient("127.0.0.1", port, modern=True)
        self.sdk = Client(f"http://127.0.0.1:{port}/mcp")

    async def __aenter__(self) -> Clients:
        await self.raw.connect()
        self.stack.push_async_callback(self.raw.close)
        await self.stack.enter_async_context(self.sdk)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stack.aclose()

    async def medians(self, calls: int) -> tuple[float, float]:
        """(raw client median, SDK client median) of `calls` list_tasks calls each, in ms."""
        raw_ms = await _median_ms(lambda: self.raw.call_tool("list_tasks", {}), calls)
        sdk_ms = await _median_ms(lambda: self.sdk.call_tool("list_tasks", {}), calls)
        return raw_ms, sdk_ms


async def _seed(port: int) -> dict[str, Any]:
    """25 tasks added to todo-ledger, and its first page."""
    seed = await RawClient("127.0.0.1", port, modern=True).connect()
    try:
        for n in range(25):
            await seed.call_tool(
                "add_task",
                {
                    "title": f"Call the plumber about the kitchen tap ({n})",
                    "description": "Ask for a quote first" if n % 2 else None,
                    "priority": ("low", "medium", "high", "urgent")[n % 4],
                    "tags": ["home", "errands"][: 1 + n % 2],
                    "due": f"2026-12-{1 + n % 28:02d}",
                },
            )
        return await seed.call_tool("list_tasks", {})
    finally:
        await seed.close()


Medians = tuple[float, float]


async def measure(calls: int, workdir: Path) -> dict[str, list[Medians]]:
    """Seed todo-ledger with 25 tasks, serve its first page from the bare server too, then time
    both servers in alternating rounds (both run all along, so a shared machine's drift cancels)."""
    ours_port, bare_port = free_port(), free_port()
    env = clean_env(
        TODO_MCP_DATA_DIR=str(workdir / "data"),
        TODO_MCP_RATE_LIMIT_PER_MINUTE="0",
        TODO_MCP_LOG_LEVEL="WARNING",
    )
    rounds: dict[str, list[Medians]] = {OURS: [], BARE: []}
    with running([str(SCRIPT), "serve", "--no-auth", "--port", str(ours_port)], env, ours_port):
        page = await _seed(ours_port)
        with bare_server(page, workdir, bare_port, dict(os.environ)):
            async with Clients(ours_port) as ours, Clients(bare_port) as bare:
                for _ in range(ROUNDS):
                    rounds[OURS].append(await ours.medians(calls // ROUNDS))
                    rounds[BARE].append(await bare.medians(calls // ROUNDS))
    return rounds


def _adds(medians: Medians) -> float:
    raw, sdk = medians
    return sdk - raw


def render(rounds: dict[str, list[Medians]], *, calls: int, command: str) -> str:
    ratios = [_adds(ours) / _adds(bare) for ours, bare in zip(rounds[OURS], rounds[BARE], strict=True)]
    lines = [
        "## What the SDK client adds per call",
        "",
        f"Produced by `{command}` (from the repository root) on {datetime.now(UTC):%Y-%m-%d}.",
        "",
        "The official Python SDK client validates each structured result against the tool's output",
        "schema. Sequential list_tasks calls (a page of 20 tasks) over Streamable HTTP on loopback,",
        "with the SDK client and with a raw JSON-RPC client (`bench/rawclient.py`); what the SDK adds",
        "is the difference of their medians. The bare server (`bench/bare.py`) returns the same page as",
        f"a plain dict. Both servers run side by side and are timed in {ROUNDS} alternating rounds of",
        f"{calls // ROUNDS} calls per client, so that a shared machine's drift cancels; the figures are",
        "medians over the rounds. Goal: at most 1.5×.",
        "",
        "| server | raw client (ms) | SDK client (ms) | SDK adds (ms) |",
        "|---|---:|---:|---:|",
    ]
    for name, medians in rounds.items():
        raw = statistics.median(r for r, _ in medians)
        sdk = statistics.median(s for _, s in medians)
        adds = statistics.median(_adds(m) for m in medians)
        lines.append(f"| {name} | {raw:.2f} | {sdk:.2f} | {adds:.2f} |")
    shown = ", ".join(f"{ratio:.2f}" for ratio in ratios)
    lines += [
        "",
        f"What the SDK adds for todo-ledger ÷ for the bare server: **{statistics.median(ratios):.2f}**",
        f"(median of the rounds: {shown}).",
        "",
        f"Environment: Python {platform.python_version()}, mcp {version('mcp')}, {os.cpu_count()} CPUs.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.client_cost", description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=300, help="timed calls per client and server")
    parser.add_argument("--output", default="docs/benchmarks.md", help="markdown file to update; - for none")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as workdir:
        rounds = asyncio.run(measure(args.calls, Path(workdir)))
    shown = ["python -m bench.client_cost", *(argv if argv is not None else sys.argv[1:])]
    report = render(rounds, calls=args.calls, command=" ".join(shown))
    print(report)
    if args.output != "-":
        write_section("client-cost", report, ROOT / args.output)


if __name__ == "__main__":
    main()
