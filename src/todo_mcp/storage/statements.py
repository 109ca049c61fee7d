"""SQL statements built once: a Core construct, compiled for its database on first use, then reused.

Building a SQLAlchemy statement and computing its cache key cost more per call than running it.
The repository therefore builds each statement once per shape (which filters a list has, which
database it runs on) with named parameters only, and every call supplies just the values. On
PostgreSQL the compiled text goes to asyncpg as is; on SQLite the construct runs through
SQLAlchemy, which keeps the column types' conversions.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, ParamSpec, TypeVar, cast

import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ClauseElement

P = ParamSpec("P")
S = TypeVar("S", bound="Statement")


@dataclass(frozen=True)
class Compiled:
    """A statement's text for one database, and how to order its parameters."""

    sql: str
    # Parameter names in the order of $1, $2, ... (PostgreSQL); empty for named styles.
    names: tuple[str, ...]
    # Values bound inside the construct itself (constants such as 'pending').
    constants: Mapping[str, Any]
    # Parameters of a JSON type: asyncpg takes them as text.
    documents: frozenset[str] = frozenset()
    # Every parameter the statement names (for any parameter style).
    names_used: frozenset[str] = frozenset()

    def arguments(self, params: Mapping[str, Any]) -> list[Any]:
        """The positional arguments for `params`; a name missing from both is a bug, so it raises."""
        values = [params[name] if name in params else self.constants[name] for name in self.names]
        if self.documents:
            values = [
                json.dumps(value) if name in self.documents and value is not None else value
                for name, value in zip(self.names, values, strict=True)
            ]
        return values


@dataclass(eq=False)
class Statement:
    """One Core construct (select, insert, update, or a CTE of them) with named parameters."""

    construct: ClauseElement
    _compiled: dict[str, Compiled] = field(default_factory=dict, repr=False)

    def compiled(self, dialect: Dialect) -> Compiled:
        """The construct compiled for `dialect` (once)."""
        found = self._compiled.get(dialect.name)
        if found is None:
            compiled = cast(SQLCompiler, self.construct.compile(dialect=dialect))
            names = tuple(compiled.positiontup or ())
            constants = {
                name: bind.effective_value for name, bind in compiled.binds.items() if not bind.required
            }
            documents = frozenset(
                name for name, bind in compiled.binds.items() if isinstance(bind.type, sa.JSON)
            )
            found = self._compiled[dialect.name] = Compiled(
                str(compiled), names, constants, documents, frozenset(compiled.binds)
            )
        return found


def param(name: str, column: sa.Column[Any] | sa.types.TypeEngine[Any]) -> sa.BindParameter[Any]:
    """A named parameter typed like `column` (or of the type given)."""
    kind = column.type if isinstance(column, sa.Column) else column
    return sa.bindparam(name, type_=kind)


def built(builder: Callable[P, ClauseElement]) -> Callable[P, Statement]:
    """Memoize a statement builder by its (hashable) arguments: each shape is built once."""

    @lru_cache(maxsize=512)
    def build(*args: Any, **kwargs: Any) -> Statement:
        return Statement(builder(*args, **kwargs))

    build.__doc__ = builder.__doc__
    return build  # type: ignore[return-value]
