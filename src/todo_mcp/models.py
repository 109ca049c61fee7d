"""The tasks table and the models that MCP tools and REST routes share.

Priorities and statuses are the same strings in input and output. A due value is either a calendar
date ("2026-12-24") or a date-time with its offset ("2026-12-24T17:00:00+01:00"), optionally with an
IANA zone in brackets ("2026-12-24T17:00:00+01:00[Europe/Paris]"); it is given back exactly as
stored, offset and zone included.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, timezone
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import sqlalchemy as sa
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SerializationInfo,
    SerializerFunctionWrapHandler,
    model_serializer,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Dialect
from sqlmodel import Field as TableField
from sqlmodel import SQLModel

Priority = Literal["low", "medium", "high", "urgent"]
Status = Literal["pending", "completed"]

PRIORITY_RANK: dict[str, int] = {"low": 1, "medium": 2, "high": 3, "urgent": 4}
RANK_PRIORITY: dict[int, Priority] = {1: "low", 2: "medium", 3: "high", 4: "urgent"}

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

# Tasks without a due value sort after every real one; the same sentinel works in both databases.
NO_DUE_SORT = datetime(9999, 12, 31, 0, 0, tzinfo=UTC)
# Any offset keeps a due value in this range before the sentinel and inside datetime's range.
DUE_FIRST, DUE_LAST = date(1000, 1, 1), date(9998, 12, 31)


class UTCDateTime(sa.TypeDecorator[datetime]):
    """An aware UTC datetime in both databases (SQLite keeps it as naive UTC text)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored; attach a time zone")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class TaskRecord(SQLModel, table=True):
    """One row of `tasks`. PostgreSQL adds a generated `search` tsvector (see the migrations)."""

    __tablename__ = "tasks"

    id: int | None = TableField(
        default=None,
        sa_column=sa.Column(sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
    )
    owner_id: str = TableField(sa_column=sa.Column(sa.String(255), nullable=False))
    title: str = TableField(sa_column=sa.Column(sa.Text(), nullable=False))
    description: str | None = TableField(default=None, sa_column=sa.Column(sa.Text(), nullable=True))
    status: str = TableField(sa_column=sa.Column(sa.String(16), nullable=False))
    priority: int = TableField(sa_column=sa.Column(sa.SmallInteger(), nullable=False))
    due_date: date | None = TableField(default=None, sa_column=sa.Column(sa.Date(), nullable=True))
    due_at: datetime | None = TableField(default=None, sa_column=sa.Column(UTCDateTime(), nullable=True))
    due_tz: str | None = TableField(default=None, sa_column=sa.Column(sa.String(64), nullable=True))
    due_sort: datetime = TableField(sa_column=sa.Column(UTCDateTime(), nullable=False))
    tags: list[str] = TableField(
        default_factory=list,
        sa_column=sa.Column(postgresql.ARRAY(sa.Text()).with_variant(sa.JSON(), "sqlite"), nullable=False),
    )
    version: int = TableField(sa_column=sa.Column(sa.Integer(), nullable=False))
    created_at: datetime = TableField(sa_column=sa.Column(UTCDateTime(), nullable=False))
    updated_at: datetime = TableField(sa_column=sa.Column(UTCDateTime(), nullable=False))
    completed_at: datetime | None = TableField(
        default=None, sa_column=sa.Column(UTCDateTime(), nullable=True)
    )
    deleted_at: datetime | None = TableField(default=None, sa_column=sa.Column(UTCDateTime(), nullable=True))
    client_request_id: str | None = TableField(
        default=None, sa_column=sa.Column(sa.String(REQUEST_ID_MAX), nullable=True)
    )
    request_hash: str | None = TableField(default=None, sa_column=sa.Column(sa.String(64), nullable=True))


tasks_table: sa.Table = TaskRecord.__table__  # type: ignore[attr-defined]


# --- due values -------------------------------------------------------------------------------

_DUE_RE = re.compile(
    r"^(?P<date>\d{4}-\d{2}-\d{2})"
    r"(?:[T ](?P<time>\d{2}:\d{2}(?::\d{2}(?:\.\d{1,6})?)?)(?P<offset>Z|[+-]\d{2}:?\d{2})?"
    r"(?:\[(?P<zone>[A-Za-z0-9_+\-/]+)\])?)?$"
)
DUE_FORMATS = (
    "a date 2026-12-24, a date-time with offset 2026-12-24T17:00:00+01:00, "
    "or one with a zone 2026-12-24T17:00[Europe/Paris]"
)


@dataclass(frozen=True)
class Due:
    """A parsed due value: a calendar date, or an instant with the offset/zone it was given in."""

    day: date
    at: datetime | None = None  # None for an all-day (date-only) due value
    tz: str | None = None  # "+01:00", "Z" or an IANA zone name

    @property
    def sort_key(self) -> datetime:
        if self.at is not None:
            return self.at.astimezone(UTC)
        return datetime.combine(self.day, time(23, 59, 59), tzinfo=UTC)

    def text(self) -> str:
        return format_due(self.day, self.at, self.tz) or ""


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r}; use an IANA name such as Europe/Paris") from None


