"""A bounded abuse run against a live `todo-ledger serve`: what each attack costs, and everyone else.

The server runs as its own process behind bearer tokens (a local JWKS endpoint), on a database
of its own reached through `tests.wireproxy.WireProxy`, which can black-hole it. For each case
the run prints the answer, how long it took, the server's peak resident memory, and how long an
ordinary request of another user took meanwhile; the table goes to docs/benchmarks.md.

    python -m bench.abuse [--output docs/benchmarks.md]

PostgreSQL: TODO_MCP_TEST_PG (default postgresql://postgres@127.0.0.1:5432/postgres).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack, ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx2
from sqlalchemy.engine import make_url

from bench.report import write_section
from bench.scratch import scratch_database
from tests.http_helpers import ServerProcess, auth_env, bearer, free_port, jwt_token, new_user, running_server
from tests.jwks_server import SigningKey, make_key, running_jwks
from tests.wireproxy import WireProxy

MB = 1_000_000
INIT = {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "abuse", "version": "1"}}
MCP_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


@dataclass
class Row:
    case: str
    answer: str
    seconds: float
    peak_rss_mb: float
    other_user_seconds: float | None = None


class Memory:
    """Samples the server's resident memory every 10 ms; `peak()` is the highest since `reset()`."""

    def __init__(self, pid: int) -> None:
        self.path = Path(f"/proc/{pid}/status")
        self.highest = 0

    def sample(self) -> int:
        for line in self.path.read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        return 0

    def reset(self) -> None:
        self.highest = self.sample()

    async def run(self) -> None:
        while True:
            self.highest = max(self.highest, self.sample())
            await asyncio.sleep(0.01)

    def peak(self) -> float:
        return self.highest / 2**20


async def _timed(call: Awaitable[httpx2.Response]) -> tuple[httpx2.Response, float]:
    started = time.monotonic()
    response = await call
    return response, time.monotonic() - started


async def _raw_upload(port: int, head: bytes, chunks: int, chunk: bytes) -> tuple[str, float]:
    """Send `head` and up to `chunks` chunks; the status line the server answers with, and when."""
    started = time.monotonic()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    answer = asyncio.create_task(reader.readline())
    try:
        # A server that stops the upload breaks the connection; its answer (or none) says why.
        with contextlib.suppress(ConnectionError, OSError):
            writer.write(head)
            for _ in range(chunks):
                if answer.done():
                    break
                writer.write(chunk)
                await writer.drain()
        status = await _status_line(answer)
    finally:
        writer.close()
    return status, time.monotonic() - started


async def _status_line(answer: asyncio.Task[bytes]) -> str:
    """The status line the server answered with, or how it ended the connection without one."""
    try:
        line = await asyncio.wait_for(answer, 30)
    except (ConnectionError, OSError):
        return "connection reset"
    return line.decode().strip() or "connection closed"


async def _with_other_user(
    attack: Awaitable[tuple[str, float]], other: Callable[[], Awaitable[httpx2.Response]]
) -> tuple[str, float, float]:
    """Run `attack`; a moment in, time another user's ordinary request."""
    task = asyncio.ensure_future(attack)
    await asyncio.sleep(0.05)
    _, other_seconds = await _timed(other())
    status, seconds = await task
    return status, seconds, other_seconds


