"""Cold start over stdio: spawn to the first `tools/list` reply, and memory, against a bare MCPServer.

What Claude Desktop does on every launch: start the command, send `initialize`, then `tools/list`.
The server runs on its embedded SQLite default (an existing, migrated file: the usual start); the
bare server is an `MCPServer` with one tool and nothing else, the floor for any server on this SDK.

    python -m bench.cold_start [--runs 15] [--output docs/benchmarks.md]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

from bench.report import ROOT, write_section

BARE = """
from mcp.server import MCPServer

server = MCPServer("bare")


@server.tool()
def ping() -> str:
    \"\"\"Answer pong.\"\"\"
    return "pong"


server.run()
"""
MESSAGES = [
    {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "bench", "version": "1"},
        },
    },
    {"jsonrpc": "2.0", "method": "notifications/initialized"},
    {"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
]
# Sent after the tools/list reply: the first tool call, which on todo-ledger needs the database.
FIRST_CALL = {
    "jsonrpc": "2.0",
    "id": 3,
    "method": "tools/call",
    "params": {"name": "list_tasks", "arguments": {}},
}


@dataclass
class Start:
    seconds: float
    rss_mib: float
    # todo-ledger only: spawn to the reply of a first list_tasks, and the peak memory after it.
    first_call_seconds: float | None = None
    first_call_rss_mib: float | None = None


def _peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _reply(stdout: Any, request_id: int, command: str) -> None:
    while True:
        line = stdout.readline()
        if not line:
            raise RuntimeError(f"{command} ended before answering request {request_id}")
        if json.loads(line).get("id") == request_id:
            return


def start_once(command: list[str], env: dict[str, str], *, call: bool = False) -> Start:
    """Spawn, handshake, list tools (and with `call`, call list_tasks): times and peak memory."""
    began = time.perf_counter()
    process = subprocess.Popen(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env
    )
    assert process.stdin is not None
    assert process.stdout is not None
    try:
        process.stdin.write("".join(json.dumps(m) + "\n" for m in MESSAGES).encode())
        process.stdin.flush()
        _reply(process.stdout, 2, command[0])
        start = Start(time.perf_counter() - began, _peak_rss_mib(process.pid))
        if call:
            process.stdin.write((json.dumps(FIRST_CALL) + "\n").encode())
            process.stdin.flush()
            _reply(process.stdout, 3, command[0])
            start.first_call_seconds = time.perf_counter() - began
            start.first_call_rss_mib = _peak_rss_mib(process.pid)
        return start
    finally:
        process.kill()
        process.wait(timeout=10)


def measure(runs: int) -> dict[str, list[Start]]:
    """Alternate the two servers, `runs` starts each (after one warm-up start each)."""
    with tempfile.TemporaryDirectory() as data_dir:
        env = {**os.environ, "TODO_MCP_DATA_DIR": data_dir, "TODO_MCP_LOG_LEVEL": "WARNING"}
        env.pop("DATABASE_URL", None)
        bare = Path(data_dir) / "bare.py"
        bare.write_text(BARE)
        commands = {
            "todo-ledger": [str(Path(sys.executable).with_name("todo-ledger"))],
            "bare MCPServer": [sys.executable, str(bare)],
        }
        results: dict[str, list[Start]] = {name: [] for name in commands}
        for command in commands.values():
            start_once(command, env)  # first start: creates and migrates the SQLite file
        for _ in range(runs):
            for name, command in commands.items():
                results[name].append(start_once(command, env, call=name == "todo-ledger"))
    return results


def render(results: dict[str, list[Start]], command: str) -> str:
    ours, bare = results["todo-ledger"], results["bare MCPServer"]
    time_ratio = statistics.median(s.seconds for s in ours) / statistics.median(s.seconds for s in bare)
    rss_ratio = statistics.median(s.rss_mib for s in ours) / statistics.median(s.rss_mib for s in bare)
    lines = [
        "## Cold start over stdio",
        "",
        f"Produced by `{command}` (from the repository root) on {datetime.now(UTC):%Y-%m-%d}.",
        "",
        "Spawn to the `tools/list` reply (after `initialize`), as Claude Desktop starts a server, and",
        "the peak resident memory at that moment. todo-ledger runs on its embedded SQLite file (already",
        "created and migrated); the bare server is an `MCPServer` with one tool. The two alternate;",
        "medians. Goal: at most 1.3× the bare server's time and 1.25× its memory.",
        "",
        "| server | median start (ms) | p90 start (ms) | median peak RSS (MiB) |",
        "|---|---:|---:|---:|",
    ]
    for name, starts in results.items():
        times = sorted(s.seconds * 1000 for s in starts)
        p90 = times[min(len(times) - 1, int(len(times) * 0.9))]
        rss = statistics.median(s.rss_mib for s in starts)
        lines.append(f"| {name} | {statistics.median(times):.0f} | {p90:.0f} | {rss:.1f} |")
    first = sorted((s.first_call_seconds or 0) * 1000 for s in ours)
    first_rss = statistics.median(s.first_call_rss_mib or 0 for s in ours)
    lines += [
        "",
        f"todo-ledger ÷ bare: time **{time_ratio:.2f}**, memory **{rss_ratio:.2f}**.",
        "",
        "The tool list is answered while the storage layer (SQLAlchemy, the SQLite driver, the schema",
        "check) still loads in a worker thread; a first tool call sent right after the tool list waits",
        f"for it: spawn to the reply of a first `list_tasks` takes {statistics.median(first):.0f} ms",
        f"(median), and the peak memory after it is {first_rss:.1f} MiB.",
        "",
        f"Environment: Python {platform.python_version()}, mcp {version('mcp')}, {os.cpu_count()} CPUs.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.cold_start", description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=15, help="starts of each server")
    parser.add_argument("--output", default="docs/benchmarks.md", help="markdown file to update; - for none")
    args = parser.parse_args(argv)
    results = measure(args.runs)
    shown = ["python -m bench.cold_start", *(argv if argv is not None else sys.argv[1:])]
    report = render(results, " ".join(part for part in shown))
    print(report)
    if args.output != "-":
        write_section("cold-start", report, ROOT / args.output)


if __name__ == "__main__":
    main()
