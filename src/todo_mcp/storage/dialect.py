"""What differs between PostgreSQL and SQLite, in one place.

The repository asks `dialect_of(conn)` for these pieces and never branches on the database
itself: array parameters and tag arrays, full-text search, the INSERT construct with ON
CONFLICT, and how a version-checked update reports a conflict.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.dml import ReturningInsert

from todo_mcp.storage.table import ID_MAX, tasks_table

t = tasks_table
SEARCH_CONFIG = "english"


class SqlDialect(Protocol):
    """The pieces of SQL that differ by database."""

    def insert(self, values: dict[str, Any], *, retry_key: bool) -> ReturningInsert[Any]:
        """INSERT ... RETURNING into tasks; with `retry_key`, a repeated key returns the existing row."""

    def insert_if_absent(self, table: sa.Table, values: dict[str, Any]) -> sa.Insert:
        """INSERT ... ON CONFLICT DO NOTHING: a row whose key exists already is left as it is."""

    def ids_match(self, ids: Sequence[int]) -> sa.ColumnElement[bool]:
        """`id` is one of `ids`, with a statement text that does not vary with their number."""

    def has_tag(self, tag: str) -> sa.ColumnElement[bool]:
        """The task carries `tag`."""

    def matches(self, text: str) -> sa.ColumnElement[bool]:
        """The task's title or description matches the search `text`."""

    async def checked_update(
        self, conn: AsyncConnection, found: sa.ColumnElement[bool], update: sa.Update, params: dict[str, Any]
    ) -> tuple[Any, int | None]:
        """Run a version-checked UPDATE of the row `found` selects.

        Returns the updated row (or None) and, when nothing was updated, the current version of
        the row (None when there is no such row).
        """


def _in_range(ids: Sequence[int]) -> list[int]:
    return [task_id for task_id in ids if task_id <= ID_MAX]


def _returning(stmt: postgresql.Insert | sqlite.Insert, *, retry_key: bool) -> ReturningInsert[Any]:
    if retry_key:
        # DO UPDATE (a no-op assignment) rather than DO NOTHING: it returns the existing row even when
        # a concurrent retry committed it after this statement's snapshot was taken.
        stmt = stmt.on_conflict_do_update(
            index_elements=[t.c.owner_id, t.c.client_request_id],
            index_where=t.c.client_request_id.is_not(None),
            set_={"client_request_id": stmt.excluded.client_request_id},
        )
    return stmt.returning(*t.c)


class _Upserts:
    """INSERT ... ON CONFLICT, which both databases spell alike with their own construct."""

    _construct: Callable[[sa.Table], postgresql.Insert | sqlite.Insert]

    def insert(self, values: dict[str, Any], *, retry_key: bool) -> ReturningInsert[Any]:
        """INSERT ... RETURNING into tasks; with `retry_key`, a repeated key returns the existing row."""
        return _returning(self._construct(t).values(**values), retry_key=retry_key)

    def insert_if_absent(self, table: sa.Table, values: dict[str, Any]) -> sa.Insert:
        """INSERT ... ON CONFLICT DO NOTHING."""
        return self._construct(table).values(**values).on_conflict_do_nothing()


class Postgres(_Upserts):
    """PostgreSQL: array parameters, tsvector search, one statement for a checked update."""

    _construct = staticmethod(postgresql.insert)

    def ids_match(self, ids: Sequence[int]) -> sa.ColumnElement[bool]:
        """`id = ANY(array)`: one parameter, so one statement text (and cached plan) for any count.

        Sent as text[], which asyncpg encodes natively: for bigint[] it would first look the type up
        on every new connection (six extra round trips).
        """
        ids_text = sa.bindparam("ids", [str(i) for i in _in_range(ids)], type_=postgresql.ARRAY(sa.Text()))
        return t.c.id == sa.any_(sa.cast(ids_text, postgresql.ARRAY(sa.BigInteger())))

    def has_tag(self, tag: str) -> sa.ColumnElement[bool]:
        """`tags @> ARRAY[tag]`, served by the GIN index."""
        return t.c.tags.contains(sa.bindparam("tag", [tag], type_=postgresql.ARRAY(sa.Text())))

    def matches(self, text: str) -> sa.ColumnElement[bool]:
        """Full-text search (English stemming) over the generated `search` column."""
        config: sa.ColumnElement[Any] = sa.literal_column(f"'{SEARCH_CONFIG}'::regconfig")
        return sa.literal_column("search").op("@@")(sa.func.websearch_to_tsquery(config, text))

    async def checked_update(
        self, conn: AsyncConnection, found: sa.ColumnElement[bool], update: sa.Update, params: dict[str, Any]
    ) -> tuple[Any, int | None]:
        """One statement: find the row, update it if the version matches, report which happened.

        FOR UPDATE: behind a concurrent writer, read the version it committed, not this statement's
        snapshot, so a conflict reports the real current version (and a concurrent delete, not found).
        """
        cur = sa.select(t.c.id, t.c.version).where(found).with_for_update().cte("cur")
        upd = update.where(found, t.c.id == cur.c.id).returning(*t.c).cte("upd")
        stmt = sa.select(cur.c.version.label("current_version"), *upd.c).select_from(
            cur.outerjoin(upd, sa.true())
        )
        row = (await conn.execute(stmt, params)).one_or_none()
        if row is None:
            return None, None
        return (row if row.id is not None else None), row.current_version


class SQLite(_Upserts):
    """SQLite: JSON tag arrays, substring search, a second statement to explain a refused update."""

    _construct = staticmethod(sqlite.insert)

    def ids_match(self, ids: Sequence[int]) -> sa.ColumnElement[bool]:
        """`id IN (...)`."""
        return t.c.id.in_(_in_range(ids))

    def has_tag(self, tag: str) -> sa.ColumnElement[bool]:
        """An element of the JSON array equals `tag`."""
        each = sa.func.json_each(t.c.tags).table_valued("value")
        return sa.exists(sa.select(sa.literal(1)).select_from(each).where(each.c.value == tag))

    def matches(self, text: str) -> sa.ColumnElement[bool]:
        """Every word of `text` is a substring of the title or the description."""
        words = [w for w in text.split() if w.strip('"')] or [text]
        conditions = []
        for word in words:
            pattern = (
                "%" + word.strip('"').replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            )
            conditions.append(
                sa.or_(
                    t.c.title.like(pattern, escape="\\"),
                    sa.func.coalesce(t.c.description, "").like(pattern, escape="\\"),
                )
            )
        return sa.and_(*conditions)

    async def checked_update(
        self, conn: AsyncConnection, found: sa.ColumnElement[bool], update: sa.Update, params: dict[str, Any]
    ) -> tuple[Any, int | None]:
        """The UPDATE, then (only when it changed nothing) a SELECT of the current version."""
        row = (await conn.execute(update.where(found).returning(*t.c), params)).one_or_none()
        if row is not None:
            return row, None
        current = (await conn.execute(sa.select(t.c.version).where(found))).scalar_one_or_none()
        return None, current


_DIALECTS: dict[str, SqlDialect] = {"postgresql": Postgres(), "sqlite": SQLite()}


def dialect_of(conn: AsyncConnection | Connection) -> SqlDialect:
    """The SQL pieces for the database `conn` is connected to."""
    return _DIALECTS[conn.dialect.name]
