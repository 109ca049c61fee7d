"""Domain errors: what went wrong, as data.

The models and the repository raise these. Each edge words them once, for its own callers: the
MCP face in `todo_mcp.tools.errors`, REST in `todo_mcp.web.rest_errors`, the command line in
`todo_mcp.cli`. The message of each error is a plain statement of fact, meant for logs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any


class TodoError(Exception):
    """Base class of the errors a caller can act on."""


class TaskNotFound(TodoError):
    """No such task for this user; another user's task answers exactly the same."""

    def __init__(self, task_id: int) -> None:
        """Record which id was asked for."""
        self.task_id = task_id
        super().__init__(f"task {task_id} was not found")


class VersionConflict(TodoError):
    """The task has moved on from the version the caller based a change on."""

    def __init__(self, task_id: int, *, expected: int, current: int) -> None:
        """Record the version the caller expected and the one the task is at."""
        self.task_id = task_id
        self.expected = expected
        self.current = current
        super().__init__(f"task {task_id} is at version {current}, not {expected}")


class IdempotencyConflict(TodoError):
    """A create reused a retry key that already made a task with other content."""

    def __init__(self, key: str, task_id: int) -> None:
        """Record the key and the task it made first."""
        self.key = key
        self.task_id = task_id
        super().__init__(f"retry key {key!r} already made task {task_id} with other content")


class CreatedThenDeleted(TodoError):
    """A create was retried with the key of a task that has since been deleted."""

    def __init__(self, key: str, task_id: int) -> None:
        """Record the key and the deleted task it made."""
        self.key = key
        self.task_id = task_id
        super().__init__(f"retry key {key!r} made task {task_id}, which has since been deleted")


class NothingToChange(TodoError):
    """An update named none of the fields it could change."""

    def __init__(self, fields: tuple[str, ...]) -> None:
        """Record the fields an update may change."""
        self.fields = fields
        super().__init__("the update names no field to change")


class InvalidCursor(TodoError):
    """A list cursor that was not made for this query."""

    def __init__(self) -> None:
        """An error with a fixed message: a cursor is opaque to its caller."""
        super().__init__("the cursor does not belong to this query")


@dataclass(frozen=True)
class FieldProblem:
    """One refused input value: where it was (a dotted path, "" for the whole input) and why."""

    field: str
    problem: str

    def text(self) -> str:
        """The problem as "field: what is wrong"."""
        return f"{self.field}: {self.problem}" if self.field else self.problem


class InvalidInput(TodoError):
    """Input that is well-formed but not acceptable, with one problem per field."""

    UNKNOWN_FIELD = "is not an accepted field"

    def __init__(self, problems: list[FieldProblem]) -> None:
        """Record the problems, in the order they were found."""
        self.problems = problems
        super().__init__("; ".join(problem.text() for problem in problems))

    @classmethod
    def one(cls, field: str, problem: str) -> InvalidInput:
        """A single problem with a single field."""
        return cls([FieldProblem(field, problem)])

    @classmethod
    def from_pydantic(cls, errors: Iterable[Mapping[str, Any]]) -> InvalidInput:
        """The problems of a pydantic error list, without its URL, input echo or "Value error"."""
        problems = []
        for error in errors:
            where = ".".join(str(part) for part in error.get("loc", ()))
            message = str(error.get("msg", "is not valid")).removeprefix("Value error, ")
            kind = error.get("type")
            if kind == "missing":
                message = "is required"
            elif kind == "extra_forbidden":
                message = cls.UNKNOWN_FIELD
            elif kind == "string_unicode":
                message = (
                    "is not valid Unicode (an unpaired surrogate such as \\ud800); send valid UTF-8 text"
                )
            problems.append(FieldProblem(where, message))
        return cls(problems)


class ScopeMissing(TodoError):
    """The caller's token does not grant the scope an operation needs."""

    def __init__(self, needed: str, granted: frozenset[str]) -> None:
        """Record the scope needed and the scopes the token has."""
        self.needed = needed
        self.granted = granted
        super().__init__(f"the token lacks the {needed} scope")


class DatabaseUnavailable(TodoError):
    """The database could not be reached; nothing was sent, so nothing changed."""

    def __init__(self, reason: str) -> None:
        """Record the driver's one-line reason."""
        self.reason = reason
        super().__init__(f"the database cannot be reached ({reason})")


class OutcomeUnknown(TodoError):
    """The statement was sent but no answer came back: a change may or may not have been made."""

    def __init__(self, reason: str) -> None:
        """Record what happened to the connection."""
        self.reason = reason
        super().__init__(f"no answer from the database after the statement was sent ({reason})")


class ConfigError(Exception):
    """The server cannot start with this configuration; the message is one line for stderr."""


def excerpt(value: object, limit: int = 40) -> str:
    """A value from a caller, quoted and cut short, to name it in a message without echoing it whole."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 4] + "...'"


def describe_db_error(error: BaseException) -> str:
    """The first line of the driver's own message: what went wrong, without a traceback."""
    orig = getattr(error, "orig", None) or error
    text = str(orig).strip()
    return text.splitlines()[0] if text else type(orig).__name__
