"""The HTTP application of `todo-mcp serve`: one ASGI app for every network client.

- `/mcp`: Streamable HTTP, both protocol generations (the SDK's session manager).
- `/sse` + `/messages/`: the legacy HTTP+SSE transport.
- `/.well-known/oauth-protected-resource[/mcp]`: RFC 9728 metadata naming the authorization server.
- `/healthz`, `/readyz`, `/api/tasks...` (REST on the same repository), `/docs` (OpenAPI).

One database engine serves them all; the app's lifespan runs the SDK's session manager and
disposes the engine. Authentication, scopes and rate limits live in `todo_mcp.gate`.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any
from urllib.parse import urlsplit

import anyio
from fastapi import APIRouter, Body, Depends, FastAPI, Header, Path, Query, Request, Response, Security
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPBearer
from mcp.server.auth.routes import build_resource_metadata_url
from mcp.server.transport_security import TransportSecuritySettings
from mcp.shared.auth import ProtectedResourceMetadata
from pydantic import AnyHttpUrl
from starlette.applications import Starlette
from starlette.middleware.cors import CORSMiddleware

from todo_mcp import __version__, repository
from todo_mcp.auth import TokenVerifier, oauth_issuer
from todo_mcp.config import Settings, resolve_database
from todo_mcp.db import Database, check_reachable
from todo_mcp.errors import (
    ConflictError,
    InvalidInputError,
    NotFoundError,
    TodoError,
    UnavailableError,
    describe_db_error,
    field_problems,
)
from todo_mcp.gate import (
    PRINCIPAL_SCOPE_KEY,
    BearerGate,
    Denial,
    HostGuard,
    current_principal,
    denial_response,
    host_patterns,
)
from todo_mcp.identity import ALL_SCOPES, READ, WRITE, Principal, local_identity
from todo_mcp.models import ItemResult, Task, TaskCreate, TaskPage, TaskPatch, TaskQuery
from todo_mcp.server import build_server

log = logging.getLogger(__name__)

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")
LOOPBACK_ORIGINS = ("http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*")
READY_TIMEOUT = 5.0
METADATA_PATH = "/.well-known/oauth-protected-resource"

CORS_ALLOW_HEADERS = (
    "Authorization",
    "Content-Type",
    "Accept",
    "Mcp-Protocol-Version",
    "Mcp-Session-Id",
    "Mcp-Method",
    "Mcp-Name",
    "Last-Event-ID",
    "Idempotency-Key",
    "If-Match",
)
CORS_EXPOSE_HEADERS = ("Mcp-Session-Id", "WWW-Authenticate", "Retry-After", "ETag", "Location")


# --- settings that shape the app --------------------------------------------------------------------


def allowed_hosts(settings: Settings) -> list[str] | None:
    """Host header patterns to accept, or None when TODO_MCP_ALLOWED_HOSTS is "*" (no check)."""
    if "*" in settings.allowed_hosts:
        return None
    names = list(LOOPBACK_NAMES)
    if settings.public_url:
        names.append(urlsplit(settings.public_url).netloc)
    return host_patterns([*names, *settings.allowed_hosts])


def allowed_origins(settings: Settings) -> list[str]:
    origins = list(LOOPBACK_ORIGINS)
    if settings.public_url:
        parts = urlsplit(settings.public_url)
        origins.append(f"{parts.scheme}://{parts.netloc}")
    return [*origins, *settings.cors_origins]


def authorization_server(settings: Settings) -> str:
    """TODO_MCP_AUTH_SERVER, else Better Auth's OAuth issuer: the JWKS URL without its /jwks."""
    if settings.auth_server:
        return settings.auth_server
    assert settings.auth_jwks_url is not None
    return oauth_issuer(settings.auth_jwks_url)


def resource_metadata(settings: Settings) -> ProtectedResourceMetadata:
    assert settings.public_url is not None
    return ProtectedResourceMetadata(
        resource=AnyHttpUrl(settings.public_url),
        authorization_servers=[AnyHttpUrl(authorization_server(settings))],
        scopes_supported=sorted(ALL_SCOPES),
        bearer_methods_supported=["header"],
        resource_name="todo-mcp",
    )


# --- REST -------------------------------------------------------------------------------------------

_bearer = HTTPBearer(
    auto_error=False,
    description="A Better Auth JWT: an OAuth access token (typ at+jwt, scope todo:read/todo:write) "
    "or a jwt() plugin token from GET /api/auth/token.",
)


