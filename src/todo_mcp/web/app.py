"""The app of `todo-ledger serve`: MCP transports, REST routes, metadata and health, behind the gate.

- `/mcp`: Streamable HTTP, both protocol generations (the SDK's session manager).
- `/sse` + `/messages/`: the legacy HTTP+SSE transport.
- `/.well-known/oauth-protected-resource[/mcp]`: RFC 9728 metadata naming the authorization server.
- `/healthz`, `/readyz`, `/api/tasks...` (REST on the same repository), `/docs` (OpenAPI).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import anyio
from fastapi import FastAPI, Response
from fastapi.responses import JSONResponse
from mcp.server import MCPServer
from mcp.server.transport_security import TransportSecuritySettings
from starlette.applications import Starlette
from starlette.middleware.cors import CORSMiddleware
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from todo_mcp import __version__
from todo_mcp.auth.resources import ProtectedResources
from todo_mcp.auth.verifier import TokenVerifier
from todo_mcp.config import APP_NAME, Settings
from todo_mcp.errors import describe_db_error
from todo_mcp.identity import local_identity
from todo_mcp.limits import CallBudget
from todo_mcp.storage.engine import Database
from todo_mcp.tools.server import build_server
from todo_mcp.web import ledger_routes
from todo_mcp.web.body import BodyReader
from todo_mcp.web.gate import BearerGate, current_principal
from todo_mcp.web.hosts import HostGuard, allowed_hosts, allowed_origins
from todo_mcp.web.metadata import add_metadata_routes
from todo_mcp.web.quotas import UserQuotas
from todo_mcp.web.rest_errors import install_error_handlers
from todo_mcp.web.routes import read_router, write_router

log = logging.getLogger(__name__)

READY_TIMEOUT = 5.0
MCP_PATH = "/mcp"
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


class McpEndpoint:
    """Requests to /mcp go straight to the SDK's Streamable HTTP app, past the routing of the REST routes.

    It runs inside the gate (the principal is known); every other path, /sse and /messages/
    included, goes on to FastAPI, whose last route is the mount of every transport.
    """

    def __init__(self, app: ASGIApp, *, streamable: ASGIApp) -> None:
        """Send /mcp to `streamable`, anything else to `app`."""
        self.app = app
        self.streamable = streamable

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Dispatch by path."""
        if scope["type"] == "http" and scope["path"] == MCP_PATH:
            await self.streamable(scope, receive, send)
        else:
            await self.app(scope, receive, send)


def _transports(mcp: MCPServer[object], settings: Settings, *, stateless: bool) -> Starlette:
    """Streamable HTTP and SSE, with the SDK's own Host check off: `HostGuard` is the only one."""
    security = TransportSecuritySettings(enable_dns_rebinding_protection=False)
    streamable = mcp.streamable_http_app(
        stateless_http=stateless,
        json_response=True,
        transport_security=security,
        session_idle_timeout=settings.session_idle_timeout,
        max_request_body_size=settings.max_body_bytes,
    )
    sse = mcp.sse_app(transport_security=security)
    return Starlette(routes=[*streamable.routes, *sse.routes])


def _streamable_endpoint(transports: Starlette) -> ASGIApp:
    """The ASGI app the /mcp route of `transports` hands its requests to."""
    for route in transports.routes:
        if isinstance(route, Route) and route.path == MCP_PATH:
            return route.app
    raise LookupError(f"the MCP transports have no {MCP_PATH} route")


def _add_health_routes(app: FastAPI, database: Database) -> None:
    @app.get("/healthz", tags=["health"], summary="The process is alive (no database call)")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get(
        "/readyz",
        tags=["health"],
        summary="The database answers SELECT 1",
        responses={503: {"description": "The database is unreachable"}},
    )
    async def readyz() -> Response:
        # Whatever the failure (refused, timed out, auth, dropped database), the answer is "not ready".
        try:
            with anyio.fail_after(READY_TIMEOUT):
                await database.check_reachable()
        except Exception as error:
            reason = "timed out" if isinstance(error, TimeoutError) else describe_db_error(error)
            log.warning("readiness check failed: %s", reason)
            return JSONResponse({"status": "unavailable", "reason": reason}, status_code=503)
        return JSONResponse({"status": "ready"})


def create_app(
    settings: Settings, *, database: Database, verifier: TokenVerifier | None, stateless: bool = False
) -> FastAPI:
    """The whole HTTP application on an already-open database; `verifier` None means no-auth mode."""
    budget = CallBudget(settings.rate_limit_per_minute)
    mcp = build_server(database, settings=settings, identity=current_principal, budget=budget)
    resources = None
    if verifier is not None:
        assert settings.public_url is not None
        resources = ProtectedResources.from_public_url(settings.public_url)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            async with mcp.session_manager.run():
                yield
        finally:
            if verifier is not None:
                await verifier.aclose()

    app = FastAPI(
        title=APP_NAME,
        version=__version__,
        summary="A person's tasks over MCP (/mcp, /sse) and REST (/api/tasks).",
        description="REST routes share the MCP tools' repository, auth and errors. Send "
        "`Authorization: Bearer <JWT>`; GET routes need the todo:read scope, the others todo:write.",
        lifespan=lifespan,
        separate_input_output_schemas=False,
    )
    app.state.database = database
    app.state.settings = settings
    install_error_handlers(app, resources)
    _add_health_routes(app, database)
    if resources is not None:
        add_metadata_routes(app, settings, resources)
    app.include_router(read_router)
    app.include_router(ledger_routes.read_router)
    if not settings.read_only:
        app.include_router(write_router)
        app.include_router(ledger_routes.write_router)
    transports = _transports(mcp, settings, stateless=stateless)
    app.mount("/", transports)
    app.add_middleware(McpEndpoint, streamable=_streamable_endpoint(transports))
    _add_middleware(app, settings, verifier, resources, budget, _session_ender(mcp))
    return app


def _session_ender(mcp: MCPServer[object]) -> Callable[[str], bool]:
    """Ends one handshake-era session the way its idle timeout would (the SDK then forgets it)."""

    def end(session_id: str) -> bool:
        # The SDK keeps its sessions by id; cancelling a session's idle scope is what its timeout does.
        transport = mcp.session_manager._server_instances.get(session_id)
        if transport is None or transport.idle_scope is None:
            return False
        transport.idle_scope.cancel()
        return True

    return end


def _add_middleware(
    app: FastAPI,
    settings: Settings,
    verifier: TokenVerifier | None,
    resources: ProtectedResources | None,
    budget: CallBudget,
    end_session: Callable[[str], bool],
) -> None:
    """Innermost first: the gate, the body reader, CORS, then the host allowlist outermost."""
    quotas = UserQuotas(
        sessions_per_user=settings.sessions_per_user,
        streams_per_user=settings.streams_per_user,
        idle_timeout=settings.session_idle_timeout,
        end_session=end_session,
    )
    app.add_middleware(
        BearerGate,
        authenticate=verifier.verify if verifier is not None else None,
        local=local_identity(settings.user_id) if verifier is None else None,
        resources=resources,
        budget=budget,
        quotas=quotas,
    )
    app.add_middleware(BodyReader, max_bytes=settings.max_body_bytes, timeout=settings.http_read_timeout)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "PATCH", "DELETE", "OPTIONS"],
            allow_headers=CORS_ALLOW_HEADERS,
            expose_headers=CORS_EXPOSE_HEADERS,
            max_age=600,
        )
    app.add_middleware(HostGuard, hosts=allowed_hosts(settings), origins=allowed_origins(settings))