async def _body_cases(
    server: ServerProcess, memory: Memory, other: Callable[[], Awaitable[httpx2.Response]]
) -> list[Row]:
    rows = []
    head = (
        f"POST /api/tasks HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {20 * MB}\r\n\r\n"
    ).encode()
    chunked = (
        b"POST /api/tasks HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )
    piece = 64 * 1024
    for name, header, chunk, count in (
        ("20 MB body, Content-Length declared", head, b"x" * piece, 20 * MB // piece),
        (
            "20 MB body, chunked (no length)",
            chunked,
            b"%x\r\n%s\r\n" % (piece, b"x" * piece),
            20 * MB // piece,
        ),
    ):
        memory.reset()
        status, seconds, other_seconds = await _with_other_user(
            _raw_upload(server.port, header, count, chunk), other
        )
        rows.append(Row(name, status, seconds, memory.peak(), other_seconds))
    return rows


async def _json_cases(
    server: ServerProcess, http: httpx2.AsyncClient, memory: Memory, token: str
) -> list[Row]:
    rows = []
    for name, path in (
        ("deep JSON (20,000 levels) to /mcp", "/mcp"),
        ("deep JSON (20,000 levels) to /messages/", "/messages/?session_id=" + "0" * 32),
    ):
        memory.reset()
        body = "[" * 20_000 + "]" * 20_000
        response, seconds = await _timed(
            http.post(path, content=body, headers={**MCP_HEADERS, **bearer(token)})
        )
        rows.append(Row(name, f"{response.status_code} {response.text[:70]}", seconds, memory.peak()))
    memory.reset()
    levels = 2_000_000
    head = (
        f"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Accept: application/json, text/event-stream\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Length: {2 * levels}\r\n\r\n"
    ).encode()
    status, seconds = await _raw_upload(server.port, head + b"[" * levels, 1, b"]" * levels)
    rows.append(Row("deep JSON (2,000,000 levels, 4 MB) to /mcp", status, seconds, memory.peak()))
    return rows


SESSION_FLOOD = 400


async def _flood_cases(http: httpx2.AsyncClient, memory: Memory, tokens: dict[str, str]) -> list[Row]:
    rows = []
    memory.reset()
    started = time.monotonic()
    opened = 0
    # Past the per-user cap a new session ends that user's least recently used idle one, so the
    # flood is a fixed number of initializes, many times the cap.
    for request_id in range(SESSION_FLOOD):
        message = {"jsonrpc": "2.0", "id": request_id, "method": "initialize", "params": INIT}
        response = await http.post(
            "/mcp", json=message, headers={**MCP_HEADERS, **bearer(tokens["attacker"])}
        )
        if response.status_code != 200:
            break
        opened += 1
    flood = f"{opened} of {SESSION_FLOOD} initializes answered 200 (the cap ends the oldest idle ones)"
    victim = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": INIT}
    answer, other = await _timed(
        http.post("/mcp", json=victim, headers={**MCP_HEADERS, **bearer(tokens["victim"])})
    )
    rows.append(Row("session flood by one user", flood, time.monotonic() - started, memory.peak(), other))
    async with AsyncExitStack() as stack:
        memory.reset()
        started = time.monotonic()
        streams = 0
        while True:
            response = await stack.enter_async_context(
                http.stream("GET", "/sse", headers=bearer(tokens["attacker"]))
            )
            if response.status_code != 200:
                break
            lines = response.aiter_lines()
            stack.push_async_callback(lines.aclose)  # type: ignore[attr-defined]
            await anext(lines)
            streams += 1
        victim_stream, other = await _timed(http.get("/api/tasks", headers=bearer(tokens["victim"])))
        flood = f"{streams} streams, then {response.status_code}"
        rows.append(
            Row("SSE stream flood by one user", flood, time.monotonic() - started, memory.peak(), other)
        )
    assert answer.status_code == 200, answer.text
    assert victim_stream.status_code == 200, victim_stream.text
    return rows


async def _black_hole_cases(
    proxy: WireProxy, http: httpx2.AsyncClient, memory: Memory, token: str
) -> list[Row]:
    rows = []
    await http.post("/api/tasks", json={"title": "warm"}, headers=bearer(token))
    proxy.black_hole = True
    for name, method, body in (
        ("black-holed database: write on a pooled connection", "POST", {"title": "lost?"}),
        ("black-holed database: read, new connection", "GET", None),
        ("black-holed database: read again", "GET", None),
    ):
        memory.reset()
        response, seconds = await _timed(http.request(method, "/api/tasks", json=body, headers=bearer(token)))
        rows.append(
            Row(name, f"{response.status_code} {response.json()['detail'][:70]}", seconds, memory.peak())
        )
    proxy.black_hole = False
    response, seconds = await _timed(http.get("/api/tasks", headers=bearer(token)))
    rows.append(Row("database back", str(response.status_code), seconds, memory.peak()))
    return rows


async def measure(scratch: Path) -> list[Row]:
    key: SigningKey = make_key("EdDSA")
    tokens = {"attacker": jwt_token(key, new_user()), "victim": jwt_token(key, new_user())}
    async with scratch_database("todo_bench_abuse") as url, WireProxy(make_url(url).port or 5432) as proxy:
        port = free_port()
        proxied = make_url(url).set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
        with running_jwks([key]) as jwks, ExitStack() as stack:
            env = auth_env(
                jwks.url,
                f"http://127.0.0.1:{port}/mcp",
                DATABASE_URL=f"{proxied}?sslmode=disable",
                TODO_MCP_RATE_LIMIT_PER_MINUTE="0",
            )
            # Started from a thread: its start-up wait would otherwise stall the loop the proxy runs on.
            started = running_server(env=env, cwd=scratch, port=port)
            server = await asyncio.to_thread(stack.enter_context, started)
            try:
                return await _attack(server, proxy, tokens)
            finally:
                await asyncio.to_thread(stack.close)


async def _attack(server: ServerProcess, proxy: WireProxy, tokens: dict[str, str]) -> list[Row]:
    memory = Memory(server.proc.pid)
    sampler = asyncio.create_task(memory.run())
    try:
        async with httpx2.AsyncClient(base_url=server.base, timeout=30) as http:

            def other() -> Awaitable[httpx2.Response]:
                return http.get("/api/tasks", headers=bearer(tokens["victim"]))

            rows = await _body_cases(server, memory, other)
            rows += await _json_cases(server, http, memory, tokens["attacker"])
            rows += await _flood_cases(http, memory, tokens)
            rows += await _black_hole_cases(proxy, http, memory, tokens["victim"])
    finally:
        sampler.cancel()
    return rows


def render(rows: list[Row], command: str) -> str:
    lines = [
        "## Abuse: what an attack costs the server and everyone else",
        "",
        f"Produced by `{command}` on {datetime.now(UTC):%Y-%m-%d}.",
        "",
        "A live `todo-ledger serve` behind bearer tokens; its database is reached through a proxy that can",
        "black-hole it. Peak RSS is the server process's resident memory (sampled every 10 ms) during the",
        "case; the last column is an ordinary request of another user made while the attack ran.",
        "Goals: a 20 MB body refused in under 1 s with RSS under 300 MB, another user answered in under",
        "1 s meanwhile, and each call to a black-holed database answered within 10 s.",
        "",
        "| case | answer | seconds | peak RSS (MiB) | other user (s) |",
        "|---|---|---:|---:|---:|",
    ]
    for row in rows:
        other = f"{row.other_user_seconds:.3f}" if row.other_user_seconds is not None else ""
        answer = row.answer.replace("|", "/")
        lines.append(f"| {row.case} | {answer} | {row.seconds:.3f} | {row.peak_rss_mb:.0f} | {other} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.abuse", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--output", default="docs/benchmarks.md", help="markdown file whose section to rewrite; - for none"
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        rows = asyncio.run(measure(Path(scratch)))
    report = render(rows, " ".join(["python -m bench.abuse", *(argv if argv is not None else sys.argv[1:])]))
    print(report)
    if args.output != "-":
        write_section("abuse", report, Path(args.output))
        print(f"wrote {args.output}", file=sys.stderr)


if __name__ == "__main__":
    main()
