"""`todo-ledger serve` on PostgreSQL behind Better Auth tokens: every transport, route and refusal.

One real server process for the module (the installed console script), a real JWKS endpoint with
Ed25519 and ES256 keys, and real clients: the SDK over Streamable HTTP (both protocol generations)
and SSE, and plain HTTP for REST and the 401/403/421/429 answers.
"""

from __future__ import annotations

import ipaddress
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import anyio
import httpx2
import pytest
from mcp.client.sse import sse_client
from mcp.shared.exceptions import MCPError

from tests.forged_tokens import Keys
from tests.http_helpers import (
    MCP_POST_HEADERS,
    MODERN,
    TRANSPORTS,
    ServerProcess,
    Transport,
    access_token,
    auth_env,
    bearer,
    error_text,
    free_port,
    initialize_message,
    jwt_token,
    mcp_client,
    new_user,
    pg_connections,
    rpc,
    running_server,
    structured,
    via,
)
from tests.jwks_server import OAUTH_ISSUER, make_key, running_jwks
from todo_mcp.tools import records

pytestmark = pytest.mark.anyio

CORS_ORIGIN = "https://app.example.test"
PER_USER_LIMIT = 40
EXTRA_HOST = "todo.internal"
APP_NAME = f"todo-ledger-http-{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True)
class Env:
    server: ServerProcess
    keys: Keys

    @property
    def resource(self) -> str:
        return self.server.mcp_url

    @property
    def metadata_url(self) -> str:
        return f"{self.server.base}/.well-known/oauth-protected-resource/mcp"

    def metadata_url_for(self, path: str) -> str:
        """The metadata a challenge on `path` points at: each transport has its own resource."""
        transport = "sse" if path.startswith(("/sse", "/messages")) else "mcp"
        return f"{self.server.base}/.well-known/oauth-protected-resource/{transport}"

    def token(self, user: str) -> str:
        return jwt_token(self.keys.ed, user)

    def read_only(self, user: str) -> str:
        return access_token(self.keys.es, user, resource=self.resource, scope="openid todo:read")


