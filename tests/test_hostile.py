"""Hostile input and greedy clients, against the app in-process: bounded, clear, and nothing lost.

Every route has one body limit, checked before parsing and while the body streams in; nesting is
bounded; invalid encodings and values are 4xx answers naming the field, never echoing the input;
each user has a share of sessions; a JWKS that cannot be fetched is a 503, not an invalid token.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import httpx2
import pytest

from tests.jwks_server import JWKSServer, jwt_plugin_claims, make_key, running_jwks
from todo_mcp.auth.verifier import TokenVerifier
from todo_mcp.config import Settings, load_settings
from todo_mcp.storage.engine import Database
from todo_mcp.web.app import create_app
from todo_mcp.web.quotas import UserQuotas

pytestmark = pytest.mark.anyio

BASE = "http://127.0.0.1"
LIMIT = 64 * 1024
MCP_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


def _settings(owner: str, **extra: Any) -> Settings:
    return load_settings(
        TODO_MCP_USER_ID=owner, TODO_MCP_TIMEZONE="UTC", TODO_MCP_MAX_BODY_BYTES=LIMIT, **extra
    )


@pytest.fixture
async def http(database: Database, owner: str) -> AsyncIterator[httpx2.AsyncClient]:
    settings = _settings(owner, TODO_MCP_SESSIONS_PER_USER=2, TODO_MCP_RATE_LIMIT_PER_MINUTE=0)
    app = create_app(settings, database=database, verifier=None)
    async with (
        app.router.lifespan_context(app),
        httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url=BASE) as client,
    ):
        yield client


def _nested(levels: int) -> str:
    return "[" * levels + "]" * levels


def _initialize(request_id: int = 1) -> dict[str, Any]:
    params = {
        "protocolVersion": "2025-11-25",
        "capabilities": {},
        "clientInfo": {"name": "t", "version": "1"},
    }
    return {"jsonrpc": "2.0", "id": request_id, "method": "initialize", "params": params}


async def test_a_body_over_the_limit_is_refused_before_it_is_read(http: httpx2.AsyncClient) -> None:
    big = json.dumps({"title": "x" * LIMIT})
    declared = await http.post("/api/tasks", content=big, headers={"Content-Type": "application/json"})

    async def trickle() -> AsyncIterator[bytes]:  # no Content-Length: counted as it streams in
        for _ in range(LIMIT // 1024 + 2):
            yield b" " * 1024

    streamed = await http.post("/api/tasks", content=trickle(), headers={"Content-Type": "application/json"})
    mcp = await http.post("/mcp", content=big, headers=MCP_HEADERS)
    for response in (declared, streamed):
        assert response.status_code == 413
        assert response.json() == {
            "detail": f"the request body is larger than {LIMIT} bytes; send at most that"
        }
    assert mcp.status_code == 413
    assert mcp.json()["error"]["message"].startswith("the request body is larger than")
    assert (await http.get("/api/tasks", params={"status": "all"})).json()["tasks"] == []


@pytest.mark.parametrize(
    "path", ["/api/tasks", "/mcp", "/messages/?session_id=0123456789abcdef0123456789abcdef"]
)
async def test_deeply_nested_json_is_a_400_not_a_crash(http: httpx2.AsyncClient, path: str) -> None:
    for levels in (100, 20_000):  # both under the size limit: refused for their depth
        response = await http.post(path, content=_nested(levels), headers=MCP_HEADERS)
        assert response.status_code == 400, response.text
        assert "nests deeper than" in response.text
    if path == "/mcp":
        assert response.json()["error"]["code"] == -32700


async def test_broken_encodings_are_4xx_answers_naming_the_problem(http: httpx2.AsyncClient) -> None:
    not_utf8 = await http.post("/api/tasks", content=b'{"title": "\xff\xfe"}', headers=MCP_HEADERS)
    surrogate = await http.post("/api/tasks", content=b'{"title": "a\\ud800b"}', headers=MCP_HEADERS)
    not_json = await http.post("/api/tasks", content=b'{"title": ', headers=MCP_HEADERS)
    assert (not_utf8.status_code, not_utf8.json()["detail"]) == (
        400,
        "the body is not valid UTF-8; send JSON encoded as UTF-8",
    )
    assert surrogate.status_code == 422
    assert surrogate.json()["errors"] == [
        {
            "field": "body.title",
            "problem": "is not valid Unicode (an unpaired surrogate such as \\ud800); send valid UTF-8 text",
        }
    ]
    assert not_json.status_code == 400
    assert not_json.json()["detail"].startswith("the body is not valid JSON (")


async def test_a_refusal_never_echoes_a_large_input(http: httpx2.AsyncClient) -> None:
    huge = "y" * (LIMIT // 2)
    responses = [
        await http.post("/api/tasks", json={"title": huge}),
        await http.post("/api/tasks", json={"title": "x", "due": huge}),
        await http.post("/api/tasks", json={"title": "x", huge[:200]: 1}),
        await http.get("/api/tasks", params={"tz": huge[:2000]}),
    ]
    for response in responses:
        assert response.status_code == 422, response.text
        assert len(response.content) < 1000, response.text[:200]


async def test_the_openapi_document_declares_every_error_body(http: httpx2.AsyncClient) -> None:
    spec = (await http.get("/openapi.json")).json()
    responses = spec["paths"]["/api/tasks"]["post"]["responses"]
    assert {"400", "401", "403", "409", "413", "422", "429", "503"} <= set(responses)
    for status in ("400", "401", "413", "422", "503"):
        schema = responses[status]["content"]["application/json"]["schema"]
        assert schema == {"$ref": "#/components/schemas/ErrorBody"}, status


async def _answers_in_session(http: httpx2.AsyncClient, session_id: str) -> int:
    headers = {**MCP_HEADERS, "Mcp-Session-Id": session_id, "MCP-Protocol-Version": "2025-11-25"}
    ping = {"jsonrpc": "2.0", "id": 9, "method": "ping"}
    return (await http.post("/mcp", json=ping, headers=headers)).status_code


async def test_a_user_at_the_session_cap_who_opens_another_ends_their_least_recently_used(
    http: httpx2.AsyncClient,
) -> None:
    """Most clients never DELETE their sessions: past the cap, the oldest idle one ends, not the new one."""
    opened = [await http.post("/mcp", json=_initialize(n), headers=MCP_HEADERS) for n in range(2)]
    assert [response.status_code for response in opened] == [200, 200]
    first, second = (response.headers["mcp-session-id"] for response in opened)
    assert await _answers_in_session(http, first) == 200  # the first is now the more recently used
    third = await http.post("/mcp", json=_initialize(3), headers=MCP_HEADERS)
    assert third.status_code == 200, third.text
    # Ended by cancelling it: the SDK forgets it as soon as the session's task has run.
    for _ in range(500):
        if await _answers_in_session(http, second) == 404:
            break
        await anyio.sleep(0.01)
    else:
        pytest.fail("the least recently used session was not ended")
    assert await _answers_in_session(http, first) == 200
    assert await _answers_in_session(http, third.headers["mcp-session-id"]) == 200


def test_when_every_session_is_busy_a_new_one_is_refused_for_a_few_seconds() -> None:
    quotas = UserQuotas(sessions_per_user=1, streams_per_user=1, idle_timeout=60)
    quotas._settle("alice", None, "POST", {"status": 200, "session": "s1"})
    quotas._sessions["s1"].in_flight = 1
    opening = {"type": "http", "method": "POST", "path": "/mcp", "headers": []}
    reason = quotas.refusal("alice", opening, initializes=True)
    assert reason is not None
    assert "request in progress" in reason
    quotas._sessions["s1"].in_flight = 0
    assert quotas.refusal("alice", opening, initializes=True) is None
    assert quotas.sessions_of("alice") == 0


def test_an_sse_client_initializing_on_its_stream_is_not_counted_as_a_new_mcp_session() -> None:
    quotas = UserQuotas(sessions_per_user=1, streams_per_user=1, idle_timeout=60)
    quotas._settle("alice", None, "POST", {"status": 200, "session": "s1"})
    quotas._sessions["s1"].in_flight = 1
    on_stream = {"type": "http", "method": "POST", "path": "/messages/", "headers": []}
    assert quotas.refusal("alice", on_stream, initializes=True) is None


def test_an_idle_session_frees_its_place_after_the_idle_timeout() -> None:
    now = [0.0]
    quotas = UserQuotas(sessions_per_user=1, streams_per_user=1, idle_timeout=60, clock=lambda: now[0])
    quotas._settle("alice", None, "POST", {"status": 200, "session": "s1"})
    assert quotas.sessions_of("alice") == 1
    now[0] = 59
    assert quotas.sessions_of("alice") == 1
    now[0] = 60
    assert quotas.sessions_of("alice") == 0


async def test_initialize_counts_toward_the_rate_limit(database: Database, owner: str) -> None:
    app = create_app(_settings(owner, TODO_MCP_RATE_LIMIT_PER_MINUTE=3), database=database, verifier=None)
    async with (
        app.router.lifespan_context(app),
        httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url=BASE) as http,
    ):
        answers = [await http.post("/mcp", json=_initialize(n), headers=MCP_HEADERS) for n in range(4)]
    assert [answer.status_code for answer in answers] == [200, 200, 200, 429]
    # The refusal is the request's own JSON-RPC error, which MCP clients show (a bare 429 they do not).
    refused = answers[-1]
    assert refused.headers["content-type"] == "application/json"
    body = refused.json()
    assert body["jsonrpc"] == "2.0"
    assert body["id"] == 3
    assert body["error"]["code"] == -32000
    assert body["error"]["message"].startswith("Too many calls for this user (the limit is 3 per minute)")
    assert body["error"]["data"]["retry_after"] == int(refused.headers["retry-after"]) > 0


@pytest.fixture
def down_jwks() -> Iterator[JWKSServer]:
    with running_jwks([make_key("EdDSA")]) as server:
        server.status = 503
        yield server


async def test_a_jwks_that_cannot_be_fetched_is_a_503_not_an_invalid_token(
    database: Database, down_jwks: JWKSServer
) -> None:
    settings = load_settings(
        TODO_MCP_PUBLIC_URL="http://127.0.0.1/mcp",
        TODO_MCP_AUTH_JWKS_URL=down_jwks.url,
        TODO_MCP_AUTH_ALGORITHMS="EdDSA",
    )
    app = create_app(settings, database=database, verifier=TokenVerifier.from_settings(settings))
    token = make_key("EdDSA").sign(jwt_plugin_claims())
    async with (
        app.router.lifespan_context(app),
        httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url=BASE) as http,
    ):
        response = await http.get("/api/tasks", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 503
    assert response.headers["retry-after"]
    assert response.json()["error"] == "temporarily_unavailable"
    assert "invalid_token" not in response.headers.get("www-authenticate", "")


async def test_a_session_whose_client_only_listens_on_its_get_stream_counts_as_idle() -> None:
    """SDK clients hold a GET stream open for their whole life; that is not a request in progress."""
    quotas = UserQuotas(sessions_per_user=1, streams_per_user=1, idle_timeout=60)
    quotas._settle("alice", None, "POST", {"status": 200, "session": "s1"})
    listening = {"type": "http", "method": "GET", "path": "/mcp", "headers": [(b"mcp-session-id", b"s1")]}
    opening = {"type": "http", "method": "POST", "path": "/mcp", "headers": []}

    async def send(_: Any) -> None:
        return None

    async with quotas.held("alice", listening, send):
        assert quotas._sessions["s1"].in_flight == 0
        assert quotas.refusal("alice", opening, initializes=True) is None, "the listening session is ended"
    calling = {**listening, "method": "POST"}
    quotas._settle("alice", None, "POST", {"status": 200, "session": "s2"})
    async with quotas.held("alice", {**calling, "headers": [(b"mcp-session-id", b"s2")]}, send):
        assert quotas.refusal("alice", opening, initializes=True) is not None, "a call in progress holds it"
