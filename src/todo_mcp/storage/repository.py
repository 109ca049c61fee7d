"""Every query of todo-ledger. Each function takes the owner id and touches only that owner's rows.

On PostgreSQL every function issues exactly one statement (writes use RETURNING, conditional
writes use a data-modifying CTE). Each statement is built once (per shape, for lists) with named
parameters and runs as a statement prepared once per connection: one round trip per call on an
autocommit connection. The SQLite default runs the same operations, at most two statements.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from todo_mcp.due import parse_due, zone_info
from todo_mcp.errors import CreatedThenDeleted, IdempotencyConflict, TaskNotFound, VersionConflict
from todo_mcp.models import LIST_DESCRIPTION_MAX, PATCHABLE, Task, TaskCreate, TaskPage, TaskPatch, TaskQuery
from todo_mcp.storage.cursor import decode_cursor, encode_cursor
from todo_mcp.storage.dialect import returning_insert, sql_dialect
from todo_mcp.storage.filters import list_values, statement_for, visible
from todo_mcp.storage.session import Session, first
from todo_mcp.storage.statements import built, param
from todo_mcp.storage.table import ID_MAX, NO_DUE_SORT, PRIORITY_RANK, VERSION_MAX, task_from_row, tasks_table

t = tasks_table


def utcnow() -> datetime:
    """The current time, to the second, in UTC: what the `*_at` columns hold."""
    return datetime.now(UTC).replace(microsecond=0)


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


def _this_task() -> sa.ColumnElement[bool]:
    """The parameter `task_id`'s task, if the parameter `owner` has it and it is not deleted."""
    return sa.and_(visible(), t.c.id == param("task_id", t.c.id))


# --- create / read --------------------------------------------------------------------------------


@built
def _insert(database: str, retry_key: bool) -> sa.ClauseElement:
    return returning_insert(sql_dialect(database), retry_key=retry_key)


async def create_task(session: Session, *, owner: str, data: TaskCreate) -> Task:
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
        "completed_at": None,
        "deleted_at": None,
        "client_request_id": data.client_request_id,
        "request_hash": request_hash,
    }
    statement = _insert(session.sql.name, data.client_request_id is not None)
    row = await first(session, statement, values)
    assert row is not None, "INSERT ... RETURNING returns its row"
    if data.client_request_id is not None and row["deleted_at"] is not None:
        raise CreatedThenDeleted(data.client_request_id, row["id"])
    if data.client_request_id is not None and row["request_hash"] != request_hash:
        raise IdempotencyConflict(data.client_request_id, row["id"])
    return task_from_row(row)


@built
def _select_task() -> sa.ClauseElement:
    return sa.select(t).where(_this_task())


async def get_task(session: Session, *, owner: str, task_id: int) -> Task:
    """One task of the owner's, not deleted."""
    if task_id > ID_MAX:
        raise TaskNotFound(task_id)
    row = await first(session, _select_task(), {"owner": owner, "task_id": task_id})
    if row is None:
        raise TaskNotFound(task_id)
    return task_from_row(row)


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


# --- update ------------------------------------------------------------------------------------------


def _keep_unless(flag: str, column: str) -> Any:
    """The parameter `new_<column>` when the parameter `flag` is true, else the column as it is."""
    return sa.case((param(flag, sa.Boolean()), param(f"new_{column}", t.c[column])), else_=t.c[column])


def _patch_values() -> dict[str, Any]:
    """SET clauses that keep the fields a patch does not name; the SQL text never varies."""
    set_status = param("set_status", sa.Boolean())
    new_status = param("new_status", t.c.status)
    now = param("now", t.c.updated_at)
    values: dict[str, Any] = {
        name: _keep_unless(f"set_{name}", name)
        for name in ("title", "description", "priority", "tags", "status")
    }
    values.update({column: _keep_unless("set_due", column) for column in _due_columns(None)})
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


def _version_checked_update() -> sa.Update:
    """UPDATE the task, unless the parameter `expected` is given and differs from its version."""
    expected = param("expected", sa.Integer())
    version_ok = sa.or_(expected.is_(None), t.c.version == expected)
    return sa.update(t).where(version_ok).values(**_patch_values())


@built
def _update_reporting_version() -> sa.ClauseElement:
    """One statement: find the row, update it if the version matches, report which happened.

    FOR UPDATE: behind a concurrent writer, read the version it committed, not this statement's
    snapshot, so a conflict reports the real current version (and a concurrent delete, not found).
    """
    cur = sa.select(t.c.id, t.c.version).where(_this_task()).with_for_update().cte("cur")
    upd = _version_checked_update().where(_this_task(), t.c.id == cur.c.id).returning(*t.c).cte("upd")
    return sa.select(cur.c.version.label("current_version"), *upd.c).select_from(
        cur.outerjoin(upd, sa.true())
    )


