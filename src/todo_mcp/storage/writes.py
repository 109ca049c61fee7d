"""The writes: create, update, complete, delete, restore. Each is recorded in the ledger.

On PostgreSQL each is one statement (see `todo_mcp.storage.ledger`); its text never depends on
the values, so it is prepared once per connection.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from todo_mcp.due import Due, parse_due
from todo_mcp.errors import CreatedThenDeleted, IdempotencyConflict, TaskNotFound, VersionConflict
from todo_mcp.identity import Actor
from todo_mcp.models import PATCHABLE, Task, TaskCreate, TaskPatch
from todo_mcp.recurrence import parse_repeat
from todo_mcp.storage.dialect import returning_insert, sql_dialect
from todo_mcp.storage.filters import visible
from todo_mcp.storage.ledger import (
    Outcome,
    Write,
    change_params,
    insert_change,
    insert_items,
    record,
    run_write,
    snapshot_sql,
)
from todo_mcp.storage.recurring import next_due, occurrence_values
from todo_mcp.storage.session import Row, Session, SqliteSession, first
from todo_mcp.storage.statements import built, param
from todo_mcp.storage.table import (
    ID_MAX,
    NO_DUE_SORT,
    PRIORITY_RANK,
    VERSION_MAX,
    change_tasks_table,
    task_from_row,
    tasks_table,
)

t = tasks_table


@dataclass(frozen=True)
class Written:
    """A task as a write left it, and the change that made it (None: nothing changed)."""

    task: Task
    change_id: int | None


@dataclass(frozen=True)
class BulkWritten:
    """Tasks as a bulk write left them, by id; next occurrences by the completed task's id."""

    tasks: dict[int, Task]
    change_id: int | None
    next: dict[int, Task] = field(default_factory=dict)


def utcnow() -> datetime:
    """The current time, to the second, in UTC: what the `*_at` columns hold."""
    return datetime.now(UTC).replace(microsecond=0)


def due_columns(text: str | None) -> dict[str, Any]:
    """The stored columns of a due value (or of none)."""
    due = parse_due(text) if text else None
    return {
        "due_date": due.day if due else None,
        "due_at": due.at if due else None,
        "due_tz": due.tz if due else None,
        "due_sort": due.sort_key if due else NO_DUE_SORT,
    }


def repeat_columns(text: str | None) -> dict[str, Any]:
    """The stored columns of a repeat rule (or of none)."""
    rule = parse_repeat(text) if text else None
    return {"repeat": rule.text() if rule else None, "repeat_spec": rule.spec() if rule else None}


def _this_task() -> sa.ColumnElement[bool]:
    return sa.and_(visible(), t.c.id == param("task_id", t.c.id))


# --- create ------------------------------------------------------------------------------------------


