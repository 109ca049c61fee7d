"""The ledger of changes, and repeat rules on tasks.

- `changes`: one row per write (who, which client, which tool or route, when, and which changes
  an undo undid); `change_tasks`: for each task a change touched, the task before and after.
- `tasks.repeat` holds a task's repeat rule as text; `tasks.repeat_spec` the same rule parsed, for
  the database to compute the next occurrence when a completion creates it.
- On PostgreSQL, `todo_ledger_next_date(spec, anchor, after)`: the first date after `after` (and
  after `anchor`) that the rule, counted from `anchor`, names. It implements the rule subset
  `todo_mcp.recurrence` accepts, with the same results as python-dateutil's rrule (the tests
  compare the two), so that completing a repeating task is one statement.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Weekdays are 0 (Monday) to 6 (Sunday), as in python-dateutil; `byday` holds [weekday, ordinal]
# pairs, ordinal 0 meaning every such weekday, -1 the last one of the month.
NEXT_DATE = """
CREATE FUNCTION todo_ledger_next_date(spec jsonb, anchor date, after date) RETURNS date
LANGUAGE plpgsql IMMUTABLE STRICT AS $$
DECLARE
    freq text := spec->>'freq';
    step int := (spec->>'interval')::int;
    days int[] := ARRAY(SELECT (pair->>0)::int FROM jsonb_array_elements(spec->'byday') AS pair);
    ords int[] := ARRAY(SELECT (pair->>1)::int FROM jsonb_array_elements(spec->'byday') AS pair);
    mdays int[] := ARRAY(SELECT value::int FROM jsonb_array_elements_text(spec->'bymonthday'));
    months int[] := ARRAY(SELECT value::int FROM jsonb_array_elements_text(spec->'bymonth'));
    last_day date := (spec->>'until')::date;
    d date := greatest(anchor, after);
    horizon date;
    dim int;
    dom int;
    wd int;
    hit boolean;
BEGIN
    horizon := d + CASE freq
        WHEN 'DAILY' THEN 7 * step + 7
        WHEN 'WEEKLY' THEN 7 * step + 7
        WHEN 'MONTHLY' THEN 31 * 12 * step + 62
        ELSE 366 * 8 * step + 366 END;
    IF cardinality(days) = 0 AND cardinality(mdays) = 0 THEN
        IF freq = 'WEEKLY' THEN
            days := ARRAY[extract(isodow FROM anchor)::int - 1]; ords := ARRAY[0];
        ELSIF freq IN ('MONTHLY', 'YEARLY') THEN
            mdays := ARRAY[extract(day FROM anchor)::int];
        END IF;
    END IF;
    IF freq = 'YEARLY' AND cardinality(months) = 0 THEN
        months := ARRAY[extract(month FROM anchor)::int];
    END IF;
    LOOP
        d := d + 1;
        IF d > horizon OR d > last_day THEN
            RETURN NULL;
        END IF;
        CONTINUE WHEN freq = 'DAILY' AND (d - anchor) % step <> 0;
        CONTINUE WHEN freq = 'WEEKLY'
            AND ((d - extract(isodow FROM d)::int) - (anchor - extract(isodow FROM anchor)::int))
                / 7 % step <> 0;
        CONTINUE WHEN freq = 'MONTHLY'
            AND ((extract(year FROM d)::int * 12 + extract(month FROM d)::int)
                 - (extract(year FROM anchor)::int * 12 + extract(month FROM anchor)::int)) % step <> 0;
        CONTINUE WHEN freq = 'YEARLY'
            AND (extract(year FROM d)::int - extract(year FROM anchor)::int) % step <> 0;
        CONTINUE WHEN cardinality(months) > 0 AND NOT extract(month FROM d)::int = ANY (months);
        dom := extract(day FROM d)::int;
        dim := extract(day FROM (date_trunc('month', d) + interval '1 month - 1 day'))::int;
        wd := extract(isodow FROM d)::int - 1;
        IF cardinality(mdays) > 0 THEN
            hit := false;
            FOR i IN 1 .. cardinality(mdays) LOOP
                hit := hit OR mdays[i] = dom OR (mdays[i] < 0 AND dim + mdays[i] + 1 = dom);
            END LOOP;
            CONTINUE WHEN NOT hit;
        END IF;
        IF cardinality(days) > 0 THEN
            hit := false;
            FOR i IN 1 .. cardinality(days) LOOP
                hit := hit OR (days[i] = wd AND (ords[i] = 0
                    OR (ords[i] > 0 AND (dom - 1) / 7 + 1 = ords[i])
                    OR (ords[i] < 0 AND (dim - dom) / 7 + 1 = -ords[i])));
            END LOOP;
            CONTINUE WHEN NOT hit;
        END IF;
        RETURN d;
    END LOOP;
END
$$
"""


def upgrade() -> None:
    pg = op.get_bind().dialect.name == "postgresql"
    stamp = sa.DateTime(timezone=True)
    document = postgresql.JSONB() if pg else sa.JSON()
    op.add_column("tasks", sa.Column("repeat", sa.String(200), nullable=True))
    op.add_column("tasks", sa.Column("repeat_spec", document, nullable=True))
    op.create_table(
        "changes",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
        sa.Column("owner_id", sa.String(255), nullable=False),
        sa.Column("at", stamp, nullable=False),
        sa.Column("client", sa.String(255), nullable=True),
        sa.Column("via", sa.String(64), nullable=False),
        sa.Column("undoes", document, nullable=True),
        sa.Column("undone_by", sa.BigInteger(), nullable=True),
    )
    op.create_index("ix_changes_owner_id", "changes", ["owner_id", "id"])
    op.create_index("ix_changes_at", "changes", ["at"])
    op.create_table(
        "change_tasks",
        sa.Column(
            "change_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            sa.ForeignKey("changes.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("task_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
        sa.Column("owner_id", sa.String(255), nullable=False),
        sa.Column("before", document, nullable=True),
        sa.Column("after", document, nullable=False),
    )
    op.create_index("ix_change_tasks_owner_task", "change_tasks", ["owner_id", "task_id", "change_id"])
    if pg:
        op.execute(NEXT_DATE)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION todo_ledger_next_date(jsonb, date, date)")
    op.drop_table("change_tasks")
    op.drop_table("changes")
    op.drop_column("tasks", "repeat_spec")
    op.drop_column("tasks", "repeat")
