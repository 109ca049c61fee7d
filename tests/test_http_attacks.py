"""Every forged token of the attack corpus against every protected entry point of a real server.

One `todo-ledger serve` process on PostgreSQL trusts a real JWKS endpoint with the issuers, audiences
and keys the corpus is built for, so each forged token differs from a valid one only by its flaw.
Each token names a victim user as `sub` and tries to read or add tasks: every attempt must be a
401 challenge and must leave no task behind. The victim's genuine token, sent the same way to the
same entry points, must be served, so a server that refused everything would fail here too.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import anyio
import asyncpg
import httpx2
import pytest
from mcp.types import CLIENT_CAPABILITIES_META_KEY, PROTOCOL_VERSION_META_KEY

from tests.forged_tokens import ATTACKS, Keys, make_keys
from tests.http_helpers import (
    MCP_POST_HEADERS,
    MODERN,
    ServerProcess,
    auth_env,
    bearer,
    initialize_message,
    jwt_token,
    new_user,
    rpc,
    running_server,
    via,
)
from tests.jwks_server import RESOURCE, running_jwks

pytestmark = pytest.mark.anyio

VICTIM = new_user()
_public = urlsplit(RESOURCE)


def metadata_url(entry: str) -> str:
    """The metadata a challenge at `entry` names: the SSE transport is a resource of its own."""
    transport = "sse" if " /sse" in entry or " /messages" in entry else "mcp"
    return f"{_public.scheme}://{_public.netloc}/.well-known/oauth-protected-resource/{transport}"


# The entry point, and the status that serves the victim's own token there.
ENTRY_POINTS: dict[str, int] = {
    "POST /mcp list_tasks": 200,
    "POST /mcp add_task": 200,
    "GET /sse": 200,
    "POST /messages/": 202,
    "GET /api/tasks": 200,
    "POST /api/tasks": 201,
}
WRITES = frozenset({"POST /mcp add_task", "POST /messages/", "POST /api/tasks"})


@dataclass(frozen=True)
class Env:
    server: ServerProcess
    keys: Keys
    pg_url: str


@pytest.fixture(scope="module")
def env(pg_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    keys = make_keys()
    with running_jwks(keys.published) as jwks:
        # Published at RESOURCE (as behind a proxy): the audience the corpus is built for.
        settings = auth_env(jwks.url, RESOURCE, DATABASE_URL=pg_url)
        with running_server(env=settings, cwd=tmp_path_factory.mktemp("serve-attacks")) as server:
            yield Env(server=server, keys=keys, pg_url=pg_url)


_addresses = ipaddress.ip_network("100.64.0.0/10").hosts()


def _address() -> str:
    """A client address of its own, so the limit on failed authentications never answers first."""
    return str(next(_addresses))


async def _tasks_titled(env: Env, title: str) -> list[str]:
    """The owners of every task with this title, whoever owns it."""
    conn = await asyncpg.connect(env.pg_url, timeout=10)
    try:
        rows = await conn.fetch("SELECT owner_id FROM tasks WHERE title = $1", title)
    finally:
        await conn.close()
    return [row["owner_id"] for row in rows]


# --- a raw client for each entry point ------------------------------------------------------------


class EventStream:
    """The events of a text/event-stream response, read one at a time."""

    def __init__(self, response: httpx2.Response) -> None:
        self._lines = response.aiter_lines()

    async def next(self) -> tuple[str, str]:
        event, data = "message", []
        with anyio.fail_after(10):
            async for line in self._lines:
                if line.startswith("event:"):
                    event = line.removeprefix("event:").strip()
                elif line.startswith("data:"):
                    data.append(line.removeprefix("data:").strip())
                elif not line and data:
                    return event, "\n".join(data)
        raise AssertionError("the event stream ended")

    async def reply(self, request_id: int) -> dict[str, Any]:
        while True:
            _, data = await self.next()
            message: dict[str, Any] = json.loads(data)
            if message.get("id") == request_id:
                return message


@dataclass(frozen=True)
class Answer:
    status: int
    headers: httpx2.Headers
    body: bytes
    # The JSON-RPC reply to the request: from the response, or from the session's event stream.
    reply: dict[str, Any] | None = None

    def json(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.body)
        return data


def _tool_call(name: str, arguments: dict[str, Any], *, modern: bool, id: int = 1) -> dict[str, Any]:
    params: dict[str, Any] = {"name": name, "arguments": arguments}
    if modern:
        # A 2026-07-28 request carries its own handshake, so it needs no session.
        params["_meta"] = {PROTOCOL_VERSION_META_KEY: MODERN, CLIENT_CAPABILITIES_META_KEY: {}}
    return rpc("tools/call", params, id=id)


def _modern_headers(name: str) -> dict[str, str]:
    return {**MCP_POST_HEADERS, "MCP-Protocol-Version": MODERN, "Mcp-Method": "tools/call", "Mcp-Name": name}


async def _read_answer(response: httpx2.Response) -> Answer:
    if response.headers.get("content-type", "").startswith("text/event-stream"):
        events = EventStream(response)
        if response.request.method == "GET":
            event, data = await events.next()
            return Answer(response.status_code, response.headers, f"{event}: {data}".encode())
        return Answer(response.status_code, response.headers, b"", await events.reply(1))
    body = await response.aread()
    reply = json.loads(body) if response.request.url.path == "/mcp" and response.status_code == 200 else None
    return Answer(response.status_code, response.headers, body, reply)


@asynccontextmanager
async def _victim_session(
    http: httpx2.AsyncClient, victim_token: str
) -> AsyncIterator[tuple[str, EventStream]]:
    """An initialized legacy SSE session of the victim: its message URL and its event stream."""
    async with http.stream("GET", "/sse", headers=bearer(victim_token)) as response:
        assert response.status_code == 200
        events = EventStream(response)
        event, url = await events.next()
        assert event == "endpoint"
        opened = await http.post(url, json=initialize_message(), headers=bearer(victim_token))
        assert opened.status_code == 202
        assert "result" in await events.reply(1)
        initialized = {"jsonrpc": "2.0", "method": "notifications/initialized"}
        assert (await http.post(url, json=initialized, headers=bearer(victim_token))).status_code == 202
        yield url, events


async def send(env: Env, entry: str, token: str, title: str) -> Answer:
    """Try `entry` with `token`: read the tasks, or add one called `title`."""
    # Whitespace around a header value is not part of it (RFC 9110 §5.5): a blank token arrives as "Bearer".
    headers = {**via(_address()), "Authorization": f"Bearer {token}".rstrip()}
    async with httpx2.AsyncClient(base_url=env.server.base, headers=headers, timeout=10) as http:
        if entry == "POST /messages/":
            async with _victim_session(http, jwt_token(env.keys.ed, VICTIM)) as (url, events):
                posted = await http.post(
                    url, json=_tool_call("add_task", {"title": title}, modern=False, id=2), headers=headers
                )
                reply = await events.reply(2) if posted.status_code == 202 else None
                return Answer(posted.status_code, posted.headers, posted.content, reply)
        if entry.startswith("POST /mcp "):
            name = entry.removeprefix("POST /mcp ")
            arguments = {"title": title} if name == "add_task" else {}
            request = http.build_request(
                "POST", "/mcp", json=_tool_call(name, arguments, modern=True), headers=_modern_headers(name)
            )
        else:
            method, path = entry.split(" ")
            body = {"title": title} if method == "POST" else None
            request = http.build_request(method, path, json=body)
        response = await http.send(request, stream=True)
        try:
            return await _read_answer(response)
        finally:
            await response.aclose()


# --- the corpus against every entry point ---------------------------------------------------------------


@pytest.mark.parametrize("entry", list(ENTRY_POINTS))
@pytest.mark.parametrize("case", list(ATTACKS))
async def test_a_forged_token_is_refused_with_a_challenge(env: Env, case: str, entry: str) -> None:
    make_token, expected = ATTACKS[case]
    title = f"planted by a forged token: {case} via {entry}"

    answer = await send(env, entry, make_token(env.keys, VICTIM), title)

    assert answer.status == 401, answer.body
    challenge = answer.headers["www-authenticate"]
    assert challenge.startswith("Bearer ")
    assert 'error="invalid_token"' in challenge
    assert f'resource_metadata="{metadata_url(entry)}"' in challenge
    assert 'scope="todo:read todo:write"' in challenge
    body = answer.json()
    assert "jsonrpc" not in body
    assert body["error"] == "invalid_token"
    # Refused for its own flaw, not for a mismatch with the server's configuration.
    assert expected in body["error_description"]
    if entry in WRITES:
        assert await _tasks_titled(env, title) == []


@pytest.mark.parametrize("entry", list(ENTRY_POINTS))
async def test_the_victims_own_token_is_served(env: Env, entry: str) -> None:
    title = f"added with the victim's token via {entry}"

    answer = await send(env, entry, jwt_token(env.keys.ed, VICTIM), title)

    assert answer.status == ENTRY_POINTS[entry], answer.body
    assert "www-authenticate" not in answer.headers
    if entry == "GET /sse":
        assert answer.body.startswith(b"endpoint: /messages/?session_id=")
    elif entry.startswith("GET /api/"):
        assert isinstance(answer.json()["tasks"], list)
    elif entry == "POST /api/tasks":
        assert answer.json()["title"] == title
    else:
        assert answer.reply is not None
        result = answer.reply["result"]
        assert result["isError"] is False, result
        if entry == "POST /mcp list_tasks":
            assert isinstance(result["structuredContent"]["tasks"], list)
        else:
            assert result["structuredContent"]["title"] == title
    if entry in WRITES:
        assert await _tasks_titled(env, title) == [VICTIM]