@pytest.fixture(scope="module")
def env(pg_url: str, keys: Keys, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    port = free_port()
    with running_jwks(keys.published) as jwks:
        settings = auth_env(
            jwks.url,
            f"http://127.0.0.1:{port}/mcp",
            DATABASE_URL=f"{pg_url}?application_name={APP_NAME}",
            TODO_MCP_DB_POOL_SIZE="1",
            TODO_MCP_CORS_ORIGINS=CORS_ORIGIN,
            TODO_MCP_RATE_LIMIT_PER_MINUTE=str(PER_USER_LIMIT),
            TODO_MCP_ALLOWED_HOSTS=EXTRA_HOST,
        )
        with running_server(env=settings, cwd=tmp_path_factory.mktemp("serve"), port=port) as server:
            yield Env(server=server, keys=keys)


_addresses = ipaddress.ip_network("198.18.0.0/15").hosts()


def _address() -> str:
    """A client address of its own (the server trusts X-Forwarded-For from loopback)."""
    return str(next(_addresses))


async def _count(env: Env, user: str) -> int:
    async with httpx2.AsyncClient(base_url=env.server.base, headers=bearer(env.token(user))) as http:
        response = await http.get("/api/tasks", params={"status": "all", "limit": 100})
    assert response.status_code == 200, response.text
    return len(response.json()["tasks"])


# --- health and metadata ---------------------------------------------------------------------------------


async def test_health_and_readiness_need_no_token(env: Env) -> None:
    async with httpx2.AsyncClient(base_url=env.server.base) as http:
        alive = await http.get("/healthz")
        ready = await http.get("/readyz")
    assert (alive.status_code, alive.json()) == (200, {"status": "ok"})
    assert (ready.status_code, ready.json()) == (200, {"status": "ready"})


@pytest.mark.parametrize(
    ("path", "transport"),
    [
        ("/.well-known/oauth-protected-resource/mcp", "mcp"),
        ("/.well-known/oauth-protected-resource", "mcp"),
        ("/.well-known/oauth-protected-resource/sse", "sse"),
    ],
)
async def test_protected_resource_metadata_names_the_auth_server_and_scopes(
    env: Env, path: str, transport: str
) -> None:
    async with httpx2.AsyncClient(base_url=env.server.base) as http:
        response = await http.get(path)
    assert response.status_code == 200
    assert response.json() == {
        "resource": f"{env.server.base}/{transport}",
        "authorization_servers": [OAUTH_ISSUER],
        "scopes_supported": ["todo:read", "todo:write"],
        "bearer_methods_supported": ["header"],
        "resource_name": "todo-ledger",
    }


# --- 401 ---------------------------------------------------------------------------------------------------

_PROTECTED = [
    ("POST", "/mcp"),
    ("GET", "/sse"),
    ("POST", "/messages/?session_id=0123456789abcdef0123456789abcdef"),
    ("GET", "/api/tasks"),
    ("POST", "/api/tasks"),
]


@pytest.mark.parametrize(("method", "path"), _PROTECTED)
@pytest.mark.parametrize("credential", ["missing", "garbage", "expired", "unknown-key", "wrong-audience"])
async def test_a_refused_token_is_a_401_naming_metadata_and_scopes(
    env: Env, method: str, path: str, credential: str
) -> None:
    user = new_user()
    tokens = {
        "missing": None,
        "garbage": "not-a-jwt",
        "expired": jwt_token(env.keys.ed, user, exp=1_700_000_000, iat=1_699_999_000),
        "unknown-key": jwt_token(make_key("EdDSA"), user),
        "wrong-audience": jwt_token(env.keys.ed, user, aud="https://elsewhere.example"),
    }
    token = tokens[credential]
    headers = {**MCP_POST_HEADERS, **via(_address()), **(bearer(token) if token else {})}
    async with httpx2.AsyncClient(base_url=env.server.base) as http:
        response = await http.request(
            method, path, headers=headers, json=rpc("tools/list") if method == "POST" else None
        )
    assert response.status_code == 401
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith("Bearer ")
    assert f'resource_metadata="{env.metadata_url_for(path)}"' in challenge
    assert 'scope="todo:read todo:write"' in challenge
    body = response.json()
    assert body["error_description"]
    if credential == "missing":
        assert "error=" not in challenge
    else:
        assert 'error="invalid_token"' in challenge
        assert body["error"] == "invalid_token"
    if credential == "expired":
        assert "expired" in body["error_description"]


# --- the SDK client over every transport ------------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_sdk_round_trip_with_a_valid_token(env: Env, transport: Transport) -> None:
    user = new_user()
    async with mcp_client(env.server, transport, token=env.token(user)) as client:
        tools = {tool.name for tool in (await client.list_tools()).tools}
        added = structured(
            await client.call_tool("add_task", {"title": f"via {transport}", "priority": "high"})
        )
        page = structured(await client.call_tool("list_tasks", {}))
    assert {"add_task", "list_tasks", "get_task", "update_task", "complete_task", "delete_task"} <= tools
    assert [task["id"] for task in page["tasks"]] == [added["id"]]
    assert page["tasks"][0]["title"] == f"via {transport}"


async def test_an_oauth_access_token_signed_with_es256_works_over_mcp_and_rest(env: Env) -> None:
    user = new_user()
    token = access_token(env.keys.es, user, resource=env.resource, scope="openid todo:read todo:write")
    async with mcp_client(env.server, "modern", token=token) as client:
        added = structured(await client.call_tool("add_task", {"title": "from an OAuth client"}))
    async with httpx2.AsyncClient(base_url=env.server.base, headers=bearer(token)) as http:
        response = await http.get(f"/api/tasks/{added['id']}")
    assert response.status_code == 200
    assert response.json()["title"] == "from an OAuth client"


async def test_two_users_never_see_each_others_tasks_through_any_transport_or_route(env: Env) -> None:
    alice, bob = new_user(), new_user()
    alice_ids: list[int] = []
    for transport in TRANSPORTS:
        async with mcp_client(env.server, transport, token=env.token(alice)) as client:
            alice_ids.append(
                structured(await client.call_tool("add_task", {"title": f"alice {transport}"}))["id"]
            )
    async with httpx2.AsyncClient(base_url=env.server.base, headers=bearer(env.token(alice))) as http:
        created = await http.post("/api/tasks", json={"title": "alice rest"})
    assert created.status_code == 201
    alice_ids.append(created.json()["id"])
    missing_id = max(alice_ids) + 1_000_000

    for transport in TRANSPORTS:
        async with mcp_client(env.server, transport, token=env.token(bob)) as client:
            seen = structured(await client.call_tool("list_tasks", {"status": "all"}))["tasks"]
            assert all(task["title"].startswith("bob") for task in seen)
            foreign = error_text(await client.call_tool("get_task", {"task_id": alice_ids[0]}))
            missing = error_text(await client.call_tool("get_task", {"task_id": missing_id}))
            assert foreign == missing.replace(str(missing_id), str(alice_ids[0]))
            changed = await client.call_tool(
                "update_task", {"task_id": alice_ids[0], "title": "bob was here"}
            )
            assert changed.is_error
            structured(await client.call_tool("add_task", {"title": f"bob {transport}"}))
    async with httpx2.AsyncClient(base_url=env.server.base, headers=bearer(env.token(bob))) as http:
        bob_page = (await http.get("/api/tasks", params={"status": "all"})).json()
        foreign_rest = await http.get(f"/api/tasks/{alice_ids[0]}")
    assert sorted(task["title"] for task in bob_page["tasks"]) == ["bob legacy", "bob modern", "bob sse"]
    assert foreign_rest.status_code == 404

    for transport in TRANSPORTS:
        async with mcp_client(env.server, transport, token=env.token(alice)) as client:
            page = structured(await client.call_tool("list_tasks", {"status": "all"}))
        assert sorted(task["id"] for task in page["tasks"]) == sorted(alice_ids)
        assert all(task["title"].startswith("alice") for task in page["tasks"])


async def test_a_legacy_session_is_refused_to_another_user(env: Env) -> None:
    alice, bob = new_user(), new_user()
    async with httpx2.AsyncClient(base_url=env.server.base, headers=MCP_POST_HEADERS) as http:
        opened = await http.post("/mcp", json=initialize_message(), headers=bearer(env.token(alice)))
        assert opened.status_code == 200
        session = opened.headers["mcp-session-id"]
        common = {"Mcp-Session-Id": session, "MCP-Protocol-Version": "2025-11-25"}
        await http.post(
            "/mcp",
            json={"jsonrpc": "2.0", "method": "notifications/initialized"},
            headers={**common, **bearer(env.token(alice))},
        )
        hijack = await http.post(
            "/mcp",
            json=rpc("tools/call", {"name": "add_task", "arguments": {"title": "planted"}}, id=2),
            headers={**common, **bearer(env.token(bob))},
        )
        own = await http.post(
            "/mcp",
            json=rpc("tools/call", {"name": "list_tasks", "arguments": {"status": "all"}}, id=3),
            headers={**common, **bearer(env.token(alice))},
        )
    assert hijack.status_code == 404
    assert own.status_code == 200
    assert await _count(env, alice) == 0
    assert await _count(env, bob) == 0


async def test_an_sse_session_is_refused_to_another_user(env: Env) -> None:
    alice, bob = new_user(), new_user()
    sessions: list[str] = []
    async with (
        sse_client(env.server.sse_url, headers=bearer(env.token(alice)), on_session_created=sessions.append),
        httpx2.AsyncClient(base_url=env.server.base, headers=MCP_POST_HEADERS) as http,
    ):
        assert len(sessions) == 1
        own = await http.post(
            f"/messages/?session_id={sessions[0]}", json=rpc("ping"), headers=bearer(env.token(alice))
        )
        hijack = await http.post(
            f"/messages/?session_id={sessions[0]}",
            json=rpc("tools/call", {"name": "add_task", "arguments": {"title": "planted"}}),
            headers=bearer(env.token(bob)),
        )
    assert own.status_code == 202
    assert hijack.status_code == 404
    assert await _count(env, alice) == 0
    assert await _count(env, bob) == 0


# --- 403: scopes --------------------------------------------------------------------------------------------


def _assert_insufficient_scope(response: httpx2.Response, env: Env, scope: str) -> None:
    """A 403 whose scope hint is `scope`: what the token has plus what it lacks."""
    assert response.status_code == 403, response.text
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith("Bearer ")
    assert 'error="insufficient_scope"' in challenge
    assert f'scope="{scope}"' in challenge
    assert f'resource_metadata="{env.metadata_url_for(response.request.url.path)}"' in challenge
    assert response.json()["error"] == "insufficient_scope"


async def test_a_read_only_token_reads_but_never_writes(env: Env) -> None:
    user = new_user()
    async with httpx2.AsyncClient(base_url=env.server.base, headers=bearer(env.token(user))) as http:
        seeded = (await http.post("/api/tasks", json={"title": "seeded"})).json()
    read_only = env.read_only(user)

    async with mcp_client(env.server, "modern", token=read_only) as client:
        assert [t["id"] for t in structured(await client.call_tool("list_tasks", {}))["tasks"]] == [
            seeded["id"]
        ]
        with pytest.raises(MCPError):
            await client.call_tool("add_task", {"title": "sneaky"})
    async with mcp_client(env.server, "legacy", token=read_only) as client:
        with pytest.raises(MCPError):
            await client.call_tool("complete_task", {"task_ids": [seeded["id"]]})

    async with httpx2.AsyncClient(base_url=env.server.base, headers=bearer(read_only)) as http:
        modern = await http.post(
            "/mcp",
            json=rpc("tools/call", {"name": "add_task", "arguments": {"title": "sneaky"}}),
            headers={**MCP_POST_HEADERS, "MCP-Protocol-Version": MODERN, "Mcp-Method": "tools/call"},
        )
        batch = await http.post(
            "/mcp",
            json=[
                rpc("tools/list"),
                rpc("tools/call", {"name": "delete_task", "arguments": {"task_ids": [1]}}, id=2),
            ],
            headers=MCP_POST_HEADERS,
        )
        rest_create = await http.post("/api/tasks", json={"title": "sneaky"})
        rest_delete = await http.delete(f"/api/tasks/{seeded['id']}")
        rest_read = await http.get(f"/api/tasks/{seeded['id']}")
    sessions: list[str] = []
    async with (
        sse_client(env.server.sse_url, headers=bearer(read_only), on_session_created=sessions.append),
        httpx2.AsyncClient(
            base_url=env.server.base, headers={**MCP_POST_HEADERS, **bearer(read_only)}
        ) as http,
    ):
        over_sse = await http.post(
            f"/messages/?session_id={sessions[0]}",
            json=rpc(
                "tools/call", {"name": "update_task", "arguments": {"task_id": seeded["id"], "title": "x"}}
            ),
        )
    for refused in (modern, batch, rest_create, rest_delete):
        # The scopes the token has plus the missing one, so that a client re-authorising keeps reading.
        _assert_insufficient_scope(refused, env, "todo:read todo:write")
    # Over SSE the POST is accepted and the refusal travels on the stream (the next test reads it).
    assert over_sse.status_code == 202
    assert rest_read.status_code == 200
    assert rest_read.json() == {key: value for key, value in seeded.items() if key != "change_id"}
    assert await _count(env, user) == 1


async def test_over_sse_a_refused_call_is_answered_on_the_stream(env: Env) -> None:
    """The SSE POST only acknowledges: the client waits on its stream, so the refusal is sent there too."""
    user = new_user()
    async with mcp_client(env.server, "sse", token=env.read_only(user)) as client:
        with anyio.fail_after(10), pytest.raises(MCPError) as raised:
            await client.call_tool("add_task", {"title": "not allowed"})
        assert structured(await client.call_tool("list_tasks", {}))["tasks"] == []
    assert "lacks the todo:write scope" in raised.value.error.message
    assert await _count(env, user) == 0


@pytest.mark.parametrize("subject", ["u" * 256, "bad\x00user"])
async def test_a_subject_the_database_cannot_hold_is_a_401_with_a_reason(env: Env, subject: str) -> None:
    async with httpx2.AsyncClient(base_url=env.server.base, headers=via(_address())) as http:
        response = await http.get("/api/tasks", headers=bearer(env.token(subject)))
    assert response.status_code == 401
    assert "token 'sub' claim cannot name a user here" in response.json()["error_description"]


async def test_a_token_without_todo_scopes_cannot_read(env: Env) -> None:
    user = new_user()
    token = access_token(env.keys.es, user, resource=env.resource, scope="openid profile")
    async with httpx2.AsyncClient(base_url=env.server.base, headers=bearer(token)) as http:
        rest = await http.get("/api/tasks")
        mcp = await http.post(
            "/mcp", json=rpc("tools/call", {"name": "list_tasks", "arguments": {}}), headers=MCP_POST_HEADERS
        )
    _assert_insufficient_scope(rest, env, "todo:read")
    _assert_insufficient_scope(mcp, env, "todo:read")


async def test_each_request_in_a_legacy_session_is_checked_with_its_own_token(env: Env) -> None:
    user = new_user()
    async with httpx2.AsyncClient(base_url=env.server.base, headers=MCP_POST_HEADERS) as http:
        opened = await http.post("/mcp", json=initialize_message(), headers=bearer(env.token(user)))
        common = {"Mcp-Session-Id": opened.headers["mcp-session-id"], "MCP-Protocol-Version": "2025-11-25"}
        write_with_read_token = await http.post(
            "/mcp",
            json=rpc("tools/call", {"name": "add_task", "arguments": {"title": "no"}}, id=2),
            headers={**common, **bearer(env.read_only(user))},
        )
        read_with_read_token = await http.post(
            "/mcp",
            json=rpc("tools/call", {"name": "list_tasks", "arguments": {}}, id=3),
            headers={**common, **bearer(env.read_only(user))},
        )
    _assert_insufficient_scope(write_with_read_token, env, "todo:read todo:write")
    assert read_with_read_token.status_code == 200
    assert await _count(env, user) == 0


# --- 429 ---------------------------------------------------------------------------------------------------


async def test_repeated_bad_tokens_are_slowed_down_without_locking_out_valid_ones(env: Env) -> None:
    attacker, neighbour = _address(), _address()
    good = env.token(new_user())
    async with httpx2.AsyncClient(base_url=env.server.base) as http:
        statuses = [
            (
                await http.get("/api/tasks", headers={**via(attacker), **bearer(f"forged.{n}.token")})
            ).status_code
            for n in range(12)
        ]
        slowed = await http.get("/api/tasks", headers={**via(attacker), **bearer("forged.again.token")})
        valid_there = await http.get("/api/tasks", headers={**via(attacker), **bearer(good)})
        other = await http.get("/api/tasks", headers={**via(neighbour), **bearer(good)})
    assert statuses[:10] == [401] * 10
    assert statuses[10:] == [429, 429]
    assert slowed.status_code == 429
    assert int(slowed.headers["retry-after"]) >= 1
    assert slowed.json()["error"] == "rate_limited"
    # Someone else's bad tokens from the same address never lock a valid token out.
    assert valid_there.status_code == 200
    assert other.status_code == 200


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_tool_and_rest_calls_share_one_budget_per_user(env: Env, transport: Transport) -> None:
    """Past the budget, REST answers 429; a tool call is refused on the channel its client reads,
    with the wait, and the MCP session lives on (an HTTP 429 would break it)."""
    busy, calm = new_user(), new_user()
    tool_calls = PER_USER_LIMIT // 2
    async with mcp_client(env.server, transport, token=env.token(busy)) as client:
        for _ in range(tool_calls):
            structured(await client.call_tool("list_tasks", {}))
        async with httpx2.AsyncClient(base_url=env.server.base, headers=bearer(env.token(busy))) as http:
            statuses: list[int] = []
            # The bucket refills while the test runs (PER_USER_LIMIT per minute), hence the margin.
            while 429 not in statuses and len(statuses) < PER_USER_LIMIT:
                statuses.append((await http.get("/api/tasks")).status_code)
            limited_rest = await http.get("/api/tasks")
        limited_tool = error_text(await client.call_tool("list_tasks", {}))
        still_connected = await client.list_tools()
    async with httpx2.AsyncClient(base_url=env.server.base, headers=bearer(env.token(calm))) as http:
        unaffected = await http.get("/api/tasks")
    assert statuses[-1] == 429
    successes = statuses.count(200)
    assert successes == len(statuses) - 1
    # The tool calls (and a handshake-era initialize) used the same budget.
    spent = tool_calls + (0 if transport == "modern" else 1)
    assert PER_USER_LIMIT - spent <= successes <= PER_USER_LIMIT - spent + 5
    assert limited_rest.status_code == 429
    assert int(limited_rest.headers["retry-after"]) >= 1
    assert f"Too many calls for this user (the limit is {PER_USER_LIMIT} per minute); wait" in limited_tool
    assert len(still_connected.tools) == len(records.TOOLS)
    assert unaffected.status_code == 200


# --- REST ---------------------------------------------------------------------------------------------------


async def test_rest_create_read_update_complete_delete_restore(env: Env) -> None:
    user = new_user()
    async with httpx2.AsyncClient(base_url=env.server.base, headers=bearer(env.token(user))) as http:
        body = {
            "title": "Buy milk",
            "priority": "high",
            "due": "2026-12-24T17:00[Europe/Paris]",
            "tags": ["Home"],
        }
        created = await http.post("/api/tasks", json=body, headers={"Idempotency-Key": "k-1"})
        retried = await http.post("/api/tasks", json=body, headers={"Idempotency-Key": "k-1"})
        reused = await http.post("/api/tasks", json={"title": "other"}, headers={"Idempotency-Key": "k-1"})
        task = created.json()
        change_id = task.pop("change_id")
        url = f"/api/tasks/{task['id']}"
        read = await http.get(url)
        patched = await http.patch(
            url, json={"title": "Buy oat milk"}, headers={"If-Match": read.headers["etag"]}
        )
        stale = await http.patch(url, json={"priority": "low"}, headers={"If-Match": '"1"'})
        stale_body = await http.patch(url, json={"priority": "low", "expected_version": 1})
        completed = await http.post(f"{url}/complete")
        listed = await http.get("/api/tasks", params={"status": "completed", "tag": "home"})
        deleted = await http.delete(url)
        gone = await http.get(url)
        restored = await http.post(f"{url}/restore")
        back = await http.get(url)

    assert created.status_code == 201
    assert created.headers["location"] == url
    assert task["due"] == "2026-12-24T17:00:00+01:00[Europe/Paris]"
    assert task["tags"] == ["home"]
    assert retried.status_code == 201
    assert retried.json()["id"] == task["id"]
    assert retried.json()["change_id"] == change_id, "a retry answers with the original change"
    assert reused.status_code == 409
    assert read.json() == task
    assert read.headers["etag"] == '"1"'
    assert patched.status_code == 200
    assert patched.json()["title"] == "Buy oat milk"
    assert patched.json()["priority"] == "high"
    assert patched.json()["version"] == 2
    for conflict in (stale, stale_body):
        assert conflict.status_code == 409
        assert conflict.json()["current_version"] == 2
        assert "expected_version" in conflict.json()["detail"]
    assert completed.json()["status"] == "completed"
    assert [t["id"] for t in listed.json()["tasks"]] == [task["id"]]
    assert listed.json()["next_cursor"] is None
    assert deleted.status_code == 200
    assert deleted.json()["deleted_at"]
    assert gone.status_code == 404
    assert restored.status_code == 200
    assert back.json()["title"] == "Buy oat milk"
    assert "deleted_at" not in back.json()


async def test_rest_pages_with_cursors(env: Env) -> None:
    user = new_user()
    async with httpx2.AsyncClient(base_url=env.server.base, headers=bearer(env.token(user))) as http:
        ids = [(await http.post("/api/tasks", json={"title": f"t{n}"})).json()["id"] for n in range(5)]
        first = (await http.get("/api/tasks", params={"limit": 3, "sort": "oldest"})).json()
        second = (
            await http.get(
                "/api/tasks", params={"limit": 3, "sort": "oldest", "cursor": first["next_cursor"]}
            )
        ).json()
    assert [t["id"] for t in first["tasks"]] == ids[:3]
    assert [t["id"] for t in second["tasks"]] == ids[3:]
    assert second["next_cursor"] is None


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "needle"),
    [
        ("POST", "/api/tasks", {"json": {"title": ""}}, "title"),
        ("POST", "/api/tasks", {"json": {"title": "x", "due": "24/12/2026"}}, "2026-12-24"),
        ("POST", "/api/tasks", {"json": {"title": "x", "owner": "someone"}}, "owner"),
        ("GET", "/api/tasks", {"params": {"tz": "Mars/Olympus"}}, "IANA"),
        ("GET", "/api/tasks", {"params": {"limit": 500}}, "limit"),
        ("GET", "/api/tasks", {"params": {"cursor": "garbage"}}, "next_cursor"),
        ("GET", "/api/tasks", {"params": {"user_id": "x"}}, "user_id"),
        ("PATCH", "/api/tasks/1", {"json": {}}, "nothing to change"),
        ("PATCH", "/api/tasks/1", {"json": {"title": "x"}, "headers": {"If-Match": "abc"}}, "If-Match"),
    ],
)
async def test_rest_invalid_input_is_a_422_saying_what_to_send(
    env: Env, method: str, path: str, kwargs: dict[str, Any], needle: str
) -> None:
    user = new_user()
    async with httpx2.AsyncClient(base_url=env.server.base, headers=bearer(env.token(user))) as http:
        if method == "PATCH":
            task_id = (await http.post("/api/tasks", json={"title": "target"})).json()["id"]
            path = f"/api/tasks/{task_id}"
        response = await http.request(method, path, **kwargs)
    assert response.status_code == 422, response.text
    assert needle in response.json()["detail"]