def _request_hash(data: TaskCreate) -> str:
    payload = data.model_dump(mode="json", exclude={"client_request_id"})
    return hashlib.sha256(json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _creation_change(owner: Any, task_id: Any) -> sa.ScalarSelect[Any]:
    """The change that created task `task_id` (for a retry, which returns the original).

    By the (owner, task, change) index: the owner is part of the key.
    """
    items = change_tasks_table.c
    return (
        sa.select(items.change_id)
        .where(items.owner_id == owner, items.task_id == task_id, items.before.is_(None))
        .scalar_subquery()
    )


@built
def _create_pg(retry_key: bool) -> sa.ClauseElement:
    """INSERT ... RETURNING, and the change when a row was really inserted (not a retry's)."""
    insert = returning_insert(sql_dialect("postgresql"), retry_key=retry_key)
    ins = insert.returning(sa.literal_column("xmax = 0").label("inserted")).cte("ins")
    chg = insert_change(sa.select(ins.c.id).where(ins.c.inserted).exists()).cte("chg")
    items = insert_items(
        sa.select(chg.c.id, ins.c.id, ins.c.owner_id, sa.null(), snapshot_sql(ins)).select_from(
            ins.join(chg, sa.true())
        )
    ).cte("items")
    change_id = sa.func.coalesce(
        sa.select(chg.c.id).scalar_subquery(), _creation_change(ins.c.owner_id, ins.c.id)
    )
    return sa.select(ins, change_id.label("change_id")).add_cte(items)


@built
def _find_by_key() -> sa.ClauseElement:
    return sa.select(t, _creation_change(t.c.owner_id, t.c.id).label("change_id")).where(
        t.c.owner_id == param("owner_id", t.c.owner_id),
        t.c.client_request_id == param("client_request_id", t.c.client_request_id),
    )


@built
def _insert_sqlite() -> sa.ClauseElement:
    return returning_insert(sql_dialect("sqlite"), retry_key=False)


def _new_task(owner: str, data: TaskCreate, now: datetime) -> dict[str, Any]:
    return {
        "owner_id": owner,
        "title": data.title,
        "description": data.description or None,
        "status": "pending",
        "priority": PRIORITY_RANK[data.priority],
        **due_columns(data.due),
        "tags": data.tags,
        **repeat_columns(data.repeat),
        "version": 1,
        "created_at": now,
        "updated_at": now,
        "completed_at": None,
        "deleted_at": None,
        "client_request_id": data.client_request_id,
        "request_hash": _request_hash(data) if data.client_request_id else None,
    }


async def create_task(session: Session, *, actor: Actor, data: TaskCreate) -> Written:
    """Insert a task. With a client_request_id, a retry returns the original task (and change)."""
    now = utcnow()
    values = {**_new_task(actor.owner, data, now), **change_params(actor, now)}
    if session.sql.writes_in_one_statement():
        row = await first(session, _create_pg(data.client_request_id is not None), values)
    else:
        assert isinstance(session, SqliteSession)
        row = await _create_sqlite(session, values)
    assert row is not None, "INSERT ... RETURNING returns its row"
    if data.client_request_id is not None and row["deleted_at"] is not None:
        raise CreatedThenDeleted(data.client_request_id, row["id"])
    if data.client_request_id is not None and row["request_hash"] != values["request_hash"]:
        raise IdempotencyConflict(data.client_request_id, row["id"])
    change_id = row["change_id"]
    if change_id is None:
        # A retry that raced the original: the original's change was committed after this
        # statement began, so only a second look finds it.
        found = await first(session, _creation_of(), {"owner_id": actor.owner, "task_id": row["id"]})
        change_id = found["change_id"] if found is not None else None
    return Written(task_from_row(row), change_id)


@built
def _creation_of() -> sa.ClauseElement:
    return sa.select(
        _creation_change(param("owner_id", t.c.owner_id), param("task_id", t.c.id)).label("change_id")
    )


async def _create_sqlite(session: SqliteSession, values: dict[str, Any]) -> Row:
    async with session.transaction():
        if values["client_request_id"] is not None:
            existing = await first(session, _find_by_key(), values)
            if existing is not None:
                return existing
        row = await first(session, _insert_sqlite(), values)
        assert row is not None
        change_id = await record(session, values, [], [row])
    return {**row, "change_id": change_id}


# --- update --------------------------------------------------------------------------------------------


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
    values.update({column: _keep_unless("set_due", column) for column in due_columns(None)})
    values.update({column: _keep_unless("set_repeat", column) for column in repeat_columns(None)})
    values["completed_at"] = sa.case(
        (sa.and_(set_status, new_status == "pending"), sa.null()),
        (sa.and_(set_status, new_status == "completed", t.c.completed_at.is_(None)), now),
        else_=t.c.completed_at,
    )
    values.update(version=t.c.version + 1, updated_at=now)
    return values


def _patch_params(patch: TaskPatch) -> dict[str, Any]:
    """The parameters of `_patch_values` for this patch."""
    changes = patch.changes()
    new = {
        "title": changes.get("title"),
        "description": changes.get("description") or None,
        "priority": PRIORITY_RANK.get(changes.get("priority", ""), 0),
        "tags": changes.get("tags") or [],
        "status": changes.get("status") or "pending",
        **due_columns(changes.get("due")),
        **repeat_columns(changes.get("repeat")),
    }
    params = {f"new_{name}": value for name, value in new.items()}
    params.update({f"set_{name}": name in changes for name in PATCHABLE})
    return params


def _version_ok() -> sa.ColumnElement[bool]:
    expected = param("expected", sa.Integer())
    return sa.or_(expected.is_(None), t.c.version == expected)


UPDATE = Write("update_task", _this_task, _patch_values, checked=_version_ok)


async def update_task(session: Session, *, actor: Actor, task_id: int, patch: TaskPatch) -> Written:
    """Change only the named fields. With expected_version, refuse to overwrite a newer version."""
    expected = patch.expected_version
    if task_id > ID_MAX:
        raise TaskNotFound(task_id)
    # Beyond the column's range it can never match, and neither can 0.
    checked = 0 if expected is not None and expected > VERSION_MAX else expected
    now = utcnow()
    params = {"task_id": task_id, "expected": checked, **_patch_params(patch), **change_params(actor, now)}
    outcome = await run_write(session, UPDATE, params)
    if not outcome.rows:
        raise TaskNotFound(task_id)
    ((current, after),) = outcome.rows
    if after is None:
        raise VersionConflict(task_id, expected=expected or 0, current=current)
    return Written(task_from_row(after), outcome.change_id)


# --- bulk: complete, delete, restore ---------------------------------------------------------------


def _ids(database: str) -> sa.ColumnElement[bool]:
    return sql_dialect(database).ids_match()


def _complete_values() -> dict[str, Any]:
    now = param("now", t.c.updated_at)
    done = t.c.status == "completed"
    return {
        "status": "completed",
        "completed_at": sa.func.coalesce(t.c.completed_at, now),
        "version": t.c.version + sa.case((done, 0), else_=1),
        "updated_at": sa.case((done, t.c.updated_at), else_=now),
    }


def _delete_values() -> dict[str, Any]:
    now = param("now", t.c.updated_at)
    return {"deleted_at": now, "updated_at": now, "version": t.c.version + 1}


def _restore_values() -> dict[str, Any]:
    now = param("now", t.c.updated_at)
    deleted = t.c.deleted_at.is_not(None)
    return {
        "deleted_at": None,
        "version": t.c.version + sa.case((deleted, 1), else_=0),
        "updated_at": sa.case((deleted, now), else_=t.c.updated_at),
    }


def _writes(database: str) -> dict[str, Write]:
    visible_ids = lambda: sa.and_(visible(), _ids(database))  # noqa: E731
    owned_ids = lambda: sa.and_(t.c.owner_id == param("owner", t.c.owner_id), _ids(database))  # noqa: E731
    return {
        "complete": Write(f"complete_task/{database}", visible_ids, _complete_values, spawns=True),
        "delete": Write(f"delete_task/{database}", visible_ids, _delete_values),
        "restore": Write(f"restore_task/{database}", owned_ids, _restore_values),
    }


WRITES = {database: _writes(database) for database in ("postgresql", "sqlite")}


async def _bulk(session: Session, kind: str, actor: Actor, ids: Sequence[int], **extra: Any) -> BulkWritten:
    now = utcnow()
    params = {"ids": session.sql.ids_value(ids), **change_params(actor, now), **extra}

    async def spawn(_: Session, pairs: list[tuple[Row, Row | None]]) -> dict[int, Row]:
        return await _spawn_sqlite(session, pairs, now, extra.get("default_tz", "UTC"))

    outcome: Outcome = await run_write(
        session, WRITES[session.sql.name][kind], params, spawn if kind == "complete" else None
    )
    tasks = {after["id"]: task_from_row(after) for _, after in outcome.rows if after is not None}
    next_tasks = {source: task_from_row(row) for source, row in outcome.spawned.items()}
    return BulkWritten(tasks, outcome.change_id, next_tasks)


async def _spawn_sqlite(
    session: Session, pairs: list[tuple[Row, Row | None]], now: datetime, default_tz: str
) -> dict[int, Row]:
    """The next occurrence of each repeating task these pairs completed (SQLite)."""
    spawned: dict[int, Row] = {}
    for before, after in pairs:
        if (
            after is None
            or before["repeat"] is None
            or before["status"] != "pending"
            or after["status"] != "completed"
        ):
            continue
        rule = parse_repeat(before["repeat"])
        due = (
            Due(day=before["due_date"], at=before["due_at"], tz=before["due_tz"])
            if before["due_date"]
            else None
        )
        following = next_due(rule, due, now, default_tz)
        if following is not None:
            row = await first(session, _insert_sqlite(), occurrence_values(before, rule, following, now))
            assert row is not None
            spawned[before["id"]] = row
    return spawned


async def complete_tasks(
    session: Session, *, actor: Actor, ids: Sequence[int], default_tz: str
) -> BulkWritten:
    """Mark tasks completed (a completed task is reported as is).

    A repeating task's next occurrence is made in the same statement; `default_tz` is the zone of
    date-only tasks, for the day they are done.
    """
    return await _bulk(session, "complete", actor, ids, default_tz=default_tz)


async def delete_tasks(session: Session, *, actor: Actor, ids: Sequence[int]) -> BulkWritten:
    """Soft-delete tasks: they disappear everywhere until restored."""
    return await _bulk(session, "delete", actor, ids)


async def restore_tasks(session: Session, *, actor: Actor, ids: Sequence[int]) -> BulkWritten:
    """Undo a delete. A task that is not deleted is reported as is."""
    return await _bulk(session, "restore", actor, ids)
