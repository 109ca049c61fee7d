"""Every query of todo-ledger. Each function takes the owner id and touches only that owner's rows.

On PostgreSQL every function issues exactly one statement (writes use RETURNING, conditional
writes use a data-modifying CTE), and each statement's text is the same whatever the arguments,
so asyncpg's statement cache serves it after its first use: one round trip per call on an
autocommit connection. The SQLite default runs the same operations, at most two statements.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from todo_mcp.due import parse_due, zone_info
from todo_mcp.errors import CreatedThenDeleted, IdempotencyConflict, TaskNotFound, VersionConflict
from todo_mcp.models import LIST_DESCRIPTION_MAX, PATCHABLE, Task, TaskCreate, TaskPage, TaskPatch, TaskQuery
from todo_mcp.storage.cursor import decode_cursor, encode_cursor
from todo_mcp.storage.dialect import dialect_of
from todo_mcp.storage.filters import list_conditions, order_by, visible
from todo_mcp.storage.table import ID_MAX, NO_DUE_SORT, PRIORITY_RANK, VERSION_MAX, task_from_row, tasks_table

t = tasks_table


def utcnow() -> datetime:
    """The current time, to the second, in UTC: what the `*_at` columns hold."""
    return datetime.now(UTC).replace(microsecond=0)


def _now_param() -> sa.BindParameter[datetime]:
    return sa.bindparam("now", utcnow(), type_=t.c.updated_at.type)


def _request_hash(data: TaskCreate) -> str:
    payload = data.model_dump(mode="json", exclude={"client_request_id"})
    return hashlib.sha256(json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _due_columns(text: str | None) -> dict[str, Any]:
    due = parse_due(text) if text else None
    return {
        "due_date": due.day if due else None,
        "due_at": due.at if due else None,
        "due_tz": due.tz if due else None,
        "due_sort": due.sort_key if due else NO_DUE_SORT,
    }


# --- create / read --------------------------------------------------------------------------------


async def create_task(conn: AsyncConnection, *, owner: str, data: TaskCreate) -> Task:
    """Insert a task. With a client_request_id, a retry returns the original task instead."""
    now = utcnow()
    request_hash = _request_hash(data) if data.client_request_id else None
    values: dict[str, Any] = {
        "owner_id": owner,
        "title": data.title,
        "description": data.description or None,
        "status": "pending",
        "priority": PRIORITY_RANK[data.priority],
        **_due_columns(data.due),
        "tags": data.tags,
        "version": 1,
        "created_at": now,
        "updated_at": now,
        "client_request_id": data.client_request_id,
        "request_hash": request_hash,
    }
    stmt = dialect_of(conn).insert(values, retry_key=data.client_request_id is not None)
    row = (await conn.execute(stmt)).one()
    if data.client_request_id is not None and row.deleted_at is not None:
        raise CreatedThenDeleted(data.client_request_id, row.id)
    if data.client_request_id is not None and row.request_hash != request_hash:
        raise IdempotencyConflict(data.client_request_id, row.id)
    return task_from_row(row)


async def get_task(conn: AsyncConnection, *, owner: str, task_id: int) -> Task:
    """One task of the owner's, not deleted."""
    if task_id > ID_MAX:
        raise TaskNotFound(task_id)
    row = (await conn.execute(sa.select(t).where(visible(owner), t.c.id == task_id))).one_or_none()
    if row is None:
        raise TaskNotFound(task_id)
    return task_from_row(row)


async def list_tasks(
    conn: AsyncConnection, *, owner: str, query: TaskQuery, default_tz: str, cursor_key: bytes
) -> TaskPage:
    """One page of tasks in a stable order; next_cursor (signed with `cursor_key`) continues after it."""
    zone = zone_info(query.tz or default_tz)
    after = decode_cursor(query, query.cursor, cursor_key) if query.cursor else None
    conditions = list_conditions(dialect_of(conn), owner, query, zone, utcnow(), after)
    stmt = sa.select(t).where(*conditions).order_by(*order_by(query)).limit(query.limit + 1)
    rows = (await conn.execute(stmt)).all()
    page, more = rows[: query.limit], len(rows) > query.limit
    tasks = []
    for row in page:
        task = task_from_row(row)
        if task.description and len(task.description) > LIST_DESCRIPTION_MAX:
            task.description = task.description[: LIST_DESCRIPTION_MAX - 1] + "…"
        tasks.append(task)
    return TaskPage(tasks=tasks, next_cursor=encode_cursor(query, page[-1], cursor_key) if more else None)


# --- update ------------------------------------------------------------------------------------------


def _keep_unless(flag: str, column: str, new: str) -> Any:
    return sa.case(
        (sa.bindparam(flag, type_=sa.Boolean()), sa.bindparam(new, type_=t.c[column].type)),
        else_=t.c[column],
    )


