"""The SDK's MCPServer, answering protocol mistakes as JSON-RPC says.

- A stdio line that is not a valid message is answered when its id can be read (-32600
  invalid request; a client waiting for that id would otherwise wait for ever); a line that is
  not even JSON has no readable id, and is logged and skipped.
- An unknown prompt is -32602 (invalid params) naming the prompts there are; the SDK answers it
  with code 0, or -32603 "Internal server error" on the 2026-07-28 protocol.
- An unknown tool is -32602 too, naming the tools there are (the specification lists it among the
  protocol errors); the SDK answers it as a tool result with isError.
- Ctrl-C stops a stdio server: stdin is read in a worker thread that a cancellation abandons
  (the SDK's own reader waits for the next line before it can stop).
"""

from __future__ import annotations

import io
import logging
import sys
from typing import Any, cast

import anyio
from mcp.server import MCPServer
from mcp.server.mcpserver import Context
from mcp.server.stdio import stdio_server
from mcp.shared._context_streams import create_context_streams
from mcp.shared.exceptions import MCPError
from mcp.shared.message import SessionMessage
from mcp.types import (
    INVALID_PARAMS,
    INVALID_REQUEST,
    CallToolResult,
    ErrorData,
    GetPromptResult,
    JSONRPCError,
)
from mcp_types import InputRequiredResult
from pydantic import ValidationError

log = logging.getLogger(__name__)


class StdinLines:
    """The lines of the process's stdin, read in a worker thread that a cancellation abandons."""

    def __init__(self) -> None:
        """Read the process's standard input as UTF-8 text (undecodable bytes replaced)."""
        self._file = io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8", errors="replace")

    def __aiter__(self) -> StdinLines:
        """Iterate over the lines as they arrive."""
        return self

    async def __anext__(self) -> str:
        """The next line; the iteration ends with stdin."""
        line = await anyio.to_thread.run_sync(self._file.readline, abandon_on_cancel=True)
        if not line:
            raise StopAsyncIteration
        return line


def readable_id(error: Exception) -> str | int | None:
    """The id of a line that parsed as JSON but is not a valid message, if it has one."""
    if not isinstance(error, ValidationError):
        return None
    for problem in error.errors():
        candidate = problem.get("input")
        if isinstance(candidate, dict) and isinstance(candidate.get("id"), str | int):
            request_id: str | int = candidate["id"]
            return request_id
    return None


class LedgerServer(MCPServer[Any]):
    """MCPServer with the answers above."""

    async def run_stdio_async(self) -> None:
        """Serve over stdio; a frame that cannot be a message is answered (or logged), never left hanging."""
        stdin = cast("anyio.AsyncFile[str]", StdinLines())
        async with stdio_server(stdin=stdin) as (read_stream, write_stream):
            relay_writer, relay_reader = create_context_streams[SessionMessage | Exception](0)

            async def relay() -> None:
                async with relay_writer:
                    async for item in read_stream:
                        if not isinstance(item, Exception):
                            await relay_writer.send(item)
                            continue
                        request_id = readable_id(item)
                        if request_id is None:
                            log.warning("skipped a stdio line that is not JSON-RPC with a readable id")
                            continue
                        message = "the message is not a valid JSON-RPC 2.0 request; see the MCP specification"
                        refusal = JSONRPCError(
                            jsonrpc="2.0",
                            id=request_id,
                            error=ErrorData(code=INVALID_REQUEST, message=message),
                        )
                        await write_stream.send(SessionMessage(refusal))

            async with anyio.create_task_group() as group:
                group.start_soon(relay)
                lowlevel = self._lowlevel_server
                await lowlevel.run(relay_reader, write_stream, lowlevel.create_initialization_options())

    async def call_tool(
        self, name: str, arguments: dict[str, Any], context: Context[Any, Any] | None = None
    ) -> CallToolResult | InputRequiredResult:
        """Call the tool `name`; an unknown name is invalid params, naming the tools there are."""
        if self._tool_manager.get_tool(name) is None:
            known = ", ".join(tool.name for tool in self._tool_manager.list_tools())
            raise MCPError(code=INVALID_PARAMS, message=f"Unknown tool: {name!r}; the tools are {known}")
        return await super().call_tool(name, arguments, context)

    async def get_prompt(
        self, name: str, arguments: dict[str, Any] | None = None, context: Context[Any, Any] | None = None
    ) -> GetPromptResult | InputRequiredResult:
        """The prompt `name`; an unknown name is invalid params, naming the prompts there are."""
        known = [prompt.name for prompt in await self.list_prompts()]
        if name not in known:
            raise MCPError(
                code=INVALID_PARAMS, message=f"Unknown prompt: {name!r}; the prompts are {', '.join(known)}"
            )
        return await super().get_prompt(name, arguments, context)
