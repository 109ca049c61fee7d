"""Domain errors: what went wrong, as data.

The models and the repository raise these. Each edge words them once, for its own callers: the
MCP face in `todo_mcp.tools.errors`, REST in `todo_mcp.web.rest_errors`, the command line in
`todo_mcp.cli`. The message of each error is a plain statement of fact, meant for logs.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import KW_ONLY, dataclass
from typing import Any, ClassVar


class TodoError(Exception):
    """Base class of the errors a caller can act on: dataclasses, whose fields are the data."""

    # A plain statement of fact for logs, filled with the error's fields.
    template: ClassVar[str] = "{}"

    def __str__(self) -> str:
        return self.template.format_map(vars(self))


@dataclass(eq=False)
class TaskNotFound(TodoError):
    """No such task for this user; another user's task answers exactly the same."""

    template: ClassVar[str] = "task {task_id} was not found"
    task_id: int


@dataclass(eq=False)
class VersionConflict(TodoError):
    """The task has moved on from the version the caller based a change on."""

    template: ClassVar[str] = "task {task_id} is at version {current}, not {expected}"
    task_id: int
    _: KW_ONLY
    expected: int
    current: int


@dataclass(eq=False)
class IdempotencyConflict(TodoError):
    """A create reused a retry key that already made a task with other content."""

    template: ClassVar[str] = "retry key {key!r} already made task {task_id} with other content"
    key: str
    task_id: int


class CreatedThenDeleted(IdempotencyConflict):
    """A create was retried with the key of a task that has since been deleted."""

    template: ClassVar[str] = "retry key {key!r} made task {task_id}, which has since been deleted"


@dataclass(eq=False)
class NothingToChange(TodoError):
    """An update named none of the fields it could change."""

    template: ClassVar[str] = "the update names no field to change"
    fields: tuple[str, ...]


@dataclass(eq=False)
class InvalidCursor(TodoError):
    """A list cursor that was not made for this query (a cursor is opaque: nothing more to say).

    `query` names the kind of list: "TaskQuery" (tasks) or "ChangeQuery" (the ledger).
    """

    template: ClassVar[str] = "the cursor does not belong to this query"
    query: str = "TaskQuery"


@dataclass(eq=False)
class ChangeAlreadyUndone(TodoError):
    """An undo named a change that an earlier undo already undid."""

    template: ClassVar[str] = "change {change_id} was already undone by change {undone_by}"
    change_id: int
    undone_by: int


@dataclass(eq=False)
class ChangeNotFound(TodoError):
    """No such change in this user's ledger; another user's change answers exactly the same."""

    template: ClassVar[str] = "change {change_id} was not found"
    change_id: int


@dataclass(frozen=True)
class RefusedTask:
    """A task an undo left alone: changed since (its current version, the fields) or gone."""

    task_id: int
    change_id: int
    current_version: int | None
    changed: tuple[str, ...] = ()
    # Unchanged itself, but the next occurrence its completion made (this task) was changed.
    blocked_by: int | None = None
    # Deleted since (it can be restored).
    deleted: bool = False

    def fact(self) -> str:
        """What happened to the task since the change, in a few words."""
        if self.current_version is None:
            return f"task {self.task_id} no longer exists"
        if self.deleted:
            return (
                f"task {self.task_id} was deleted after change {self.change_id} "
                f"(now at version {self.current_version})"
            )
        if self.blocked_by is not None:
            return (
                f"task {self.task_id} stays completed because its next occurrence, task {self.blocked_by}, "
                f"was changed after change {self.change_id}"
            )
        fields = ", ".join(self.changed) or "its position in the history"
        return (
            f"task {self.task_id} was changed after change {self.change_id} "
            f"({fields}; now at version {self.current_version})"
        )


@dataclass(eq=False)
class NothingUndone(TodoError):
    """An undo found nothing it could undo: no change left, or every task changed since."""

    refused: tuple[RefusedTask, ...]

    def __str__(self) -> str:
        if not self.refused:
            return "there is no change left to undo"
        return "nothing was undone: " + "; ".join(task.fact() for task in self.refused)


@dataclass(frozen=True)
class FieldProblem:
    """One refused input value: where it was (a dotted path, "" for the whole input) and why."""

    field: str
    problem: str

    def text(self) -> str:
        """The problem as "field: what is wrong"."""
        return f"{self.field}: {self.problem}" if self.field else self.problem


