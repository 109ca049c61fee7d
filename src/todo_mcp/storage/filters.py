"""The statement of a task list, built once per shape, and the values of one call.

A list's shape is which filters it has, how it sorts, and whether it continues after a cursor;
its values are everything else. `list_statement(shape)` is built once per shape with named
parameters, and `list_values(...)` fills them for one call. The two are kept side by side here,
because every parameter the first names, the second must give.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import cache
from typing import Any, Literal
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from todo_mcp.due import parse_due
from todo_mcp.models import DueWindow, SortOrder, TaskQuery
from todo_mcp.storage.cursor import SORTS
from todo_mcp.storage.dialect import SqlDialect, sql_dialect
from todo_mcp.storage.statements import Statement, built, param
from todo_mcp.storage.table import PRIORITY_RANK, tasks_table

t = tasks_table
Bound = Literal["date", "at"] | None


def visible() -> sa.ColumnElement[bool]:
    """The tasks of the parameter `owner` that are not deleted."""
    return sa.and_(t.c.owner_id == param("owner", t.c.owner_id), t.c.deleted_at.is_(None))


@dataclass(frozen=True)
class ListShape:
    """What decides a list statement's text."""

    database: str
    status: bool
    priority: bool
    tag: bool
    search_terms: int
    due: DueWindow | None
    due_before: Bound
    due_after: Bound
    sort: SortOrder
    after: bool


def _bound(text: str | None) -> Bound:
    if text is None:
        return None
    return "date" if parse_due(text).at is None else "at"


def list_shape(sql: SqlDialect, query: TaskQuery, *, after: bool) -> ListShape:
    """The shape of `query` on the database of `sql`."""
    return ListShape(
        database=sql.name,
        status=query.status != "all",
        priority=query.priority is not None,
        tag=query.tag is not None,
        search_terms=len(sql.search_terms(query.search)) if query.search is not None else 0,
        due=query.due,
        due_before=_bound(query.due_before),
        due_after=_bound(query.due_after),
        sort=query.order,
        after=after,
    )


@built
def list_statement(shape: ListShape) -> sa.Select[Any]:
    """SELECT the page (one row more, to tell whether another page follows)."""
    sql = sql_dialect(shape.database)
    conditions: list[sa.ColumnElement[bool]] = [visible()]
    if shape.status:
        conditions.append(t.c.status == param("status", t.c.status))
    if shape.priority:
        conditions.append(t.c.priority == param("priority", t.c.priority))
    if shape.tag:
        conditions.append(sql.has_tag())
    if shape.search_terms:
        conditions.append(sql.matches(shape.search_terms))
    if shape.due is not None:
        conditions.extend(_due_window(shape.due))
    if shape.due_before is not None:
        conditions.extend(_due_bound(shape.due_before, "before"))
    if shape.due_after is not None:
        conditions.extend(_due_bound(shape.due_after, "after"))
    if shape.after:
        conditions.append(_after(shape.sort))
    order = [key.desc() if descending else key.asc() for key, descending, _ in _ordering(shape.sort)]
    return sa.select(t).where(*conditions).order_by(*order).limit(param("limit", sa.Integer()))


@cache
def _ordering(sort: SortOrder) -> list[tuple[sa.ColumnElement[Any], bool, bool]]:
    """(expression, descending, negated) for each sort column of `sort`.

    Creation order (newest, oldest) runs on `-id`, which only the owner's own indexes provide: on
    `id` the planner could walk the primary key, through every other user's rows (migration 0003).
    """
    columns = SORTS[sort]
    if len(columns) == 1:
        ((_, descending),) = columns
        return [(-t.c.id, not descending, True)]
    return [(t.c[name], descending, False) for name, descending in columns]


def list_values(
    sql: SqlDialect, owner: str, query: TaskQuery, zone: ZoneInfo, now: datetime, after: list[Any] | None
) -> dict[str, Any]:
    """The value of every parameter `list_statement(list_shape(...))` names, for this call."""
    values: dict[str, Any] = {"owner": owner, "limit": query.limit + 1}
    if query.status != "all":
        values["status"] = query.status
    if query.priority is not None:
        values["priority"] = PRIORITY_RANK[query.priority]
    if query.tag is not None:
        values["tag"] = sql.tag_value(query.tag.strip().lower())
    if query.search is not None:
        values.update({f"search_{n}": term for n, term in enumerate(sql.search_terms(query.search))})
    if query.due is not None:
        values.update(_window_values(zone, now))
    for side, text in (("before", query.due_before), ("after", query.due_after)):
        if text is not None:
            due = parse_due(text)
            values[f"due_{side}"] = due.day if due.at is None else due.at
            values[f"due_{side}_sort"] = _date_bound_instant(due.day, side)
    for n, (key, (_, _, negated)) in enumerate(zip(after or (), _ordering(query.order), strict=False)):
        values[f"key_{n}"] = -key if negated else key
    return values


