"""What differs between PostgreSQL and SQLite, in one place.

The repository builds each statement once per database from these pieces and never branches on
the database itself: the id list, tag and full-text conditions (each with the values its named
parameter takes), the INSERT construct with ON CONFLICT, and how a version-checked update reports
a conflict. Every piece uses named parameters only, so a statement never depends on values.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.sql.dml import ReturningInsert

from todo_mcp.storage.table import ID_MAX, tasks_table

t = tasks_table
SEARCH_CONFIG = "english"


def _in_range(ids: Sequence[int]) -> list[int]:
    return [task_id for task_id in ids if task_id <= ID_MAX]


def _like_escaped(word: str) -> str:
    return "%" + word.strip('"').replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


class SqlDialect(Protocol):
    """The pieces of SQL that differ by database."""

    name: str
    compiler: Dialect

    def insert(self, table: sa.Table) -> postgresql.Insert | sqlite.Insert:
        """The database's INSERT construct (it has ON CONFLICT)."""

    def ids_match(self) -> sa.ColumnElement[bool]:
        """`id` is one of the parameter `ids`, with a statement text that does not vary with their number."""

    def ids_value(self, ids: Sequence[int]) -> Any:
        """The value of the parameter `ids` for these ids."""

    def has_tag(self) -> sa.ColumnElement[bool]:
        """The task carries the tag in the parameter `tag`."""

    def tag_value(self, tag: str) -> Any:
        """The value of the parameter `tag`."""

    def search_terms(self, text: str) -> list[str]:
        """The values of the search parameters `search_0`, `search_1`, ... for the search `text`."""

    def matches(self, terms: int) -> sa.ColumnElement[bool]:
        """The title or description matches the search (`terms` parameters)."""

    def writes_in_one_statement(self) -> bool:
        """Whether a write, its ledger entry and its checks are one statement (data-modifying CTEs)."""


class Postgres:
    """PostgreSQL: array parameters, tsvector search, one statement for a checked update."""

    name = "postgresql"
    compiler: Dialect = postgresql.asyncpg.dialect()  # type: ignore[no-untyped-call]

    def insert(self, table: sa.Table) -> postgresql.Insert:
        """`postgresql.insert`."""
        return postgresql.insert(table)

    def ids_match(self) -> sa.ColumnElement[bool]:
        """`id = ANY(array)`: one parameter, so one statement text (and prepared statement) for any count.

        Sent as text[], which asyncpg encodes natively: for bigint[] it would first look the type up
        on every new connection (six extra round trips).
        """
        ids_text = sa.bindparam("ids", type_=postgresql.ARRAY(sa.Text()))
        return t.c.id == sa.any_(sa.cast(ids_text, postgresql.ARRAY(sa.BigInteger())))

    def ids_value(self, ids: Sequence[int]) -> Any:
        """The ids as text."""
        return [str(task_id) for task_id in _in_range(ids)]

    def has_tag(self) -> sa.ColumnElement[bool]:
        """`tags @> ARRAY[tag]`, served by the GIN index."""
        return t.c.tags.contains(sa.bindparam("tag", type_=postgresql.ARRAY(sa.Text())))

    def tag_value(self, tag: str) -> Any:
        """A one-element array."""
        return [tag]

    def search_terms(self, text: str) -> list[str]:
        """The whole text: websearch_to_tsquery reads quotes, `or` and `-` itself."""
        return [text]

    def matches(self, terms: int) -> sa.ColumnElement[bool]:
        """Full-text search (English stemming) over the generated `search` column."""
        config: sa.ColumnElement[Any] = sa.literal_column(f"'{SEARCH_CONFIG}'::regconfig")
        query = sa.func.websearch_to_tsquery(config, sa.bindparam("search_0", type_=sa.Text()))
        return sa.literal_column("search").op("@@")(query)

    def writes_in_one_statement(self) -> bool:
        """Yes: data-modifying CTEs."""
        return True


class SQLite:
    """SQLite: JSON tag arrays, substring search, a second statement to explain a refused update."""

    name = "sqlite"
    compiler: Dialect = sqlite.aiosqlite.dialect()

    def insert(self, table: sa.Table) -> sqlite.Insert:
        """`sqlite.insert`."""
        return sqlite.insert(table)

    def ids_match(self) -> sa.ColumnElement[bool]:
        """`id IN (...)`, expanded when it runs."""
        return t.c.id.in_(sa.bindparam("ids", expanding=True))

    def ids_value(self, ids: Sequence[int]) -> Any:
        """The ids that can exist."""
        return _in_range(ids)

    def has_tag(self) -> sa.ColumnElement[bool]:
        """An element of the JSON array equals `tag`."""
        each = sa.func.json_each(t.c.tags).table_valued("value")
        return sa.exists(
            sa.select(sa.literal(1))
            .select_from(each)
            .where(each.c.value == sa.bindparam("tag", type_=sa.Text()))
        )

    def tag_value(self, tag: str) -> Any:
        """The tag itself."""
        return tag

    def search_terms(self, text: str) -> list[str]:
        """A LIKE pattern per word (quotes dropped, wildcards escaped)."""
        words = [w for w in text.split() if w.strip('"')] or [text]
        return [_like_escaped(word) for word in words]

    def matches(self, terms: int) -> sa.ColumnElement[bool]:
        """Every word is a substring of the title or the description."""
        conditions = []
        for n in range(terms):
            pattern = sa.bindparam(f"search_{n}", type_=sa.Text())
            conditions.append(
                sa.or_(
                    t.c.title.like(pattern, escape="\\"),
                    sa.func.coalesce(t.c.description, "").like(pattern, escape="\\"),
                )
            )
        return sa.and_(*conditions)

    def writes_in_one_statement(self) -> bool:
        """No: a few statements in one transaction."""
        return False


_DIALECTS: dict[str, SqlDialect] = {"postgresql": Postgres(), "sqlite": SQLite()}


def sql_dialect(name: str) -> SqlDialect:
    """The SQL pieces for the database called `name` (as SQLAlchemy names it)."""
    return _DIALECTS[name]


def returning_insert(sql: SqlDialect, *, retry_key: bool) -> ReturningInsert[Any]:
    """INSERT INTO tasks ... RETURNING *, every column a parameter named after it.

    With `retry_key`, a repeated (owner, client_request_id) returns the existing row instead.
    """
    columns = [column for column in t.c if column.name not in ("id", "search")]
    stmt = sql.insert(t).values(
        {column.name: sa.bindparam(column.name, type_=column.type) for column in columns}
    )
    if retry_key:
        # DO UPDATE (a no-op assignment) rather than DO NOTHING: it returns the existing row even when
        # a concurrent retry committed it after this statement's snapshot was taken.
        stmt = stmt.on_conflict_do_update(
            index_elements=[t.c.owner_id, t.c.client_request_id],
            index_where=t.c.client_request_id.is_not(None),
            set_={"client_request_id": stmt.excluded.client_request_id},
        )
    return stmt.returning(*t.c)
