"""Reading the ledger: a user's changes, newest first, one keyset page per statement.

A page is the changes (at most `limit` + 1, to know whether another page follows) joined to the
tasks each touched, in one statement; the rows are grouped into changes here. A task's history
is driven by the index on (owner, task, change), so it costs the same in a ledger of any size.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa

from todo_mcp.change_models import Change, ChangePage, ChangeQuery, TaskChange
from todo_mcp.due import format_due
from todo_mcp.errors import InvalidCursor, TaskNotFound
from todo_mcp.storage.cursor import id_key, sign_keys, signed_keys
from todo_mcp.storage.ledger import document
from todo_mcp.storage.session import Row, Session
from todo_mcp.storage.statements import built, param
from todo_mcp.storage.table import ID_MAX, RANK_PRIORITY, change_tasks_table, changes_table, tasks_table

c = changes_table.c
items = change_tasks_table.c
t = tasks_table
# A change's fields as `Task` names and shows them; version is shown whenever anything changed.
SHOWN = ("title", "description", "status", "priority", "due", "tags", "repeat", "completed_at", "deleted_at")


def _stamp(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) else value


def shown(snapshot: Mapping[str, Any]) -> dict[str, Any]:
    """A task snapshot (as the ledger stores it) in the representation `Task` uses."""
    day, at = snapshot.get("due_date"), _stamp(snapshot.get("due_at"))
    if isinstance(day, str):
        day = date.fromisoformat(day)
    return {
        "title": snapshot["title"],
        "description": snapshot.get("description"),
        "status": snapshot["status"],
        "priority": RANK_PRIORITY.get(snapshot["priority"], "medium"),
        "due": format_due(day, at, snapshot.get("due_tz")),
        "tags": snapshot.get("tags") or [],
        "repeat": snapshot.get("repeat"),
        "completed_at": _stamp(snapshot.get("completed_at")),
        "deleted_at": _stamp(snapshot.get("deleted_at")),
        "version": snapshot["version"],
    }


def task_change(task_id: int, before: Mapping[str, Any] | None, after: Mapping[str, Any]) -> TaskChange:
    """One task's part of a change: the fields that differ, before and after (all of them for a create)."""
    new = shown(after)
    if before is None:
        return TaskChange(task_id=task_id, title=new["title"], after=_present(new))
    old = shown(before)
    names = [name for name in SHOWN if old[name] != new[name]] + ["version"]
    return TaskChange(
        task_id=task_id,
        title=new["title"],
        before={name: old[name] for name in names},
        after={name: new[name] for name in names},
    )


def _present(fields: dict[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in fields.items() if value not in (None, [])}


def _window() -> list[sa.ColumnElement[bool]]:
    """The time window and the keyset position (after: the last change id of the previous page)."""
    since, until, after = param("since", c.at), param("until", c.at), param("after", c.id)
    return [
        sa.or_(after.is_(None), c.id < after),
        sa.or_(since.is_(None), c.at >= since),
        sa.or_(until.is_(None), c.at < until),
    ]


@built
def _page(by_task: bool) -> sa.ClauseElement:
    """The page of changes (limit + 1) and, per change, the tasks it touched (one task's only, by task).

    A task's history walks the (owner, task, change) index newest first and stops at the page's
    end, so its cost does not grow with the task's history or the ledger.
    """
    owner = param("owner", c.owner_id)
    chosen = sa.select(c.id, c.at, c.client, c.via, c.undoes, c.undone_by).where(
        c.owner_id == owner, *_window()
    )
    if by_task:
        task = param("task_id", items.task_id)
        chosen = (
            chosen.select_from(change_tasks_table.join(changes_table, c.id == items.change_id))
            .where(items.owner_id == owner, items.task_id == task)
            .order_by(items.change_id.desc())
        )
    else:
        chosen = chosen.order_by(c.id.desc())
    page = chosen.limit(param("limit", sa.Integer())).cte("page")
    on = items.change_id == page.c.id
    if not by_task:
        return (
            sa.select(page, items.task_id, items.before, items.after)
            .select_from(page.outerjoin(change_tasks_table, on))
            .order_by(page.c.id.desc(), items.task_id)
        )
    # One row at least, saying whether the task is the owner's (deleted or not): a task that is
    # not answers like get_task, not with an empty history.
    task = param("task_id", items.task_id)
    found = sa.exists().where(t.c.owner_id == owner, t.c.id == task)
    probe = sa.select(found.label("task_found")).cte("probe")
    return (
        sa.select(probe.c.task_found, page, items.task_id, items.before, items.after)
        .select_from(
            probe.outerjoin(page, sa.true()).outerjoin(change_tasks_table, sa.and_(on, items.task_id == task))
        )
        .order_by(page.c.id.desc(), items.task_id)
    )


async def list_changes(session: Session, *, owner: str, query: ChangeQuery, cursor_key: bytes) -> ChangePage:
    """One page of the owner's changes (or of one task's), newest first."""
    if query.task_id is not None and query.task_id > ID_MAX:
        raise TaskNotFound(query.task_id)
    after = None
    if query.cursor is not None:
        (key,) = signed_keys(query, query.cursor, cursor_key, 1)
        try:
            after = id_key(key)
        except ValueError:
            raise InvalidCursor(type(query).__name__) from None
    params = {
        "owner": owner,
        "task_id": query.task_id,
        "since": query.since,
        "until": query.until,
        "after": after,
        "limit": query.limit + 1,
    }
    rows = await session.rows(_page(query.task_id is not None), params)
    if query.task_id is not None:
        if not rows or not rows[0]["task_found"]:
            raise TaskNotFound(query.task_id)
        rows = [row for row in rows if row["id"] is not None]
    changes = _grouped(rows)
    more = len(changes) > query.limit
    changes = changes[: query.limit]
    next_cursor = sign_keys(query, [changes[-1].change_id], cursor_key) if more else None
    return ChangePage(changes=changes, next_cursor=next_cursor)


def _grouped(rows: Sequence[Row]) -> list[Change]:
    changes: dict[int, Change] = {}
    for row in rows:
        change = changes.get(row["id"])
        if change is None:
            change = changes[row["id"]] = Change(
                change_id=row["id"],
                at=row["at"],
                via=row["via"],
                client=row["client"],
                undoes=document(row["undoes"]),
                undone_by=row["undone_by"],
                tasks=[],
            )
        if row["task_id"] is not None:
            before = document(row["before"])
            change.tasks.append(task_change(row["task_id"], before, document(row["after"])))
    return list(changes.values())
