"""Create the tasks table and the indexes behind every list filter and sort order.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SEARCH_EXPR = "to_tsvector('english'::regconfig, title || ' ' || coalesce(description, ''))"


def upgrade() -> None:
    pg = op.get_bind().dialect.name == "postgresql"
    stamp = sa.DateTime(timezone=True)
    columns: list[sa.Column[object]] = [
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
        sa.Column("owner_id", sa.String(255), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("priority", sa.SmallInteger(), nullable=False),
        sa.Column("due_date", sa.Date(), nullable=True),
        sa.Column("due_at", stamp, nullable=True),
        sa.Column("due_tz", sa.String(64), nullable=True),
        sa.Column("due_sort", stamp, nullable=False),
        sa.Column("tags", postgresql.ARRAY(sa.Text()) if pg else sa.JSON(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", stamp, nullable=False),
        sa.Column("updated_at", stamp, nullable=False),
        sa.Column("completed_at", stamp, nullable=True),
        sa.Column("deleted_at", stamp, nullable=True),
        sa.Column("client_request_id", sa.String(128), nullable=True),
        sa.Column("request_hash", sa.String(64), nullable=True),
    ]
    if pg:
        columns.append(sa.Column("search", postgresql.TSVECTOR(), sa.Computed(SEARCH_EXPR, persisted=True)))
    op.create_table(
        "tasks",
        *columns,
        sa.CheckConstraint("status IN ('pending', 'completed')", name="ck_tasks_status"),
        sa.CheckConstraint("priority BETWEEN 1 AND 4", name="ck_tasks_priority"),
        sa.CheckConstraint("version >= 1", name="ck_tasks_version"),
    )
    live = sa.text("deleted_at IS NULL")
    where: dict[str, Any] = {"postgresql_where": live, "sqlite_where": live}
    op.create_index("ix_tasks_owner_id", "tasks", ["owner_id", "id"], **where)
    op.create_index("ix_tasks_owner_status_id", "tasks", ["owner_id", "status", "id"], **where)
    op.create_index("ix_tasks_owner_status_due", "tasks", ["owner_id", "status", "due_sort", "id"], **where)
    op.create_index(
        "ix_tasks_owner_status_priority",
        "tasks",
        ["owner_id", "status", sa.text("priority DESC"), "due_sort", "id"],
        **where,
    )
    has_key = sa.text("client_request_id IS NOT NULL")
    op.create_index(
        "uq_tasks_owner_request",
        "tasks",
        ["owner_id", "client_request_id"],
        unique=True,
        postgresql_where=has_key,
        sqlite_where=has_key,
    )
    if pg:
        op.create_index("ix_tasks_tags", "tasks", ["tags"], postgresql_using="gin")
        op.create_index("ix_tasks_search", "tasks", ["search"], postgresql_using="gin")


def downgrade() -> None:
    op.drop_table("tasks")
