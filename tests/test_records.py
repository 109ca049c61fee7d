"""The tool records are the one source: registration, schemas, hints, scopes and error wording follow them."""

from __future__ import annotations

from typing import Any

import pytest
from mcp import Client
from mcp.server import MCPServer
from mcp.shared.exceptions import MCPError

from tests.calls import Agent
from todo_mcp.config import Settings
from todo_mcp.identity import READ, WRITE, Principal
from todo_mcp.storage.engine import Database
from todo_mcp.tools import records
from todo_mcp.tools.schema import input_schema, result_schema
from todo_mcp.tools.server import build_server
from todo_mcp.web.jsonrpc import Peek, peek

pytestmark = pytest.mark.anyio


def _call(name: str) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": name, "arguments": {}}}


def test_every_record_is_complete_and_its_scope_follows_its_hints() -> None:
    assert [record.name for record in records.TOOLS] == list(dict.fromkeys(r.name for r in records.TOOLS))
    for record in records.TOOLS:
        assert record.description, record.name
        assert record.scope == (READ if record.hints.read_only else WRITE), record.name
        assert record.input.model_config.get("extra") == "forbid", record.name


def test_the_http_gate_asks_each_call_for_the_scope_of_its_record() -> None:
    for record in records.TOOLS:
        assert peek(_call(record.name)) == Peek(scopes={record.scope}, calls=1, request_id=1)
    batch = [_call(record.name) for record in records.TOOLS]
    assert peek(batch) == Peek(scopes={READ, WRITE}, calls=len(records.TOOLS))
    assert peek(_call("no_such_tool")) == Peek(scopes={READ}, calls=1, request_id=1)
    initialize = {"jsonrpc": "2.0", "id": "a", "method": "initialize"}
    assert peek(initialize) == Peek(calls=1, initializes=True, request_id="a")
    assert peek("not a message") == Peek()


async def test_every_record_is_registered_as_declared(client: Client) -> None:
    listed = {tool.name: tool for tool in (await client.list_tools()).tools}
    assert set(listed) == {record.name for record in records.TOOLS}
    for record in records.TOOLS:
        tool = listed[record.name]
        assert tool.description == record.description
        assert tool.input_schema == input_schema(record.input)
        assert tool.output_schema == result_schema(record.output)
        assert tool.input_schema["additionalProperties"] is False
        assert tool.annotations == record.hints.annotations()


async def test_unknown_arguments_are_refused_naming_them_and_the_accepted_ones(client: Client) -> None:
    agent = Agent(client)
    text = await agent.fail("add_task", title="Pay rent", due_date="2026-12-01")
    assert "due_date: is not an argument of add_task" in text
    assert "send only title, description, priority, due, tags, repeat, client_request_id" in text
    assert await agent.list_all(status="all") == []


def _server(database: Database, settings: Settings, principal: Principal) -> MCPServer[Any]:
    return build_server(database, settings=settings, identity=lambda: principal)


async def test_an_unknown_prompt_is_invalid_params_naming_the_prompts(client: Client) -> None:
    with pytest.raises(MCPError) as raised:
        await client.get_prompt("no_such_prompt", {})
    assert raised.value.error.code == -32602
    assert raised.value.error.message == "Unknown prompt: 'no_such_prompt'; the prompts are plan_day"


async def test_the_prompt_names_a_bad_time_zone(client: Client) -> None:
    with pytest.raises(MCPError) as raised:
        await client.get_prompt("plan_day", {"tz": "Mars/Olympus_Mons"})
    message = raised.value.error.message
    assert "unknown time zone 'Mars/Olympus_Mons'" in message
    assert "IANA name such as Europe/Paris" in message


async def test_resources_prompts_and_tools_refuse_a_missing_scope_alike(
    database: Database, settings: Settings, owner: str
) -> None:
    """A missing scope is a JSON-RPC error everywhere: no other arguments would cure it."""
    write_only = Principal(user_id=owner, scopes=frozenset({WRITE}))
    messages: list[str] = []
    async with Client(_server(database, settings, write_only), mode="2026-07-28") as client:
        task = await Agent(client).add("Written, not readable")
        for attempt in (
            client.call_tool("get_task", {"task_id": task["id"]}),
            client.read_resource(f"task://{task['id']}", cache_mode="bypass"),
            client.get_prompt("plan_day", {}),
        ):
            with pytest.raises(MCPError) as raised:
                await attempt
            messages.append(raised.value.error.message)
    assert messages == ["this token lacks the todo:read scope; sign in again granting todo:read"] * 3
