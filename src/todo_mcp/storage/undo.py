"""Undo: changes chosen by id or as "my last N", undone as one new change (itself undoable).

On PostgreSQL the whole undo is one statement: it picks the changes, decides per task (see
`todo_mcp.storage.undo_plan`), writes the tasks back with `jsonb_populate_record` of the stored
snapshots, records the new change with its items, and marks the undone changes (an undo of an
undo also unmarks what the first undid). On SQLite the same runs as a few statements in one
transaction, deciding in Python.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa

from todo_mcp.change_models import UndoRequest, UndoResult
from todo_mcp.identity import Actor
from todo_mcp.storage import undo_plan
from todo_mcp.storage.ledger import change_params, document, record, snapshot
from todo_mcp.storage.session import Row, Session, SqliteSession
from todo_mcp.storage.statements import Statement, built, param
from todo_mcp.storage.table import SNAPSHOT, change_tasks_table, changes_table, tasks_table
from todo_mcp.storage.undo_plan import Verdict
from todo_mcp.storage.writes import utcnow

t = tasks_table
c = changes_table.c


def _json(alias: str) -> str:
    pairs = ", ".join(f"'{name}', {alias}.{name}" for name in SNAPSHOT)
    return f"jsonb_build_object({pairs})"


_RESTORED = ",\n        ".join(
    f"{name} = CASE WHEN ok.created THEN t.{name} ELSE r.{name} END"
    for name in SNAPSHOT
    if name not in ("version", "deleted_at")
)
_PG_UNDO = f"""
WITH sel AS (
    SELECT id, undone_by, undoes FROM changes
    WHERE owner_id = :owner AND id = ANY(CAST(:ids AS text[])::bigint[])
    UNION ALL
    (SELECT id, undone_by, undoes FROM changes
     WHERE CAST(:ids AS text[]) IS NULL AND owner_id = :owner AND undone_by IS NULL AND undoes IS NULL
     ORDER BY id DESC LIMIT :last)
), live AS (
    SELECT * FROM sel WHERE undone_by IS NULL
), it AS (
    SELECT ct.change_id, ct.task_id, ct.before, ct.after,
        lag(ct.after - 'version') OVER w AS prev_after
    FROM change_tasks ct JOIN live ON live.id = ct.change_id
    WHERE ct.owner_id = :owner
    WINDOW w AS (PARTITION BY ct.task_id ORDER BY ct.change_id)
), per AS (
    SELECT task_id,
        bool_and(prev_after IS NULL OR before - 'version' = prev_after) AS chained,
        (array_agg(before ORDER BY change_id))[1] AS target,
        (array_agg(after ORDER BY change_id DESC))[1] - 'version' AS last_state
    FROM it GROUP BY task_id
), cur AS (
    SELECT t.* FROM tasks t JOIN per ON per.task_id = t.id WHERE t.owner_id = :owner FOR UPDATE OF t
), ok0 AS (
    SELECT per.task_id, per.target, per.target IS NULL AS created
    FROM per JOIN cur ON cur.id = per.task_id
    WHERE per.chained AND {_json("cur")} - 'version' = per.last_state
        AND (CAST(:wanted AS int) < 0 OR (SELECT count(*) FROM live) = :wanted)
), blocked AS (
    SELECT src.task_id, min(made.task_id) AS made_id
    FROM it src JOIN it made ON made.change_id = src.change_id AND made.before IS NULL
        AND made.after->>'title' = src.after->>'title'
    WHERE src.before->>'status' = 'pending' AND src.after->>'status' = 'completed'
        AND src.after->>'repeat' IS NOT NULL
        AND made.task_id NOT IN (SELECT task_id FROM ok0)
    GROUP BY src.task_id
), ok AS (
    SELECT * FROM ok0 WHERE task_id NOT IN (SELECT task_id FROM blocked)
), upd AS (
    UPDATE tasks t SET
        {_RESTORED},
        deleted_at = CASE WHEN ok.created THEN coalesce(t.deleted_at, :now) ELSE r.deleted_at END,
        version = t.version + 1,
        updated_at = :now
    FROM ok LEFT JOIN LATERAL jsonb_populate_record(NULL::tasks, ok.target) r ON true
    WHERE t.id = ok.task_id AND NOT CAST(:dry_run AS boolean)
    RETURNING t.*
), done AS (
    SELECT DISTINCT it.change_id FROM it JOIN upd ON upd.id = it.task_id
), chg AS (
    INSERT INTO changes (owner_id, at, client, via, undoes)
    SELECT :owner, :now, :client, :via, (SELECT jsonb_agg(change_id ORDER BY change_id) FROM done)
    WHERE EXISTS (SELECT 1 FROM upd)
    RETURNING id
), items AS (
    INSERT INTO change_tasks (change_id, task_id, owner_id, before, after)
    SELECT chg.id, upd.id, upd.owner_id, {_json("cur")}, {_json("upd")}
    FROM upd JOIN cur ON cur.id = upd.id CROSS JOIN chg
), mark AS (
    UPDATE changes SET undone_by = chg.id FROM chg
    WHERE changes.owner_id = :owner AND changes.id IN (SELECT change_id FROM done)
), unmark AS (
    UPDATE changes SET undone_by = NULL
    WHERE changes.owner_id = :owner AND changes.undone_by IN (
        SELECT done.change_id FROM done JOIN live ON live.id = done.change_id WHERE live.undoes IS NOT NULL)
)
SELECT sel.id AS change_id, sel.undone_by, it.task_id, it.before, it.after,
    CASE WHEN cur.id IS NOT NULL THEN {_json("cur")} END AS current,
    CASE WHEN upd.id IS NOT NULL THEN {_json("upd")} END AS written,
    ok.task_id IS NOT NULL AS ok, per.chained, (SELECT id FROM chg) AS new_change,
    (SELECT made_id FROM blocked WHERE blocked.task_id = it.task_id) AS blocked_by
