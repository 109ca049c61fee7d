"""A real Better Auth (examples/better-auth) in front of a real `todo-ledger serve`.

The MCP Python SDK client does the whole OAuth flow on each transport: 401, the transport's own
protected-resource metadata, Better Auth's metadata, dynamic client registration, authorization
code with PKCE and `resource`, token, calls. The person's part (a browser) is played by an HTTP
client holding the session cookie; the example's consent page approves at once. The other token
kind, a web app's `jwt()` token, is checked on REST and MCP.
"""

from __future__ import annotations

import shutil
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx2
import jwt
import pytest
from mcp import Client
from mcp.client.auth import AuthorizationCodeResult, OAuthClientProvider
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import OAuthClientInformationFull, OAuthClientMetadata, OAuthToken

from tests.http_helpers import (
    MODERN,
    ServerProcess,
    Transport,
    bearer,
    clean_env,
    free_port,
    running_server,
    structured,
)

pytestmark = pytest.mark.anyio

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "better-auth"
REDIRECT_URI = "http://127.0.0.1:53682/callback"


def _install_example() -> None:
    """`npm ci` in the example, once; a missing Node.js fails the run with what to install."""
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        raise RuntimeError("Node.js 20 or newer (node and npm) is required for the Better Auth tests")
    installed = EXAMPLE / "node_modules" / ".package-lock.json"
    if installed.exists() and installed.stat().st_mtime >= (EXAMPLE / "package-lock.json").stat().st_mtime:
        return
    subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund"], cwd=EXAMPLE, check=True, capture_output=True, timeout=600
    )


@contextmanager
def _running_better_auth(port: int, mcp_resource: str, log: Path, timeout: float = 30) -> Iterator[str]:
    """The example server on `port`, for todo-ledger's `mcp_resource`; yields its base URL."""
    base = f"http://127.0.0.1:{port}"
    env = {**clean_env(), "PORT": str(port), "MCP_RESOURCE": mcp_resource}
    with log.open("wb") as out:
        proc = subprocess.Popen(
            ["node", "server.mjs"], cwd=EXAMPLE, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + timeout
        with httpx2.Client(timeout=2) as http:
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"Better Auth exited with {proc.returncode}: {log.read_text()}")
                try:
                    if http.get(f"{base}/api/auth/jwks").status_code == 200:
                        break
                except httpx2.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"Better Auth did not answer within {timeout} s: {log.read_text()}")
                time.sleep(0.1)  # polling interval of a bounded start-up wait
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@dataclass(frozen=True)
class Stack:
    """Better Auth and todo-ledger, each knowing the other."""

    auth: str
    server: ServerProcess


