"""The MCP server: the tool records registered as SDK tools, plus the task resource and the prompt.

A registered tool validates its arguments with the record's input model (once), checks the
record's scope, runs the handler, and returns the output model as structured content plus the
same compact JSON as text. Every failure reaches the client as words from `todo_mcp.tools.errors`.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from mcp.server.mcpserver.exceptions import ToolError, UnexpectedToolError
from mcp.server.mcpserver.tools import Tool
from mcp.server.mcpserver.utilities.func_metadata import ArgModelBase, FuncMetadata
from mcp.types import CallToolResult, TextContent
from pydantic import BaseModel, ValidationError
from pydantic_core import to_json

from todo_mcp import __version__
from todo_mcp.config import Settings
from todo_mcp.errors import ScopeMissing, TodoError
from todo_mcp.identity import Actor, Principal, require
from todo_mcp.limits import CallBudget
from todo_mcp.tools.errors import explain, invalid_arguments, protocol_error
from todo_mcp.tools.protocol import LedgerServer
from todo_mcp.tools.records import ToolCall, ToolRecord, offered
from todo_mcp.tools.resources import DatabaseSource, add_plan_day_prompt, add_task_resource
from todo_mcp.tools.schema import input_schema, result_schema

if TYPE_CHECKING:
    from todo_mcp.storage.engine import Database


INSTRUCTIONS = (
    "Manage the user's own tasks. Act on task ids from list_tasks/get_task, never on guessed titles. "
    "Priorities are low|medium|high|urgent. Due values are a date (2026-12-24) or a date-time with "
    "an offset or [IANA zone]. Every write returns a change_id: undo_changes undoes a change (or your "
    "last N), and list_changes shows what was changed, by whom and when."
)

Identity = Callable[[], Principal]
Invoke = Callable[[dict[str, Any], Any], Awaitable[CallToolResult]]


def client_name(principal: Principal, context: Any) -> str | None:
    """The client a change is recorded under: the token's OAuth client, else the MCP client's name."""
    if principal.client is not None:
        return principal.client
    try:
        params = context.request_context.session.client_params
    except (AttributeError, LookupError, ValueError):
        return None
    info = getattr(params, "client_info", None)
    name = getattr(info, "name", None)
    return name[:255] if isinstance(name, str) and name.strip() else None


class DeclaredTool(Tool):
    """An SDK tool made from a `ToolRecord`; `fn` does all the work, nothing is validated twice."""

    async def run(self, arguments: dict[str, Any], context: Any, convert_result: bool = False) -> Any:
        """Call the record's handler with these arguments; see `_invoker`."""
        return await self.fn(arguments, context)


def _pre_parse(model: type[BaseModel], arguments: dict[str, Any]) -> dict[str, Any]:
    """Lists and objects some clients send as JSON text (Claude Desktop does), decoded."""
    parsed = dict(arguments)
    for name, value in arguments.items():
        field = model.model_fields.get(name)
        if field is None or field.annotation is str or not isinstance(value, str):
            continue
        if value.lstrip().startswith(("[", "{")):
            # Text that is not JSON is left as it is, for validation to refuse with a field message.
            with contextlib.suppress(ValueError):
                parsed[name] = json.loads(value)
    return parsed


def tool_result(model: BaseModel) -> CallToolResult:
    """Structured content plus the same JSON, compact, as the text block."""
    data = model.model_dump(mode="json")
    return CallToolResult(
        content=[TextContent(type="text", text=to_json(data).decode())], structured_content=data
    )


def _invoker(
    record: ToolRecord[Any, Any],
    database: DatabaseSource,
    settings: Settings,
    identity: Identity,
    budget: CallBudget | None,
) -> Invoke:
    async def invoke(arguments: dict[str, Any], context: Any) -> CallToolResult:
        try:
            principal = identity()
            owner = require(principal, record.scope)
            if budget is not None:
                budget.spend(owner)
            args = record.input.model_validate(_pre_parse(record.input, arguments))
            actor = Actor(owner, via=record.name, client=client_name(principal, context))
            call = ToolCall(db=await database(), actor=actor, settings=settings)
            output = await record.handler(call, args)
        except ValidationError as error:
            raise ToolError(invalid_arguments(record.name, record.input, error)) from None
        except ScopeMissing as error:
            # Not something the model can fix by sending other arguments: a protocol error.
            raise protocol_error(error) from None
        except TodoError as error:
            raise ToolError(explain(error, record.name, changes=not record.hints.read_only)) from None
        except Exception as error:
            # The SDK logs it, with this error's cause and traceback: once.
            raise UnexpectedToolError(
                f"{record.name} failed because of an unexpected error on the server (it was logged)"
            ) from error
        return tool_result(output)

    return invoke


def declared_tool(record: ToolRecord[Any, Any], invoke: Invoke) -> DeclaredTool:
    """The SDK tool for `record`, publishing the schemas of its models."""
    return DeclaredTool(
        fn=invoke,
        name=record.name,
        description=record.description,
        parameters=input_schema(record.input),
        fn_metadata=FuncMetadata(arg_model=ArgModelBase, output_schema=result_schema(record.output)),
        is_async=True,
        annotations=record.hints.annotations(),
    )


def build_server(
    db: Database | DatabaseSource,
    *,
    settings: Settings,
    identity: Identity,
    budget: CallBudget | None = None,
) -> LedgerServer:
    """An MCP server acting for whoever `identity()` names (the token's subject, or the stdio user).

    `db` is an open database, or a function that opens it on first use (awaited by every call).

    With a `budget`, each tool call spends one of the caller's calls per minute; past it the call
    is refused with the wait, as a tool error on whatever channel the client reads its answers.
    """
    source = db if callable(db) else _ready(db)
    tools: list[Tool] = [
        declared_tool(record, _invoker(record, source, settings, identity, budget))
        for record in offered(read_only=settings.read_only)
    ]
    mcp = LedgerServer(
        "todo-ledger",
        title="Tasks",
        version=__version__,
        instructions=INSTRUCTIONS,
        log_level=settings.log_level,
        tools=tools,
    )
    add_task_resource(mcp, source, identity)
    add_plan_day_prompt(mcp, source, settings, identity)
    return mcp


def _ready(db: Database) -> DatabaseSource:
    async def source() -> Database:
        return db

    return source