class ScopeError(Exception):
    def __init__(self, scope: str) -> None:
        self.scope = scope
        super().__init__(scope)


def _need(scope: str) -> Callable[..., Principal]:
    def dependency(request: Request) -> Principal:
        principal: Principal = request.scope[PRINCIPAL_SCOPE_KEY]
        if scope not in principal.scopes:
            raise ScopeError(scope)
        return principal

    return dependency


Reader = Annotated[Principal, Depends(_need(READ))]
Writer = Annotated[Principal, Depends(_need(WRITE))]
TaskIdPath = Annotated[int, Path(ge=1, description="The task id (from a list or create response).")]

_TASK_EXAMPLE: dict[str, Any] = {
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
}


def _example(status: int, description: str, example: Any) -> dict[int | str, dict[str, Any]]:
    return {status: {"description": description, "content": {"application/json": {"example": example}}}}


_ERRORS: dict[int | str, dict[str, Any]] = {
    **_example(401, "No token, or a token that is invalid or expired", {"error": "invalid_token"}),
    **_example(403, "The token lacks the scope this route needs", {"error": "insufficient_scope"}),
    **_example(429, "Too many calls; see Retry-After", {"error": "rate_limited"}),
}
_NOT_FOUND = _example(
    404,
    "No such task for this user (another user's task answers the same)",
    {"detail": "Task 42 was not found. Use list_tasks to find the id of an existing task."},
)
_INVALID = _example(
    422,
    "The input is not acceptable; detail says what to send instead",
    {"detail": "body.due: due '24/12/2026' is not understood; send a date 2026-12-24, ...", "errors": []},
)
_CONFLICT = _example(
    409,
    "The task changed since the version given in If-Match / expected_version",
    {"detail": "Task 42 changed since you read it: ...", "current_version": 3},
)


def _etag(task: Task) -> dict[str, str]:
    return {"ETag": f'"{task.version}"'}


def _version_from_if_match(value: str | None) -> int | None:
    if value is None:
        return None
    text = value.strip().removeprefix("W/").strip('"')
    if not text.isdigit() or int(text) < 1:
        raise InvalidInputError(
            f"If-Match {value!r} is not a task version; "
            'send the version (or ETag) of the task you read, e.g. "3"'
        )
    return int(text)


def _one(results: list[ItemResult], task_id: int) -> Task:
    result = results[0]
    if not result.ok or result.task is None:
        raise NotFoundError(task_id)
    return result.task