FROM sel
LEFT JOIN it ON it.change_id = sel.id
LEFT JOIN per ON per.task_id = it.task_id
LEFT JOIN cur ON cur.id = it.task_id
LEFT JOIN ok ON ok.task_id = it.task_id
LEFT JOIN upd ON upd.id = it.task_id
ORDER BY sel.id, it.task_id
"""
PG_UNDO = Statement(sa.text(_PG_UNDO))


async def undo_changes(session: Session, *, actor: Actor, request: UndoRequest) -> UndoResult:
    """Undo the requested changes of the actor's (see the module docstring)."""
    now = utcnow()
    ids = sorted(set(request.change_ids)) if request.change_ids is not None else None
    last = request.last or 1
    if session.sql.writes_in_one_statement():
        return await _undo_pg(session, actor, ids, last, request.dry_run, now)
    assert isinstance(session, SqliteSession)
    return await _undo_sqlite(session, actor, ids, last, request.dry_run, now)


async def _undo_pg(
    session: Session, actor: Actor, ids: list[int] | None, last: int, dry_run: bool, now: datetime
) -> UndoResult:
    params = {
        **change_params(actor, now),
        "ids": [str(change_id) for change_id in ids] if ids is not None else None,
        "last": last,
        "wanted": len(ids) if ids is not None else -1,
        "dry_run": dry_run,
    }
    rows = await session.rows(PG_UNDO, params)
    undo_plan.check_selection(ids, {row["change_id"]: row["undone_by"] for row in rows})
    by_task = {row["task_id"]: row for row in rows if row["task_id"] is not None}
    verdicts = []
    for task_id, items in undo_plan.items_of(rows).items():
        row = by_task[task_id]
        current = document(row["current"])
        result = document(row["written"])
        if dry_run and row["ok"]:
            result = undo_plan.target(items, current, now)
        verdicts.append(Verdict(items, current, bool(row["chained"]), result, row["blocked_by"]))
    change_id = next((row["new_change"] for row in rows if row["new_change"] is not None), None)
    return undo_plan.result(verdicts, change_id, dry_run=dry_run)


# --- SQLite ----------------------------------------------------------------------------------------


@built
def _selected(by_id: bool) -> sa.ClauseElement:
    owner = c.owner_id == param("owner", c.owner_id)
    if by_id:
        chosen = sa.select(c.id, c.undone_by, c.undoes).where(
            owner, c.id.in_(sa.bindparam("ids", expanding=True))
        )
    else:
        chosen = (
            sa.select(c.id, c.undone_by, c.undoes)
            .where(owner, c.undone_by.is_(None), c.undoes.is_(None))
            .order_by(c.id.desc())
            .limit(param("last", sa.Integer()))
        )
    return chosen


@built
def _items() -> sa.ClauseElement:
    ct = change_tasks_table
    return sa.select(ct.c.change_id, ct.c.task_id, ct.c.before, ct.c.after).where(
        ct.c.owner_id == param("owner", ct.c.owner_id),
        ct.c.change_id.in_(sa.bindparam("changes", expanding=True)),
    )


