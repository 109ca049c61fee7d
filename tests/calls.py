"""Calling tools through the real MCP client, checking the shape of every answer on the way."""

from __future__ import annotations

import functools
import json
from typing import Any

import jsonschema
from mcp import Client
from mcp.shared.exceptions import MCPError
from mcp.types import CallToolResult, TextContent


@functools.cache
def _validator(schema_text: str) -> Any:
    """A validator for one declared outputSchema, checked once against its metaschema (that is slow)."""
    schema = json.loads(schema_text)
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    return validator_class(schema)


def only_text(result: CallToolResult) -> str:
    assert len(result.content) == 1, result.content
    block = result.content[0]
    assert isinstance(block, TextContent), block
    return block.text


class Agent:
    """One MCP client session acting as an agent; every call is checked against the declared schemas."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self._validators: dict[str, Any] | None = None
        # The change id of each write, in order (None for a write that changed nothing).
        self.changes: list[int | None] = []

    async def output_validator(self, name: str) -> Any:
        if self._validators is None:
            validators = {}
            for tool in (await self.client.list_tools()).tools:
                assert tool.output_schema, f"{tool.name} declares no outputSchema"
                validators[tool.name] = _validator(json.dumps(tool.output_schema, sort_keys=True))
            self._validators = validators
        return self._validators[name]

    async def call(self, name: str, **arguments: Any) -> dict[str, Any]:
        """A call that must succeed: structured content valid against outputSchema, text the same JSON."""
        result = await self.client.call_tool(name, arguments)
        assert not result.is_error, only_text(result)
        data = result.structured_content
        assert isinstance(data, dict), result
        (await self.output_validator(name)).validate(data)
        assert json.loads(only_text(result)) == data
        return data

    async def fail(self, name: str, **arguments: Any) -> str:
        """A call that must fail: is_error, one text block, no structured content."""
        result = await self.client.call_tool(name, arguments)
        assert result.is_error, result
        assert result.structured_content is None
        return only_text(result)

    async def write(self, name: str, **arguments: Any) -> dict[str, Any]:
        """A write that must succeed; its change id is kept in `changes`, the task is returned."""
        data = dict(await self.call(name, **arguments))
        change_id = data.pop("change_id", None)
        assert change_id is None or isinstance(change_id, int), change_id
        self.changes.append(change_id)
        return data

    async def add(self, title: str, **fields: Any) -> dict[str, Any]:
        return await self.write("add_task", title=title, **fields)

    async def get(self, task_id: int) -> dict[str, Any]:
        return await self.call("get_task", task_id=task_id)

    async def update(self, task_id: int, **fields: Any) -> dict[str, Any]:
        return await self.write("update_task", task_id=task_id, **fields)

    async def page(self, **filters: Any) -> dict[str, Any]:
        return await self.call("list_tasks", **filters)

    async def list_all(self, **filters: Any) -> list[dict[str, Any]]:
        """Every task matching the filters, following next_cursor to the last page."""
        tasks: list[dict[str, Any]] = []
        cursor: str | None = None
        while True:
            page = await self.page(**filters, **({"cursor": cursor} if cursor else {}))
            tasks.extend(page["tasks"])
            cursor = page["next_cursor"]
            if cursor is None:
                return tasks

    async def ids(self, **filters: Any) -> list[int]:
        return [task["id"] for task in await self.list_all(**filters)]

    async def read_error(self, uri: str) -> str:
        """The error text of a resource read that must fail."""
        try:
            await self.client.read_resource(uri, cache_mode="bypass")
        except MCPError as error:
            return error.error.message
        raise AssertionError(f"reading {uri} succeeded")
