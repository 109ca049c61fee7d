"""Writes that record themselves: every change to tasks and its ledger entry, together.

A write names the tasks it touches (a WHERE over `tasks`) and what it sets (Core expressions). On
PostgreSQL the ledger entry is written by the same statement as the change, with data-modifying
CTEs: `old` locks and reads the rows, `upd` changes them, `chg` adds the change (only when some
task's version moved), `items` records each task before and after; a completion also makes the
next occurrence of each repeating task (`plan`, `fresh`). One statement, one round trip. On
SQLite the same steps run as a few statements in one transaction.

A task snapshot holds the stored columns a write can change (`SNAPSHOT`), as JSON.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa

from todo_mcp.identity import Actor
from todo_mcp.storage.recurring import next_day_sql, occurrence_sql
from todo_mcp.storage.session import Row, Session, SqliteSession
from todo_mcp.storage.statements import Statement, param
from todo_mcp.storage.table import SNAPSHOT, change_tasks_table, changes_table, tasks_table

t = tasks_table
ITEM_COLUMNS = ("change_id", "task_id", "owner_id", "before", "after")
# The next occurrence's columns come back beside the completed task's, with this prefix.
NEXT = "next_"

# A SQLite write's extra step: given (before, after) pairs, the new rows it made (next occurrences).
Spawner = Callable[[Session, list[tuple[Row, Row | None]]], Awaitable[dict[int, Row]]]


@dataclass(frozen=True)
class Write:
    """A recorded update: a key for the statement caches, and how to build its parts (once)."""

    key: str
    where: Callable[[], sa.ColumnElement[bool]]
    values: Callable[[], dict[str, Any]]
    # An extra condition a found row must meet to be written (a version check); None: all are.
    checked: Callable[[], sa.ColumnElement[bool]] | None = None
    # Whether completing a repeating task makes its next occurrence.
    spawns: bool = False


@dataclass(frozen=True)
class Outcome:
    """What a recorded write did.

    Per row found, its version before and the row after (None: refused by the check); the change
    (None: nothing changed); the next occurrences made, by the completed task's id.
    """

    rows: list[tuple[int, Row | None]]
    change_id: int | None
    spawned: dict[int, Row] = field(default_factory=dict)


def snapshot(row: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON snapshot of a task row (as PostgreSQL's jsonb_build_object writes it)."""
    return {name: _json_value(row[name]) for name in SNAPSHOT}


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    return document(value)


def document(value: Any) -> Any:
    """A JSON column's value as Python data (asyncpg hands JSON columns over as text)."""
    return json.loads(value) if isinstance(value, str) and value[:1] in "[{" else value


def change_params(actor: Actor, now: datetime, undoes: Sequence[int] | None = None) -> dict[str, Any]:
    """The parameters of a change row."""
    return {"owner": actor.owner, "now": now, "client": actor.client, "via": actor.via, "undoes": undoes}


def snapshot_sql(source: Any) -> sa.ColumnElement[Any]:
    """jsonb_build_object of the snapshot columns of `source` (a CTE or table)."""
    pairs: list[Any] = []
    for name in SNAPSHOT:
        pairs += [sa.literal_column(f"'{name}'"), source.c[name]]
    return sa.func.jsonb_build_object(*pairs)


def insert_change(when: sa.ColumnElement[bool]) -> Any:
    """INSERT INTO changes ... RETURNING id, only when `when` holds (a PostgreSQL CTE)."""
    c = changes_table.c
    values = sa.select(
        param("owner", c.owner_id),
        param("now", c.at),
        param("client", c.client),
        param("via", c.via),
        param("undoes", c.undoes),
    ).where(when)
    return (
        sa.insert(changes_table)
        .from_select(["owner_id", "at", "client", "via", "undoes"], values)
        .returning(c.id)
    )


def insert_items(rows: sa.Select[Any]) -> Any:
    """INSERT INTO change_tasks from `rows` (change_id, task_id, owner_id, before, after)."""
    return sa.insert(change_tasks_table).from_select(list(ITEM_COLUMNS), rows)


def _recorded_update(write: Write) -> sa.Select[Any]:
    """The one PostgreSQL statement of `write` (see the module docstring)."""
    old = sa.select(t).where(write.where()).with_for_update().cte("old")
    update = sa.update(t).where(t.c.id == old.c.id)
    if write.checked is not None:
        update = update.where(write.checked())
    upd = update.values(**write.values()).returning(*t.c).cte("upd")
    moved = sa.select(upd.c.id).join(old, old.c.id == upd.c.id).where(old.c.version != upd.c.version)
    changed = [moved.exists()]
    fresh = plan = None
    if write.spawns:
        plan, fresh = _next_occurrences(old, upd)
        changed.append(sa.select(fresh.c.id).exists())
    chg = insert_change(sa.or_(*changed)).cte("chg")
    item_rows = (
        sa.select(chg.c.id, upd.c.id, upd.c.owner_id, snapshot_sql(old), snapshot_sql(upd))
        .select_from(upd.join(old, old.c.id == upd.c.id).join(chg, sa.true()))
        .where(old.c.version != upd.c.version)
    )
    joined = old.outerjoin(upd, upd.c.id == old.c.id).outerjoin(chg, sa.true())
    columns: list[Any] = [old.c.version.label("current_version"), *upd.c, chg.c.id.label("change_id")]
    if plan is not None and fresh is not None:
        created = sa.select(chg.c.id, fresh.c.id, fresh.c.owner_id, sa.null(), snapshot_sql(fresh))
        item_rows = item_rows.union_all(created.select_from(fresh.join(chg, sa.true())))  # type: ignore[assignment]
        joined = joined.outerjoin(plan, plan.c.source == old.c.id).outerjoin(
            fresh, fresh.c.id == plan.c.new_id
        )
        columns += [column.label(NEXT + column.name) for column in fresh.c]
    return sa.select(*columns).select_from(joined).add_cte(insert_items(item_rows).cte("items"))