@built
def _tasks() -> sa.ClauseElement:
    return sa.select(t).where(
        t.c.owner_id == param("owner", t.c.owner_id), t.c.id.in_(sa.bindparam("ids", expanding=True))
    )


@built
def _write_back() -> sa.ClauseElement:
    values = {name: sa.bindparam(f"v_{name}", type_=t.c[name].type) for name in SNAPSHOT}
    return (
        sa.update(t)
        .where(
            t.c.owner_id == param("owner", t.c.owner_id),
            t.c.id == param("task_id", t.c.id),
            t.c.version == param("expected", t.c.version),
        )
        .values(**values, updated_at=param("now", t.c.updated_at))
        .returning(*t.c)
    )


@built
def _mark(undone: bool) -> sa.ClauseElement:
    owner = c.owner_id == param("owner", c.owner_id)
    chosen: sa.BindParameter[Any] = sa.bindparam("changes", expanding=True)
    if undone:
        return (
            sa.update(changes_table).where(owner, c.id.in_(chosen)).values(undone_by=param("by", c.undone_by))
        )
    return sa.update(changes_table).where(owner, c.undone_by.in_(chosen)).values(undone_by=None)


def stored(snap: Mapping[str, Any]) -> dict[str, Any]:
    """A snapshot's values as the columns take them (dates and times parsed)."""
    values = dict(snap)
    for name in ("due_at", "due_sort", "completed_at", "deleted_at"):
        if isinstance(values.get(name), str):
            values[name] = datetime.fromisoformat(values[name])
    if isinstance(values.get("due_date"), str):
        values["due_date"] = date.fromisoformat(values["due_date"])
    return values


async def _undo_sqlite(
    session: SqliteSession, actor: Actor, ids: list[int] | None, last: int, dry_run: bool, now: datetime
) -> UndoResult:
    params = {**change_params(actor, now), "ids": ids or [], "last": last}
    async with session.transaction():
        selected = await session.rows(_selected(ids is not None), params)
        undo_plan.check_selection(ids, {row["id"]: row["undone_by"] for row in selected})
        changes = [row["id"] for row in selected]
        tasks = undo_plan.items_of(await session.rows(_items(), {**params, "changes": changes}))
        rows = await session.rows(_tasks(), {**params, "ids": list(tasks)})
        current = {row["id"]: row for row in rows}
        verdicts, pairs = await _apply(session, tasks, current, params, dry_run, now)
        undone = sorted({item.change_id for verdict in verdicts if verdict.result for item in verdict.items})
        change_id = None
        if pairs:
            change_id = await record(session, {**params, "undoes": undone}, pairs)
            await session.rows(_mark(True), {**params, "changes": undone, "by": change_id})
            undos = [row["id"] for row in selected if row["id"] in undone and document(row["undoes"])]
            await session.rows(_mark(False), {**params, "changes": undos})
    return undo_plan.result(verdicts, change_id, dry_run=dry_run)


async def _apply(
    session: SqliteSession,
    tasks: Mapping[int, list[undo_plan.Item]],
    current: Mapping[int, Row],
    params: Mapping[str, Any],
    dry_run: bool,
    now: datetime,
) -> tuple[list[Verdict], list[tuple[Row, Row | None]]]:
    """Decide per task and, unless a dry run, write each undone task back."""
    snapshots = {task_id: snapshot(row) for task_id, row in current.items()}
    undoable = {
        task_id for task_id, items in tasks.items() if undo_plan.undoable(items, snapshots.get(task_id))
    }
    blocked = undo_plan.blockers(tasks, undoable)
    verdicts: list[Verdict] = []
    pairs: list[tuple[Row, Row | None]] = []
    for task_id, items in tasks.items():
        before = snapshots.get(task_id)
        if before is None or task_id not in undoable or task_id in blocked:
            chained = undo_plan.chained(items)
            verdicts.append(Verdict(items, before, chained, None, blocked.get(task_id)))
            continue
        goal = undo_plan.target(items, before, now)
        if not dry_run:
            row = current[task_id]
            values = {f"v_{name}": value for name, value in stored(goal).items()}
            (written,) = await session.rows(
                _write_back(), {**params, **values, "task_id": task_id, "expected": row["version"]}
            )
            pairs.append((row, written))
            goal = snapshot(written)
        verdicts.append(Verdict(items, before, True, goal))
    return verdicts, pairs