@pytest.fixture(scope="module")
def stack(pg_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    _install_example()
    directory = tmp_path_factory.mktemp("better-auth")
    port = free_port()
    mcp_url = f"http://127.0.0.1:{port}/mcp"
    with _running_better_auth(free_port(), mcp_url, directory / "better-auth.log") as auth:
        env = clean_env(
            DATABASE_URL=pg_url,
            TODO_MCP_PUBLIC_URL=mcp_url,
            TODO_MCP_AUTH_JWKS_URL=f"{auth}/api/auth/jwks",
            TODO_MCP_AUTH_AUDIENCE=auth,  # jwt() plugin tokens carry the app's origin
            TODO_MCP_TIMEZONE="UTC",
        )
        with running_server(env=env, cwd=directory, port=port) as server:
            yield Stack(auth=auth, server=server)


class MemoryStorage:
    """The SDK client's token storage, in memory."""

    def __init__(self) -> None:
        self.tokens: OAuthToken | None = None
        self.client_info: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client_info

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client_info = client_info


class Person:
    """What a person's browser does: signs up, keeps the session cookie, follows redirects."""

    def __init__(self, auth: str) -> None:
        self.http = httpx2.AsyncClient(base_url=auth, headers={"origin": auth}, timeout=30)
        self.result: AuthorizationCodeResult | None = None

    async def sign_up(self) -> None:
        body = {
            "email": f"p-{uuid.uuid4().hex[:10]}@example.com",
            "password": "correct horse 42",
            "name": "P",
        }
        (await self.http.post("/api/auth/sign-up/email", json=body)).raise_for_status()

    async def visit(self, url: str) -> None:
        """Follow the authorization URL through sign-in and consent to the client's redirect URI."""
        for _ in range(10):
            response = await self.http.get(url)
            location = response.headers.get("location")
            assert location, f"no redirect from {url}: {response.status_code} {response.text[:300]}"
            url = str(response.url.join(location))
            if url.startswith(REDIRECT_URI):
                query = {key: values[0] for key, values in parse_qs(urlsplit(url).query).items()}
                assert "code" in query, f"authorization refused: {query}"
                self.result = AuthorizationCodeResult(
                    code=query["code"], state=query.get("state"), iss=query.get("iss")
                )
                return
        raise AssertionError("more than 10 redirects")

    async def callback(self) -> AuthorizationCodeResult:
        assert self.result is not None
        return self.result


@asynccontextmanager
async def _person(stack: Stack) -> AsyncIterator[Person]:
    person = Person(stack.auth)
    try:
        await person.sign_up()
        yield person
    finally:
        await person.http.aclose()


def _provider(url: str, person: Person, storage: MemoryStorage) -> OAuthClientProvider:
    metadata = OAuthClientMetadata(
        client_name="todo-ledger test client",
        redirect_uris=[REDIRECT_URI],
        grant_types=["authorization_code", "refresh_token"],
        token_endpoint_auth_method="none",
        scope="todo:read todo:write offline_access",
    )
    return OAuthClientProvider(
        server_url=url,
        client_metadata=metadata,
        storage=storage,
        redirect_handler=person.visit,
        callback_handler=person.callback,
    )


@asynccontextmanager
async def _signed_in_client(
    stack: Stack, transport: Transport, storage: MemoryStorage
) -> AsyncIterator[Client]:
    url = stack.server.sse_url if transport == "sse" else stack.server.mcp_url
    async with _person(stack) as person:
        provider = _provider(url, person, storage)
        if transport == "sse":
            async with Client(sse_client(url, auth=provider), mode="legacy") as client:
                yield client
            return
        mode = "legacy" if transport == "legacy" else MODERN
        async with (
            httpx2.AsyncClient(auth=provider, timeout=httpx2.Timeout(30, read=120)) as http,
            Client(streamable_http_client(url, http_client=http), mode=mode) as client,
        ):
            yield client


@pytest.mark.parametrize("transport", ["legacy", "modern", "sse"])
async def test_an_mcp_client_signs_in_through_better_auth_on_each_transport(
    stack: Stack, transport: Transport
) -> None:
    storage = MemoryStorage()
    async with _signed_in_client(stack, transport, storage) as client:
        task = structured(await client.call_tool("add_task", {"title": f"over {transport}"}))
        listed = structured(await client.call_tool("list_tasks", {}))
    assert [row["id"] for row in listed["tasks"]] == [task["id"]]
    assert storage.tokens is not None
    assert storage.tokens.refresh_token, "offline_access gives a refresh token"
    header = jwt.get_unverified_header(storage.tokens.access_token)
    claims = jwt.decode(storage.tokens.access_token, options={"verify_signature": False})
    resource = stack.server.sse_url if transport == "sse" else stack.server.mcp_url
    assert header["typ"] == "at+jwt"
    assert claims["aud"] == resource
    assert claims["iss"] == f"{stack.auth}/api/auth"
    assert {"todo:read", "todo:write"} <= set(claims["scope"].split())


async def test_a_refresh_token_brings_a_new_access_token(stack: Stack) -> None:
    storage = MemoryStorage()
    async with _signed_in_client(stack, "modern", storage) as client:
        structured(await client.call_tool("add_task", {"title": "before refresh"}))
    assert storage.tokens is not None
    assert storage.client_info is not None
    async with httpx2.AsyncClient(timeout=30) as http:
        refreshed = await http.post(
            f"{stack.auth}/api/auth/oauth2/token",
            data={
                "grant_type": "refresh_token",
                "refresh_token": storage.tokens.refresh_token or "",
                "client_id": storage.client_info.client_id or "",
                "resource": stack.server.mcp_url,
            },
        )
        assert refreshed.status_code == 200, refreshed.text
    token = refreshed.json()["access_token"]
    assert token != storage.tokens.access_token
    async with (
        httpx2.AsyncClient(headers=bearer(token), timeout=30) as http,
        Client(streamable_http_client(stack.server.mcp_url, http_client=http), mode=MODERN) as client,
    ):
        listed = structured(await client.call_tool("list_tasks", {}))
    assert [row["title"] for row in listed["tasks"]] == ["before refresh"]


async def test_a_web_apps_jwt_plugin_token_works_on_rest_and_mcp(stack: Stack) -> None:
    async with _person(stack) as person:
        token = (await person.http.get("/api/auth/token")).json()["token"]
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["iss"] == claims["aud"] == stack.auth
    async with httpx2.AsyncClient(base_url=stack.server.base, headers=bearer(token), timeout=30) as http:
        created = await http.post("/api/tasks", json={"title": "from the web app"})
        assert created.status_code == 201, created.text
    async with (
        httpx2.AsyncClient(headers=bearer(token), timeout=30) as http,
        Client(streamable_http_client(stack.server.mcp_url, http_client=http), mode=MODERN) as client,
    ):
        listed = structured(await client.call_tool("list_tasks", {}))
    assert [row["title"] for row in listed["tasks"]] == ["from the web app"]
