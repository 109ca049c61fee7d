"""Order a user's tasks by an index that holds only that user's tasks.

`ORDER BY id` can also be served by the primary key, which holds every user's tasks. With a
LIMIT, PostgreSQL's planner may prefer it, expecting a user's tasks to be spread evenly among
everyone's; for a user whose tasks are old (or few) it then reads every other user's newer rows.
Lists ordered by creation therefore order by `-id`, which only these two indexes provide, so a
list never reads another user's rows to find its page.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LIVE = sa.text("deleted_at IS NULL")


def _live() -> dict[str, Any]:
    return {"postgresql_where": LIVE, "sqlite_where": LIVE}


def upgrade() -> None:
    op.create_index("ix_tasks_owner_newest", "tasks", ["owner_id", sa.text("(-id)")], **_live())
    op.create_index(
        "ix_tasks_owner_status_newest", "tasks", ["owner_id", "status", sa.text("(-id)")], **_live()
    )
    op.drop_index("ix_tasks_owner_id", "tasks")
    op.drop_index("ix_tasks_owner_status_id", "tasks")


def downgrade() -> None:
    op.create_index("ix_tasks_owner_id", "tasks", ["owner_id", "id"], **_live())
    op.create_index("ix_tasks_owner_status_id", "tasks", ["owner_id", "status", "id"], **_live())
    op.drop_index("ix_tasks_owner_newest", "tasks")
    op.drop_index("ix_tasks_owner_status_newest", "tasks")