def _next_occurrences(old: Any, upd: Any) -> tuple[Any, Any]:
    """`plan`: the next date of each repeating task this completion completed; `fresh`: the tasks."""
    sequence = sa.func.pg_get_serial_sequence("tasks", "id")
    plan = (
        sa.select(
            old.c.id.label("source"),
            sa.func.nextval(sequence).label("new_id"),
            next_day_sql(old).label("day"),
        )
        .select_from(old.join(upd, upd.c.id == old.c.id))
        .where(old.c.status == "pending", upd.c.status == "completed", old.c.repeat_spec.is_not(None))
        .cte("plan")
    )
    values = {"id": plan.c.new_id, **occurrence_sql(old, plan.c.day)}
    rows = (
        sa.select(*values.values())
        .select_from(plan.join(old, old.c.id == plan.c.source))
        .where(plan.c.day.is_not(None))
    )
    fresh = sa.insert(t).from_select(list(values), rows).returning(*t.c).cte("fresh")
    return plan, fresh


_PG: dict[str, Statement] = {}
_SQLITE: dict[str, tuple[Statement, Statement]] = {}


async def run_write(
    session: Session, write: Write, params: Mapping[str, Any], spawner: Spawner | None = None
) -> Outcome:
    """Run `write` with `params` (which include the change's: see `change_params`)."""
    if session.sql.writes_in_one_statement():
        statement = _PG.get(write.key)
        if statement is None:
            statement = _PG[write.key] = Statement(_recorded_update(write))
        rows = await session.rows(statement, params)
        spawned: dict[int, Row] = {
            row["id"]: _unprefixed(row) for row in rows if row.get(NEXT + "id") is not None
        }
        change_id = next((row["change_id"] for row in rows if row["change_id"] is not None), None)
        found = [(row["current_version"], row if row["id"] is not None else None) for row in rows]
        return Outcome(found, change_id, spawned)
    assert isinstance(session, SqliteSession)
    return await _run_sqlite(session, write, params, spawner)


def _unprefixed(row: Row) -> dict[str, Any]:
    return {name.removeprefix(NEXT): value for name, value in row.items() if name.startswith(NEXT)}


async def _run_sqlite(
    session: SqliteSession, write: Write, params: Mapping[str, Any], spawner: Spawner | None
) -> Outcome:
    statements = _SQLITE.get(write.key)
    if statements is None:
        where = write.where()
        update = sa.update(t).where(where)
        if write.checked is not None:
            update = update.where(write.checked())
        statements = _SQLITE[write.key] = (
            Statement(sa.select(t).where(where)),
            Statement(update.values(**write.values()).returning(*t.c)),
        )
    find, update_statement = statements
    async with session.transaction():
        before = await session.rows(find, params)
        written = {row["id"]: row for row in await session.rows(update_statement, params)}
        pairs = [(row, written.get(row["id"])) for row in before]
        spawned = await spawner(session, pairs) if spawner is not None else {}
        change_id = await record(session, params, pairs, list(spawned.values()))
    return Outcome([(row["version"], after) for row, after in pairs], change_id, spawned)


_CHANGE = Statement(
    sa.insert(changes_table)
    .values(
        owner_id=param("owner", changes_table.c.owner_id),
        at=param("now", changes_table.c.at),
        client=param("client", changes_table.c.client),
        via=param("via", changes_table.c.via),
        undoes=param("undoes", changes_table.c.undoes),
    )
    .returning(changes_table.c.id)
)
_ITEM = Statement(
    sa.insert(change_tasks_table).values(
        {name: param(name, change_tasks_table.c[name]) for name in ITEM_COLUMNS}
    )
)


async def record(
    session: Session,
    params: Mapping[str, Any],
    pairs: Sequence[tuple[Row, Row | None]],
    created: Sequence[Row] = (),
) -> int | None:
    """Add the change for rows already written, inside the caller's transaction (SQLite); its id.

    Only tasks whose version moved are recorded; with none (and nothing created), no change.
    """
    moved = [
        (before, after)
        for before, after in pairs
        if after is not None and before["version"] != after["version"]
    ]
    if not moved and not created:
        return None
    (change,) = await session.rows(_CHANGE, params)
    change_id: int = change["id"]
    owner = params["owner"]
    for before, after in [*moved, *((None, row) for row in created)]:
        item = {"change_id": change_id, "task_id": after["id"], "owner_id": owner}
        await session.rows(
            _ITEM, {**item, "before": snapshot(before) if before else None, "after": snapshot(after)}
        )
    return change_id


_PRUNE_ITEMS = Statement(
    sa.delete(change_tasks_table).where(
        change_tasks_table.c.change_id.in_(
            sa.select(changes_table.c.id).where(changes_table.c.at < param("before", changes_table.c.at))
        )
    )
)
_PRUNE = Statement(
    sa.delete(changes_table)
    .where(changes_table.c.at < param("before", changes_table.c.at))
    .returning(changes_table.c.id)
)


async def prune_changes(session: Session, *, before: datetime) -> int:
    """Forget the changes made before `before` (every user's); the tasks are never touched.

    Returns how many changes were removed. Their items go first (SQLite does not cascade unless
    told to), in the same transaction.
    """
    if isinstance(session, SqliteSession):
        async with session.transaction():
            await session.rows(_PRUNE_ITEMS, {"before": before})
            return len(await session.rows(_PRUNE, {"before": before}))
    # PostgreSQL: the foreign key cascades to the items; one statement.
    return len(await session.rows(_PRUNE, {"before": before}))
