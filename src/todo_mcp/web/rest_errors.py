"""The REST edge's words for domain errors: one status code and one body shape for each.

Every error body is an `ErrorBody`, as the OpenAPI document declares; a version conflict adds
the task's current version, a refused scope is the gate's 403 challenge.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from todo_mcp import errors
from todo_mcp.auth.resources import ProtectedResources, transport_of
from todo_mcp.web.challenge import denial_response, scope_denial

RETRY_AFTER_UNAVAILABLE = 5


class FieldError(BaseModel):
    """One refused input value."""

    field: str = Field(description="Where the value was: body.title, query.limit, header.If-Match, ...")
    problem: str = Field(description="What is wrong with it and what to send instead.")


class ErrorBody(BaseModel):
    """The body of every error answer of this server's HTTP routes."""

    detail: str = Field(description="What went wrong and what to do about it.")
    errors: list[FieldError] | None = Field(default=None, description="One entry per refused value (422).")
    current_version: int | None = Field(
        default=None, description="The task's version now (409 on a version)."
    )
    error: str | None = Field(
        default=None,
        description="401/403/429/503 from the bearer gate: RFC 6750's code (invalid_token, "
        "insufficient_scope, unauthorized, rate_limited, temporarily_unavailable).",
    )
    error_description: str | None = Field(default=None, description="The same as detail, for OAuth clients.")


def _declared(description: str) -> dict[str, Any]:
    return {"model": ErrorBody, "description": description}


# What any route may answer before reaching its handler: the body reader, the host check, the gate.
ROUTE_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: _declared("The body is not valid JSON or UTF-8, or nests too deeply"),
    401: _declared("No token, or a token that is invalid or expired (see WWW-Authenticate)"),
    403: _declared("The token lacks the scope this route needs, or the page's Origin is not allowed"),
    408: _declared("The body did not arrive in time"),
    413: _declared("The body is larger than TODO_MCP_MAX_BODY_BYTES"),
    421: _declared("This host name is not served here"),
    429: _declared("Too many calls or failed authentications; see Retry-After"),
    503: _declared(
        "The database or the auth server's keys cannot be reached (nothing was changed), or the database did "
        "not answer (detail says whether retrying is safe); see Retry-After"
    ),
}


_ANSWERS: dict[type[errors.TodoError], tuple[int, str]] = {
    errors.TaskNotFound: (404, "Task {task_id} was not found; GET /api/tasks lists your tasks."),
    errors.VersionConflict: (
        409,
        "Task {task_id} changed since version {expected}: it is at version {current} now. Read it again "
        '(GET /api/tasks/{task_id}) and send your change with If-Match: "{current}" (or expected_version '
        "{current}) if it still applies.",
    ),
    errors.IdempotencyConflict: (
        409,
        "Idempotency key {key!r} already created task {task_id} with different content; send a new key to "
        "create another task, or the original content to get task {task_id} back.",
    ),
    errors.CreatedThenDeleted: (
        409,
        "Idempotency key {key!r} already created task {task_id}, which has since been deleted; restore it "
        "with POST /api/tasks/{task_id}/restore, or send a new key to create another task.",
    ),
    errors.InvalidCursor: (
        422,
        "cursor is not valid for this query: send the next_cursor of the previous page with the same "
        "filters and sort, or leave cursor out to start from the first page",
    ),
    errors.ChangeNotFound: (404, "Change {change_id} was not found; GET /api/changes lists your changes."),
    errors.NothingUndone: (409, "{summary}. GET /api/changes lists your changes."),
    errors.ChangeAlreadyUndone: (
        409,
        "Change {change_id} was already undone by change {undone_by}; undo change {undone_by} to redo it.",
    ),
    errors.DatabaseMisconfigured: (
        503,
        "The server's database connection is misconfigured ({reason}); nothing was changed.",
    ),
    errors.DatabaseUnavailable: (
        503,
        "The task database cannot be reached right now ({reason}); nothing was changed. "
        f"Retry in {RETRY_AFTER_UNAVAILABLE} seconds.",
    ),
}


def _outcome_unknown(error: errors.OutcomeUnknown, method: str) -> str:
    if method in ("GET", "HEAD"):
        return f"The task database did not answer ({error.reason}); nothing was changed. Retry the request."
    lost = (
        f"The task database did not answer after the request was sent ({error.reason}), so the change may or"
    )
    if method == "POST_CREATE":
        return (
            f"{lost} may not have been made. Retrying with the same Idempotency-Key is safe: it returns the "
            "task if it was created and creates it otherwise."
        )
    return (
        f"{lost} may not have been made. Read the task (GET /api/tasks/{{id}}); if the change is not there, "
        'send it again with If-Match: "<the version you read>".'
    )


def status_and_body(error: errors.TodoError, method: str = "GET") -> tuple[int, ErrorBody]:
    """The status code and body REST answers `error` with, for a request of `method`.

    `method` is the HTTP method, or POST_CREATE for a create (where a retry key makes retrying safe).
    """
    if isinstance(error, errors.OutcomeUnknown):
        return 503, ErrorBody(detail=_outcome_unknown(error, method))
    if isinstance(error, errors.InvalidInput):
        fields = [FieldError(field=problem.field, problem=problem.problem) for problem in error.problems]
        return 422, ErrorBody(detail=str(error), errors=fields)
    if isinstance(error, errors.NothingToChange):
        return 422, ErrorBody(detail=f"nothing to change: send at least one of {', '.join(error.fields)}")
    answer = _ANSWERS.get(type(error))
    if answer is None:
        return 400, ErrorBody(detail=str(error))
    status, template = answer
    current = error.current if isinstance(error, errors.VersionConflict) else None
    values = {**vars(error), "summary": str(error).capitalize()}
    return status, ErrorBody(detail=template.format_map(values), current_version=current)


def error_response(error: errors.TodoError, method: str = "GET") -> JSONResponse:
    """The status code and body for `error`, with Retry-After on a 503."""
    status, body = status_and_body(error, method)
    headers = {"Retry-After": str(RETRY_AFTER_UNAVAILABLE)} if status == 503 else None
    return JSONResponse(body.model_dump(exclude_none=True), status_code=status, headers=headers)


def documented(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` entries for these handler-level error statuses, all with the `ErrorBody` schema."""
    meanings = {
        404: "No such task or change for this user (another user's answers the same)",
        409: "The task changed since the version given (If-Match or expected_version), the "
        "Idempotency-Key was used for other content or for a task deleted since, or the change was "
        "already undone, or an undo found nothing it could undo",
        422: "The input is not acceptable; detail and errors say what to send instead",
    }
    return {status: _declared(meanings[status]) for status in statuses}


def install_error_handlers(app: FastAPI, resources: ProtectedResources | None) -> None:
    """Route every domain error and every request validation error through this mapping."""

    async def todo_error(request: Request, error: Exception) -> Response:
        if isinstance(error, errors.ScopeMissing):
            url = resources.metadata_url(transport_of(request.url.path)) if resources else None
            return denial_response(scope_denial(error, "This route"), url)
        assert isinstance(error, errors.TodoError)
        method = request.method
        if method == "POST" and request.url.path.rstrip("/") == "/api/tasks":
            method = "POST_CREATE"
        return error_response(error, method)

    async def validation_error(request: Request, error: Exception) -> Response:
        assert isinstance(error, RequestValidationError)
        return error_response(errors.InvalidInput.from_pydantic(error.errors()))

    app.add_exception_handler(errors.TodoError, todo_error)
    app.add_exception_handler(RequestValidationError, validation_error)
