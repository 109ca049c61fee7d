"""OAuth 2.0 protected resource metadata (RFC 9728): which authorization server issues tokens here."""

from __future__ import annotations

from urllib.parse import urlsplit

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from mcp.server.auth.routes import build_resource_metadata_url
from mcp.shared.auth import ProtectedResourceMetadata
from pydantic import AnyHttpUrl

from todo_mcp.auth.better_auth import oauth_issuer
from todo_mcp.config import APP_NAME, Settings
from todo_mcp.identity import ALL_SCOPES

METADATA_PATH = "/.well-known/oauth-protected-resource"


def authorization_server(settings: Settings) -> str:
    """TODO_MCP_AUTH_SERVER, else Better Auth's OAuth issuer: the JWKS URL without its /jwks."""
    if settings.auth_server:
        return settings.auth_server
    assert settings.auth_jwks_url is not None
    return oauth_issuer(settings.auth_jwks_url)


def resource_metadata(settings: Settings) -> ProtectedResourceMetadata:
    """The metadata document for TODO_MCP_PUBLIC_URL."""
    assert settings.public_url is not None
    return ProtectedResourceMetadata(
        resource=AnyHttpUrl(settings.public_url),
        authorization_servers=[AnyHttpUrl(authorization_server(settings))],
        scopes_supported=sorted(ALL_SCOPES),
        bearer_methods_supported=["header"],
        resource_name=APP_NAME,
    )


def metadata_url(settings: Settings) -> str:
    """Where the metadata of TODO_MCP_PUBLIC_URL is served (RFC 9728's path-inserted form)."""
    assert settings.public_url is not None
    return str(build_resource_metadata_url(AnyHttpUrl(settings.public_url)))


def add_metadata_routes(app: FastAPI, settings: Settings) -> None:
    """Serve the metadata at the well-known path of the public URL and of each transport."""
    document = resource_metadata(settings).model_dump(mode="json", exclude_none=True)
    public_path = urlsplit(settings.public_url or "").path.rstrip("/")
    paths = dict.fromkeys(
        [METADATA_PATH, METADATA_PATH + public_path, METADATA_PATH + "/mcp", METADATA_PATH + "/sse"]
    )

    async def protected_resource() -> JSONResponse:
        return JSONResponse(
            document, headers={"Cache-Control": "public, max-age=3600", "Access-Control-Allow-Origin": "*"}
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
