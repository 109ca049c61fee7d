"""The MCP server: tools, a task resource template and a planning prompt.

Each tool validates its arguments, makes one repository call for the caller's own tasks, and
returns a model (structured content plus the same compact JSON as text). Domain errors become
`ToolError`s whose text tells the model what to send instead.
"""

# No `from __future__ import annotations`: the SDK reads these signatures at registration time.

import functools
import json
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

from mcp.server import MCPServer
from mcp.server.mcpserver.exceptions import ResourceNotFoundError, ToolError
from mcp.server.mcpserver.tools import Tool
from mcp.types import CallToolResult, TextContent, ToolAnnotations
from pydantic import BaseModel, Field, ValidationError

from todo_mcp import __version__, repository
from todo_mcp.config import Settings
from todo_mcp.db import Database
from todo_mcp.errors import NotFoundError, TodoError, field_problems
from todo_mcp.identity import READ, WRITE, Principal
from todo_mcp.models import (
    PAGE_DEFAULT,
    PAGE_MAX,
    BulkResult,
    Description,
    DueText,
    DueWindow,
    Priority,
    RequestId,
    SortOrder,
    Status,
    StatusFilter,
    Tag,
    Tags,
    Task,
    TaskCreate,
    TaskId,
    TaskIds,
    TaskPage,
    TaskPatch,
    TaskQuery,
    Title,
    ZoneName,
)

INSTRUCTIONS = (
    "Manage the user's own tasks. Act on task ids from list_tasks/get_task, never on guessed titles. "
    "Priorities are low|medium|high|urgent. Due values are a date (2026-12-24) or a date-time with "
    "an offset or [IANA zone]. Deleting is undoable with delete_task(undo=true)."
)

ModelT = TypeVar("ModelT", bound=BaseModel)
Identity = Callable[[], Principal]

WRITE_TOOLS = frozenset({"add_task", "update_task", "complete_task", "delete_task"})


def _result(model: BaseModel) -> CallToolResult:
    """Structured content plus the same JSON, compact, as the text block."""
    data = model.model_dump(mode="json")
    return CallToolResult(
        content=[TextContent(type="text", text=json.dumps(data, ensure_ascii=False, separators=(",", ":")))],
        structured_content=data,
    )


class TodoTool(Tool):
    """A tool whose argument errors read as one line per field, saying what to send instead."""

    async def run(self, arguments: dict[str, Any], context: Any, convert_result: bool = False) -> Any:
        try:
            return await super().run(arguments, context, convert_result=convert_result)
        except ToolError as error:
            if isinstance(error.__cause__, ValidationError):
                raise ToolError(argument_errors(self.name, error.__cause__)) from error.__cause__
            raise


def argument_errors(tool: str, error: ValidationError) -> str:
    return f"Invalid arguments for {tool}: " + "; ".join(field_problems(error.errors(include_url=False)))


def slim_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """The same JSON schema without the bytes a model does not need.

    Drops pydantic's generated titles and `"default": null`, and turns `anyOf: [X, null]` into X for
    fields that default to None (leaving such a field out means "not given", and outputs leave it out
    rather than send null). A required field that may be null, like next_cursor, keeps its null.
    """

    def walk(node: Any) -> Any:
        if not isinstance(node, dict):
            return node
        node = dict(node)
        node.pop("title", None)
        optional = "default" in node and node["default"] is None
        if optional:
            del node["default"]
        options = node.get("anyOf")
        if optional and isinstance(options, list) and len(options) == 2 and {"type": "null"} in options:
            (kept,) = [option for option in options if option != {"type": "null"}]
            del node["anyOf"]
            node = {**kept, **node}
        for key in ("properties", "$defs"):
            if isinstance(node.get(key), dict):
                node[key] = {name: walk(sub) for name, sub in node[key].items()}
        for key in ("items", "additionalProperties"):
            if isinstance(node.get(key), dict):
                node[key] = walk(node[key])
        if isinstance(node.get("anyOf"), list):
            node["anyOf"] = [walk(option) for option in node["anyOf"]]
        return node

    result: dict[str, Any] = walk(schema)
    return result


