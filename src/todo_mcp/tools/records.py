"""Every tool, declared once: name, description, input and output models, hints, scope, handler.

Each tool is a handler decorated with `@tool`, which records it in `TOOLS`. MCP registration,
the HTTP gate's scope check, read-only mode and the tests that enumerate the tools are all
derived from that list. Adding a tool means adding one decorated handler here and one function
to the repository. A handler is a few lines: arguments in, one repository call, a model out.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar, get_type_hints

from mcp.types import ToolAnnotations
from pydantic import BaseModel

from todo_mcp.change_models import ChangePage, ChangeQuery, UndoRequest, UndoResult
from todo_mcp.config import Settings
from todo_mcp.errors import TaskNotFound
from todo_mcp.identity import READ, WRITE, Actor
from todo_mcp.models import (
    BulkResult,
    DeleteSelection,
    ItemResult,
    Task,
    TaskCreate,
    TaskPage,
    TaskQuery,
    TaskRef,
    TaskSelection,
    TaskUpdate,
    WrittenTask,
)
from todo_mcp.tools.errors import explain

if TYPE_CHECKING:
    from todo_mcp.storage import repository
    from todo_mcp.storage.engine import Database
    from todo_mcp.storage.writes import BulkWritten, Written
else:
    from todo_mcp.tools.deferred import repository

In = TypeVar("In", bound=BaseModel)
Out = TypeVar("Out", bound=BaseModel)


@dataclass(frozen=True)
class Hints:
    """The behaviour hints of a tool (the world it touches is always closed: the user's tasks)."""

    read_only: bool
    destructive: bool
    idempotent: bool

    def annotations(self) -> ToolAnnotations:
        """All four MCP annotations (the spec's defaults for unset ones are the pessimistic ones)."""
        return ToolAnnotations(
            read_only_hint=self.read_only,
            destructive_hint=self.destructive,
            idempotent_hint=self.idempotent,
            open_world_hint=False,
        )


READS = Hints(read_only=True, destructive=False, idempotent=True)


@dataclass(frozen=True)
class ToolCall:
    """What a handler acts with: the database, whose tasks and who acts (for the ledger), the settings."""

    db: Database
    actor: Actor
    settings: Settings

    @property
    def owner(self) -> str:
        """The user whose tasks this call reads and writes."""
        return self.actor.owner


Handler = Callable[[ToolCall, In], Awaitable[Out]]


@dataclass(frozen=True)
class ToolRecord(Generic[In, Out]):
    """One tool, as a value."""

    name: str
    description: str
    input: type[In]
    output: type[Out]
    hints: Hints
    scope: str
    handler: Handler[In, Out]


def per_id(selection: TaskSelection, written: BulkWritten) -> BulkResult:
    """A result per id (duplicates once); when a single id fails, the call fails, not just a row."""
    ids = list(dict.fromkeys(selection.task_ids))
    found = written.tasks
    if len(ids) == 1 and ids[0] not in found:
        raise TaskNotFound(ids[0])
    results = [
        ItemResult(id=task_id, ok=True, task=found[task_id], next=written.next.get(task_id))
        if task_id in found
        else ItemResult(id=task_id, ok=False, error=explain(TaskNotFound(task_id)))
        for task_id in ids
    ]
    return BulkResult(results=results, change_id=written.change_id)


def written_task(written: Written) -> WrittenTask:
    """The result of a one-task write: the task and its change id."""
    return WrittenTask(**dict(written.task), change_id=written.change_id)


TOOLS: list[ToolRecord[Any, Any]] = []


def tool(scope: str, hints: Hints) -> Callable[[Handler[In, Out]], Handler[In, Out]]:
    """Declare the decorated handler a tool and append its record to `TOOLS`.

    The record takes its name from the handler, its description (copy for the model) from the
    handler's docstring, its input model from the type of `args`, its output model from the
    return type; `scope` and `hints` are given here.
    """

    def declare(handler: Handler[In, Out]) -> Handler[In, Out]:
        types = get_type_hints(handler)
        TOOLS.append(
            ToolRecord(
                name=handler.__name__,
                description=" ".join((inspect.getdoc(handler) or "").split()),
                input=types["args"],
                output=types["return"],
                hints=hints,
                scope=scope,
                handler=handler,
            )
        )
        return handler

    return declare


@tool(WRITE, Hints(read_only=False, destructive=False, idempotent=False))
async def add_task(call: ToolCall, args: TaskCreate) -> WrittenTask:
    """Create a task and return it with its id."""
    return written_task(await call.db.run(repository.create_task, actor=call.actor, data=args))


@tool(READ, READS)
async def list_tasks(call: ToolCall, args: TaskQuery) -> TaskPage:
    """List tasks matching all given filters, one page at a time (descriptions cut to 200 chars).

    Paging never repeats or skips a task, except one whose due or priority changes in between.
    """
    return await call.db.run(
        repository.list_tasks,
        owner=call.owner,
        query=args,
        default_tz=call.settings.timezone,
        cursor_key=call.db.cursor_key,
    )


@tool(READ, READS)
async def get_task(call: ToolCall, args: TaskRef) -> Task:
    """Read one task in full."""
    return await call.db.run(repository.get_task, owner=call.owner, task_id=args.task_id)


@tool(WRITE, Hints(read_only=False, destructive=True, idempotent=False))
async def update_task(call: ToolCall, args: TaskUpdate) -> WrittenTask:
    """Change the fields given; null or absent fields keep their values."""
    written = await call.db.run(repository.update_task, actor=call.actor, task_id=args.task_id, patch=args)
    return written_task(written)


@tool(WRITE, Hints(read_only=False, destructive=False, idempotent=True))
async def complete_task(call: ToolCall, args: TaskSelection) -> BulkResult:
    """Mark tasks completed; a result per id. A repeating task's next occurrence is made at once."""
    completed = await call.db.run(
        repository.complete_tasks, actor=call.actor, ids=args.task_ids, default_tz=call.settings.timezone
    )
    return per_id(args, completed)


@tool(WRITE, Hints(read_only=False, destructive=True, idempotent=True))
async def delete_task(call: ToolCall, args: DeleteSelection) -> BulkResult:
    """Delete tasks (restore=true brings deleted ones back); a result per id."""
    operation = repository.restore_tasks if args.restore else repository.delete_tasks
    return per_id(args, await call.db.run(operation, actor=call.actor, ids=args.task_ids))


@tool(READ, READS)
async def list_changes(call: ToolCall, args: ChangeQuery) -> ChangePage:
    """Your recorded changes (every write, by any client), newest first, or one task's history (task_id).

    Each shows when, through which tool or route and client, and per task the fields before and after.
    """
    return await call.db.run(
        repository.list_changes, owner=call.owner, query=args, cursor_key=call.db.cursor_key
    )


@tool(WRITE, Hints(read_only=False, destructive=True, idempotent=False))
async def undo_changes(call: ToolCall, args: UndoRequest) -> UndoResult:
    """Undo changes by change_id, or your last N (default: the last one), as one new change.

    A task changed since is left as it is and listed in refused. dry_run=true shows what it would do.
    """
    return await call.db.run(repository.undo_changes, actor=call.actor, request=args)


_BY_NAME = {record.name: record for record in TOOLS}


def offered(*, read_only: bool) -> Iterable[ToolRecord[Any, Any]]:
    """The tools a server offers: all of them, or in read-only mode only those that change nothing."""
    return [record for record in TOOLS if record.hints.read_only or not read_only]


def scope_of(name: object) -> str:
    """The scope a call of tool `name` needs (an unknown name needs todo:read to be told so)."""
    record = _BY_NAME.get(name) if isinstance(name, str) else None
    return record.scope if record is not None else READ
