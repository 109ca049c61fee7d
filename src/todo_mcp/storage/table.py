"""The `tasks` table (SQLModel) and how its rows become `Task` models."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Dialect
from sqlmodel import Field as TableField
from sqlmodel import SQLModel

from todo_mcp.due import format_due
from todo_mcp.models import REPEAT_MAX, REQUEST_ID_MAX, Priority, Task
from todo_mcp.recurrence import summary_of

PRIORITY_RANK: dict[str, int] = {"low": 1, "medium": 2, "high": 3, "urgent": 4}
RANK_PRIORITY: dict[int, Priority] = {1: "low", 2: "medium", 3: "high", 4: "urgent"}

# Tasks without a due value sort after every real one; the same sentinel works in both databases.
NO_DUE_SORT = datetime(9999, 12, 31, 0, 0, tzinfo=UTC)
# A JSON document: JSONB on PostgreSQL.
DOCUMENT = postgresql.JSONB(none_as_null=True).with_variant(sa.JSON(none_as_null=True), "sqlite")

# Ids are 64-bit in both databases: a larger number names no task, and the drivers refuse to send it.
ID_MAX = 2**63 - 1
VERSION_MAX = 2**31 - 1


class UTCDateTime(sa.TypeDecorator[datetime]):
    """An aware UTC datetime in both databases (SQLite keeps it as naive UTC text)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Refuse naive datetimes; send UTC (naive UTC to SQLite)."""
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored; attach a time zone")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Always give back an aware UTC datetime."""
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
    repeat: str | None = TableField(default=None, sa_column=sa.Column(sa.String(REPEAT_MAX), nullable=True))
    repeat_spec: dict[str, Any] | None = TableField(
        default=None, sa_column=sa.Column(DOCUMENT, nullable=True)
    )


tasks_table: sa.Table = TaskRecord.__table__  # type: ignore[attr-defined]


class ChangeRecord(SQLModel, table=True):
    """One write, as the ledger keeps it: whose, by which client, through which tool or route, when."""

    __tablename__ = "changes"

    id: int | None = TableField(
        default=None,
        sa_column=sa.Column(sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
    )
    owner_id: str = TableField(sa_column=sa.Column(sa.String(255), nullable=False))
    at: datetime = TableField(sa_column=sa.Column(UTCDateTime(), nullable=False))
    client: str | None = TableField(default=None, sa_column=sa.Column(sa.String(255), nullable=True))
    via: str = TableField(sa_column=sa.Column(sa.String(64), nullable=False))
    # For an undo: the ids of the changes it undid.
    undoes: list[int] | None = TableField(default=None, sa_column=sa.Column(DOCUMENT, nullable=True))
    undone_by: int | None = TableField(default=None, sa_column=sa.Column(sa.BigInteger(), nullable=True))


changes_table: sa.Table = ChangeRecord.__table__  # type: ignore[attr-defined]


class ChangeTaskRecord(SQLModel, table=True):
    """A task as a change found it (`before`, None for a task it created) and left it (`after`)."""

    __tablename__ = "change_tasks"

    change_id: int = TableField(
        sa_column=sa.Column(
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            sa.ForeignKey("changes.id", ondelete="CASCADE"),
            primary_key=True,
        )
    )
    task_id: int = TableField(
        sa_column=sa.Column(sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True)
    )
    owner_id: str = TableField(sa_column=sa.Column(sa.String(255), nullable=False))
    before: dict[str, Any] | None = TableField(default=None, sa_column=sa.Column(DOCUMENT, nullable=True))
    after: dict[str, Any] = TableField(sa_column=sa.Column(DOCUMENT, nullable=False))


change_tasks_table: sa.Table = ChangeTaskRecord.__table__  # type: ignore[attr-defined]

# The columns a change records of each task it touches: everything a write can change.
SNAPSHOT = (
    "title",
    "description",
    "status",
    "priority",
    "due_date",
    "due_at",
    "due_tz",
    "due_sort",
    "tags",
    "repeat",
    "repeat_spec",
    "completed_at",
    "deleted_at",
    "version",
)


class SecretRecord(SQLModel, table=True):
    """A secret of this deployment, generated once and shared by every replica (the cursor key)."""

    __tablename__ = "server_secrets"

    name: str = TableField(sa_column=sa.Column(sa.String(64), primary_key=True))
    value: str = TableField(sa_column=sa.Column(sa.String(128), nullable=False))


secrets_table: sa.Table = SecretRecord.__table__  # type: ignore[attr-defined]


def task_from_row(row: Mapping[str, Any]) -> Task:
    """The `Task` a row of `tasks` shows."""
    return Task(
        id=row["id"],
        title=row["title"],
        description=row["description"],
        status=row["status"],
        priority=RANK_PRIORITY[row["priority"]],
        due=format_due(row["due_date"], row["due_at"], row["due_tz"]),
        tags=row["tags"] or [],
        repeat=row["repeat"],
        repeat_summary=summary_of(row["repeat"]) if row["repeat"] else None,
        version=row["version"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        completed_at=row["completed_at"],
        deleted_at=row["deleted_at"],
    )
