"""Starting up: the schema checked with one query, Alembic and PostgreSQL's driver loaded only when needed."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from todo_mcp.storage.migrations import HEAD, head_revision

PROBE = textwrap.dedent(
    """
    import asyncio, json, sys
    from todo_mcp.storage.startup import prepare
    from todo_mcp.storage.url import sqlite_target

    target = sqlite_target(sys.argv[1])
    key = asyncio.run(prepare(target, target, auto_migrate=True, cursor_secret=None))
    loaded = sorted({name.split(".")[0] for name in sys.modules} & {"alembic", "asyncpg"})
    print(json.dumps({"key": key.hex(), "loaded": loaded}))
    """
)


def test_the_revision_the_server_expects_is_the_newest_migration() -> None:
    assert head_revision() == HEAD


def _probe(path: Path) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(path)], capture_output=True, text=True, timeout=60, check=True
    )
    found: dict[str, object] = json.loads(done.stdout)
    return found


def test_alembic_loads_only_to_migrate_and_asyncpg_never_on_sqlite(tmp_path: Path) -> None:
    path = tmp_path / "todo.sqlite3"
    first = _probe(path)
    assert first["loaded"] == ["alembic"], "the first start migrates the new file"
    again = _probe(path)
    assert again["loaded"] == [], "a current schema is checked without Alembic, and SQLite needs no asyncpg"
    assert again["key"] == first["key"], "the cursor key is kept in the database"


def test_the_tool_list_needs_no_storage_layer() -> None:
    probe = (
        "import sys, todo_mcp.stdio, todo_mcp.cli;"
        "storage = {'sqlalchemy', 'asyncpg', 'alembic', 'aiosqlite'};"
        "print(sorted({n.split('.')[0] for n in sys.modules} & storage))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "[]", "stdio answers initialize and tools/list before storage has loaded"
