"""The MCP edge's words for domain errors: what was wrong and which tool to call or what to send.

Tools, the resource and the prompt all word errors here and nowhere else. A template is filled
with the error's own fields.
"""

from __future__ import annotations

from mcp.shared.exceptions import MCPError
from mcp.types import INTERNAL_ERROR, INVALID_PARAMS
from pydantic import BaseModel, ValidationError

from todo_mcp import errors

_WORDS: dict[type[errors.TodoError], str] = {
    errors.TaskNotFound: "Task {task_id} was not found. Use list_tasks to find the id of an existing task.",
    errors.VersionConflict: (
        "Task {task_id} changed since you read it: expected_version {expected}, current version {current}. "
        "Read the task again (get_task) and send your change with expected_version {current} if it still "
        "applies."
    ),
    errors.IdempotencyConflict: (
        "client_request_id {key!r} was already used for task {task_id} with different content. Send a new "
        "client_request_id to create another task, or the original content to get that task back."
    ),
    errors.CreatedThenDeleted: (
        "client_request_id {key!r} already created task {task_id}, which has since been deleted. To get it "
        "back, call delete_task with task_ids [{task_id}] and restore true; to create another task, send a "
        "new client_request_id."
    ),
    errors.InvalidCursor: (
        "cursor is not valid for this query: send the next_cursor of the previous {tool} call with the "
        "same {what}, or leave cursor out to start from the first page"
    ),
    errors.ChangeNotFound: (
        "Change {change_id} was not found. Use list_changes to find the change_id of one of your changes."
    ),
    errors.ChangeAlreadyUndone: (
        "Change {change_id} was already undone by change {undone_by}; nothing was done. To redo it, undo "
        "change {undone_by}; leave {change_id} out of change_ids otherwise."
    ),
    errors.ScopeMissing: "this token lacks the {needed} scope; sign in again granting {needed}",
    errors.RateLimited: (
        "Too many calls for this user (the limit is {limit} per minute); wait {retry_after} s before the "
        "next call; nothing was done."
    ),
    errors.DatabaseMisconfigured: (
        "The server's database connection is misconfigured ({reason}); nothing was changed. Tell the person "
        "who runs this server; retrying will not help."
    ),
    errors.DatabaseUnavailable: (
        "The task database cannot be reached right now ({reason}); nothing was changed. Try the same call "
        "again in a few seconds."
    ),
}
_CALLER_MISTAKES = (
    errors.InvalidInput,
    errors.InvalidCursor,
    errors.TaskNotFound,
    errors.ChangeNotFound,
    errors.ChangeAlreadyUndone,
    errors.NothingUndone,
    errors.ScopeMissing,
)


def explain(error: errors.TodoError, tool: str | None = None, *, changes: bool = False) -> str:
    """What a model should read about `error`: what was wrong and what to do next.

    `tool` is the tool that failed, and `changes` whether it writes, where the advice depends on it.
    """
    if isinstance(error, errors.InvalidInput):
        return "; ".join(problem.text() for problem in error.problems)
    if isinstance(error, errors.OutcomeUnknown):
        return _outcome_unknown(error, tool, changes)
    if isinstance(error, errors.NothingUndone):
        if not error.refused:
            return "Nothing was undone: you have no change left to undo (list_changes shows your changes)."
        deleted = [str(task.task_id) for task in error.refused if task.deleted]
        advice = []
        if len(deleted) < len(error.refused):
            advice.append("to change a task anyway, read it with get_task and send update_task")
        if deleted:
            advice.append(f"delete_task with task_ids [{', '.join(deleted)}] and restore true brings it back")
        return f"{str(error).capitalize()}. Those changes stay; {'; '.join(advice)}."
    template = _WORDS.get(type(error))
    if isinstance(error, errors.InvalidCursor) and template is not None:
        changes = error.query == "ChangeQuery"
        return template.format(
            tool="list_changes" if changes else "list_tasks",
            what="filters" if changes else "filters and sort",
        )
    return template.format_map(vars(error)) if template is not None else str(error)


def _outcome_unknown(error: errors.OutcomeUnknown, tool: str | None, changes: bool) -> str:
    if not changes:
        return f"The task database did not answer ({error.reason}); nothing was changed. Try the call again."
    lost = (
        f"The task database did not answer after {tool} was sent ({error.reason}), so it may or may not have"
    )
    if tool == "add_task":
        return (
            f"{lost} created the task. Retrying add_task with the same client_request_id is safe: it returns "
            "the task if it was created and creates it otherwise (without a client_request_id, check with "
            "list_tasks before retrying)."
        )
    return (
        f"{lost} been applied. Read the task with get_task: if your change is not there, send it again with "
        "expected_version set to the version you read."
    )


def invalid_arguments(name: str, model: type[BaseModel], error: ValidationError) -> str:
    """A refused argument list, one "field: problem" per field; unknown fields list the accepted ones."""
    problems = errors.InvalidInput.from_pydantic(
        error.errors(include_url=False, include_input=False)
    ).problems
    accepted = ", ".join(model.model_fields)
    lines = [
        f"{problem.field}: is not an argument of {name}; send only {accepted}"
        if problem.problem == errors.InvalidInput.UNKNOWN_FIELD
        else problem.text()
        for problem in problems
    ]
    return f"Invalid arguments for {name}: " + "; ".join(lines)


def protocol_error(error: errors.TodoError) -> MCPError:
    """A domain error as the JSON-RPC error of a resource read or a prompt."""
    code = INVALID_PARAMS if isinstance(error, _CALLER_MISTAKES) else INTERNAL_ERROR
    return MCPError(code=code, message=explain(error))
