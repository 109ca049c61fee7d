"""Domain errors, raised by the repository and translated once per edge (MCP tool, REST route)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


class TodoError(Exception):
    """Base class: the message is written for the caller (a model or a person) to act on."""


class NotFoundError(TodoError):
    """The task does not exist for this user (another user's task looks exactly the same)."""

    def __init__(self, task_id: int) -> None:
        self.task_id = task_id
        super().__init__(f"Task {task_id} was not found. Use list_tasks to find the id of an existing task.")


class ConflictError(TodoError):
    """The write would overwrite a newer change, or reuses an idempotency key with other content."""

    def __init__(self, message: str, *, current_version: int | None = None) -> None:
        self.current_version = current_version
        super().__init__(message)


class InvalidInputError(TodoError):
    """The input is well-formed JSON but not acceptable; the message says what to send instead."""


class UnavailableError(TodoError):
    """The database could not be reached; nothing was sent, so nothing changed."""

    def __init__(self, reason: str) -> None:
        super().__init__(
            f"The task database cannot be reached right now ({reason}); nothing was changed. "
            "Try the same call again in a few seconds."
        )


class ConfigError(Exception):
    """The server cannot start with this configuration; the message is one line for stderr."""


def field_problems(errors: Iterable[Mapping[str, Any]]) -> list[str]:
    """pydantic's error list as "field: what is wrong" lines a model or a person can act on."""
    lines = []
    for problem in errors:
        where = ".".join(str(part) for part in problem.get("loc", ()))
        message = str(problem.get("msg", "is not valid")).removeprefix("Value error, ")
        if problem.get("type") == "missing":
            message = "is required"
        elif problem.get("type") == "extra_forbidden":
            message = "is not an accepted field; see the schema"
        lines.append(f"{where}: {message}" if where else message)
    return lines


def describe_db_error(error: BaseException) -> str:
    """The first line of the driver's own message: what went wrong, without a traceback."""
    orig = getattr(error, "orig", None) or error
    text = str(orig).strip()
    return text.splitlines()[0] if text else type(orig).__name__
