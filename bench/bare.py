"""A bare MCPServer for comparison: one tool, `list_tasks`, returning a fixed page as a plain dict.

It runs as its own process on the same HTTP stack as `todo-ledger serve` (uvicorn, with uvloop
and httptools when they are installed, as they are with this project) and answers in JSON as it
does, so that what it costs is the SDK's own floor: dispatching a tools/call and shaping its
result, without a database, a gate or any other layer.

    python -m bench.bare PAGE_JSON_FILE PORT
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx2

from bench.report import ROOT


def serve(page_file: str, port: int) -> None:
    """Serve the page in `page_file` on 127.0.0.1:`port` until stopped."""
    import uvicorn
    from mcp.server import MCPServer

    page: dict[str, Any] = json.loads(Path(page_file).read_text(encoding="utf-8"))
    mcp = MCPServer("bare")

    @mcp.tool()
    async def list_tasks() -> dict[str, Any]:
        """The same page, as a plain dict."""
        return page

    # JSON responses rather than one-event SSE streams, as `todo-ledger serve` answers.
    app = mcp.streamable_http_app(json_response=True)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


@contextmanager
def running(args: list[str], env: dict[str, str], port: int) -> Iterator[None]:
    """The process `args`, until the block ends, once it answers HTTP on `port` (30 s at most)."""
    proc = subprocess.Popen(args, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
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


@contextmanager
def bare_server(page: dict[str, Any], workdir: Path, port: int, env: dict[str, str]) -> Iterator[None]:
    """The bare server returning `page`, on `port`, until the block ends."""
    page_file = workdir / "page.json"
    page_file.write_text(json.dumps(page), encoding="utf-8")
    with running([sys.executable, "-m", "bench.bare", str(page_file), str(port)], env, port):
        yield


if __name__ == "__main__":
    serve(sys.argv[1], int(sys.argv[2]))
