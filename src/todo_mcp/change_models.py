"""The ledger's input and output models: reading changes (list_changes) and undoing them.

A change is one write: who made it (the client, and the tool or route it came through), when,
and for each task it touched the fields it changed, before and after, shown as `Task` shows them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, Field, model_validator

from todo_mcp.models import BULK_MAX, PAGE_DEFAULT, PAGE_MAX, Cursor, Input, TaskId, omitted

ChangeId = Annotated[int, Field(ge=1)]


def _aware(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("needs a UTC offset, e.g. 2026-12-01T09:00:00Z or 2026-12-01T10:00:00+01:00")
    return value


Instant = Annotated[datetime, AfterValidator(_aware)]
UNDO_LAST_MAX = 20


class ChangeQuery(Input):
    """Which changes to read, newest first (list_changes; the query of GET /api/changes)."""

    task_id: Annotated[TaskId, Field(description="Only changes to this task (its history).")] | None = None
    since: Annotated[Instant, Field(description="Only changes at or after this time (ISO 8601).")] | None = (
        None
    )
    until: Annotated[Instant, Field(description="Only changes before this time (ISO 8601).")] | None = None
    limit: Annotated[int, Field(ge=1, le=PAGE_MAX)] = PAGE_DEFAULT
    cursor: Cursor | None = None


class UndoRequest(Input):
    """Which changes to undo (undo_changes; the body of POST /api/changes/undo)."""

    change_ids: (
        Annotated[
            list[ChangeId],
            Field(min_length=1, max_length=BULK_MAX, description="change_id values from write results."),
        ]
        | None
    ) = None
    last: (
        Annotated[
            int,
            Field(ge=1, le=UNDO_LAST_MAX, description="Undo your last N changes not yet undone (default 1)."),
        ]
        | None
    ) = None
    dry_run: Annotated[bool, Field(description="true shows what would be undone, changing nothing.")] = False

    @model_validator(mode="after")
    def _one_selection(self) -> UndoRequest:
        if self.change_ids is not None and self.last is not None:
            raise ValueError("send change_ids or last, not both")
        return self


class TaskChange(BaseModel):
    """One task in a change: the fields that changed, before and after (before absent: created)."""

    task_id: int
    title: str
    before: dict[str, Any] | None = omitted()
    after: dict[str, Any]


class Change(BaseModel):
    """One recorded write."""

    change_id: int
    at: datetime
    via: str
    client: str | None = omitted()
    undoes: list[int] | None = omitted()
    undone_by: int | None = omitted()
    tasks: list[TaskChange]


class ChangePage(BaseModel):
    """One page of changes, newest first."""

    changes: list[Change] = Field(
        description="Per change: change_id, at, via (tool or route), client, undoes/undone_by, and per task "
        "the changed fields before and after."
    )
    next_cursor: str | None = Field(description="Pass as cursor for the next page; null on the last page.")


class Refusal(BaseModel):
    """A task an undo left alone, and why."""

    task_id: int
    change_id: int
    reason: str
    current_version: int | None = omitted()
    changed: list[str] | None = omitted("Fields changed since (by another change).")


class UndoResult(BaseModel):
    """What an undo did (or, with dry_run, would do)."""

    dry_run: bool
    change_id: int | None = omitted("The undo's own change (undo it to redo); absent if nothing changed.")
    undone: list[int] = Field(description="The change ids undone.")
    tasks: list[TaskChange] = Field(description="Per task, the fields the undo sets: before and after.")
    refused: list[Refusal] = Field(description="Tasks left as they are, with the reason.")
