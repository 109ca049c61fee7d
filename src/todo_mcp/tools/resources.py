"""The `task://{task_id}` resource template and the `plan_day` prompt."""

# No `from __future__ import annotations`: the SDK reads these signatures at registration time.

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from mcp.server import MCPServer
from mcp.server.mcpserver.exceptions import ResourceNotFoundError
from pydantic import ValidationError

from todo_mcp.config import Settings
from todo_mcp.errors import InvalidInput, TaskNotFound, TodoError
from todo_mcp.identity import READ, Principal, require
from todo_mcp.models import PAGE_MAX, Task, TaskQuery
from todo_mcp.tools.errors import protocol_error

if TYPE_CHECKING:
    from todo_mcp.storage import repository
    from todo_mcp.storage.engine import Database
else:
    from todo_mcp.tools.deferred import repository

Identity = Callable[[], Principal]
DatabaseSource = Callable[[], Awaitable["Database"]]


def add_task_resource(mcp: MCPServer[Any], database: DatabaseSource, identity: Identity) -> None:
    """Register `task://{task_id}`: one task as JSON, like get_task."""

    @mcp.resource(
        "task://{task_id}",
        name="task",
        title="One task",
        description="A task as JSON.",
        mime_type="application/json",
    )
    async def task_resource(task_id: str) -> str:
        try:
            owner = require(identity(), READ)
            db = await database()
            task = await db.run(repository.get_task, owner=owner, task_id=int(task_id))
        except (ValueError, TaskNotFound):
            raise ResourceNotFoundError(f"no task at task://{task_id}; list_tasks shows the ids") from None
        except TodoError as error:
            raise protocol_error(error) from None
        return task.model_dump_json()


def _listing(tasks: list[Task]) -> str:
    if not tasks:
        return "(no overdue tasks and nothing due today)"
    return "\n".join(
        f"- [{t.id}] {t.title} (priority {t.priority}, due {t.due}"
        + (f", tags {', '.join(t.tags)}" if t.tags else "")
        + ")"
        for t in tasks
    )


def add_plan_day_prompt(
    mcp: MCPServer[Any], database: DatabaseSource, settings: Settings, identity: Identity
) -> None:
    """Register `plan_day(tz)`: the overdue tasks and today's, most urgent first, to plan with."""

    @mcp.prompt(name="plan_day", title="Plan my day", description="Review overdue and today's tasks.")
    async def plan_day(tz: str | None = None) -> str:
        try:
            owner = require(identity(), READ)
            query = TaskQuery(due="overdue_or_today", sort="priority", limit=PAGE_MAX, tz=tz or None)
            db = await database()
            page = await db.run(
                repository.list_tasks,
                owner=owner,
                query=query,
                default_tz=settings.timezone,
                cursor_key=db.cursor_key,
            )
        except ValidationError as error:
            raise protocol_error(InvalidInput.from_pydantic(error.errors(include_url=False))) from None
        except TodoError as error:
            raise protocol_error(error) from None
        more = (
            "\n(more tasks exist; call list_tasks with due=overdue_or_today for the rest)"
            if page.next_cursor
            else ""
        )
        return (
            f"Here are my overdue tasks and the tasks due today (time zone {tz or settings.timezone}):\n"
            f"{_listing(page.tasks)}{more}\n\n"
            "Help me plan the day: group them, suggest an order (most urgent first), flag anything "
            "that should be rescheduled, and ask before changing any task. Use the task ids above "
            "with complete_task or update_task."
        )
