"""The WHERE conditions and ORDER BY of a task list."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from todo_mcp.due import parse_due
from todo_mcp.models import DueWindow, TaskQuery
from todo_mcp.storage.cursor import SORTS
from todo_mcp.storage.dialect import SqlDialect
from todo_mcp.storage.table import PRIORITY_RANK, tasks_table

t = tasks_table


def visible(owner: str) -> sa.ColumnElement[bool]:
    """The owner's tasks that are not deleted."""
    return sa.and_(t.c.owner_id == owner, t.c.deleted_at.is_(None))


def list_conditions(
    sql: SqlDialect, owner: str, query: TaskQuery, zone: ZoneInfo, now: datetime, after: list[Any] | None
) -> list[sa.ColumnElement[bool]]:
    """Every condition a row must meet to appear on this page of `query` (after the sort key `after`)."""
    conditions: list[sa.ColumnElement[bool]] = [visible(owner)]
    if query.status != "all":
        conditions.append(t.c.status == query.status)
    if query.priority is not None:
        conditions.append(t.c.priority == PRIORITY_RANK[query.priority])
    if query.tag is not None:
        conditions.append(sql.has_tag(query.tag.strip().lower()))
    if query.search is not None:
        conditions.append(sql.matches(query.search))
    if query.due is not None:
        conditions.extend(_due_window(query.due, zone, now))
    if query.due_before is not None:
        conditions.extend(_due_bound(query.due_before, before=True))
    if query.due_after is not None:
        conditions.extend(_due_bound(query.due_after, before=False))
    if after is not None:
        conditions.append(_after(query, after))
    return conditions


def order_by(query: TaskQuery) -> list[sa.UnaryExpression[Any]]:
    """The stable sort order of `query` (its last column is always the unique id)."""
    return [t.c[name].desc() if desc else t.c[name].asc() for name, desc in SORTS[query.sort]]


def _after(query: TaskQuery, keys: list[Any]) -> sa.ColumnElement[bool]:
    """Rows strictly after the cursor in the sort order (keyset pagination)."""
    condition: sa.ColumnElement[bool] | None = None
    # Build from the last (tie-breaking) column outwards: c1 > k1 OR (c1 = k1 AND (...)).
    for (name, descending), key in reversed(list(zip(SORTS[query.sort], keys, strict=True))):
        column = t.c[name]
        beyond = column < key if descending else column > key
        condition = beyond if condition is None else sa.or_(beyond, sa.and_(column == key, condition))
    assert condition is not None
    return condition


def _due_bound(text: str, *, before: bool) -> list[sa.ColumnElement[bool]]:
    due = parse_due(text)
    if due.at is None:
        bound = t.c.due_date < due.day if before else t.c.due_date > due.day
    else:
        bound = t.c.due_sort < due.at if before else t.c.due_sort > due.at
    return [t.c.due_date.is_not(None), bound]


def _day_bounds(zone: ZoneInfo, now: datetime) -> tuple[date, datetime, datetime]:
    today = now.astimezone(zone).date()
    start = datetime.combine(today, time(0), tzinfo=zone).astimezone(UTC)
    end = datetime.combine(today + timedelta(days=1), time(0), tzinfo=zone).astimezone(UTC)
    return today, start, end


def _due_window(window: DueWindow, zone: ZoneInfo, now: datetime) -> list[sa.ColumnElement[bool]]:
    """A due window computed in `zone`: timed tasks by instant, all-day tasks by their date."""
    timed, all_day = t.c.due_at.is_not(None), t.c.due_at.is_(None)
    today, start, end = _day_bounds(zone, now)
    if window == "none":
        return [t.c.due_date.is_(None)]
    if window == "overdue":
        midnight_utc = datetime.combine(today, time(0), tzinfo=UTC)
        return [
            t.c.status == "pending",
            # An index-friendly bound implied by both branches below.
            t.c.due_sort < max(now, midnight_utc),
            sa.or_(sa.and_(timed, t.c.due_at < now), sa.and_(all_day, t.c.due_date < today)),
        ]
    if window == "today":
        return [
            sa.or_(
                sa.and_(timed, t.c.due_at >= start, t.c.due_at < end),
                sa.and_(all_day, t.c.due_date == today),
            )
        ]
    if window == "overdue_or_today":
        return [
            t.c.status == "pending",
            sa.or_(sa.and_(timed, t.c.due_at < end), sa.and_(all_day, t.c.due_date <= today)),
        ]
    return [  # upcoming: due after today
        t.c.due_date.is_not(None),
        sa.or_(sa.and_(timed, t.c.due_at >= end), sa.and_(all_day, t.c.due_date > today)),
    ]
