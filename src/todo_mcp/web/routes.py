"""The REST routes under /api/tasks: the same models and repository as the MCP tools.

GET routes need the todo:read scope, the others todo:write. Versions travel as ETag/If-Match,
retry keys as Idempotency-Key; errors are answered by `todo_mcp.web.rest_errors`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Body, Depends, Header, Path, Query, Request, Response
from fastapi.security import HTTPBearer
from pydantic import BaseModel

from todo_mcp.config import Settings
from todo_mcp.errors import InvalidInput, NothingToChange, TaskNotFound, excerpt
from todo_mcp.identity import READ, WRITE, Actor, require
from todo_mcp.models import PATCHABLE, Task, TaskCreate, TaskPage, TaskPatch, TaskQuery, WrittenTask
from todo_mcp.storage import repository
from todo_mcp.storage.engine import Database
from todo_mcp.storage.writes import BulkWritten, Written
from todo_mcp.web.gate import PRINCIPAL_SCOPE_KEY
from todo_mcp.web.rest_errors import ROUTE_RESPONSES, documented

M = TypeVar("M", bound=BaseModel)

bearer_scheme = HTTPBearer(
    auto_error=False,
    description="A Better Auth JWT: an OAuth access token (typ at+jwt, scope todo:read/todo:write) "
    "or a jwt() plugin token from GET /api/auth/token.",
)


def _database(request: Request) -> Database:
    database: Database = request.app.state.database
    return database


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _reader(request: Request) -> str:
    return require(request.scope[PRINCIPAL_SCOPE_KEY], READ)


def _writer(request: Request) -> Actor:
    """Who writes, for the ledger: the user, the token's client, and the route ("PATCH /api/tasks/...")."""
    principal = request.scope[PRINCIPAL_SCOPE_KEY]
    owner = require(principal, WRITE)
    route = request.scope.get("route")
    path = getattr(route, "path", request.url.path)
    return Actor(owner, via=f"{request.method} {path}"[:64], client=principal.client)


Db = Annotated[Database, Depends(_database)]
Config = Annotated[Settings, Depends(_settings)]
Reader = Annotated[str, Depends(_reader)]
Writer = Annotated[Actor, Depends(_writer)]
TaskIdPath = Annotated[int, Path(ge=1, description="The task id (from a list or create response).")]

TASK_EXAMPLE: dict[str, Any] = {
    "id": 42,
    "title": "Buy milk",
    "description": "Two litres, organic",
    "status": "pending",
    "priority": "high",
    "due": "2026-12-24T17:00:00+01:00[Europe/Paris]",
    "tags": ["home", "errands"],
    "version": 1,
    "created_at": "2026-12-20T09:30:00Z",
    "updated_at": "2026-12-20T09:30:00Z",
    "change_id": 7,
}
CREATE_EXAMPLES = {
    "simple": {"summary": "Just a title", "value": {"title": "Buy milk"}},
    "full": {
        "summary": "Everything",
        "value": {
            "title": "Send the report",
            "description": "Q4 numbers for Anna",
            "priority": "urgent",
            "due": "2026-12-24T17:00[Europe/Paris]",
            "tags": ["work"],
        },
    },
}
PATCH_EXAMPLES = {
    "reschedule": {"summary": "Move the due date", "value": {"due": "2026-12-27"}},
    "guarded": {
        "summary": "Only if nobody changed it since version 3",
        "value": {"priority": "low", "expected_version": 3},
    },
}


def example_response(description: str, example: Any, status: int = 200) -> dict[int | str, dict[str, Any]]:
    """An OpenAPI `responses` entry for a success, with an example body."""
    return {status: {"description": description, "content": {"application/json": {"example": example}}}}


def _etag(task: Task) -> dict[str, str]:
    return {"ETag": f'"{task.version}"'}


def _version_from_if_match(value: str | None) -> int | None:
    if value is None:
        return None
    text = value.strip().removeprefix("W/").strip('"')
    if not text.isdigit() or int(text) < 1:
        raise InvalidInput.one(
            "header.If-Match",
            f"{excerpt(value)} is not a task version; send the version (or ETag) of the task you read, "
            'e.g. "3"',
        )
    return int(text)


def _with_header(body: M, field: str, value: object, header: str) -> M:
    """`body` with `field` taken from a header; refused if the body already says something else."""
    if value is None:
        return body
    if getattr(body, field) not in (None, value):
        raise InvalidInput.one(
            f"header.{header}", f"differs from {field}; send one of them, or the same value in both"
        )
    return body.model_copy(update={field: value})


def _one(written: BulkWritten, task_id: int) -> WrittenTask:
    task = written.tasks.get(task_id)
    if task is None:
        raise TaskNotFound(task_id)
    return _written(Written(task, written.change_id))


def _written(written: Written) -> WrittenTask:
    return WrittenTask(**dict(written.task), change_id=written.change_id)


read_router = APIRouter(
    prefix="/api/tasks", tags=["tasks"], dependencies=[Depends(bearer_scheme)], responses=ROUTE_RESPONSES
)
write_router = APIRouter(
    prefix="/api/tasks", tags=["tasks"], dependencies=[Depends(bearer_scheme)], responses=ROUTE_RESPONSES
)