@built
def _update_returning() -> sa.ClauseElement:
    return _version_checked_update().where(_this_task()).returning(*t.c)


@built
def _select_version() -> sa.ClauseElement:
    return sa.select(t.c.version.label("current_version")).where(_this_task())


async def _checked_update(session: Session, params: dict[str, Any]) -> tuple[Any, int | None]:
    """The updated row (or None) and, when nothing was updated, the current version (None: no task)."""
    if session.sql.checks_update_in_one_statement():
        row = await first(session, _update_reporting_version(), params)
        if row is None:
            return None, None
        return (row if row["id"] is not None else None), row["current_version"]
    row = await first(session, _update_returning(), params)
    if row is not None:
        return row, None
    current = await first(session, _select_version(), params)
    return None, current["current_version"] if current is not None else None


async def update_task(session: Session, *, owner: str, task_id: int, patch: TaskPatch) -> Task:
    """Change only the named fields. With expected_version, refuse to overwrite a newer version.

    A patch that names no field changes nothing: it returns the task as it is (still checked
    against expected_version).
    """
    expected = patch.expected_version
    if not patch.changes():
        task = await get_task(session, owner=owner, task_id=task_id)
        if expected is not None and expected != task.version:
            raise VersionConflict(task_id, expected=expected, current=task.version)
        return task
    if task_id > ID_MAX:
        raise TaskNotFound(task_id)
    # Beyond the column's range it can never match, and neither can 0.
    checked = 0 if expected is not None and expected > VERSION_MAX else expected
    params = {"owner": owner, "task_id": task_id, "expected": checked, **_patch_params(patch, utcnow())}
    row, current = await _checked_update(session, params)
    if row is not None:
        return task_from_row(row)
    if current is None:
        raise TaskNotFound(task_id)
    raise VersionConflict(task_id, expected=expected or 0, current=current)


# --- bulk: complete, delete, restore ---------------------------------------------------------------


@built
def _complete(database: str) -> sa.ClauseElement:
    now = param("now", t.c.updated_at)
    done = t.c.status == "completed"
    return (
        sa.update(t)
        .where(visible(), sql_dialect(database).ids_match())
        .values(
            status="completed",
            completed_at=sa.func.coalesce(t.c.completed_at, now),
            version=t.c.version + sa.case((done, 0), else_=1),
            updated_at=sa.case((done, t.c.updated_at), else_=now),
        )
        .returning(*t.c)
    )


@built
def _delete(database: str) -> sa.ClauseElement:
    now = param("now", t.c.updated_at)
    return (
        sa.update(t)
        .where(visible(), sql_dialect(database).ids_match())
        .values(deleted_at=now, updated_at=now, version=t.c.version + 1)
        .returning(*t.c)
    )


@built
def _restore(database: str) -> sa.ClauseElement:
    now = param("now", t.c.updated_at)
    deleted = t.c.deleted_at.is_not(None)
    return (
        sa.update(t)
        .where(t.c.owner_id == param("owner", t.c.owner_id), sql_dialect(database).ids_match())
        .values(
            deleted_at=None,
            version=t.c.version + sa.case((deleted, 1), else_=0),
            updated_at=sa.case((deleted, now), else_=t.c.updated_at),
        )
        .returning(*t.c)
    )


async def _bulk(session: Session, statement: Any, owner: str, ids: Sequence[int]) -> dict[int, Task]:
    params = {"owner": owner, "ids": session.sql.ids_value(ids), "now": utcnow()}
    return {row["id"]: task_from_row(row) for row in await session.rows(statement, params)}


async def complete_tasks(session: Session, *, owner: str, ids: Sequence[int]) -> dict[int, Task]:
    """Mark tasks completed; an already completed task is reported as is, its version unchanged."""
    return await _bulk(session, _complete(session.sql.name), owner, ids)


async def delete_tasks(session: Session, *, owner: str, ids: Sequence[int]) -> dict[int, Task]:
    """Soft-delete tasks: they disappear everywhere until restored."""
    return await _bulk(session, _delete(session.sql.name), owner, ids)


async def restore_tasks(session: Session, *, owner: str, ids: Sequence[int]) -> dict[int, Task]:
    """Undo a delete. A task that is not deleted is reported as is."""
    return await _bulk(session, _restore(session.sql.name), owner, ids)
