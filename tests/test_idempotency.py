"""add_task with a client_request_id: retries, even concurrent ones, never make a second task."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from mcp import Client

from tests.calls import Agent, only_text

pytestmark = pytest.mark.anyio

CONTENT: dict[str, Any] = {
    "title": "Pay rent",
    "description": "Before the 5th",
    "priority": "high",
    "due": "2026-12-05T09:00:00+01:00[Europe/Paris]",
    "tags": ["money", "home"],
}


async def test_a_retry_returns_the_original_task(client: Client) -> None:
    agent = Agent(client)
    first = await agent.call("add_task", client_request_id="req-1", **CONTENT)
    again = await agent.call("add_task", client_request_id="req-1", **CONTENT)
    assert again == first
    # The same content written differently (spacing, tag case, default priority spelled out) is the same.
    same = dict(CONTENT, title="  Pay rent ", tags=["Money", "HOME"])
    assert await agent.call("add_task", client_request_id="req-1", **same) == first
    assert await agent.ids(status="all") == [first["id"]]

    # A retry after the task changed still finds it instead of creating another one.
    await agent.update(first["id"], title="Pay the rent")
    later = await agent.call("add_task", client_request_id="req-1", **CONTENT)
    assert later["id"] == first["id"]
    assert later["title"] == "Pay the rent"
    assert await agent.ids(status="all") == [first["id"]]


async def test_a_different_key_or_no_key_creates_a_new_task(client: Client) -> None:
    agent = Agent(client)
    first = await agent.call("add_task", client_request_id="req-a", **CONTENT)
    second = await agent.call("add_task", client_request_id="req-b", **CONTENT)
    third = await agent.call("add_task", **CONTENT)
    fourth = await agent.call("add_task", **CONTENT)
    assert len({first["id"], second["id"], third["id"], fourth["id"]}) == 4
    assert await agent.ids() == [fourth["id"], third["id"], second["id"], first["id"]]


async def test_the_same_key_with_other_content_is_a_clear_conflict(client: Client) -> None:
    agent = Agent(client)
    first = await agent.call("add_task", client_request_id="req-2", **CONTENT)
    changes: list[dict[str, Any]] = [
        {"title": "Pay rent twice"},
        {"priority": "low"},
        {"due": "2026-12-06"},
        {"tags": []},
    ]
    for change in changes:
        text = await agent.fail("add_task", client_request_id="req-2", **dict(CONTENT, **change))
        assert "client_request_id 'req-2' was already used" in text, change
        assert f"task {first['id']}" in text
        assert "different content" in text
        assert "Send a new client_request_id" in text
    assert await agent.ids() == [first["id"]]
    assert (await agent.get(first["id"]))["version"] == 1


async def test_a_retry_of_a_deleted_task_says_so_and_makes_no_copy(client: Client) -> None:
    agent = Agent(client)
    first = await agent.call("add_task", client_request_id="req-3", **CONTENT)
    await agent.call("delete_task", task_ids=[first["id"]])
    text = await agent.fail("add_task", client_request_id="req-3", **CONTENT)
    assert f"already created task {first['id']}, which has since been deleted" in text
    assert f"call delete_task with task_ids [{first['id']}] and restore true" in text
    assert await agent.ids(status="all") == []
    await agent.call("delete_task", task_ids=[first["id"]], restore=True)
    again = await agent.call("add_task", client_request_id="req-3", **CONTENT)
    assert (again["id"], "deleted_at" in again) == (first["id"], False)


async def test_concurrent_retries_create_exactly_one_task(client: Client) -> None:
    agent = Agent(client)
    results: list[dict[str, Any]] = []

    async def attempt() -> None:
        results.append(await agent.call("add_task", client_request_id="burst", **CONTENT))

    async with anyio.create_task_group() as group:
        for _ in range(10):
            group.start_soon(attempt)
    assert len(results) == 10
    assert len({result["id"] for result in results}) == 1
    assert all(result == results[0] for result in results)
    assert await agent.ids(status="all") == [results[0]["id"]]


async def test_concurrent_retries_with_two_contents_keep_one_and_refuse_the_other(client: Client) -> None:
    agent = Agent(client)
    created: list[dict[str, Any]] = []
    refused: list[str] = []

    async def attempt(title: str) -> None:
        result = await client.call_tool("add_task", dict(CONTENT, title=title, client_request_id="race"))
        if result.is_error:
            refused.append(only_text(result))
        else:
            assert result.structured_content is not None
            created.append(result.structured_content)

    async with anyio.create_task_group() as group:
        for index in range(10):
            group.start_soon(attempt, "Left" if index % 2 else "Right")
    (task_id,) = {task["id"] for task in created}
    winner = created[0]["title"]
    assert {task["title"] for task in created} == {winner}
    assert len(created) == 5
    assert len(refused) == 5
    assert all("different content" in text for text in refused)
    assert await agent.ids(status="all") == [task_id]