def parse_due(text: str) -> Due:
    """Parse a due value; ValueError says which formats are accepted."""
    match = _DUE_RE.match(text.strip())
    if match is None:
        raise ValueError(f"due {text!r} is not understood; send {DUE_FORMATS}")
    try:
        day = date.fromisoformat(match["date"])
    except ValueError:
        raise ValueError(f"due {text!r} is not a real calendar date; send {DUE_FORMATS}") from None
    if not DUE_FIRST <= day <= DUE_LAST:
        raise ValueError(f"due {text!r} is out of range; send a date from {DUE_FIRST} to {DUE_LAST}")
    if match["time"] is None:
        return Due(day=day)
    try:
        clock = time.fromisoformat(match["time"])
    except ValueError:
        raise ValueError(f"due {text!r} is not a real time of day; send {DUE_FORMATS}") from None
    naive = datetime.combine(day, clock)
    offset_text, zone_name = match["offset"], match["zone"]
    if zone_name is not None:
        zone = _zone(zone_name)
        local = naive.replace(tzinfo=zone)
        if local.astimezone(UTC).astimezone(zone).replace(tzinfo=None) != naive:
            raise ValueError(
                f"due {text!r}: {clock.isoformat()} does not exist in {zone_name} on {day.isoformat()} "
                "(the clocks skip it); send a time outside the gap"
            )
        if offset_text is not None:
            given = _offset(offset_text)
            if local.utcoffset() != given:
                # Use the fold that matches the offset (autumn clock change), else refuse.
                other = local.replace(fold=1)
                if other.utcoffset() != given:
                    raise ValueError(
                        f"due {text!r}: offset {offset_text} does not match {zone_name} at that time; "
                        "drop the offset or fix it"
                    )
                local = other
        return Due(day=day, at=local, tz=zone_name)
    if offset_text is None:
        raise ValueError(
            f"due {text!r} has a time but no offset or zone; send {text.strip()}+01:00 (your offset), "
            f"{text.strip()}[Europe/Paris] (your zone), or just the date {day.isoformat()}"
        )
    offset = _offset(offset_text)
    canonical = "Z" if offset_text == "Z" else _format_offset(offset)
    return Due(day=day, at=naive.replace(tzinfo=timezone(offset)), tz=canonical)


def _offset(text: str) -> timedelta:
    if text == "Z":
        return timedelta(0)
    sign = -1 if text[0] == "-" else 1
    digits = text[1:].replace(":", "")
    hours, minutes = int(digits[:2]), int(digits[2:])
    if hours > 23 or minutes > 59:
        raise ValueError(f"offset {text} is out of range; offsets run from -23:59 to +23:59")
    return sign * timedelta(hours=hours, minutes=minutes)


def _format_offset(offset: timedelta) -> str:
    total = int(offset.total_seconds())
    sign = "-" if total < 0 else "+"
    total = abs(total)
    return f"{sign}{total // 3600:02d}:{total % 3600 // 60:02d}"


def format_due(day: date | None, at: datetime | None, tz: str | None) -> str | None:
    if day is None:
        return None
    if at is None:
        return day.isoformat()
    if tz is None or tz == "Z":
        local = at.astimezone(UTC)
        return local.replace(tzinfo=None).isoformat() + "Z"
    if tz[0] in "+-":
        local = at.astimezone(timezone(_offset(tz)))
        return local.isoformat()
    local = at.astimezone(_zone(tz))
    return f"{local.isoformat()}[{tz}]"


def _check_due(value: str) -> str:
    return parse_due(value).text()


def _check_zone(value: str) -> str:
    _zone(value)
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


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("contains a NUL character (\\u0000), which cannot be stored; remove it")
    return value


def _strip_title(value: str) -> str:
    stripped = _no_nul(value).strip()
    if not stripped:
        raise ValueError("title is empty; send a short title such as 'Buy milk'")
    return stripped