@dataclass(eq=False)
class InvalidInput(TodoError):
    """Input that is well-formed but not acceptable, with one problem per field."""

    UNKNOWN_FIELD: ClassVar[str] = "is not an accepted field"
    problems: list[FieldProblem]

    def __str__(self) -> str:
        return "; ".join(problem.text() for problem in self.problems)

    @classmethod
    def one(cls, field: str, problem: str) -> InvalidInput:
        """A single problem with a single field."""
        return cls([FieldProblem(field, problem)])

    @classmethod
    def from_pydantic(cls, errors: Iterable[Mapping[str, Any]]) -> InvalidInput:
        """The problems of a pydantic error list in plain words, without its URL or input echo."""
        problems = []
        for error in errors:
            where = ".".join(str(part) for part in error.get("loc", ()))
            problems.append(FieldProblem(where, _worded(error)))
        return cls(problems)


# Pydantic's error types, worded as what to send; {name} is filled from the error's context.
_PYDANTIC_WORDS = {
    "missing": "is required",
    "extra_forbidden": InvalidInput.UNKNOWN_FIELD,
    "string_unicode": "is not valid Unicode (an unpaired surrogate such as \\ud800); send valid UTF-8 text",
    "less_than_equal": "must be at most {le}",
    "greater_than_equal": "must be at least {ge}",
    "less_than": "must be less than {lt}",
    "greater_than": "must be more than {gt}",
    "too_short": "needs at least {min_length} item(s)",
    "too_long": "takes at most {max_length} items",
    "string_too_short": "needs at least {min_length} character(s)",
    "string_too_long": "takes at most {max_length} characters",
    "int_parsing": "must be a whole number",
    "int_type": "must be a whole number",
    "int_from_float": "must be a whole number",
    "bool_parsing": "must be true or false",
    "bool_type": "must be true or false",
    "string_type": "must be a string",
    "list_type": "must be a list",
    "datetime_parsing": "is not a date-time: send ISO 8601 with a UTC offset, e.g. 2026-12-01T09:00:00Z",
    "datetime_from_date_parsing": (
        "is not a date-time: send ISO 8601 with a UTC offset, e.g. 2026-12-01T09:00:00Z"
    ),
    "datetime_type": "is not a date-time: send ISO 8601 with a UTC offset, e.g. 2026-12-01T09:00:00Z",
}


def _worded(error: Mapping[str, Any]) -> str:
    """One pydantic error as "what to send"; a validator's own message is kept as it is."""
    template = _PYDANTIC_WORDS.get(str(error.get("type")))
    if template is not None:
        try:
            text = template.format_map(error.get("ctx") or {})
        except (KeyError, IndexError):
            pass
        else:
            return re.sub(r"\b1 (\w+)\(s\)", r"1 \1", text).replace("(s)", "s")
    message = str(error.get("msg", "is not valid")).removeprefix("Value error, ")
    return (
        "must be" + message.removeprefix("Input should be")
        if message.startswith("Input should be")
        else message
    )


@dataclass(eq=False)
class ScopeMissing(TodoError):
    """The caller's token does not grant the scope an operation needs."""

    template: ClassVar[str] = "the token lacks the {needed} scope"
    needed: str
    granted: frozenset[str]


@dataclass(eq=False)
class DatabaseFault(TodoError):
    """The database failed a call; `reason` is the driver's one line about it."""

    reason: str


class DatabaseUnavailable(DatabaseFault):
    """The database could not be reached; nothing was sent, so nothing changed."""

    template: ClassVar[str] = "the database cannot be reached ({reason})"


class DatabaseMisconfigured(DatabaseFault):
    """The deployment's database settings do not fit its database (nothing ran)."""

    template: ClassVar[str] = "the database connection is misconfigured ({reason})"


class OutcomeUnknown(DatabaseFault):
    """The statement was sent but no answer came back: a change may or may not have been made."""

    template: ClassVar[str] = "no answer from the database after the statement was sent ({reason})"


@dataclass(eq=False)
class RateLimited(TodoError):
    """The user has made more calls this minute than the server allows each user."""

    template: ClassVar[str] = "more than {limit} calls per minute; the next in {retry_after} s"
    limit: int
    retry_after: int


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