def _rest_router(db: Database, settings: Settings) -> APIRouter:
    router = APIRouter(prefix="/api/tasks", tags=["tasks"], responses=_ERRORS)

    @router.get(
        "",
        summary="List tasks",
        response_model=TaskPage,
        responses={
            **_example(200, "One page of tasks", {"tasks": [_TASK_EXAMPLE], "next_cursor": None}),
            **_INVALID,
        },
    )
    async def list_tasks(user: Reader, query: Annotated[TaskQuery, Query()]) -> TaskPage:
        """Tasks matching all the given filters, one page at a time; pass `next_cursor` as `cursor`."""
        return await db.run(
            repository.list_tasks, owner=user.user_id, query=query, default_tz=settings.timezone
        )

    @router.get(
        "/{task_id}",
        summary="Read a task",
        response_model=Task,
        responses={**_example(200, "The task", _TASK_EXAMPLE), **_NOT_FOUND},
    )
    async def get_task(user: Reader, task_id: TaskIdPath, response: Response) -> Task:
        """One task in full; its ETag is its version."""
        task = await db.run(repository.get_task, owner=user.user_id, task_id=task_id)
        response.headers.update(_etag(task))
        return task

    if settings.read_only:
        return router

    @router.post(
        "",
        summary="Create a task",
        status_code=201,
        response_model=Task,
        responses={**_example(201, "The task (the original one on a retry)", _TASK_EXAMPLE), **_CONFLICT},
    )
    async def create_task(
        user: Writer,
        data: Annotated[
            TaskCreate,
            Body(
                openapi_examples={
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
            ),
        ],
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
    ) -> Task:
        """Create a task. Retry safely with an Idempotency-Key header (or client_request_id)."""
        if idempotency_key is not None:
            if data.client_request_id not in (None, idempotency_key):
                raise InvalidInputError(
                    "Idempotency-Key and client_request_id differ; "
                    "send one of them, or the same value in both"
                )
            data = data.model_copy(update={"client_request_id": idempotency_key})
        task = await db.run(repository.create_task, owner=user.user_id, data=data)
        response.headers.update({**_etag(task), "Location": f"/api/tasks/{task.id}"})
        return task

    @router.patch(
        "/{task_id}",
        summary="Change a task",
        response_model=Task,
        responses={**_example(200, "The changed task", _TASK_EXAMPLE), **_NOT_FOUND, **_CONFLICT, **_INVALID},
    )
    async def update_task(
        user: Writer,
        task_id: TaskIdPath,
        patch: Annotated[
            TaskPatch,
            Body(
                openapi_examples={
                    "reschedule": {"summary": "Move the due date", "value": {"due": "2026-12-27"}},
                    "guarded": {
                        "summary": "Only if nobody changed it since version 3",
                        "value": {"priority": "low", "expected_version": 3},
                    },
                }
            ),
        ],
        response: Response,
        if_match: Annotated[
            str | None,
            Header(
                alias="If-Match", description='The version you read (its ETag, e.g. "3"); 409 if it changed.'
            ),
        ] = None,
    ) -> Task:
        """Change only the fields sent; the others keep their values."""
        version = _version_from_if_match(if_match)
        if version is not None:
            if patch.expected_version not in (None, version):
                raise InvalidInputError(
                    "If-Match and expected_version differ; send one of them, or the same version in both"
                )
            patch = patch.model_copy(update={"expected_version": version})
        task = await db.run(repository.update_task, owner=user.user_id, task_id=task_id, patch=patch)
        response.headers.update(_etag(task))
        return task

    @router.delete(
        "/{task_id}",
        summary="Delete a task (undoable)",
        response_model=Task,
        responses={
            **_example(200, "The deleted task", {**_TASK_EXAMPLE, "deleted_at": "2026-12-21T08:00:00Z"}),
            **_NOT_FOUND,
        },
    )
    async def delete_task(user: Writer, task_id: TaskIdPath) -> Task:
        """Soft delete: the task disappears until POST /api/tasks/{task_id}/restore."""
        results = await db.run(repository.delete_tasks, owner=user.user_id, ids=[task_id])
        return _one(results, task_id)

    @router.post(
        "/{task_id}/restore",
        summary="Restore a deleted task",
        response_model=Task,
        responses={**_example(200, "The restored task", _TASK_EXAMPLE), **_NOT_FOUND},
    )
    async def restore_task(user: Writer, task_id: TaskIdPath) -> Task:
        """Undo a delete; a task that is not deleted is returned unchanged."""
        results = await db.run(repository.restore_tasks, owner=user.user_id, ids=[task_id])
        return _one(results, task_id)

    @router.post(
        "/{task_id}/complete",
        summary="Complete a task",
        response_model=Task,
        responses={
            **_example(200, "The completed task", {**_TASK_EXAMPLE, "status": "completed"}),
            **_NOT_FOUND,
        },
    )
    async def complete_task(user: Writer, task_id: TaskIdPath) -> Task:
        """Mark the task completed; completing it again changes nothing."""
        results = await db.run(repository.complete_tasks, owner=user.user_id, ids=[task_id])
        return _one(results, task_id)

    return router


# --- errors, mapped once --------------------------------------------------------------------------------

_STATUS: tuple[tuple[type[TodoError], int], ...] = (
    (NotFoundError, 404),
    (ConflictError, 409),
    (InvalidInputError, 422),
    (UnavailableError, 503),
)


async def _todo_error(request: Request, error: Exception) -> Response:
    status = next((code for kind, code in _STATUS if isinstance(error, kind)), 400)
    body: dict[str, Any] = {"detail": str(error)}
    if isinstance(error, ConflictError) and error.current_version is not None:
        body["current_version"] = error.current_version
    return JSONResponse(body, status_code=status)


async def _validation_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, RequestValidationError)
    problems = field_problems(error.errors())
    return JSONResponse(
        {"detail": "; ".join(problems), "errors": jsonable_encoder(error.errors())}, status_code=422
    )