def _patch_values() -> dict[str, Any]:
    """SET clauses that keep the fields a patch does not name; the SQL text never varies."""
    set_status = sa.bindparam("set_status", type_=sa.Boolean())
    new_status = sa.bindparam("new_status", type_=t.c.status.type)
    now = sa.bindparam("now", type_=t.c.updated_at.type)
    values: dict[str, Any] = {
        name: _keep_unless(f"set_{name}", name, f"new_{name}")
        for name in ("title", "description", "priority", "tags", "status")
    }
    values.update({column: _keep_unless("set_due", column, f"new_{column}") for column in _due_columns(None)})
    values["completed_at"] = sa.case(
        (sa.and_(set_status, new_status == "pending"), sa.null()),
        (sa.and_(set_status, new_status == "completed", t.c.completed_at.is_(None)), now),
        else_=t.c.completed_at,
    )
    values.update(version=t.c.version + 1, updated_at=now)
    return values


def _patch_params(patch: TaskPatch, now: datetime) -> dict[str, Any]:
    """The parameters of `_patch_values` for this patch."""
    changes = patch.changes()
    new = {
        "title": changes.get("title"),
        "description": changes.get("description") or None,
        "priority": PRIORITY_RANK.get(changes.get("priority", ""), 0),
        "tags": changes.get("tags") or [],
        "status": changes.get("status") or "pending",
        **_due_columns(changes.get("due")),
    }
    params = {f"new_{name}": value for name, value in new.items()}
    params.update({f"set_{name}": name in changes for name in PATCHABLE})
    params["now"] = now
    return params


async def update_task(conn: AsyncConnection, *, owner: str, task_id: int, patch: TaskPatch) -> Task:
    """Change only the named fields. With expected_version, refuse to overwrite a newer version.

    A patch that names no field changes nothing: it returns the task as it is (still checked
    against expected_version).
    """
    expected = patch.expected_version
    if not patch.changes():
        task = await get_task(conn, owner=owner, task_id=task_id)
        if expected is not None and expected != task.version:
            raise VersionConflict(task_id, expected=expected, current=task.version)
        return task
    if task_id > ID_MAX:
        raise TaskNotFound(task_id)
    # Beyond the column's range it can never match, and neither can 0.
    checked = 0 if expected is not None and expected > VERSION_MAX else expected
    expected_param = sa.bindparam("expected", checked, type_=sa.Integer())
    version_ok = sa.or_(expected_param.is_(None), t.c.version == expected_param)
    update = sa.update(t).where(version_ok).values(**_patch_values())
    found = sa.and_(visible(owner), t.c.id == task_id)
    row, current = await dialect_of(conn).checked_update(conn, found, update, _patch_params(patch, utcnow()))
    if row is not None:
        return task_from_row(row)
    if current is None:
        raise TaskNotFound(task_id)
    raise VersionConflict(task_id, expected=expected or 0, current=current)


# --- bulk: complete, delete, restore ---------------------------------------------------------------


async def _bulk(
    conn: AsyncConnection, where: sa.ColumnElement[bool], values: dict[str, Any]
) -> dict[int, Task]:
    stmt = sa.update(t).where(where).values(**values).returning(*t.c)
    return {row.id: task_from_row(row) for row in await conn.execute(stmt)}


async def complete_tasks(conn: AsyncConnection, *, owner: str, ids: Sequence[int]) -> dict[int, Task]:
    """Mark tasks completed; an already completed task is reported as is, its version unchanged."""
    now = _now_param()
    done = t.c.status == "completed"
    return await _bulk(
        conn,
        sa.and_(visible(owner), dialect_of(conn).ids_match(ids)),
        {
            "status": "completed",
            "completed_at": sa.func.coalesce(t.c.completed_at, now),
            "version": t.c.version + sa.case((done, 0), else_=1),
            "updated_at": sa.case((done, t.c.updated_at), else_=now),
        },
    )


async def delete_tasks(conn: AsyncConnection, *, owner: str, ids: Sequence[int]) -> dict[int, Task]:
    """Soft-delete tasks: they disappear everywhere until restored."""
    now = utcnow()
    return await _bulk(
        conn,
        sa.and_(visible(owner), dialect_of(conn).ids_match(ids)),
        {"deleted_at": now, "updated_at": now, "version": t.c.version + 1},
    )


async def restore_tasks(conn: AsyncConnection, *, owner: str, ids: Sequence[int]) -> dict[int, Task]:
    """Undo a delete. A task that is not deleted is reported as is."""
    now = _now_param()
    deleted = t.c.deleted_at.is_not(None)
    return await _bulk(
        conn,
        sa.and_(t.c.owner_id == owner, dialect_of(conn).ids_match(ids)),
        {
            "deleted_at": None,
            "version": t.c.version + sa.case((deleted, 1), else_=0),
            "updated_at": sa.case((deleted, now), else_=t.c.updated_at),
        },
    )