async def test_rest_another_users_task_is_a_404_exactly_like_a_missing_one(env: Env) -> None:
    alice, bob = new_user(), new_user()
    async with httpx2.AsyncClient(base_url=env.server.base, headers=bearer(env.token(alice))) as http:
        task = (await http.post("/api/tasks", json={"title": "private"})).json()
        task.pop("change_id")
    missing = task["id"] + 1_000_000
    answers: list[tuple[httpx2.Response, httpx2.Response]] = []
    async with httpx2.AsyncClient(base_url=env.server.base, headers=bearer(env.token(bob))) as http:
        for method, suffix, body in [
            ("GET", "", None),
            ("PATCH", "", {"title": "mine now"}),
            ("DELETE", "", None),
            ("POST", "/complete", None),
            ("POST", "/restore", None),
        ]:
            foreign = await http.request(method, f"/api/tasks/{task['id']}{suffix}", json=body)
            absent = await http.request(method, f"/api/tasks/{missing}{suffix}", json=body)
            answers.append((foreign, absent))
    for foreign, absent in answers:
        assert foreign.status_code == absent.status_code == 404
        assert foreign.json() == {"detail": absent.json()["detail"].replace(str(missing), str(task["id"]))}
        assert set(foreign.headers) == set(absent.headers)
    async with httpx2.AsyncClient(base_url=env.server.base, headers=bearer(env.token(alice))) as http:
        assert (await http.get(f"/api/tasks/{task['id']}")).json() == task