def _scope_error_handler(metadata_url: str | None) -> Callable[[Request, Exception], Any]:
    async def handler(request: Request, error: Exception) -> Response:
        assert isinstance(error, ScopeError)
        denial = Denial(
            403,
            "insufficient_scope",
            f"This route needs the {error.scope} scope, which the token lacks; "
            f"get a token granting {error.scope}",
            scope=error.scope,
        )
        return denial_response(denial, metadata_url)

    return handler


# --- the app ----------------------------------------------------------------------------------------------


def create_app(settings: Settings, *, verifier: TokenVerifier | None, stateless: bool = False) -> FastAPI:
    """The whole HTTP application. `verifier` None means no-auth mode (acts for TODO_MCP_USER_ID)."""
    database = Database.open(resolve_database(settings), pool_size=settings.db_pool_size)
    mcp = build_server(database, settings=settings, identity=current_principal)

    hosts = allowed_hosts(settings)
    security = TransportSecuritySettings(
        enable_dns_rebinding_protection=hosts is not None,
        allowed_hosts=hosts or [],
        allowed_origins=allowed_origins(settings),
    )
    streamable = mcp.streamable_http_app(stateless_http=stateless, transport_security=security)
    sse = mcp.sse_app(transport_security=security)
    transports = Starlette(routes=[*streamable.routes, *sse.routes])

    metadata_url: str | None = None
    if verifier is not None:
        assert settings.public_url is not None
        metadata_url = str(build_resource_metadata_url(AnyHttpUrl(settings.public_url)))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            async with mcp.session_manager.run():
                yield
        finally:
            await database.dispose()
            if verifier is not None:
                await verifier.aclose()

    app = FastAPI(
        title="todo-mcp",
        version=__version__,
        summary="A person's tasks over MCP (/mcp, /sse) and REST (/api/tasks).",
        description="REST routes share the MCP tools' repository, auth and errors. Send "
        "`Authorization: Bearer <JWT>`; GET routes need the todo:read scope, the others todo:write.",
        lifespan=lifespan,
        separate_input_output_schemas=False,
    )
    app.add_exception_handler(TodoError, _todo_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(ScopeError, _scope_error_handler(metadata_url))

    @app.get("/healthz", tags=["health"], summary="The process is alive (no database call)")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get(
        "/readyz",
        tags=["health"],
        summary="The database answers SELECT 1",
        responses=_example(503, "The database is unreachable", {"status": "unavailable", "reason": "..."}),
    )
    async def readyz() -> Response:
        # Whatever the failure (refused, timed out, auth, dropped database), the answer is "not ready".
        try:
            with anyio.fail_after(READY_TIMEOUT):
                await check_reachable(database)
        except Exception as error:
            reason = "timed out" if isinstance(error, TimeoutError) else describe_db_error(error)
            log.warning("readiness check failed: %s", reason)
            return JSONResponse({"status": "unavailable", "reason": reason}, status_code=503)
        return JSONResponse({"status": "ready"})

    if verifier is not None:
        document = resource_metadata(settings).model_dump(mode="json", exclude_none=True)
        public_path = urlsplit(settings.public_url or "").path.rstrip("/")
        paths = dict.fromkeys(
            [METADATA_PATH, METADATA_PATH + public_path, METADATA_PATH + "/mcp", METADATA_PATH + "/sse"]
        )

        async def protected_resource() -> JSONResponse:
            return JSONResponse(
                document,
                headers={"Cache-Control": "public, max-age=3600", "Access-Control-Allow-Origin": "*"},
            )

        for path in paths:
            app.add_api_route(
                path,
                protected_resource,
                methods=["GET"],
                tags=["oauth"],
                summary="OAuth 2.0 protected resource metadata (RFC 9728)",
                include_in_schema=path == METADATA_PATH + public_path,
            )

    app.include_router(_rest_router(database, settings), dependencies=[Security(_bearer)])
    app.mount("/", transports)

    app.add_middleware(
        BearerGate,
        authenticate=verifier.verify if verifier is not None else None,
        local=local_identity(settings.user_id) if verifier is None else None,
        resource_metadata_url=metadata_url,
        calls_per_minute=settings.rate_limit_per_minute,
    )
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "PATCH", "DELETE", "OPTIONS"],
            allow_headers=CORS_ALLOW_HEADERS,
            expose_headers=CORS_EXPOSE_HEADERS,
            max_age=600,
        )
    if hosts is not None:
        app.add_middleware(HostGuard, patterns=hosts)
    return app
