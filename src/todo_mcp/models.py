"""The input and output models that MCP tools and REST routes share.

Every constraint on an input value is defined here once: the tool schemas, the REST OpenAPI
document and the validation of both come from these models. Priorities and statuses are the same
strings in input and output; due values are described in `todo_mcp.due`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    model_validator,
)

from todo_mcp.due import parse_due, zone_info
from todo_mcp.recurrence import parse_repeat

Priority = Literal["low", "medium", "high", "urgent"]
Status = Literal["pending", "completed"]
SortOrder = Literal["newest", "oldest", "due", "priority"]
StatusFilter = Literal["pending", "completed", "all"]
DueWindow = Literal["overdue", "today", "overdue_or_today", "upcoming", "none"]

TITLE_MAX = 200
DESCRIPTION_MAX = 4000
TAG_MAX = 32
TAGS_MAX = 10
REQUEST_ID_MAX = 128
PAGE_DEFAULT = 20
PAGE_MAX = 100
BULK_MAX = 100
SEARCH_MAX = 200
LIST_DESCRIPTION_MAX = 200
DUE_MAX = 80
REPEAT_MAX = 200
PATCHABLE = ("title", "description", "priority", "due", "tags", "repeat", "status")


def _canonical_due(value: str) -> str:
    return parse_due(value).text()


def _due_or_clear(value: str) -> str:
    return "" if value == "" else _canonical_due(value)


def _canonical_repeat(value: str) -> str:
    return parse_repeat(value).text()


def _repeat_or_clear(value: str) -> str:
    return "" if value == "" else _canonical_repeat(value)


def _known_zone(value: str) -> str:
    zone_info(value)
    return value


def _normalize_tags(tags: list[str]) -> list[str]:
    seen: list[str] = []
    for tag in tags:
        norm = tag.strip().lower()
        if not norm or any(ch.isspace() or ch == "," for ch in norm):
            raise ValueError(f"tag {tag!r} is not valid; send tags as single words without spaces or commas")
        if norm not in seen:
            seen.append(norm)
    return seen


def _storable(value: str) -> str:
    if "\x00" in value:
        raise ValueError("contains a NUL character (\\u0000), which cannot be stored; remove it")
    return value


def _strip_title(value: str) -> str:
    stripped = _storable(value).strip()
    if not stripped:
        raise ValueError("title is empty; send a short title such as 'Buy milk'")
    return stripped


def _none_is_empty_list(value: Any) -> Any:
    return [] if value is None else value


def _blank_is_none(value: Any) -> Any:
    return None if value == "" else value


Title = Annotated[
    str, Field(min_length=1, max_length=TITLE_MAX, description="Short title."), AfterValidator(_strip_title)
]
Description = Annotated[
    str, Field(max_length=DESCRIPTION_MAX, description="Longer notes."), AfterValidator(_storable)
]
Tag = Annotated[str, Field(min_length=1, max_length=TAG_MAX), AfterValidator(_storable)]
Tags = Annotated[
    list[Tag],
    Field(max_length=TAGS_MAX, description="Single-word labels, lowercased."),
    AfterValidator(_normalize_tags),
]
DueText = Annotated[
    str,
    Field(max_length=DUE_MAX, description="Date 2026-12-24, or date-time with offset or [zone]."),
    AfterValidator(_canonical_due),
]
RepeatText = Annotated[
    str,
    Field(
        max_length=REPEAT_MAX,
        description="Repeat rule (RRULE): FREQ=WEEKLY;BYDAY=MO,TH, FREQ=MONTHLY;BYDAY=-1FR (last Friday), "
        "FREQ=MONTHLY;BYMONTHDAY=31; add ;FROM=COMPLETION to count from when it is done.",
    ),
    AfterValidator(_canonical_repeat),
]
ZoneName = Annotated[
    str,
    Field(max_length=64, description="IANA zone for 'today'/'overdue', e.g. Europe/Paris."),
    AfterValidator(_known_zone),
]
TaskId = Annotated[int, Field(ge=1)]
Cursor = Annotated[
    str, Field(description="next_cursor of the previous page."), BeforeValidator(_blank_is_none)
]
TaskIds = Annotated[list[TaskId], Field(min_length=1, max_length=BULK_MAX)]
RequestId = Annotated[str, Field(min_length=1, max_length=REQUEST_ID_MAX), AfterValidator(_storable)]
Search = Annotated[
    str,
    Field(max_length=SEARCH_MAX, description="Words in title or description."),
    AfterValidator(_storable),
]


class Input(BaseModel):
    """Base of every input model: unknown fields are refused, and null means "not given".

    Agents in strict mode (OpenAI's, and the frameworks that follow it) send every property and
    fill the ones they do not use with null; the published schemas say that null is allowed.
    """

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _null_is_not_given(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        fields = cls.model_fields
        return {name: value for name, value in data.items() if value is not None or name not in fields}


class TaskCreate(Input):
    """A new task (add_task; the body of POST /api/tasks)."""

    title: Title
    description: Description | None = None
    priority: Priority = "medium"
    due: DueText | None = None
    tags: Annotated[Tags, BeforeValidator(_none_is_empty_list)] = Field(default_factory=list)
    repeat: RepeatText | None = None
    client_request_id: (
        Annotated[
            RequestId, Field(description="Retry key: the same key and content returns the original task.")
        ]
        | None
    ) = None


class TaskPatch(Input):
    """A partial update: only the fields that are set change. "" clears description/due, [] clears tags."""

    title: Title | None = None
    description: Annotated[Description, Field(description="'' clears it.")] | None = None
    priority: Priority | None = None
    due: (
        Annotated[str, Field(description="Like add_task; '' clears it."), AfterValidator(_due_or_clear)]
        | None
    ) = None
    tags: Annotated[Tags, Field(description="Replaces all tags; [] clears them.")] | None = None
    repeat: (
        Annotated[
            str,
            Field(max_length=REPEAT_MAX, description="Like add_task; '' stops repeating."),
            AfterValidator(_repeat_or_clear),
        ]
        | None
    ) = None
    status: Annotated[Status, Field(description="pending reopens a completed task.")] | None = None
    expected_version: (
        Annotated[int, Field(ge=1, description="Fail instead of overwriting if the version differs.")] | None
    ) = None

    def changes(self) -> dict[str, Any]:
        """The fields this patch sets, by name."""
        return {name: getattr(self, name) for name in PATCHABLE if getattr(self, name) is not None}


class TaskRef(Input):
    """One task, by id (get_task)."""

    task_id: TaskId


class TaskUpdate(TaskPatch, TaskRef):
    """A partial update of one task (update_task)."""


class TaskSelection(Input):
    """Tasks, by id (complete_task)."""

    task_ids: Annotated[TaskIds, Field(description="One id or up to 100.")]


class DeleteSelection(TaskSelection):
    """Tasks to delete, or to restore (delete_task)."""

    restore: Annotated[bool, Field(description="true restores deleted tasks instead.")] = False


class TaskQuery(Input):
    """Filters, order and page of a task list (list_tasks; the query of GET /api/tasks)."""

    status: StatusFilter = "pending"
    priority: Priority | None = None
    tag: Tag | None = None
    search: Annotated[Search, BeforeValidator(_blank_is_none)] | None = None
    due: Annotated[DueWindow, Field(description="Due window, computed in tz.")] | None = None
    due_before: DueText | None = None
    due_after: DueText | None = None
    sort: (
        Annotated[
            SortOrder,
            Field(
                description=(
                    "due/priority: soonest first, undated last. Default: due with a due filter, else newest."
                )
            ),
        ]
        | None
    ) = None
    limit: Annotated[int, Field(ge=1, le=PAGE_MAX)] = PAGE_DEFAULT
    cursor: Cursor | None = None
    tz: ZoneName | None = None

    @property
    def order(self) -> SortOrder:
        """The order of the list: `sort`, else soonest due first under a due filter, else newest.

        Tasks due in a window are read in the order of the index that bounds the window, so a
        page costs the same for a user with a million tasks as for one with a thousand.
        """
        if self.sort is not None:
            return self.sort
        dated = (self.due is not None and self.due != "none") or self.due_before or self.due_after
        return "due" if dated else "newest"


# --- outputs -------------------------------------------------------------------------------------


def _is_none(value: object) -> bool:
    return value is None


def omitted(description: str | None = None) -> Any:
    """An optional output field that is left out, rather than sent as null, when it has no value."""
    return Field(default=None, exclude_if=_is_none, description=description)


class Task(BaseModel):
    """A task as every edge shows it (fields without a value are left out)."""

    id: int
    title: str
    description: str | None = omitted()
    status: Status
    priority: Priority
    due: str | None = omitted()
    tags: list[str]
    repeat: str | None = omitted()
    repeat_summary: str | None = omitted()
    version: int
    created_at: datetime
    updated_at: datetime
    completed_at: datetime | None = omitted()
    deleted_at: datetime | None = omitted()


class WrittenTask(Task):
    """A task as a write left it, with the id of the change (the ledger entry) that made it so."""

    change_id: int | None = omitted()


class ItemResult(BaseModel):
    """The outcome for one id of a bulk call."""

    id: int
    ok: bool
    task: Task | None = omitted()
    next: Task | None = omitted()
    error: str | None = omitted()


class BulkResult(BaseModel):
    """A result per id, in the order the ids were given (duplicates once)."""

    results: list[ItemResult] = Field(
        description="Per id: id, ok, and the task (ok; next: a repeating task's next occurrence) or an error."
    )
    change_id: int | None = omitted("The change (for undo_changes); absent when nothing changed.")


class TaskPage(BaseModel):
    """One page of a task list."""

    tasks: list[Task] = Field(description="Tasks as get_task returns them; descriptions cut to 200 chars.")
    next_cursor: str | None = Field(description="Pass as cursor for the next page; null on the last page.")