async def test_openapi_documents_the_routes_with_examples_and_bearer_auth(env: Env) -> None:
    async with httpx2.AsyncClient(base_url=env.server.base) as http:
        spec = (await http.get("/openapi.json")).json()
        docs = await http.get("/docs")
    assert docs.status_code == 200
    assert "swagger" in docs.text.lower()
    paths = spec["paths"]
    assert {"get", "post"} <= set(paths["/api/tasks"])
    assert {"get", "patch", "delete"} <= set(paths["/api/tasks/{task_id}"])
    assert "post" in paths["/api/tasks/{task_id}/complete"]
    assert "post" in paths["/api/tasks/{task_id}/restore"]
    create = paths["/api/tasks"]["post"]
    assert "full" in create["requestBody"]["content"]["application/json"]["examples"]
    assert create["responses"]["201"]["content"]["application/json"]["example"]["title"] == "Buy milk"
    assert {"401", "403", "409", "429"} <= set(create["responses"])
    assert create["security"] == [{"HTTPBearer": []}]
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    assert "title" in spec["components"]["schemas"]["Task"]["properties"]


# --- hosts, origins and CORS ------------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "path"), [("POST", "/mcp"), ("GET", "/sse"), ("GET", "/api/tasks")])
async def test_a_host_outside_the_allowlist_is_refused(env: Env, method: str, path: str) -> None:
    headers = {**MCP_POST_HEADERS, "Host": "evil.example", **bearer(env.token(new_user()))}
    async with httpx2.AsyncClient(base_url=env.server.base) as http:
        refused = await http.request(
            method, path, headers=headers, json=rpc("tools/list") if method == "POST" else None
        )
        probe = await http.get("/healthz", headers={"Host": "10.1.2.3:8000"})
    assert refused.status_code == 421
    assert "TODO_MCP_ALLOWED_HOSTS" in refused.text
    assert probe.status_code == 200