@read_router.get(
    "",
    summary="List tasks",
    response_model=TaskPage,
    responses={
        **example_response("One page of tasks", {"tasks": [TASK_EXAMPLE], "next_cursor": None}),
        **documented(422),
    },
)
async def list_tasks(
    db: Db, settings: Config, owner: Reader, query: Annotated[TaskQuery, Query()]
) -> TaskPage:
    """Tasks matching all the given filters, one page at a time; pass `next_cursor` as `cursor`."""
    return await db.run(
        repository.list_tasks,
        owner=owner,
        query=query,
        default_tz=settings.timezone,
        cursor_key=db.cursor_key,
    )


@read_router.get(
    "/{task_id}",
    summary="Read a task",
    response_model=Task,
    responses={**example_response("The task", TASK_EXAMPLE), **documented(404)},
)
async def get_task(db: Db, owner: Reader, task_id: TaskIdPath, response: Response) -> Task:
    """One task in full; its ETag is its version."""
    task = await db.run(repository.get_task, owner=owner, task_id=task_id)
    response.headers.update(_etag(task))
    return task


@write_router.post(
    "",
    summary="Create a task",
    status_code=201,
    response_model=WrittenTask,
    responses={
        **example_response("The task (the original one on a retry)", TASK_EXAMPLE, 201),
        **documented(409, 422),
    },
)
async def create_task(
    db: Db,
    actor: Writer,
    data: Annotated[TaskCreate, Body(openapi_examples=CREATE_EXAMPLES)],
    response: Response,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            max_length=128,
            description="Retry key (same as client_request_id): the same key and content "
            "return the original task; the same key with other content is a 409.",
        ),
    ] = None,
) -> WrittenTask:
    """Create a task. Retry safely with an Idempotency-Key header (or client_request_id)."""
    data = _with_header(data, "client_request_id", idempotency_key, "Idempotency-Key")
    written = await db.run(repository.create_task, actor=actor, data=data)
    response.headers.update({**_etag(written.task), "Location": f"/api/tasks/{written.task.id}"})
    return _written(written)


@write_router.patch(
    "/{task_id}",
    summary="Change a task",
    response_model=WrittenTask,
    responses={**example_response("The changed task", TASK_EXAMPLE), **documented(404, 409, 422)},
)
async def update_task(
    db: Db,
    actor: Writer,
    task_id: TaskIdPath,
    patch: Annotated[TaskPatch, Body(openapi_examples=PATCH_EXAMPLES)],
    response: Response,
    if_match: Annotated[
        str | None,
        Header(alias="If-Match", description='The version you read (its ETag, e.g. "3"); 409 if it changed.'),
    ] = None,
) -> WrittenTask:
    """Change only the fields sent; the others keep their values."""
    if not patch.changes():
        raise NothingToChange(PATCHABLE)
    patch = _with_header(patch, "expected_version", _version_from_if_match(if_match), "If-Match")
    written = await db.run(repository.update_task, actor=actor, task_id=task_id, patch=patch)
    response.headers.update(_etag(written.task))
    return _written(written)


@dataclass(frozen=True)
class Action:
    """A one-task action route that runs a bulk repository operation on the task of its path."""

    name: str
    summary: str
    description: str
    operation: Callable[..., Awaitable[BulkWritten]]
    example: dict[str, Any]


# "METHOD path" -> the action it runs.
ACTIONS: dict[str, Action] = {
    "DELETE /{task_id}": Action(
        "delete_task",
        "Delete a task (undoable)",
        "Soft delete: the task disappears until POST /api/tasks/{task_id}/restore.",
        repository.delete_tasks,
        {**TASK_EXAMPLE, "deleted_at": "2026-12-21T08:00:00Z"},
    ),
    "POST /{task_id}/restore": Action(
        "restore_task",
        "Restore a deleted task",
        "Undo a delete; a task that is not deleted is returned unchanged.",
        repository.restore_tasks,
        TASK_EXAMPLE,
    ),
    "POST /{task_id}/complete": Action(
        "complete_task",
        "Complete a task",
        "Mark the task completed; completing it again changes nothing.",
        repository.complete_tasks,
        {**TASK_EXAMPLE, "status": "completed"},
    ),
}


def _endpoint(action: Action) -> Callable[..., Awaitable[WrittenTask]]:
    async def endpoint(db: Db, settings: Config, actor: Writer, task_id: TaskIdPath) -> WrittenTask:
        extra = {"default_tz": settings.timezone} if action.operation is repository.complete_tasks else {}
        return _one(await db.run(action.operation, actor=actor, ids=[task_id], **extra), task_id)

    return endpoint


for _route, _action in ACTIONS.items():
    _method, _path = _route.split(" ")
    write_router.add_api_route(
        _path,
        _endpoint(_action),
        methods=[_method],
        name=_action.name,
        summary=_action.summary,
        description=_action.description,
        response_model=WrittenTask,
        responses={
            **example_response(f"The task after: {_action.summary.lower()}", _action.example),
            **documented(404),
        },
    )
