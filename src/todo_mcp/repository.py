"""Every query of todo-mcp. Each function takes the owner id and touches only that owner's rows.

On PostgreSQL every function issues exactly one statement (writes use RETURNING, conditional
writes use a data-modifying CTE), and each statement's text is the same whatever the arguments,
so asyncpg's statement cache serves it after its first use: one round trip per call on an
autocommit connection. The SQLite default runs the same operations, at most two statements.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Sequence
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from todo_mcp.errors import ConflictError, InvalidInputError, NotFoundError
from todo_mcp.models import (
    LIST_DESCRIPTION_MAX,
    NO_DUE_SORT,
    PRIORITY_RANK,
    ItemResult,
    Task,
    TaskCreate,
    TaskPage,
    TaskPatch,
    TaskQuery,
    parse_due,
    tasks_table,
)

t = tasks_table
SEARCH_CONFIG = "english"
# Ids are 64-bit in both databases: a larger number names no task, and the drivers refuse to send it.
ID_MAX = 2**63 - 1
VERSION_MAX = 2**31 - 1


def utcnow() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def _now_param() -> sa.BindParameter[datetime]:
    return sa.bindparam("now", utcnow(), type_=t.c.updated_at.type)


def _is_pg(conn: AsyncConnection) -> bool:
    return conn.dialect.name == "postgresql"


def _visible(owner: str) -> sa.ColumnElement[bool]:
    return sa.and_(t.c.owner_id == owner, t.c.deleted_at.is_(None))


def _ids_match(conn: AsyncConnection, ids: Sequence[int]) -> sa.ColumnElement[bool]:
    ids = [task_id for task_id in ids if task_id <= ID_MAX]
    if _is_pg(conn):
        # One array parameter keeps the statement text (and its cached plan) the same for any count.
        # Sent as text[], which asyncpg encodes natively: for bigint[] it would first look the type up
        # on every new connection (six extra round trips).
        ids_text = sa.bindparam("ids", [str(i) for i in ids], type_=postgresql.ARRAY(sa.Text()))
        return t.c.id == sa.any_(sa.cast(ids_text, postgresql.ARRAY(sa.BigInteger())))
    return t.c.id.in_(list(ids))


def _request_hash(data: TaskCreate) -> str:
    payload = data.model_dump(mode="json", exclude={"client_request_id"})
    return hashlib.sha256(json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


# --- create / read --------------------------------------------------------------------------------


async def create_task(conn: AsyncConnection, *, owner: str, data: TaskCreate) -> Task:
    """Insert a task. With a client_request_id, a retry returns the original task instead."""
    now = utcnow()
    due = parse_due(data.due) if data.due else None
    values: dict[str, Any] = {
        "owner_id": owner,
        "title": data.title,
        "description": data.description or None,
        "status": "pending",
        "priority": PRIORITY_RANK[data.priority],
        "due_date": due.day if due else None,
        "due_at": due.at if due else None,
        "due_tz": due.tz if due else None,
        "due_sort": due.sort_key if due else NO_DUE_SORT,
        "tags": data.tags,
        "version": 1,
        "created_at": now,
        "updated_at": now,
        "client_request_id": data.client_request_id,
        "request_hash": _request_hash(data) if data.client_request_id else None,
    }
    insert = postgresql.insert(t) if _is_pg(conn) else sqlite.insert(t)
    stmt = insert.values(**values)
    if data.client_request_id is not None:
        # DO UPDATE (a no-op assignment) rather than DO NOTHING: it returns the existing row even when
        # a concurrent retry committed it after this statement's snapshot was taken.
        stmt = stmt.on_conflict_do_update(
            index_elements=[t.c.owner_id, t.c.client_request_id],
            index_where=t.c.client_request_id.is_not(None),
            set_={"client_request_id": stmt.excluded.client_request_id},
        )
    row = (await conn.execute(stmt.returning(*t.c))).one()
    if data.client_request_id is not None and row.request_hash != values["request_hash"]:
        raise ConflictError(
            f"client_request_id {data.client_request_id!r} was already used for task {row.id} with "
            "different content. Send a new client_request_id to create another task, or the original "
            "content to get that task back."
        )
    return Task.from_row(row)


async def get_task(conn: AsyncConnection, *, owner: str, task_id: int) -> Task:
    if task_id > ID_MAX:
        raise NotFoundError(task_id)
    stmt = sa.select(t).where(_visible(owner), t.c.id == task_id)
    row = (await conn.execute(stmt)).one_or_none()
    if row is None:
        raise NotFoundError(task_id)
    return Task.from_row(row)


# --- list ------------------------------------------------------------------------------------------

_SORTS: dict[str, tuple[tuple[str, bool], ...]] = {
    # sort name -> ((column, descending), ...); the last column is always the unique id.
    "newest": (("id", True),),
    "oldest": (("id", False),),
    "due": (("due_sort", False), ("id", False)),
    "priority": (("priority", True), ("due_sort", False), ("id", False)),
}

_BAD_CURSOR = (
    "cursor is not valid for this query: send the next_cursor of the previous list_tasks call "
    "with the same filters and sort, or leave cursor out to start from the first page"
)


def _query_fingerprint(query: TaskQuery) -> str:
    payload = query.model_dump(mode="json", exclude={"cursor", "limit"})
    digest = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).digest()
    return base64.urlsafe_b64encode(digest[:6]).decode()


def _encode_cursor(query: TaskQuery, row: Any) -> str:
    keys: list[Any] = []
    for column, _ in _SORTS[query.sort]:
        value = getattr(row, column)
        keys.append(value.isoformat() if isinstance(value, datetime) else value)
    raw = json.dumps({"q": _query_fingerprint(query), "k": keys}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode_cursor(query: TaskQuery, cursor: str) -> list[Any]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        data = json.loads(raw)
        keys = data["k"]
        columns = _SORTS[query.sort]
        if data["q"] != _query_fingerprint(query) or len(keys) != len(columns):
            raise ValueError("cursor of another query")
        decoded: list[Any] = []
        for (column, _), value in zip(columns, keys, strict=True):
            if column == "due_sort":
                decoded.append(datetime.fromisoformat(value))
            elif isinstance(value, int) and not isinstance(value, bool):
                decoded.append(value)
            else:
                raise ValueError("cursor key of the wrong type")
        return decoded
    except (ValueError, KeyError, TypeError, binascii.Error, UnicodeDecodeError):
        raise InvalidInputError(_BAD_CURSOR) from None


def _after_cursor(query: TaskQuery, keys: list[Any]) -> sa.ColumnElement[bool]:
    """Rows strictly after the cursor in the sort order (keyset pagination)."""
    columns = _SORTS[query.sort]
    condition: sa.ColumnElement[bool] | None = None
    # Build from the last (tie-breaking) column outwards: c1 > k1 OR (c1 = k1 AND (...)).
    for (name, descending), key in reversed(list(zip(columns, keys, strict=True))):
        column = t.c[name]
        beyond = column < key if descending else column > key
        condition = beyond if condition is None else sa.or_(beyond, sa.and_(column == key, condition))
    assert condition is not None
    return condition


def _day_bounds(zone: ZoneInfo, now: datetime) -> tuple[Any, datetime, datetime]:
    today = now.astimezone(zone).date()
    start = datetime.combine(today, time(0), tzinfo=zone).astimezone(UTC)
    end = datetime.combine(today + timedelta(days=1), time(0), tzinfo=zone).astimezone(UTC)
    return today, start, end


def _due_window(query: TaskQuery, zone: ZoneInfo, now: datetime) -> list[sa.ColumnElement[bool]]:
    timed, all_day = t.c.due_at.is_not(None), t.c.due_at.is_(None)
    today, start, end = _day_bounds(zone, now)
    midnight_utc = datetime.combine(today, time(0), tzinfo=UTC)
    if query.due == "none":
        return [t.c.due_date.is_(None)]
    if query.due == "overdue":
        return [
            t.c.status == "pending",
            # An index-friendly bound implied by both branches below.
            t.c.due_sort < max(now, midnight_utc),
            sa.or_(sa.and_(timed, t.c.due_at < now), sa.and_(all_day, t.c.due_date < today)),
        ]
    if query.due == "today":
        return [
            sa.or_(
                sa.and_(timed, t.c.due_at >= start, t.c.due_at < end),
                sa.and_(all_day, t.c.due_date == today),
            )
        ]
    if query.due == "overdue_or_today":
        return [
            t.c.status == "pending",
            sa.or_(sa.and_(timed, t.c.due_at < end), sa.and_(all_day, t.c.due_date <= today)),
        ]
    # upcoming: due after today
    return [
        t.c.due_date.is_not(None),
        sa.or_(sa.and_(timed, t.c.due_at >= end), sa.and_(all_day, t.c.due_date > today)),
    ]


def _search(conn: AsyncConnection, text: str) -> sa.ColumnElement[bool]:
    if _is_pg(conn):
        config: sa.ColumnElement[Any] = sa.literal_column(f"'{SEARCH_CONFIG}'::regconfig")
        return sa.literal_column("search").op("@@")(sa.func.websearch_to_tsquery(config, text))
    words = [w for w in text.split() if w.strip('"')] or [text]
    conditions = []
    for word in words:
        pattern = "%" + word.strip('"').replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        conditions.append(
            sa.or_(
                t.c.title.like(pattern, escape="\\"),
                sa.func.coalesce(t.c.description, "").like(pattern, escape="\\"),
            )
        )
    return sa.and_(*conditions)


def _has_tag(conn: AsyncConnection, tag: str) -> sa.ColumnElement[bool]:
    if _is_pg(conn):
        return t.c.tags.contains(sa.bindparam("tag", [tag], type_=postgresql.ARRAY(sa.Text())))
    each = sa.func.json_each(t.c.tags).table_valued("value")
    return sa.exists(sa.select(sa.literal(1)).select_from(each).where(each.c.value == tag))


async def list_tasks(conn: AsyncConnection, *, owner: str, query: TaskQuery, default_tz: str) -> TaskPage:
    """One page of tasks in a stable order; next_cursor continues exactly after the last row."""
    now = utcnow()
    zone = ZoneInfo(query.tz or default_tz)
    conditions: list[sa.ColumnElement[bool]] = [_visible(owner)]
    if query.status != "all":
        conditions.append(t.c.status == query.status)
    if query.priority is not None:
        conditions.append(t.c.priority == PRIORITY_RANK[query.priority])
    if query.tag is not None:
        conditions.append(_has_tag(conn, query.tag.strip().lower()))
    if query.search is not None:
        conditions.append(_search(conn, query.search))
    if query.due is not None:
        conditions.extend(_due_window(query, zone, now))
    for bound, before in ((query.due_before, True), (query.due_after, False)):
        if bound is None:
            continue
        due = parse_due(bound)
        conditions.append(t.c.due_date.is_not(None))
        if due.at is None:
            conditions.append(t.c.due_date < due.day if before else t.c.due_date > due.day)
        else:
            conditions.append(t.c.due_sort < due.at if before else t.c.due_sort > due.at)
    if query.cursor:
        conditions.append(_after_cursor(query, _decode_cursor(query, query.cursor)))

    order = [t.c[name].desc() if desc else t.c[name].asc() for name, desc in _SORTS[query.sort]]
    stmt = sa.select(t).where(*conditions).order_by(*order).limit(query.limit + 1)
    rows = (await conn.execute(stmt)).all()
    page, more = rows[: query.limit], len(rows) > query.limit
    tasks = []
    for row in page:
        task = Task.from_row(row)
        if task.description and len(task.description) > LIST_DESCRIPTION_MAX:
            task.description = task.description[: LIST_DESCRIPTION_MAX - 1] + "…"
        tasks.append(task)
    return TaskPage(tasks=tasks, next_cursor=_encode_cursor(query, page[-1]) if more else None)


# --- update ------------------------------------------------------------------------------------------


def _patch_values(patch: TaskPatch, now: datetime) -> tuple[dict[str, Any], dict[str, Any]]:
    """SET clauses that keep unnamed fields, and their parameters; the SQL text never varies."""
    changes = patch.changes()
    due = parse_due(changes["due"]) if changes.get("due") else None
    params: dict[str, Any] = {
        "set_title": "title" in changes,
        "new_title": changes.get("title"),
        "set_description": "description" in changes,
        "new_description": changes.get("description") or None,
        "set_priority": "priority" in changes,
        "new_priority": PRIORITY_RANK.get(changes.get("priority", ""), 0),
        "set_due": "due" in changes,
        "new_due_date": due.day if due else None,
        "new_due_at": due.at if due else None,
        "new_due_tz": due.tz if due else None,
        "new_due_sort": due.sort_key if due else NO_DUE_SORT,
        "set_tags": "tags" in changes,
        "new_tags": changes.get("tags") or [],
        "set_status": "status" in changes,
        "new_status": changes.get("status") or "pending",
        "now": now,
    }

    def keep_unless(flag: str, column: str, new: str) -> Any:
        return sa.case(
            (sa.bindparam(flag, type_=sa.Boolean()), sa.bindparam(new, type_=t.c[column].type)),
            else_=t.c[column],
        )

    set_status = sa.bindparam("set_status", type_=sa.Boolean())
    new_status = sa.bindparam("new_status", type_=t.c.status.type)
    now_param = sa.bindparam("now", type_=t.c.updated_at.type)
    values: dict[str, Any] = {
        "title": keep_unless("set_title", "title", "new_title"),
        "description": keep_unless("set_description", "description", "new_description"),
        "priority": keep_unless("set_priority", "priority", "new_priority"),
        "due_date": keep_unless("set_due", "due_date", "new_due_date"),
        "due_at": keep_unless("set_due", "due_at", "new_due_at"),
        "due_tz": keep_unless("set_due", "due_tz", "new_due_tz"),
        "due_sort": keep_unless("set_due", "due_sort", "new_due_sort"),
        "tags": keep_unless("set_tags", "tags", "new_tags"),
        "status": keep_unless("set_status", "status", "new_status"),
        "completed_at": sa.case(
            (sa.and_(set_status, new_status == "pending"), sa.null()),
            (sa.and_(set_status, new_status == "completed", t.c.completed_at.is_(None)), now_param),
            else_=t.c.completed_at,
        ),
        "version": t.c.version + 1,
        "updated_at": now_param,
    }
    return values, params


_NOTHING_TO_CHANGE = (
    "nothing to change: send at least one of title, description, priority, due, tags or status "
    "together with task_id"
)


async def update_task(conn: AsyncConnection, *, owner: str, task_id: int, patch: TaskPatch) -> Task:
    """Change only the named fields. With expected_version, refuse to overwrite a newer version."""
    if not patch.changes():
        raise InvalidInputError(_NOTHING_TO_CHANGE)
    if task_id > ID_MAX:
        raise NotFoundError(task_id)
    values, params = _patch_values(patch, utcnow())
    expected_version = patch.expected_version
    if expected_version is not None and expected_version > VERSION_MAX:
        expected_version = 0  # beyond the column's range it can never match, and neither can 0
    expected = sa.bindparam("expected", expected_version, type_=sa.Integer())
    version_ok = sa.or_(expected.is_(None), t.c.version == expected)
    if _is_pg(conn):
        # One statement: find the task, update it if the version matches, and report which happened.
        # FOR UPDATE: behind a concurrent writer, read the version it committed, not this statement's
        # snapshot, so a conflict reports the real current version (and a concurrent delete, not found).
        cur = (
            sa.select(t.c.id, t.c.version)
            .where(_visible(owner), t.c.id == task_id)
            .with_for_update()
            .cte("cur")
        )
        upd = (
            sa.update(t)
            .where(t.c.id == cur.c.id, _visible(owner), version_ok)
            .values(**values)
            .returning(*t.c)
            .cte("upd")
        )
        stmt = sa.select(cur.c.version.label("current_version"), *upd.c).select_from(
            cur.outerjoin(upd, sa.true())
        )
        row = (await conn.execute(stmt, params)).one_or_none()
        if row is None:
            raise NotFoundError(task_id)
        if row.id is None:
            raise _version_conflict(task_id, patch.expected_version, row.current_version)
        return Task.from_row(row)
    stmt_lite = (
        sa.update(t).where(_visible(owner), t.c.id == task_id, version_ok).values(**values).returning(*t.c)
    )
    updated = (await conn.execute(stmt_lite, params)).one_or_none()
    if updated is not None:
        return Task.from_row(updated)
    current = (
        await conn.execute(sa.select(t.c.version).where(_visible(owner), t.c.id == task_id))
    ).scalar_one_or_none()
    if current is None:
        raise NotFoundError(task_id)
    raise _version_conflict(task_id, patch.expected_version, current)


def _version_conflict(task_id: int, expected: int | None, current: int) -> ConflictError:
    return ConflictError(
        f"Task {task_id} changed since you read it: expected_version {expected}, current version {current}. "
        "Read the task again (get_task) and send your change with expected_version "
        f"{current} if it still applies.",
        current_version=current,
    )


# --- bulk: complete, delete, restore ---------------------------------------------------------------


def _per_id(ids: Sequence[int], rows: Sequence[Any], missing: str) -> list[ItemResult]:
    found = {row.id: Task.from_row(row) for row in rows}
    results: list[ItemResult] = []
    for task_id in dict.fromkeys(ids):
        task = found.get(task_id)
        if task is None:
            results.append(ItemResult(id=task_id, ok=False, error=missing.format(id=task_id)))
        else:
            results.append(ItemResult(id=task_id, ok=True, task=task))
    return results


_NOT_FOUND_ITEM = "Task {id} was not found. Use list_tasks to find the id of an existing task."


async def complete_tasks(conn: AsyncConnection, *, owner: str, ids: Sequence[int]) -> list[ItemResult]:
    """Mark tasks completed; an already completed task is reported as is, its version unchanged."""
    now = _now_param()
    done = t.c.status == "completed"
    stmt = (
        sa.update(t)
        .where(_visible(owner), _ids_match(conn, ids))
        .values(
            status="completed",
            completed_at=sa.func.coalesce(t.c.completed_at, now),
            version=t.c.version + sa.case((done, 0), else_=1),
            updated_at=sa.case((done, t.c.updated_at), else_=now),
        )
        .returning(*t.c)
    )
    rows = (await conn.execute(stmt)).all()
    return _per_id(ids, rows, _NOT_FOUND_ITEM)


async def delete_tasks(conn: AsyncConnection, *, owner: str, ids: Sequence[int]) -> list[ItemResult]:
    """Soft-delete tasks: they disappear everywhere until restored."""
    now = utcnow()
    stmt = (
        sa.update(t)
        .where(_visible(owner), _ids_match(conn, ids))
        .values(deleted_at=now, updated_at=now, version=t.c.version + 1)
        .returning(*t.c)
    )
    rows = (await conn.execute(stmt)).all()
    return _per_id(ids, rows, _NOT_FOUND_ITEM)


async def restore_tasks(conn: AsyncConnection, *, owner: str, ids: Sequence[int]) -> list[ItemResult]:
    """Undo a delete. A task that is not deleted is reported as is."""
    now = _now_param()
    deleted = t.c.deleted_at.is_not(None)
    stmt = (
        sa.update(t)
        .where(t.c.owner_id == owner, _ids_match(conn, ids))
        .values(
            deleted_at=None,
            version=t.c.version + sa.case((deleted, 1), else_=0),
            updated_at=sa.case((deleted, now), else_=t.c.updated_at),
        )
        .returning(*t.c)
    )
    rows = (await conn.execute(stmt)).all()
    return _per_id(ids, rows, "Task {id} was not found, deleted or not. Check the id with list_tasks.")