@pytest.mark.parametrize("host", [EXTRA_HOST, f"{EXTRA_HOST}:8443", "localhost:1234", "[::1]:80"])
async def test_configured_and_loopback_hosts_are_served(env: Env, host: str) -> None:
    headers = {**MCP_POST_HEADERS, "Host": host, **bearer(env.token(new_user()))}
    async with httpx2.AsyncClient(base_url=env.server.base, headers=headers) as http:
        rest = await http.get("/api/tasks")
        mcp = await http.post("/mcp", json=initialize_message())
    assert rest.status_code == 200
    assert mcp.status_code == 200
    assert mcp.headers["mcp-session-id"]


async def test_cors_lets_the_configured_origin_read_auth_challenges_and_sessions(env: Env) -> None:
    async with httpx2.AsyncClient(base_url=env.server.base) as http:
        preflight = await http.options(
            "/mcp",
            headers={
                "Origin": CORS_ORIGIN,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization, mcp-protocol-version, mcp-session-id",
            },
        )
        foreign_preflight = await http.options(
            "/mcp", headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
        )
        challenge = await http.get("/api/tasks", headers={"Origin": CORS_ORIGIN})
        foreign_post = await http.post(
            "/mcp",
            json=initialize_message(),
            headers={**MCP_POST_HEADERS, "Origin": "https://evil.example", **bearer(env.token(new_user()))},
        )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == CORS_ORIGIN
    allowed = preflight.headers["access-control-allow-headers"].lower()
    for header in ("authorization", "mcp-protocol-version", "mcp-session-id", "last-event-id", "mcp-method"):
        assert header in allowed
    assert foreign_preflight.status_code == 400
    assert challenge.status_code == 401
    assert challenge.headers["access-control-allow-origin"] == CORS_ORIGIN
    exposed = challenge.headers["access-control-expose-headers"].lower()
    assert "www-authenticate" in exposed
    assert "mcp-session-id" in exposed
    assert foreign_post.status_code == 403