def _annotations(*, read_only: bool, destructive: bool, idempotent: bool) -> ToolAnnotations:
    return ToolAnnotations(
        read_only_hint=read_only,
        destructive_hint=destructive,
        idempotent_hint=idempotent,
        open_world_hint=False,
    )


def _one_or_many(task_id: int | None, task_ids: list[int] | None) -> list[int]:
    if (task_id is None) == (task_ids is None):
        raise ToolError("send exactly one of task_id (one task) or task_ids (a list of up to 100 ids)")
    return [task_id] if task_id is not None else list(task_ids or [])


def _single_or_bulk(single: bool, result: BulkResult) -> BulkResult:
    """For a single id, a failure is a tool error the model cannot miss."""
    if single and not result.results[0].ok:
        raise ToolError(result.results[0].error or "the task could not be changed")
    return result


def build_server(db: Database, *, settings: Settings, identity: Identity) -> MCPServer[Any]:
    """An MCP server acting for whoever `identity()` names (the token's subject, or the stdio user)."""
    tools: list[Tool] = []

    def caller(scope: str) -> str:
        principal = identity()
        if scope not in principal.scopes:
            raise ToolError(f"this token lacks the {scope} scope; sign in again granting {scope}")
        return principal.user_id

    def tool(
        *, read_only: bool, destructive: bool, idempotent: bool
    ) -> Callable[[Callable[..., Awaitable[ModelT]]], None]:
        def register(fn: Callable[..., Awaitable[ModelT]]) -> None:
            if settings.read_only and not read_only:
                return

            @functools.wraps(fn)
            async def run(*args: Any, **kwargs: Any) -> CallToolResult:
                try:
                    return _result(await fn(*args, **kwargs))
                except TodoError as error:
                    raise ToolError(str(error)) from None

            registered = TodoTool.from_function(
                run,
                annotations=_annotations(read_only=read_only, destructive=destructive, idempotent=idempotent),
                structured_output=True,
            )
            registered.parameters = slim_schema(registered.parameters)
            if registered.fn_metadata.output_schema is not None:
                registered.fn_metadata.output_schema = slim_schema(registered.fn_metadata.output_schema)
            tools.append(registered)

        return register

    @tool(read_only=False, destructive=False, idempotent=False)
    async def add_task(
        title: Title,
        description: Description | None = None,
        priority: Priority = "medium",
        due: DueText | None = None,
        tags: Tags | None = None,
        client_request_id: Annotated[
            RequestId | None,
            Field(description="Retry key: the same key and content returns the original task."),
        ] = None,
    ) -> Task:
        """Create a task and return it with its id."""
        data = TaskCreate(
            title=title,
            description=description,
            priority=priority,
            due=due,
            tags=tags or [],
            client_request_id=client_request_id,
        )
        return await db.run(repository.create_task, owner=caller(WRITE), data=data)

    @tool(read_only=True, destructive=False, idempotent=True)
    async def list_tasks(
        status: StatusFilter = "pending",
        priority: Priority | None = None,
        tag: Tag | None = None,
        search: Annotated[
            str | None, Field(max_length=200, description="Words in title or description.")
        ] = None,
        due: Annotated[DueWindow | None, Field(description="Due window, computed in tz.")] = None,
        due_before: DueText | None = None,
        due_after: DueText | None = None,
        sort: Annotated[
            SortOrder, Field(description="due/priority: soonest first, undated last.")
        ] = "newest",
        limit: Annotated[int, Field(ge=1, le=PAGE_MAX)] = PAGE_DEFAULT,
        cursor: Annotated[str | None, Field(description="next_cursor of the previous page.")] = None,
        tz: ZoneName | None = None,
    ) -> TaskPage:
        """List tasks matching all given filters, one page at a time (descriptions cut to 200 chars)."""
        query = TaskQuery(
            status=status,
            priority=priority,
            tag=tag,
            search=search or None,
            due=due,
            due_before=due_before,
            due_after=due_after,
            sort=sort,
            limit=limit,
            cursor=cursor or None,
            tz=tz,
        )
        return await db.run(
            repository.list_tasks, owner=caller(READ), query=query, default_tz=settings.timezone
        )

    @tool(read_only=True, destructive=False, idempotent=True)
    async def get_task(task_id: TaskId) -> Task:
        """Read one task in full."""
        return await db.run(repository.get_task, owner=caller(READ), task_id=task_id)

    @tool(read_only=False, destructive=True, idempotent=False)
    async def update_task(
        task_id: TaskId,
        title: Title | None = None,
        description: Annotated[Description | None, Field(description="'' clears it.")] = None,
        priority: Priority | None = None,
        due: Annotated[str | None, Field(description="Like add_task; '' clears it.")] = None,
        tags: Annotated[Tags | None, Field(description="Replaces all tags; [] clears them.")] = None,
        status: Annotated[Status | None, Field(description="pending reopens a completed task.")] = None,
        expected_version: Annotated[
            int | None, Field(ge=1, description="Fail instead of overwriting if the version differs.")
        ] = None,
    ) -> Task:
        """Change only the fields given; the others keep their values."""
        try:
            patch = TaskPatch(
                title=title,
                description=description,
                priority=priority,
                due=due,
                tags=tags,
                status=status,
                expected_version=expected_version,
            )
        except ValueError as error:
            raise ToolError(str(error)) from None
        return await db.run(repository.update_task, owner=caller(WRITE), task_id=task_id, patch=patch)

    @tool(read_only=False, destructive=False, idempotent=True)
    async def complete_task(task_id: TaskId | None = None, task_ids: TaskIds | None = None) -> BulkResult:
        """Mark one task (task_id) or several (task_ids) completed; a result per id."""
        ids = _one_or_many(task_id, task_ids)
        results = await db.run(repository.complete_tasks, owner=caller(WRITE), ids=ids)
        return _single_or_bulk(task_id is not None, BulkResult(results=results))

    @tool(read_only=False, destructive=True, idempotent=True)
    async def delete_task(
        task_id: TaskId | None = None,
        task_ids: TaskIds | None = None,
        undo: Annotated[bool, Field(description="Restore deleted tasks instead.")] = False,
    ) -> BulkResult:
        """Delete one task (task_id) or several (task_ids); undo=true restores them. A result per id."""
        ids = _one_or_many(task_id, task_ids)
        operation = repository.restore_tasks if undo else repository.delete_tasks
        results = await db.run(operation, owner=caller(WRITE), ids=ids)
        return _single_or_bulk(task_id is not None, BulkResult(results=results))

    mcp: MCPServer[Any] = MCPServer(
        "todo-mcp",
        title="Tasks",
        version=__version__,
        instructions=INSTRUCTIONS,
        log_level=settings.log_level,
        tools=tools,
    )

    @mcp.resource(
        "task://{task_id}",
        name="task",
        title="One task",
        description="A task as JSON.",
        mime_type="application/json",
    )
    async def task_resource(task_id: str) -> str:
        try:
            number = int(task_id)
            task = await db.run(repository.get_task, owner=caller(READ), task_id=number)
        except (ValueError, NotFoundError, ToolError):
            raise ResourceNotFoundError(f"no task at task://{task_id}; list_tasks shows the ids") from None
        return task.model_dump_json()

    @mcp.prompt(name="plan_day", title="Plan my day", description="Review overdue and today's tasks.")
    async def plan_day(tz: str | None = None) -> str:
        try:
            query = TaskQuery(due="overdue_or_today", sort="priority", limit=PAGE_MAX, tz=tz or None)
        except ValueError as error:
            raise ValueError(f"tz: {error}") from None
        page = await db.run(
            repository.list_tasks, owner=caller(READ), query=query, default_tz=settings.timezone
        )
        zone = tz or settings.timezone
        if not page.tasks:
            listing = "(no overdue tasks and nothing due today)"
        else:
            listing = "\n".join(
                f"- [{t.id}] {t.title} (priority {t.priority}, due {t.due}"
                + (f", tags {', '.join(t.tags)}" if t.tags else "")
                + ")"
                for t in page.tasks
            )
        more = (
            "\n(more tasks exist; call list_tasks with due=overdue_or_today for the rest)"
            if page.next_cursor
            else ""
        )
        return (
            f"Here are my overdue tasks and the tasks due today (time zone {zone}):\n{listing}{more}\n\n"
            "Help me plan the day: group them, suggest an order (most urgent first), flag anything "
            "that should be rescheduled, and ask before changing any task. Use the task ids above "
            "with complete_task or update_task."
        )

    return mcp
