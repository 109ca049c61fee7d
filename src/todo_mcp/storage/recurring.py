"""The next occurrence of a repeating task, made when the task is completed.

The new task has the same title, description, tags, priority and rule (one fewer left of a COUNT),
status pending, and the next due value: the next date its rule names, in the task's own zone, at
the same local time of day (a date-only task stays date-only). On PostgreSQL the completing
statement computes it (`todo_ledger_next_date`, see migration 0004); on SQLite, Python does, with
the same rules (`todo_mcp.recurrence`), and the tests hold the two to the same answers.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime, time, timedelta, timezone
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from todo_mcp.due import Due, zone_info
from todo_mcp.recurrence import UNITS, Repeat
from todo_mcp.storage.statements import param
from todo_mcp.storage.table import tasks_table

t = tasks_table
COPIED = ("owner_id", "title", "description", "priority", "tags")


def _is_offset(tz: str | None) -> bool:
    return tz is not None and (tz == "Z" or tz[0] in "+-")


def zone_of(tz: str | None, default_tz: str) -> Any:
    """The zone a task's dates are counted in: its own, or the default for date-only tasks."""
    if tz is None:
        return zone_info(default_tz)
    if tz == "Z":
        return UTC
    if tz[0] in "+-":
        hours, minutes = int(tz[1:3]), int(tz[4:6])
        sign = -1 if tz[0] == "-" else 1
        return timezone(sign * timedelta(hours=hours, minutes=minutes))
    return zone_info(tz)


def next_due(rule: Repeat, due: Due | None, done: datetime, default_tz: str) -> Due | None:
    """The due value of the occurrence after `due` (done at `done`), or None when the rule ends."""
    zone = zone_of(due.tz if due else None, default_tz)
    done_day = done.astimezone(zone).date()
    day = rule.next_date(due.day if due else done_day, done_day)
    if day is None:
        return None
    if due is None or due.at is None:
        return Due(day=day)
    return Due(day=day, at=local_instant(day, due.at.astimezone(zone).time(), zone), tz=due.tz)


def local_instant(day: date, clock: time, zone: Any) -> datetime:
    """`clock` on `day` in `zone`, as PostgreSQL's AT TIME ZONE reads it.

    A time the clocks skip (spring forward) counts with the offset before the change, so it lands
    the length of the gap later; a time that happens twice (fall back) is the second one.
    """
    naive = datetime.combine(day, clock)
    first, second = naive.replace(tzinfo=zone, fold=0), naive.replace(tzinfo=zone, fold=1)
    if first.utcoffset() == second.utcoffset():
        return first
    exists = first.astimezone(UTC).astimezone(zone).replace(tzinfo=None) == naive
    return second if exists else first


def occurrence_values(row: Mapping[str, Any], rule: Repeat, due: Due, now: datetime) -> dict[str, Any]:
    """The columns of the next occurrence of task `row` (SQLite path)."""
    following = rule.following()
    assert following is not None
    return {
        **{name: row[name] for name in COPIED},
        "status": "pending",
        "due_date": due.day,
        "due_at": due.at,
        "due_tz": due.tz,
        "due_sort": due.sort_key,
        "repeat": following.text(),
        "repeat_spec": following.spec(),
        "version": 1,
        "created_at": now,
        "updated_at": now,
        "completed_at": None,
        "deleted_at": None,
        "client_request_id": None,
        "request_hash": None,
    }


# --- PostgreSQL: the same, as expressions over the completed row `old` --------------------------


def _spec(old: Any, key: str) -> sa.ColumnElement[Any]:
    value: sa.ColumnElement[Any] = old.c.repeat_spec[key].astext
    return value


def _done_day(old: Any) -> sa.ColumnElement[date]:
    """The day the task is done, in its zone (the default zone for a date-only task)."""
    now = param("now", t.c.updated_at)
    default_tz = param("default_tz", sa.String())
    offset = sa.cast(sa.func.replace(old.c.due_tz, "Z", "+00:00"), sa.Interval())
    return sa.case(
        (old.c.due_tz.is_(None), sa.cast(sa.func.timezone(default_tz, now), sa.Date())),
        (
            sa.or_(old.c.due_tz == "Z", old.c.due_tz.like("+%"), old.c.due_tz.like("-%")),
            sa.cast(sa.func.timezone("UTC", now) + offset, sa.Date()),
        ),
        else_=sa.cast(sa.func.timezone(old.c.due_tz, now), sa.Date()),
    )


def next_day_sql(old: Any) -> sa.ColumnElement[date]:
    """The next occurrence's date, or NULL when the rule has ended (COUNT used up, past UNTIL)."""
    done = _done_day(old)
    step = sa.cast(_spec(old, "interval"), sa.Integer())
    units: dict[str, sa.ColumnElement[Any]] = {
        freq: sa.literal_column(f"interval '1 {unit}'") for freq, unit in UNITS.items()
    }
    after_done = sa.cast(
        done + step * sa.case(*((_spec(old, "freq") == freq, unit) for freq, unit in units.items())),
        sa.Date(),
    )
    until = sa.cast(_spec(old, "until"), sa.Date())
    from_done = sa.case((sa.or_(until.is_(None), after_done <= until), after_done))
    by_rule = sa.func.todo_ledger_next_date(old.c.repeat_spec, sa.func.coalesce(old.c.due_date, done), done)
    return sa.case(
        (sa.cast(_spec(old, "count"), sa.Integer()) == 1, sa.null()),
        (sa.cast(_spec(old, "from_completion"), sa.Boolean()), from_done),
        else_=by_rule,
    )


def occurrence_sql(old: Any, day: Any) -> dict[str, Any]:
    """The columns of the next occurrence of `old`, due on `day` (both over the completing CTEs)."""
    now = param("now", t.c.updated_at)
    local_time = sa.cast(sa.func.timezone(old.c.due_tz, old.c.due_at), sa.Time())
    due_at = sa.case(
        (old.c.due_at.is_(None), sa.null()),
        (
            sa.or_(old.c.due_tz == "Z", old.c.due_tz.like("+%"), old.c.due_tz.like("-%")),
            old.c.due_at + (day - old.c.due_date) * sa.literal_column("interval '1 day'"),
        ),
        else_=sa.func.timezone(old.c.due_tz, day + local_time),
    )
    count = sa.cast(_spec(old, "count"), sa.Integer())
    repeat = sa.case(
        (count.is_(None), old.c.repeat),
        else_=sa.func.regexp_replace(
            old.c.repeat, r"COUNT=\d+", sa.literal("COUNT=") + sa.cast(count - 1, sa.Text())
        ),
    )
    spec = sa.case(
        (count.is_(None), old.c.repeat_spec),
        else_=sa.func.jsonb_set(
            old.c.repeat_spec, sa.literal_column("'{count}'"), sa.func.to_jsonb(count - 1)
        ),
    )
    due_sort = sa.func.coalesce(due_at, sa.func.timezone("UTC", day + sa.literal_column("time '23:59:59'")))
    return {
        **{name: old.c[name] for name in COPIED},
        "status": sa.literal("pending"),
        "due_date": day,
        "due_at": due_at,
        "due_tz": old.c.due_tz,
        "due_sort": due_sort,
        "repeat": repeat,
        "repeat_spec": sa.cast(spec, postgresql.JSONB()),
        "version": sa.literal(1),
        "created_at": now,
        "updated_at": now,
    }