# --- one pool for every SSE connection ------------------------------------------------------------------


async def test_sse_connections_share_the_process_pool(env: Env, pg_url: str) -> None:
    sessions = 6
    users = [new_user() for _ in range(sessions)]
    opened = anyio.Event()
    done = anyio.Event()
    ready = 0
    counts: list[int] = []

    async def session(user: str) -> None:
        nonlocal ready
        async with mcp_client(env.server, "sse", token=env.token(user)) as client:
            structured(await client.call_tool("add_task", {"title": "over sse"}))
            structured(await client.call_tool("list_tasks", {}))
            ready += 1
            if ready == sessions:
                opened.set()
            await done.wait()

    async with anyio.create_task_group() as tg:
        for user in users:
            tg.start_soon(session, user)
        with anyio.fail_after(60):
            await opened.wait()
        counts.append(await pg_connections(pg_url, APP_NAME))
        done.set()
    # TODO_MCP_DB_POOL_SIZE=1 allows 1 pooled + 1 overflow connection for the whole process.
    assert 1 <= counts[0] <= 2, f"{counts[0]} connections for {sessions} open SSE sessions"
    for user in users:
        assert await _count(env, user) == 1


async def test_the_ledger_names_the_oauth_client_and_undo_needs_the_write_scope(env: Env) -> None:
    user = new_user()
    writer = access_token(env.keys.es, user, resource=env.resource, scope="openid todo:read todo:write")
    async with mcp_client(env.server, "modern", token=writer) as client:
        task = structured(await client.call_tool("add_task", {"title": "From Claude"}))
    async with httpx2.AsyncClient(base_url=env.server.base, headers=bearer(env.token(user))) as http:
        renamed = await http.patch(f"/api/tasks/{task['id']}", json={"title": "Renamed in the web app"})
        assert renamed.status_code == 200, renamed.text
    read_only = env.read_only(user)
    async with mcp_client(env.server, "legacy", token=read_only) as client:
        changes = structured(await client.call_tool("list_changes", {"task_id": task["id"]}))["changes"]
        with pytest.raises(MCPError):
            await client.call_tool("undo_changes", {})
    assert [(c["via"], c.get("client")) for c in changes] == [
        ("PATCH /api/tasks/{task_id}", None),
        ("add_task", "claude-desktop"),
    ]
    async with httpx2.AsyncClient(base_url=env.server.base, headers=bearer(read_only)) as http:
        refused = await http.post("/api/changes/undo", json={})
        history = await http.get(f"/api/tasks/{task['id']}/history")
    _assert_insufficient_scope(refused, env, "todo:read todo:write")
    assert [c["change_id"] for c in history.json()["changes"]] == [c["change_id"] for c in changes]
