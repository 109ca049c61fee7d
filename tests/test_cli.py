"""The installed `todo-ledger` console script: stdio sessions, start-up errors, stdout hygiene."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from mcp import Client, StdioServerParameters

from tests.conftest import _admin, _pg_url, run_sync
from todo_mcp.cli import _listening_socket

SCRIPT = Path(sys.executable).with_name("todo-ledger")


def _env(**extra: str) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "DIRECT_URL", "TODO_MCP_"))
    }
    env.update(extra)
    return env


def _run(*args: str, env: dict[str, str], cwd: Path, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SCRIPT), *args], input=stdin, env=env, cwd=cwd, capture_output=True, text=True, timeout=60
    )


def _stdio_server(data_dir: Path) -> subprocess.Popen[str]:
    """The stdio server on its embedded database in `data_dir`, with its three streams piped as text."""
    return subprocess.Popen(
        [str(SCRIPT)],
        env=_env(TODO_MCP_DATA_DIR=str(data_dir)),
        cwd=data_dir,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_the_console_script_is_installed() -> None:
    assert SCRIPT.exists(), f"{SCRIPT} is missing: install the project (pip install -e .)"


def test_help_explains_every_command_and_setting(tmp_path: Path) -> None:
    result = _run("--help", env=_env(), cwd=tmp_path)
    assert result.returncode == 0
    for word in ("stdio", "migrate", "serve", "DATABASE_URL", "DIRECT_URL", "TODO_MCP_USER_ID"):
        assert word in result.stdout, word


def test_embedded_default_creates_migrates_and_logs_its_path_on_stderr_only(tmp_path: Path) -> None:
    data = tmp_path / "data"
    result = _run(env=_env(TODO_MCP_DATA_DIR=str(data)), cwd=tmp_path)  # stdin closes: the session ends
    assert result.returncode == 0, result.stderr
    assert result.stdout == "", "nothing but protocol frames may reach stdout"
    db_file = data / "todo.sqlite3"
    assert db_file.exists()
    assert str(db_file) in result.stderr


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("mysql://root@localhost/x", "unsupported scheme"),
        ("postgresql://", "no host"),
        ("postgresql://u@h/db?sslmode=sometimes", "unknown sslmode"),
        ("sqlite+aiosqlite:///:memory:", "needs a file path"),
    ],
)
def test_a_bad_database_url_is_one_clear_line(tmp_path: Path, url: str, expected: str) -> None:
    result = _run(env=_env(DATABASE_URL=url), cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("todo-ledger: error: DATABASE_URL"), result.stderr
    assert expected in lines[0]
    assert "Traceback" not in result.stderr


def test_an_unreachable_database_is_one_clear_line(tmp_path: Path) -> None:
    result = _run(env=_env(DATABASE_URL="postgresql://postgres@127.0.0.1:1/nothing"), cwd=tmp_path)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("todo-ledger: error: cannot reach the database"), result.stderr


def test_postgres_needs_migrate_first_then_serves(tmp_path: Path) -> None:
    name = f"todo_mcp_cli_{uuid.uuid4().hex[:10]}"
    run_sync(_admin(f'CREATE DATABASE "{name}"'))
    try:
        env = _env(DATABASE_URL=_pg_url(name))
        refused = _run(env=env, cwd=tmp_path)
        assert refused.returncode == 2
        assert "todo-ledger migrate" in refused.stderr.strip().splitlines()[-1]
        migrated = _run("migrate", env=env, cwd=tmp_path)
        assert migrated.returncode == 0, migrated.stderr
        assert "schema revision" in migrated.stderr
        served = _run(env=env, cwd=tmp_path)
        assert served.returncode == 0, served.stderr
        assert served.stdout == ""
    finally:
        run_sync(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.mark.anyio
@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_a_stdio_session_through_the_installed_script(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    env = _env(TODO_MCP_DATA_DIR=str(tmp_path), TODO_MCP_USER_ID=f"stdio-{uuid.uuid4().hex}")
    if backend == "postgres":
        env["DATABASE_URL"] = request.getfixturevalue("pg_url")
    params = StdioServerParameters(command=str(SCRIPT), args=[], env=env, cwd=str(tmp_path))
    async with Client(params) as client:
        tools = await client.list_tools()
        assert {t.name for t in tools.tools} >= {
            "add_task",
            "list_tasks",
            "get_task",
            "update_task",
            "complete_task",
            "delete_task",
        }
        added = await client.call_tool("add_task", {"title": "Call the plumber", "due": "2026-12-01"})
        assert not added.is_error, added.content
        assert added.structured_content is not None
        task_id = added.structured_content["id"]
        listed = await client.call_tool("list_tasks", {})
        assert listed.structured_content is not None
        assert [t["id"] for t in listed.structured_content["tasks"]] == [task_id]
        done = await client.call_tool("complete_task", {"task_ids": [task_id]})
        assert done.structured_content is not None
        assert done.structured_content["results"][0]["task"]["status"] == "completed"
        changes = await client.call_tool("list_changes", {"task_id": task_id})
        assert changes.structured_content is not None
        recorded = [(c["via"], c["client"]) for c in changes.structured_content["changes"]]
        assert recorded == [("complete_task", "mcp"), ("add_task", "mcp")], "the client's initialize name"
        undone = await client.call_tool("undo_changes", {})
        assert undone.structured_content is not None
        assert undone.structured_content["undone"] == [done.structured_content["change_id"]]


def test_python_dash_m_runs_the_same_command(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "todo_mcp", "--help"],
        env=_env(),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == _run("--help", env=_env(), cwd=tmp_path).stdout


def test_a_malformed_stdio_frame_is_answered_when_its_id_can_be_read(tmp_path: Path) -> None:
    """A client waiting for id 5 gets a reply; a line with no readable id is skipped; the session goes on."""
    initialize = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": {"name": "t", "version": "1"},
        },
    }
    with _stdio_server(tmp_path) as proc:
        assert proc.stdin is not None
        assert proc.stdout is not None
        assert proc.stderr is not None

        def exchange(line: str) -> dict[str, Any]:
            assert proc.stdin is not None
            assert proc.stdout is not None
            proc.stdin.write(line + "\n")
            proc.stdin.flush()
            answer: dict[str, Any] = json.loads(proc.stdout.readline())
            return answer

        try:
            assert exchange(json.dumps(initialize))["id"] == 1
            refused = [
                exchange('{"jsonrpc": "2.0", "id": 5, "method": 123}'),
                exchange('{"jsonrpc": "2.0", "id": "six"}'),
            ]
            pinged = exchange('this is not json\n{"jsonrpc": "2.0", "id": 7, "method": "ping"}')
        finally:
            proc.stdin.close()
            proc.wait(timeout=30)
        stderr = proc.stderr.read()
    assert pinged == {"jsonrpc": "2.0", "id": 7, "result": {}}
    assert [(answer["id"], answer["error"]["code"]) for answer in refused] == [(5, -32600), ("six", -32600)]
    assert "skipped a stdio line that is not JSON-RPC" in stderr


def test_ctrl_c_stops_a_stdio_server_at_once(tmp_path: Path) -> None:
    """Ctrl-C while the client keeps stdin open (a terminal): the server stops, without a traceback."""
    with _stdio_server(tmp_path) as proc:
        assert proc.stdin is not None
        assert proc.stdout is not None
        assert proc.stderr is not None
        proc.stdin.write(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "ping"}) + "\n")
        proc.stdin.flush()
        assert json.loads(proc.stdout.readline())["id"] == 1  # serving
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 130
        assert "Traceback" not in proc.stderr.read()


@pytest.mark.anyio
async def test_connections_accepted_on_the_servers_socket_have_nagle_off() -> None:
    """Without TCP_NODELAY, each answer on a kept-alive connection waits for a delayed ACK (40 ms)."""
    listener = _listening_socket("127.0.0.1", 0)
    accepted: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        accepted.set_result(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
        writer.close()

    server = await asyncio.start_server(on_connect, sock=listener)
    async with server:
        _, writer = await asyncio.open_connection(*listener.getsockname()[:2])
        assert await asyncio.wait_for(accepted, 5) != 0
        writer.close()


def test_prune_reports_what_it_removed_and_refuses_a_negative_period(tmp_path: Path) -> None:
    env = _env(TODO_MCP_DATA_DIR=str(tmp_path), TODO_MCP_LEDGER_RETENTION_DAYS="30")
    pruned = _run("prune", env=env, cwd=tmp_path)
    assert pruned.returncode == 0, pruned.stderr
    assert "removed 0 changes recorded before" in pruned.stderr
    assert "tasks are untouched" in pruned.stderr
    refused = _run("prune", "--days", "-1", env=env, cwd=tmp_path)
    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines()[-1] == "todo-ledger: error: prune: --days must be 0 or more"
