"""Every operation of todo-ledger on the database. Each touches only its owner's rows.

On PostgreSQL every operation issues exactly one statement (writes, their ledger entries and a
repeating task's next occurrence are data-modifying CTEs). Each statement is built once (per shape,
for lists) with named parameters and runs as a statement prepared once per connection: one round
trip per call on an autocommit connection. The SQLite default runs the same operations as a few
statements, writes in one transaction. Reads are here; writes in `todo_mcp.storage.writes`.
"""

from __future__ import annotations

import sqlalchemy as sa

from todo_mcp.due import zone_info
from todo_mcp.errors import TaskNotFound, VersionConflict
from todo_mcp.identity import Actor
from todo_mcp.models import LIST_DESCRIPTION_MAX, Task, TaskPage, TaskPatch, TaskQuery
from todo_mcp.storage import writes
from todo_mcp.storage.cursor import decode_cursor, encode_cursor
from todo_mcp.storage.filters import list_values, statement_for, visible
from todo_mcp.storage.history import list_changes
from todo_mcp.storage.session import Session, first, planned_per_call
from todo_mcp.storage.statements import built, param
from todo_mcp.storage.table import ID_MAX, task_from_row, tasks_table
from todo_mcp.storage.undo import undo_changes
from todo_mcp.storage.writes import BulkWritten, Written, utcnow

t = tasks_table

__all__ = [
    "BulkWritten",
    "Written",
    "complete_tasks",
    "create_task",
    "delete_tasks",
    "get_task",
    "list_changes",
    "list_tasks",
    "restore_tasks",
    "undo_changes",
    "update_task",
    "utcnow",
]


# --- read ----------------------------------------------------------------------------------------------


@built
def _select_task() -> sa.ClauseElement:
    return sa.select(t).where(visible(), t.c.id == param("task_id", t.c.id))


async def get_task(session: Session, *, owner: str, task_id: int) -> Task:
    """One task of the owner's, not deleted."""
    if task_id > ID_MAX:
        raise TaskNotFound(task_id)
    row = await first(session, _select_task(), {"owner": owner, "task_id": task_id})
    if row is None:
        raise TaskNotFound(task_id)
    return task_from_row(row)


@planned_per_call
async def list_tasks(
    session: Session, *, owner: str, query: TaskQuery, default_tz: str, cursor_key: bytes
) -> TaskPage:
    """One page of tasks in a stable order; next_cursor (signed with `cursor_key`) continues after it."""
    zone = zone_info(query.tz or default_tz)
    after = decode_cursor(query, query.cursor, cursor_key) if query.cursor else None
    values = list_values(session.sql, owner, query, zone, utcnow(), after)
    rows = await session.rows(statement_for(session.sql, query, after=after is not None), values)
    page, more = rows[: query.limit], len(rows) > query.limit
    tasks = []
    for row in page:
        task = task_from_row(row)
        if task.description and len(task.description) > LIST_DESCRIPTION_MAX:
            task.description = task.description[: LIST_DESCRIPTION_MAX - 1] + "…"
        tasks.append(task)
    return TaskPage(tasks=tasks, next_cursor=encode_cursor(query, page[-1], cursor_key) if more else None)


# --- write -----------------------------------------------------------------------------------------------


async def update_task(session: Session, *, actor: Actor, task_id: int, patch: TaskPatch) -> Written:
    """Change only the named fields. With expected_version, refuse to overwrite a newer version.

    A patch that names no field changes nothing: it returns the task as it is (still checked
    against expected_version), and no change is recorded.
    """
    if patch.changes():
        return await writes.update_task(session, actor=actor, task_id=task_id, patch=patch)
    task = await get_task(session, owner=actor.owner, task_id=task_id)
    if patch.expected_version is not None and patch.expected_version != task.version:
        raise VersionConflict(task_id, expected=patch.expected_version, current=task.version)
    return Written(task, None)


create_task = writes.create_task
complete_tasks = writes.complete_tasks
delete_tasks = writes.delete_tasks
restore_tasks = writes.restore_tasks
