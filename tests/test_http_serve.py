"""`todo-ledger serve` start-up: refusals, the explicit no-auth mode on SQLite, and readiness."""

from __future__ import annotations

import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest

from tests.conftest import _admin, _pg_url, run_sync
from tests.http_helpers import (
    SCRIPT,
    TRANSPORTS,
    ServerProcess,
    Transport,
    clean_env,
    free_port,
    mcp_client,
    run_cli,
    running_server,
    structured,
)
from todo_mcp.storage.migrations import migrate
from todo_mcp.storage.url import parse_database_url

pytestmark = pytest.mark.anyio

LOCAL_USER = "me-on-this-laptop"


async def test_serve_help_explains_every_option_and_http_setting(tmp_path: Path) -> None:
    result = run_cli("serve", "--help", env=clean_env(), cwd=tmp_path)
    assert result.returncode == 0
    for word in (
        "--host",
        "--port",
        "--no-auth",
        "--stateless",
        "/mcp",
        "/sse",
        "/api/tasks",
        "/readyz",
        "TODO_MCP_PUBLIC_URL",
        "TODO_MCP_AUTH_JWKS_URL",
        "TODO_MCP_AUTH_ISSUER",
        "TODO_MCP_AUTH_AUDIENCE",
        "TODO_MCP_AUTH_ALGORITHMS",
        "TODO_MCP_AUTH_SERVER",
        "TODO_MCP_AUTH_LEEWAY",
        "TODO_MCP_AUTH_DEFAULT_SCOPES",
        "TODO_MCP_ALLOWED_HOSTS",
        "TODO_MCP_CORS_ORIGINS",
        "TODO_MCP_RATE_LIMIT_PER_MINUTE",
        "FORWARDED_ALLOW_IPS",
    ):
        assert word in result.stdout, word