def _after(sort: SortOrder) -> sa.ColumnElement[bool]:
    """Rows strictly after the cursor's keys `key_0`, `key_1`, ... in the sort order (keyset pagination)."""
    condition: sa.ColumnElement[bool] | None = None
    # Build from the last (tie-breaking) column outwards: c1 > k1 OR (c1 = k1 AND (...)).
    for n, (column, descending, _) in reversed(list(enumerate(_ordering(sort)))):
        key = param(f"key_{n}", column.type)
        beyond = column < key if descending else column > key
        condition = beyond if condition is None else sa.or_(beyond, sa.and_(column == key, condition))
    assert condition is not None
    return condition


def _due_bound(kind: Literal["date", "at"], side: Literal["before", "after"]) -> list[sa.ColumnElement[bool]]:
    """Due strictly before/after the parameter `due_before`/`due_after` (a date, or an instant).

    A date bound also bounds `due_sort` (the parameter `due_<side>_sort`), loosely enough for a
    task due at any time of that day in any zone, so that an index serves it.
    """
    if kind == "at":
        value = param(f"due_{side}", t.c.due_sort)
        return [t.c.due_date.is_not(None), t.c.due_sort < value if side == "before" else t.c.due_sort > value]
    day, instant = param(f"due_{side}", t.c.due_date), param(f"due_{side}_sort", t.c.due_sort)
    if side == "before":
        return [t.c.due_date.is_not(None), t.c.due_date < day, t.c.due_sort < instant]
    return [t.c.due_date.is_not(None), t.c.due_date > day, t.c.due_sort >= instant]


def _date_bound_instant(day: date, side: str) -> datetime:
    """An instant every task due before (or after) `day`, in any zone, sorts before (or after).

    Zones run from UTC-12 to UTC+14: the day before `day` ends at the latest at `day` 12:00 UTC,
    the day after it starts at the earliest at `day` 10:00 UTC; an all-day task sorts at 23:59:59
    UTC of its date, inside both bounds.
    """
    hour = 12 if side == "before" else 10
    return datetime.combine(day, time(hour), tzinfo=UTC)


def _window_values(zone: ZoneInfo, now: datetime) -> dict[str, Any]:
    """Today in `zone`, its start and end as instants, and the bounds the index can use."""
    today = now.astimezone(zone).date()
    start = datetime.combine(today, time(0), tzinfo=zone).astimezone(UTC)
    end = datetime.combine(today + timedelta(days=1), time(0), tzinfo=zone).astimezone(UTC)
    # An all-day task sorts at 23:59:59 UTC of its date; these bounds hold both kinds of task.
    day_first = datetime.combine(today, time(23, 59, 59), tzinfo=UTC)
    return {
        "now": now,
        "today": today,
        "day_start": start,
        "day_end": end,
        "sort_from": min(start, day_first),
        "sort_to": max(end, day_first),
        "sort_overdue": max(now, datetime.combine(today, time(0), tzinfo=UTC)),
        "sort_upcoming": min(end, day_first + timedelta(days=1)),
    }


def _day(name: str) -> sa.BindParameter[date]:
    return sa.bindparam(name, type_=t.c.due_date.type)


def _instant(name: str) -> sa.BindParameter[datetime]:
    return sa.bindparam(name, type_=t.c.due_sort.type)


def _due_window(window: DueWindow) -> list[sa.ColumnElement[bool]]:
    """A due window computed in the caller's zone: timed tasks by instant, all-day tasks by their date.

    Each window also bounds `due_sort`, which both kinds of task have, so that an index serves it.
    The exact test is one CASE on the kind of task: PostgreSQL cannot estimate it, and assumes it
    keeps a fair share of the rows, where an OR of the two kinds is estimated at a row or two and
    makes it sort every task of the window to return the first page.
    """
    today, now = _day("today"), _instant("now")
    start, end = _instant("day_start"), _instant("day_end")
    if window == "none":
        return [t.c.due_date.is_(None)]
    if window == "overdue":
        return [
            t.c.status == "pending",
            t.c.due_sort < _instant("sort_overdue"),
            _by_kind(t.c.due_at < now, t.c.due_date < today),
        ]
    if window == "today":
        return [
            t.c.due_sort >= _instant("sort_from"),
            t.c.due_sort <= _instant("sort_to"),
            _by_kind(sa.and_(t.c.due_at >= start, t.c.due_at < end), t.c.due_date == today),
        ]
    if window == "overdue_or_today":
        return [
            t.c.status == "pending",
            t.c.due_sort <= _instant("sort_to"),
            _by_kind(t.c.due_at < end, t.c.due_date <= today),
        ]
    return [  # upcoming: due after today
        t.c.due_date.is_not(None),
        t.c.due_sort >= _instant("sort_upcoming"),
        _by_kind(t.c.due_at >= end, t.c.due_date > today),
    ]


def _by_kind(timed: sa.ColumnElement[bool], all_day: sa.ColumnElement[bool]) -> sa.ColumnElement[bool]:
    """`timed` for a task due at an instant, `all_day` for one due on a date (NULL, so false, if undated)."""
    return sa.case((t.c.due_at.is_(None), all_day), else_=timed)


def statement_for(sql: SqlDialect, query: TaskQuery, *, after: bool) -> Statement:
    """The built statement of `query`'s shape."""
    return list_statement(list_shape(sql, query, after=after))
