"""Real `todo-ledger serve` processes on loopback ports, tokens for them, and clients of every transport."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import asyncpg
import httpx2
from mcp import Client
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client
from mcp.types import CallToolResult

from tests.jwks_server import OAUTH_ISSUER, ORIGIN, SigningKey, access_token_claims, jwt_plugin_claims

SCRIPT = Path(sys.executable).with_name("todo-ledger")
Transport = Literal["legacy", "modern", "sse"]
TRANSPORTS: tuple[Transport, ...] = ("legacy", "modern", "sse")
MODERN = "2026-07-28"
LEGACY_VERSION = "2025-11-25"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def clean_env(**extra: str) -> dict[str, str]:
    """The test's environment without any todo-ledger setting, plus `extra`."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DATABASE_URL", "DIRECT_URL", "TODO_MCP_", "FORWARDED_ALLOW_IPS"))
    }
    env.update(extra)
    return env


def auth_env(jwks_url: str, public_url: str, **extra: str) -> dict[str, str]:
    """Settings of a server that trusts the local JWKS endpoint like a Better Auth deployment."""
    return clean_env(
        TODO_MCP_AUTH_JWKS_URL=jwks_url,
        TODO_MCP_PUBLIC_URL=public_url,
        TODO_MCP_AUTH_ISSUER=f"{ORIGIN},{OAUTH_ISSUER}",
        TODO_MCP_AUTH_AUDIENCE=ORIGIN,
        TODO_MCP_AUTH_SERVER=OAUTH_ISSUER,
        TODO_MCP_AUTH_ALGORITHMS="EdDSA,ES256",
        TODO_MCP_TIMEZONE="UTC",
        **extra,
    )


def run_cli(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(SCRIPT), *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=60)


@dataclass
class ServerProcess:
    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def mcp_url(self) -> str:
        return f"{self.base}/mcp"

    @property
    def sse_url(self) -> str:
        return f"{self.base}/sse"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)


def _wait_until_alive(server: ServerProcess, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    with httpx2.Client(timeout=2) as http:
        while time.monotonic() < deadline:
            if server.proc.poll() is not None:
                raise RuntimeError(f"todo-ledger serve exited with {server.proc.returncode}:\n{server.log()}")
            try:
                if http.get(f"{server.base}/healthz").status_code == 200:
                    return
            except httpx2.TransportError:
                pass
            time.sleep(0.05)  # polling interval of the bounded readiness loop
    server.stop()
    raise RuntimeError(f"todo-ledger serve did not answer /healthz within {timeout} s:\n{server.log()}")


@contextmanager
def running_server(
    *args: str, env: dict[str, str], cwd: Path, port: int | None = None, timeout: float = 30
) -> Iterator[ServerProcess]:
    """`todo-ledger serve` on 127.0.0.1 (the installed console script), stopped afterwards."""
    port = port or free_port()
    log_path = cwd / f"serve-{port}.log"
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(
            [str(SCRIPT), "serve", "--host", "127.0.0.1", "--port", str(port), *args],
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    server = ServerProcess(proc=proc, port=port, log_path=log_path)
    try:
        _wait_until_alive(server, timeout)
        yield server
    finally:
        server.stop()


# --- tokens -------------------------------------------------------------------------------------------


def new_user() -> str:
    return uuid.uuid4().hex  # Better Auth user ids are 32-character strings


def jwt_token(key: SigningKey, user: str, **changes: Any) -> str:
    """A Better Auth jwt() plugin token (no scope claim: both scopes)."""
    return key.sign(jwt_plugin_claims(user, **changes))


def access_token(key: SigningKey, user: str, *, resource: str, scope: str, **changes: Any) -> str:
    """A Better Auth OAuth access token for this server (typ at+jwt, aud = the resource)."""
    return key.sign(access_token_claims(user, aud=[resource], scope=scope, **changes), typ="at+jwt")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def via(address: str) -> dict[str, str]:
    """Requests as if from `address`: the server trusts X-Forwarded-For from 127.0.0.1 (a local proxy)."""
    return {"X-Forwarded-For": address}


# --- MCP clients ----------------------------------------------------------------------------------------


@asynccontextmanager
async def mcp_client(
    server: ServerProcess | str, transport: Transport, *, token: str | None = None
) -> AsyncIterator[Client]:
    """The SDK client over Streamable HTTP (legacy or 2026-07-28) or SSE, with a bearer token."""
    base = server.base if isinstance(server, ServerProcess) else server
    headers = bearer(token) if token else {}
    if transport == "sse":
        async with Client(sse_client(f"{base}/sse", headers=headers), mode="legacy") as client:
            yield client
        return
    mode = "legacy" if transport == "legacy" else MODERN
    async with (
        httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30, read=120)) as http,
        Client(streamable_http_client(f"{base}/mcp", http_client=http), mode=mode) as client,
    ):
        yield client


def structured(result: CallToolResult) -> dict[str, Any]:
    assert not result.is_error, result.content
    content: dict[str, Any] | None = result.structured_content
    assert content is not None
    return content


def error_text(result: CallToolResult) -> str:
    assert result.is_error, result.structured_content
    texts = [block.text for block in result.content if block.type == "text"]
    return " ".join(texts)


def rpc(method: str, params: dict[str, Any] | None = None, *, id: int = 1) -> dict[str, Any]:
    message: dict[str, Any] = {"jsonrpc": "2.0", "id": id, "method": method}
    if params is not None:
        message["params"] = params
    return message


def initialize_message() -> dict[str, Any]:
    return rpc(
        "initialize",
        {
            "protocolVersion": LEGACY_VERSION,
            "capabilities": {},
            "clientInfo": {"name": "raw-http-test", "version": "1"},
        },
    )


MCP_POST_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


async def pg_connections(pg_url: str, application_name: str) -> int:
    conn = await asyncpg.connect(pg_url, timeout=10)
    try:
        count: int = await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1", application_name
        )
        return count
    finally:
        await conn.close()