@pytest.mark.parametrize(
    ("settings", "missing"),
    [
        ({}, "TODO_MCP_AUTH_JWKS_URL and TODO_MCP_PUBLIC_URL"),
        ({"TODO_MCP_AUTH_JWKS_URL": "https://app.example.com/api/auth/jwks"}, "set TODO_MCP_PUBLIC_URL "),
        ({"TODO_MCP_PUBLIC_URL": "https://todo.example.com/mcp"}, "set TODO_MCP_AUTH_JWKS_URL "),
    ],
)
async def test_serve_without_auth_settings_refuses_to_start(
    tmp_path: Path, settings: dict[str, str], missing: str
) -> None:
    env = clean_env(TODO_MCP_DATA_DIR=str(tmp_path / "data"), **settings)
    result = run_cli("serve", "--port", str(free_port()), env=env, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("todo-ledger: error: serve needs auth settings")
    assert missing in lines[0]
    assert "--no-auth" in lines[0]
    assert not (tmp_path / "data").exists(), "nothing may be created before the settings are checked"


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.10", "todo.example.com"])
async def test_no_auth_is_refused_off_loopback(tmp_path: Path, host: str) -> None:
    env = clean_env(TODO_MCP_DATA_DIR=str(tmp_path / "data"))
    result = run_cli("serve", "--no-auth", "--host", host, "--port", str(free_port()), env=env, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.strip().splitlines() == [
        "todo-ledger: error: --no-auth only serves a loopback host (127.0.0.1, ::1 or localhost), "
        f"not {host}: configure TODO_MCP_AUTH_JWKS_URL and TODO_MCP_PUBLIC_URL to serve the network"
    ]


async def test_a_public_url_that_is_not_http_is_refused(tmp_path: Path) -> None:
    env = clean_env(
        TODO_MCP_AUTH_JWKS_URL="https://app.example.com/api/auth/jwks",
        TODO_MCP_PUBLIC_URL="todo.example.com/mcp",
    )
    result = run_cli("serve", "--port", str(free_port()), env=env, cwd=tmp_path)
    assert result.returncode == 2
    assert "TODO_MCP_PUBLIC_URL must be an http(s) URL" in result.stderr


# --- no-auth on the embedded SQLite database --------------------------------------------------------------


@pytest.fixture(scope="module")
def local_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    cwd = tmp_path_factory.mktemp("local")
    env = clean_env(TODO_MCP_DATA_DIR=str(cwd / "data"), TODO_MCP_USER_ID=LOCAL_USER, TODO_MCP_TIMEZONE="UTC")
    with running_server("--no-auth", env=env, cwd=cwd) as server:
        yield server


async def test_no_auth_says_so_loudly_and_uses_the_embedded_database(local_server: ServerProcess) -> None:
    log = local_server.log()
    warnings = [line for line in log.splitlines() if " WARNING " in line and "AUTHENTICATION IS OFF" in line]
    assert len(warnings) == 1
    assert repr(LOCAL_USER) in warnings[0]
    assert "embedded SQLite database" in log
    async with httpx2.AsyncClient(base_url=local_server.base) as http:
        ready = await http.get("/readyz")
        metadata = await http.get("/.well-known/oauth-protected-resource/mcp")
    assert ready.json() == {"status": "ready"}
    assert metadata.status_code == 404, "no-auth mode advertises no authorization server"


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_no_auth_acts_for_the_configured_user_on_every_transport(
    local_server: ServerProcess, transport: Transport
) -> None:
    title = f"local via {transport} {uuid.uuid4().hex[:6]}"
    async with mcp_client(local_server, transport) as client:
        added = structured(await client.call_tool("add_task", {"title": title}))
    async with httpx2.AsyncClient(
        base_url=local_server.base, headers={"Authorization": "Bearer ignored"}
    ) as http:
        over_rest = await http.get(f"/api/tasks/{added['id']}")
        page = (await http.get("/api/tasks", params={"search": title.split()[-1]})).json()
    assert over_rest.status_code == 200
    assert over_rest.json()["title"] == title
    assert [task["id"] for task in page["tasks"]] == [added["id"]]


# --- readiness follows the database -----------------------------------------------------------------------


async def test_readyz_turns_503_when_the_database_goes_away(tmp_path: Path) -> None:
    name = f"todo_mcp_ready_{uuid.uuid4().hex[:10]}"
    run_sync(_admin(f'CREATE DATABASE "{name}"'))
    try:
        url = _pg_url(name)
        run_sync(migrate(parse_database_url(url)))
        env = clean_env(DATABASE_URL=url, TODO_MCP_AUTO_MIGRATE="false", TODO_MCP_DB_CONNECT_TIMEOUT="3")
        with running_server("--no-auth", env=env, cwd=tmp_path) as server:
            async with httpx2.AsyncClient(base_url=server.base, timeout=30) as http:
                before = await http.get("/readyz")
                run_sync(_admin(f'DROP DATABASE "{name}" WITH (FORCE)'))
                after = await http.get("/readyz")
                alive = await http.get("/healthz")
    finally:
        run_sync(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    assert (before.status_code, before.json()) == (200, {"status": "ready"})
    assert after.status_code == 503
    assert after.json()["status"] == "unavailable"
    assert after.json()["reason"]
    assert "password" not in after.text.lower()
    assert alive.status_code == 200


def test_a_port_in_use_is_one_line(local_server: ServerProcess, tmp_path: Path) -> None:
    env = clean_env(TODO_MCP_DATA_DIR=str(tmp_path / "data"))
    result = run_cli("serve", "--no-auth", "--port", str(local_server.port), env=env, cwd=tmp_path)
    assert result.returncode == 2
    assert (
        result.stderr.strip()
        .splitlines()[-1]
        .startswith(
            f"todo-ledger: error: cannot listen on 127.0.0.1:{local_server.port} (Address already in use)"
        )
    )
    assert "Traceback" not in result.stderr


def test_ctrl_c_stops_serve_quietly(tmp_path: Path) -> None:
    """Ctrl-C (SIGINT, as a terminal sends it): a graceful shutdown, exit status 130, no traceback."""
    env = clean_env(TODO_MCP_DATA_DIR=str(tmp_path / "data"), TODO_MCP_TIMEZONE="UTC")
    with running_server("--no-auth", env=env, cwd=tmp_path) as server:
        server.proc.send_signal(signal.SIGINT)
        assert server.proc.wait(timeout=15) == 130
        log = server.log()
    assert "Traceback" not in log, log
    assert "Finished server process" in log


def test_ctrl_c_while_starting_stops_at_once_without_a_traceback(tmp_path: Path) -> None:
    env = clean_env(TODO_MCP_DATA_DIR=str(tmp_path / "data"), TODO_MCP_TIMEZONE="UTC")
    with subprocess.Popen(
        [str(SCRIPT)], env=env, cwd=tmp_path, stdin=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as proc:
        assert proc.stderr is not None
        time.sleep(0.5)  # the server is importing or preparing its database
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=15) == 130
        assert "Traceback" not in proc.stderr.read()
