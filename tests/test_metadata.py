"""OAuth discovery on every transport: each protected path names metadata about its own resource."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import httpx2
import pytest
from fastapi import FastAPI

from todo_mcp.auth.resources import ProtectedResources
from todo_mcp.auth.verifier import TokenVerifier
from todo_mcp.config import load_settings
from todo_mcp.storage.engine import Database
from todo_mcp.web.app import create_app

pytestmark = pytest.mark.anyio

JWKS_URL = "https://auth.example.test/api/auth/jwks"


@pytest.mark.parametrize(
    "public_url",
    [
        "https://todo.example.com/mcp",
        "https://todo.example.com/mcp/",
        "https://todo.example.com",
        "https://todo.example.com/",
    ],
)
def test_the_public_url_names_one_resource_per_transport(public_url: str) -> None:
    resources = ProtectedResources.from_public_url(public_url)
    assert resources.resource("mcp") == "https://todo.example.com/mcp"
    assert resources.resource("sse") == "https://todo.example.com/sse"
    assert (
        resources.metadata_url("sse") == "https://todo.example.com/.well-known/oauth-protected-resource/sse"
    )


def test_behind_a_proxy_prefix_the_metadata_path_keeps_it() -> None:
    resources = ProtectedResources.from_public_url("https://example.com/todo/mcp/")
    assert resources.resource("sse") == "https://example.com/todo/sse"
    assert resources.metadata_path("mcp") == "/.well-known/oauth-protected-resource/todo/mcp"


@pytest.fixture(
    params=["http://127.0.0.1/mcp/", "http://127.0.0.1/todo/mcp"], ids=["trailing-slash", "prefix"]
)
async def app(request: pytest.FixtureRequest, database: Database) -> AsyncIterator[FastAPI]:
    settings = load_settings(TODO_MCP_PUBLIC_URL=request.param, TODO_MCP_AUTH_JWKS_URL=JWKS_URL)
    verifier = TokenVerifier.from_settings(settings)
    application = create_app(settings, database=database, verifier=verifier)
    async with application.router.lifespan_context(application):
        yield application


@pytest.mark.parametrize(("method", "path", "transport"), [("POST", "/mcp", "mcp"), ("GET", "/sse", "sse")])
async def test_each_transports_challenge_leads_to_metadata_naming_that_transport(
    app: FastAPI, method: str, path: str, transport: str
) -> None:
    async with httpx2.AsyncClient(
        transport=httpx2.ASGITransport(app=app), base_url="http://127.0.0.1"
    ) as http:
        challenge = await http.request(method, path, json={} if method == "POST" else None)
        match = re.search(r'resource_metadata="([^"]+)"', challenge.headers["www-authenticate"])
        assert match is not None, challenge.headers
        metadata = await http.get(urlsplit(match.group(1)).path)
    assert challenge.status_code == 401
    assert metadata.status_code == 200, match.group(1)
    document = metadata.json()
    assert document["resource"].endswith(f"/{transport}")
    assert urlsplit(document["resource"]).path.removesuffix(f"/{transport}") in ("", "/todo")
    assert document["authorization_servers"] == ["https://auth.example.test/api/auth"]
