"""Horizontal scale: two `todo-ledger serve --stateless` replicas on two ports share one PostgreSQL database.

A round-robin HTTP transport plays the load balancer: consecutive requests of one client go to
alternating replicas, so nothing may depend on which replica saw the previous request.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from tests.http_helpers import (
    MODERN,
    ServerProcess,
    auth_env,
    bearer,
    error_text,
    jwt_token,
    mcp_client,
    new_user,
    running_server,
    structured,
)
from tests.jwks_server import JWKSServer, SigningKey, make_key, running_jwks

pytestmark = pytest.mark.anyio

PUBLIC_URL = "https://todo.example.test/mcp"


@dataclass(frozen=True)
class Replicas:
    a: ServerProcess
    b: ServerProcess
    key: SigningKey

    def token(self, user: str) -> str:
        return jwt_token(self.key, user)


@pytest.fixture(scope="module")
def key() -> SigningKey:
    return make_key("EdDSA")


@pytest.fixture(scope="module")
def jwks(key: SigningKey) -> Iterator[JWKSServer]:
    with running_jwks([key]) as server:
        yield server


@pytest.fixture(scope="module")
def replicas(
    pg_url: str, jwks: JWKSServer, key: SigningKey, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Replicas]:
    env = auth_env(jwks.url, PUBLIC_URL, DATABASE_URL=pg_url)
    cwd = tmp_path_factory.mktemp("replicas")
    with (
        running_server("--stateless", env=env, cwd=cwd) as a,
        running_server("--stateless", env=env, cwd=cwd) as b,
    ):
        yield Replicas(a=a, b=b, key=key)


class RoundRobin(httpx2.AsyncBaseTransport):
    """Sends each request to the next replica in turn, like a load balancer without stickiness."""

    def __init__(self, ports: list[int]) -> None:
        self._inner = httpx2.AsyncHTTPTransport()
        self._ports = itertools.cycle(ports)
        self.served: list[tuple[int, str]] = []

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        port = next(self._ports)
        request.url = request.url.copy_with(port=port)
        self.served.append((port, request.method))
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


async def test_one_legacy_session_spread_over_both_replicas(replicas: Replicas) -> None:
    user = new_user()
    balancer = RoundRobin([replicas.a.port, replicas.b.port])
    async with (
        httpx2.AsyncClient(transport=balancer, headers=bearer(replicas.token(user)), timeout=30) as http,
        Client(streamable_http_client(replicas.a.mcp_url, http_client=http), mode="legacy") as client,
    ):
        ids = [structured(await client.call_tool("add_task", {"title": f"task {n}"}))["id"] for n in range(4)]
        page = structured(await client.call_tool("list_tasks", {"sort": "oldest"}))
        done = structured(await client.call_tool("complete_task", {"task_ids": ids[:2]}))
        pending = structured(await client.call_tool("list_tasks", {"sort": "oldest"}))
    posts = [port for port, method in balancer.served if method == "POST"]
    assert {replicas.a.port, replicas.b.port} <= set(posts)
    assert [task["id"] for task in page["tasks"]] == ids
    assert [result["ok"] for result in done["results"]] == [True, True]
    assert [task["id"] for task in pending["tasks"]] == ids[2:]


async def test_interleaved_calls_on_two_replicas_stay_consistent(replicas: Replicas) -> None:
    user = new_user()
    token = replicas.token(user)
    async with (
        mcp_client(replicas.a, "legacy", token=token) as on_a,
        mcp_client(replicas.b, "modern", token=token) as on_b,
        httpx2.AsyncClient(headers=bearer(token)) as http,
    ):
        added = structured(await on_a.call_tool("add_task", {"title": "Draft", "client_request_id": "r-1"}))
        retried = structured(await on_b.call_tool("add_task", {"title": "Draft", "client_request_id": "r-1"}))
        listed = structured(await on_b.call_tool("list_tasks", {}))
        updated = structured(
            await on_b.call_tool(
                "update_task", {"task_id": added["id"], "title": "Final", "expected_version": 1}
            )
        )
        stale = error_text(
            await on_a.call_tool(
                "update_task", {"task_id": added["id"], "title": "Lost", "expected_version": 1}
            )
        )
        completed = structured(await on_a.call_tool("complete_task", {"task_ids": [added["id"]]}))
        over_rest = (await http.get(f"{replicas.b.base}/api/tasks/{added['id']}")).json()
        deleted = await http.delete(f"{replicas.a.base}/api/tasks/{added['id']}")
        after_delete = structured(await on_b.call_tool("list_tasks", {"status": "all"}))
        restored = structured(
            await on_b.call_tool("delete_task", {"task_ids": [added["id"]], "restore": True})
        )
        final = structured(await on_a.call_tool("get_task", {"task_id": added["id"]}))

    assert retried["id"] == added["id"]
    assert [task["id"] for task in listed["tasks"]] == [added["id"]]
    assert updated["version"] == 2
    assert "current version 2" in stale
    assert completed["results"][0]["task"]["status"] == "completed"
    assert over_rest["title"] == "Final"
    assert over_rest["status"] == "completed"
    assert over_rest["version"] == 3
    assert deleted.status_code == 200
    assert after_delete["tasks"] == []
    assert restored["results"][0]["ok"] is True
    assert final["title"] == "Final"
    assert final["version"] == 5


async def test_the_modern_protocol_needs_no_session_on_either_replica(replicas: Replicas) -> None:
    user = new_user()
    balancer = RoundRobin([replicas.b.port, replicas.a.port])
    async with (
        httpx2.AsyncClient(transport=balancer, headers=bearer(replicas.token(user)), timeout=30) as http,
        Client(streamable_http_client(replicas.a.mcp_url, http_client=http), mode=MODERN) as client,
    ):
        first = structured(await client.call_tool("add_task", {"title": "one"}))
        second = structured(await client.call_tool("add_task", {"title": "two"}))
        page = structured(await client.call_tool("list_tasks", {"sort": "oldest"}))
    assert {port for port, _ in balancer.served} == {replicas.a.port, replicas.b.port}
    assert [task["id"] for task in page["tasks"]] == [first["id"], second["id"]]
