"""Every tool works for an agent in OpenAI's strict mode, through OpenAI Agents' own MCP code path.

OpenAI Agents (`convert_schemas_to_strict`) makes every property required; a strict-mode model
then sends every property and fills the unused ones with null. Here its stdio client spawns the
installed console script, its converter makes each tool strict (it falls back to non-strict on a
schema it cannot convert, which this test refuses), and each tool is called the way such a model
would call it, through the framework's own invocation function.
"""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from agents.mcp import MCPServerStdio, MCPUtil
from agents.run_context import RunContextWrapper
from agents.tool import FunctionTool

from tests.http_helpers import clean_env

pytestmark = pytest.mark.anyio

SCRIPT = Path(sys.executable).with_name("todo-ledger")


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[MCPServerStdio]:
    env = clean_env(TODO_MCP_DATA_DIR=str(tmp_path), TODO_MCP_TIMEZONE="UTC")
    async with MCPServerStdio(
        params={"command": str(SCRIPT), "args": [], "env": env},
        client_session_timeout_seconds=30,
        cache_tools_list=True,
    ) as connected:
        yield connected


async def _strict_tools(server: MCPServerStdio) -> dict[str, FunctionTool]:
    tools = await server.list_tools()
    converted = {
        tool.name: MCPUtil.to_function_tool(tool, server, convert_schemas_to_strict=True) for tool in tools
    }
    for name, tool in converted.items():
        assert tool.strict_json_schema, f"{name}: OpenAI Agents fell back to a non-strict schema"
    return converted


def _strict_call(tool: FunctionTool, **used: Any) -> str:
    """The arguments a strict-mode model sends: every property, null where it has nothing to say."""
    schema = tool.params_json_schema
    assert set(schema["required"]) == set(schema["properties"]), tool.name
    assert set(used) <= set(schema["properties"]), (tool.name, used)
    arguments = {name: used.get(name) for name in schema["properties"]}
    jsonschema.Draft202012Validator(schema).validate(arguments)  # what constrained decoding allows
    return json.dumps(arguments)


async def _invoke(server: MCPServerStdio, tools: dict[str, FunctionTool], name: str, **used: Any) -> Any:
    (mcp_tool,) = [tool for tool in await server.list_tools() if tool.name == name]
    output = await MCPUtil.invoke_mcp_tool(
        server, mcp_tool, RunContextWrapper(context=None), _strict_call(tools[name], **used)
    )
    # What the framework hands the model: the tool's text block, our compact JSON.
    assert isinstance(output, dict), (name, output)
    assert output["type"] == "text", (name, output)
    assert not output["text"].startswith(("Invalid arguments", "Error")), (name, output)
    return json.loads(output["text"])


async def test_every_tool_does_its_job_when_called_in_strict_mode(server: MCPServerStdio) -> None:
    tools = await _strict_tools(server)
    calls: set[str] = set()

    async def call(name: str, **used: Any) -> Any:
        calls.add(name)
        return await _invoke(server, tools, name, **used)

    task = await call("add_task", title="Pay rent", due="2026-12-01")
    assert (task["title"], task["priority"], task["due"], task["tags"]) == (
        "Pay rent",
        "medium",
        "2026-12-01",
        [],
    )
    assert isinstance(task.pop("change_id"), int)
    listed = await call("list_tasks")
    assert [row["id"] for row in listed["tasks"]] == [task["id"]]
    assert (await call("get_task", task_id=task["id"])) == task
    renamed = await call("update_task", task_id=task["id"], title="Pay the rent")
    assert (renamed["title"], renamed["due"], renamed["version"]) == ("Pay the rent", "2026-12-01", 2)
    assert renamed.pop("change_id") > 0
    unchanged = await call("update_task", task_id=task["id"])
    assert unchanged == renamed, "a patch that names no field changes nothing (and records no change)"
    (done,) = (await call("complete_task", task_ids=[task["id"]]))["results"]
    assert done["task"]["status"] == "completed"
    (deleted,) = (await call("delete_task", task_ids=[task["id"]]))["results"]
    assert "deleted_at" in deleted["task"]
    (restored,) = (await call("delete_task", task_ids=[task["id"]], restore=True))["results"]
    assert "deleted_at" not in restored["task"]
    history = await call("list_changes", task_id=task["id"])
    assert [change["via"] for change in history["changes"]] == [
        "delete_task",
        "delete_task",
        "complete_task",
        "update_task",
        "add_task",
    ]
    preview = await call("undo_changes", dry_run=True)
    assert preview["dry_run"] is True
    assert preview["undone"] == [history["changes"][0]["change_id"]]
    undo = await call("undo_changes")
    assert undo["tasks"][0]["after"]["deleted_at"]
    assert calls == set(tools), "every tool the server lists was called"