# --- shared input types (tools and REST routes use the same rules) -----------------------------

Title = Annotated[
    str, Field(min_length=1, max_length=TITLE_MAX, description="Short title."), AfterValidator(_strip_title)
]
Description = Annotated[
    str, Field(max_length=DESCRIPTION_MAX, description="Longer notes."), AfterValidator(_no_nul)
]
Tag = Annotated[str, Field(min_length=1, max_length=TAG_MAX), AfterValidator(_no_nul)]
Tags = Annotated[
    list[Tag],
    Field(max_length=TAGS_MAX, description="Single-word labels, lowercased."),
    AfterValidator(_normalize_tags),
]
DueText = Annotated[
    str, Field(description="Date 2026-12-24, or date-time with offset or [zone]."), AfterValidator(_check_due)
]
ZoneName = Annotated[
    str, Field(description="IANA zone for 'today'/'overdue', e.g. Europe/Paris."), AfterValidator(_check_zone)
]
TaskId = Annotated[int, Field(ge=1)]
TaskIds = Annotated[list[TaskId], Field(min_length=1, max_length=BULK_MAX)]
RequestId = Annotated[str, Field(min_length=1, max_length=REQUEST_ID_MAX), AfterValidator(_no_nul)]


class Compact(BaseModel):
    """Leaves out fields whose value is None, so rows stay small."""

    @model_serializer(mode="wrap")
    def _drop_none(self, handler: SerializerFunctionWrapHandler, info: SerializationInfo) -> Any:
        data = handler(self)
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if v is not None}
        return data


class TaskCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: Title
    description: Description | None = None
    priority: Priority = "medium"
    due: DueText | None = None
    tags: Tags = Field(default_factory=list)
    client_request_id: RequestId | None = None


class TaskPatch(BaseModel):
    """A partial update: only the fields that are set change. "" clears description/due, [] clears tags."""

    model_config = ConfigDict(extra="forbid")

    title: Title | None = None
    description: Description | None = None
    priority: Priority | None = None
    due: Annotated[str, Field(description="New due value; '' clears it.")] | None = None
    tags: Tags | None = None
    status: Status | None = None
    expected_version: Annotated[int, Field(ge=1)] | None = None

    def model_post_init(self, context: Any, /) -> None:
        if self.due:
            self.due = parse_due(self.due).text()

    def changes(self) -> dict[str, Any]:
        return {
            name: getattr(self, name)
            for name in ("title", "description", "priority", "due", "tags", "status")
            if getattr(self, name) is not None
        }


SortOrder = Literal["newest", "oldest", "due", "priority"]
StatusFilter = Literal["pending", "completed", "all"]
DueWindow = Literal["overdue", "today", "overdue_or_today", "upcoming", "none"]


class TaskQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: StatusFilter = "pending"
    priority: Priority | None = None
    tag: Tag | None = None
    search: Annotated[str, Field(min_length=1, max_length=SEARCH_MAX), AfterValidator(_no_nul)] | None = None
    due: DueWindow | None = None
    due_before: DueText | None = None
    due_after: DueText | None = None
    sort: SortOrder = "newest"
    limit: Annotated[int, Field(ge=1, le=PAGE_MAX)] = PAGE_DEFAULT
    cursor: str | None = None
    tz: ZoneName | None = None


# --- outputs -------------------------------------------------------------------------------------


class Task(Compact):
    id: int
    title: str
    description: str | None = None
    status: Status
    priority: Priority
    due: str | None = None
    tags: list[str]
    version: int
    created_at: datetime
    updated_at: datetime
    completed_at: datetime | None = None
    deleted_at: datetime | None = None

    @classmethod
    def from_row(cls, row: Any) -> Task:
        return cls(
            id=row.id,
            title=row.title,
            description=row.description,
            status=row.status,
            priority=RANK_PRIORITY[row.priority],
            due=format_due(row.due_date, row.due_at, row.due_tz),
            tags=list(row.tags or ()),
            version=row.version,
            created_at=row.created_at,
            updated_at=row.updated_at,
            completed_at=row.completed_at,
            deleted_at=row.deleted_at,
        )


class TaskPage(BaseModel):
    tasks: list[Task]
    next_cursor: str | None = Field(description="Pass as cursor for the next page; null on the last page.")


class ItemResult(Compact):
    id: int
    ok: bool
    task: Task | None = None
    error: str | None = None


class BulkResult(BaseModel):
    results: list[ItemResult]
