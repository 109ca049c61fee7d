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
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

import httpx2
from mcp import Client

from bench.rawclient import RawClient
from bench.report import ROOT, write_section
from tests.http_helpers import SCRIPT, clean_env, free_port

BARE_SERVER = '''
import json, sys
from typing import Any
import uvicorn
from mcp.server import MCPServer

PAGE = json.loads(open(sys.argv[1]).read())
mcp = MCPServer("bare")

@mcp.tool()
async def list_tasks() -> dict[str, Any]:
    """The same page, as a plain dict."""
    return PAGE

uvicorn.run(mcp.streamable_http_app(), host="127.0.0.1", port=int(sys.argv[2]), log_level="warning")
'''


@contextmanager
def _process(args: list[str], env: dict[str, str], port: int) -> Iterator[None]:
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                httpx2.post(f"http://127.0.0.1:{port}/mcp", json={}, timeout=1)
                break
            except httpx2.TransportError:
                time.sleep(0.05)  # polling interval of a bounded start-up wait
        else:
            raise RuntimeError(f"{args[0]} did not listen on {port} within 30 s")
        yield
    finally:
        proc.terminate()
        proc.wait(timeout=15)


async def _median_ms(call: Callable[[], Awaitable[Any]], calls: int) -> float:
    for _ in range(20):
        await call()
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        await call()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


async def _overhead(port: int, calls: int) -> tuple[float, float]:
    """(raw client median, SDK client median) of list_tasks on the server at `port`, in ms."""
    raw = await RawClient("127.0.0.1", port, modern=True).connect()
    try:
        raw_ms = await _median_ms(lambda: raw.call_tool("list_tasks", {}), calls)
    finally:
        await raw.close()
    async with Client(f"http://127.0.0.1:{port}/mcp") as sdk:
        sdk_ms = await _median_ms(lambda: sdk.call_tool("list_tasks", {}), calls)
    return raw_ms, sdk_ms


async def measure(calls: int, workdir: Path) -> dict[str, tuple[float, float]]:
    """Seed todo-ledger with 25 tasks, take its first page, then time both servers."""
    ours_port, bare_port = free_port(), free_port()
    env = clean_env(
        TODO_MCP_DATA_DIR=str(workdir / "data"),
        TODO_MCP_RATE_LIMIT_PER_MINUTE="0",
        TODO_MCP_LOG_LEVEL="WARNING",
    )
    with _process([str(SCRIPT), "serve", "--no-auth", "--port", str(ours_port)], env, ours_port):
        seed = await RawClient("127.0.0.1", ours_port, modern=True).connect()
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
        page = await seed.call_tool("list_tasks", {})
        await seed.close()
        results = {"todo-ledger list_tasks": await _overhead(ours_port, calls)}
    page_file = workdir / "page.json"
    page_file.write_text(json.dumps(page))
    script = workdir / "bare.py"
    script.write_text(BARE_SERVER)
    with _process([sys.executable, str(script), str(page_file), str(bare_port)], dict(os.environ), bare_port):
        results["bare MCPServer, same page as a dict"] = await _overhead(bare_port, calls)
    return results


def render(results: dict[str, tuple[float, float]], *, calls: int, command: str) -> str:
    (ours_raw, ours_sdk), (bare_raw, bare_sdk) = results.values()
    ratio = (ours_sdk - ours_raw) / (bare_sdk - bare_raw)
    lines = [
        "## What the SDK client adds per call",
        "",
        f"Produced by `{command}` (from the repository root) on {datetime.now(UTC):%Y-%m-%d}.",
        "",
        "The official Python SDK client validates each structured result against the tool's output",
        "schema. Median of "
        f"{calls} sequential list_tasks calls (a page of 20 tasks) over Streamable HTTP on loopback,",
        "with the SDK client and with a raw JSON-RPC client (`bench/rawclient.py`); what the SDK adds",
        "is the difference. The bare server returns the same page as a plain dict. Goal: at most 1.5×.",
        "",
        "| server | raw client (ms) | SDK client (ms) | SDK adds (ms) |",
        "|---|---:|---:|---:|",
    ]
    for name, (raw, sdk) in results.items():
        lines.append(f"| {name} | {raw:.2f} | {sdk:.2f} | {sdk - raw:.2f} |")
    lines += [
        "",
        f"What the SDK adds for todo-ledger ÷ for the bare server: **{ratio:.2f}**.",
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
        results = asyncio.run(measure(args.calls, Path(workdir)))
    shown = ["python -m bench.client_cost", *(argv if argv is not None else sys.argv[1:])]
    report = render(results, calls=args.calls, command=" ".join(shown))
    print(report)
    if args.output != "-":
        write_section("client-cost", report, ROOT / args.output)


if __name__ == "__main__":
    main()
