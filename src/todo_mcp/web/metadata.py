"""OAuth 2.0 protected resource metadata (RFC 9728): which authorization server issues tokens here.

Each transport is a resource of its own with a document of its own: `/sse` names `/sse`, so that
a client connected there finds the resource it expects.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from mcp.shared.auth import ProtectedResourceMetadata
from pydantic import AnyHttpUrl

from todo_mcp.auth.better_auth import oauth_issuer
from todo_mcp.auth.resources import METADATA_PATH, TRANSPORTS, ProtectedResources
from todo_mcp.config import APP_NAME, Settings
from todo_mcp.identity import ALL_SCOPES


def authorization_server(settings: Settings) -> str:
    """TODO_MCP_AUTH_SERVER, else Better Auth's OAuth issuer: the JWKS URL without its /jwks."""
    if settings.auth_server:
        return settings.auth_server
    assert settings.auth_jwks_url is not None
    return oauth_issuer(settings.auth_jwks_url)


def resource_metadata(settings: Settings, resource: str) -> dict[str, object]:
    """The metadata document of `resource`."""
    return ProtectedResourceMetadata(
        resource=AnyHttpUrl(resource),
        authorization_servers=[AnyHttpUrl(authorization_server(settings))],
        scopes_supported=sorted(ALL_SCOPES),
        bearer_methods_supported=["header"],
        resource_name=APP_NAME,
    ).model_dump(mode="json", exclude_none=True)


def add_metadata_routes(app: FastAPI, settings: Settings, resources: ProtectedResources) -> None:
    """Serve each transport's metadata at its well-known path; the bare well-known path names /mcp.

    The paths with the public prefix (behind a proxy) and without it (as the app sees them) both
    answer, so the metadata is found however the proxy forwards it.
    """
    paths: dict[str, str] = {METADATA_PATH: "mcp"}
    for transport in TRANSPORTS:
        paths[resources.metadata_path(transport)] = transport
        paths.setdefault(f"{METADATA_PATH}/{transport}", transport)
    documents = {t: resource_metadata(settings, resources.resource(t)) for t in TRANSPORTS}
    for path, transport in paths.items():
        app.add_api_route(
            path,
            _endpoint(documents[transport]),
            methods=["GET"],
            tags=["oauth"],
            summary=f"OAuth 2.0 protected resource metadata of /{transport} (RFC 9728)",
            include_in_schema=path == resources.metadata_path(transport),
        )


def _endpoint(document: dict[str, object]) -> Callable[[], Awaitable[JSONResponse]]:
    async def protected_resource() -> JSONResponse:
        return JSONResponse(
            document, headers={"Cache-Control": "public, max-age=3600", "Access-Control-Allow-Origin": "*"}
        )

    return protected_resource
