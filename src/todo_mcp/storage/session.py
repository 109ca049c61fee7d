"""A pooled connection as the repository sees it: run a built statement with its values, get rows.

On PostgreSQL a statement's text goes straight to asyncpg as a prepared statement kept on its
connection (one round trip per call once prepared). On SQLite the statement runs through
SQLAlchemy, whose column types convert JSON tags and naive UTC text.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, cast

import anyio
from sqlalchemy.engine import CursorResult
from sqlalchemy.ext.asyncio import AsyncConnection

from todo_mcp.storage.dialect import SqlDialect, sql_dialect
from todo_mcp.storage.statements import Statement

if TYPE_CHECKING:
    import asyncpg
    from asyncpg.prepared_stmt import PreparedStatement

Row = Mapping[str, Any]
# Prepared statements kept per PostgreSQL connection; the repository has far fewer shapes.
PREPARED_PER_CONNECTION = 256

Operation = TypeVar("Operation", bound=Callable[..., Any])
# Operations whose best plan depends on their values; see `planned_per_call`.
PLANNED_PER_CALL: set[Callable[..., Any]] = set()


def planned_per_call(operation: Operation) -> Operation:
    """Mark a repository operation whose statements PostgreSQL must plan for each call's values.

    A list query's best plan depends on whose tasks it reads (a user with a million tasks or with
    a hundred) and on how rare its tag or words are; such operations run on connections that ask
    for a custom plan every time. Every other statement finds its rows by id, where the plan
    PostgreSQL settles on after five calls is as good, and planning again would cost more than
    running it (a completion: 2.9 ms planned per call, 0.7 ms with its plan kept).
    """
    PLANNED_PER_CALL.add(operation)
    return operation


class Session(Protocol):
    """One pooled connection, lent to one repository operation."""

    @property
    def sql(self) -> SqlDialect:
        """The SQL pieces of this connection's database."""

    async def rows(self, statement: Statement, params: Mapping[str, Any]) -> Sequence[Row]:
        """Run `statement` with `params` (by name) and return every row it returns."""


async def first(session: Session, statement: Statement, params: Mapping[str, Any]) -> Row | None:
    """The first row `statement` returns, if any."""
    rows = await session.rows(statement, params)
    return rows[0] if rows else None


class PreparedCache:
    """The prepared statements of one asyncpg connection, by SQL text, least recently used evicted."""

    def __init__(self, name: Callable[[], str | None]) -> None:
        self._name = name
        self._statements: OrderedDict[str, PreparedStatement] = OrderedDict()

    async def get(self, conn: asyncpg.Connection, sql: str) -> PreparedStatement:
        """The statement for `sql` on `conn`, prepared on first use (one round trip)."""
        statement = self._statements.get(sql)
        if statement is None:
            statement = await conn.prepare(sql, name=self._name())
            self._statements[sql] = statement
            if len(self._statements) > PREPARED_PER_CONNECTION:
                self._statements.popitem(last=False)
        else:
            self._statements.move_to_end(sql)
        return statement


class PostgresSession:
    """A session on an asyncpg connection from the server's own pool."""

    sql: SqlDialect = sql_dialect("postgresql")

    def __init__(self, conn: asyncpg.Connection, prepared: PreparedCache) -> None:
        self.conn = conn
        self._prepared = prepared

    async def rows(self, statement: Statement, params: Mapping[str, Any]) -> Sequence[Row]:
        """Bind, execute, sync: one round trip for a statement this connection has prepared."""
        compiled = statement.compiled(self.sql.compiler)
        prepared = await self._prepared.get(self.conn, compiled.sql)
        rows: list[Row] = await prepared.fetch(*compiled.arguments(params))
        return rows


class SqliteSession:
    """A session on a SQLAlchemy connection to the SQLite file."""

    sql: SqlDialect = sql_dialect("sqlite")

    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        """The statements inside, as one transaction (BEGIN IMMEDIATE: the file is locked for writing)."""
        await self.conn.exec_driver_sql("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self.conn.exec_driver_sql("ROLLBACK")
            raise
        await self.conn.exec_driver_sql("COMMIT")

    async def rows(self, statement: Statement, params: Mapping[str, Any]) -> Sequence[Row]:
        """Through SQLAlchemy, which converts values to and from the column types.

        Only the parameters the statement names are passed: SQLAlchemy would make any other one
        whose name is a column's into a value the INSERT or UPDATE sets.
        """
        names = statement.compiled(self.conn.dialect).names_used
        used = {name: value for name, value in params.items() if name in names}
        result: CursorResult[Any] = await self.conn.execute(statement.construct, used)  # type: ignore[call-overload]
        if not result.returns_rows:
            return []
        return cast("Sequence[Row]", result.mappings().all())
