"""What an undo decides, per task, and how its result reads; the same on both databases.

An undo takes the changes it was asked for and, per task they touched, the oldest change's
`before` as the state to return to (none: the task was created by them, so it is deleted). A task
is undone only if nothing else changed it: its changes chain (each starts where the previous left
it) and it is still as the newest left it. Otherwise it is refused with its current version and
the fields that changed since. Content is compared, not versions: an undo moves a task's version
but returns its content, so "undo my last change" can be repeated to walk further back.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import pairwise
from typing import Any

from todo_mcp.change_models import Refusal, TaskChange, UndoResult
from todo_mcp.errors import ChangeAlreadyUndone, ChangeNotFound, NothingUndone, RefusedTask
from todo_mcp.storage.history import SHOWN, shown, task_change
from todo_mcp.storage.ledger import document
from todo_mcp.storage.session import Row

Snapshot = Mapping[str, Any]


@dataclass(frozen=True)
class Item:
    """A task as one selected change found (`before`; None: created) and left it."""

    change_id: int
    task_id: int
    before: Snapshot | None
    after: Snapshot


@dataclass(frozen=True)
class Verdict:
    """One task's fate: its changes (oldest first), its state now, whether it is undone, and how."""

    items: list[Item]
    current: Snapshot | None
    chained: bool
    # The task as the undo leaves it (None: refused); a dry run's is what it would leave.
    result: Snapshot | None
    # Refused although unchanged: the next occurrence its completion made (this task) was changed.
    blocked_by: int | None = None

    @property
    def task_id(self) -> int:
        """The task's id."""
        return self.items[0].task_id


def items_of(rows: Sequence[Row]) -> dict[int, list[Item]]:
    """The items of the selected changes by task, oldest change first (rows: change_id, task_id, ...)."""
    tasks: dict[int, list[Item]] = {}
    for row in rows:
        if row["task_id"] is None:
            continue
        item = Item(row["change_id"], row["task_id"], document(row["before"]), document(row["after"]))
        tasks.setdefault(item.task_id, []).append(item)
    for found in tasks.values():
        found.sort(key=lambda item: item.change_id)
    return tasks


def same(one: Snapshot | None, other: Snapshot) -> bool:
    """Whether two snapshots hold the same task content (versions aside: an undo moves the version)."""
    return one is not None and all(
        one.get(name) == value for name, value in other.items() if name != "version"
    )


def chained(items: Sequence[Item]) -> bool:
    """Whether each change starts where the previous one left the task."""
    return all(same(later.before, earlier.after) for earlier, later in pairwise(items))


def undoable(items: Sequence[Item], current: Snapshot | None) -> bool:
    """Whether the task can be undone: its changes chain and nothing else changed it since.

    "Since" compares content, so after "undo my last change", undoing the one before it works.
    """
    return current is not None and chained(items) and same(current, items[-1].after)


def target(items: Sequence[Item], current: Snapshot, now: datetime) -> dict[str, Any]:
    """The snapshot the undo leaves: the oldest `before` (a created task: as it is, but deleted)."""
    restored = dict(items[0].before) if items[0].before is not None else dict(current)
    if items[0].before is None and restored.get("deleted_at") is None:
        restored["deleted_at"] = now.isoformat()
    restored["version"] = current["version"] + 1
    return restored


def _completed_repeating(item: Item) -> bool:
    before, after = item.before, item.after
    return (
        before is not None
        and before.get("status") == "pending"
        and after.get("status") == "completed"
        and after.get("repeat") is not None
    )


def blockers(tasks: Mapping[int, Sequence[Item]], undoable_ids: set[int]) -> dict[int, int]:
    """Tasks whose completion must stay because the occurrence it made cannot be undone.

    Undoing a repeating task's completion reopens it and deletes the next occurrence; when that
    occurrence has changed since (it is refused), reopening the task alone would leave two pending
    copies, so neither is undone. Returns {completed task: its refused occurrence}.
    """
    created: dict[int, list[Item]] = {}
    for items in tasks.values():
        for item in items:
            if item.before is None:
                created.setdefault(item.change_id, []).append(item)
    found: dict[int, int] = {}
    for task_id, items in tasks.items():
        for item in filter(_completed_repeating, items):
            for made in created.get(item.change_id, []):
                if made.after.get("title") == item.after.get("title") and made.task_id not in undoable_ids:
                    found[task_id] = made.task_id
    return found


def check_selection(wanted: Sequence[int] | None, found: Mapping[int, int | None]) -> None:
    """Refuse ids that are not the user's changes, or were already undone (found: id -> undone_by)."""
    for change_id in wanted or ():
        if change_id not in found:
            raise ChangeNotFound(change_id)
        undone_by = found[change_id]
        if undone_by is not None:
            raise ChangeAlreadyUndone(change_id, undone_by)


def result(verdicts: Sequence[Verdict], change_id: int | None, *, dry_run: bool) -> UndoResult:
    """The result of an undo from its verdicts; NothingUndone when it undid no task (not a dry run).

    A partial undo is a result that lists what was refused; an undo that did nothing at all is an
    error, so that a caller cannot take it for a success.
    """
    tasks: list[TaskChange] = []
    refused: list[Refusal] = []
    undone: set[int] = set()
    for verdict in verdicts:
        if verdict.result is not None and verdict.current is not None:
            tasks.append(task_change(verdict.task_id, verdict.current, verdict.result))
            undone.update(item.change_id for item in verdict.items)
        else:
            refused.append(_refusal(verdict))
    if not tasks and (not dry_run or not verdicts):  # a preview still shows its refusals
        raise NothingUndone(
            tuple(
                RefusedTask(
                    v.task_id,
                    v.items[-1].change_id,
                    v.current["version"] if v.current is not None else None,
                    tuple(_refusal(v).changed or ()),
                    v.blocked_by,
                    deleted=v.current is not None and v.current.get("deleted_at") is not None,
                )
                for v in verdicts
            )
        )
    return UndoResult(
        dry_run=dry_run, change_id=change_id, undone=sorted(undone), tasks=tasks, refused=refused
    )


def _refusal(verdict: Verdict) -> Refusal:
    newest = verdict.items[-1]
    if verdict.blocked_by is not None and verdict.current is not None:
        return Refusal(
            task_id=verdict.task_id,
            change_id=newest.change_id,
            reason=f"its next occurrence, task {verdict.blocked_by}, was changed since, so neither is undone",
            current_version=verdict.current["version"],
            changed=[],
        )
    if verdict.current is None:
        return Refusal(
            task_id=verdict.task_id, change_id=newest.change_id, reason="the task no longer exists"
        )
    now, then = shown(verdict.current), shown(newest.after)
    changed = [name for name in SHOWN if now[name] != then[name]]
    reason = (
        f"changed since this change (now at version {now['version']})"
        if verdict.chained
        else "changed in between by a change that is not being undone"
    )
    return Refusal(
        task_id=verdict.task_id,
        change_id=newest.change_id,
        reason=reason,
        current_version=now["version"],
        changed=changed,
    )
