"""Keyset pagination of list_tasks: honest pages that never repeat or skip a task."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from itertools import cycle
from typing import Any

import pytest
from mcp import Client
from mcp.server import MCPServer

from tests.calls import Agent
from todo_mcp.storage.engine import Database

pytestmark = pytest.mark.anyio


@pytest.fixture
async def agent(server: MCPServer[Any]) -> AsyncIterator[Agent]:
    """One protocol generation only: these tests are about queries, which both generations share."""
    async with Client(server, mode="2026-07-28") as client:
        yield Agent(client)


SORTS = ["newest", "oldest", "due", "priority"]
# Repeated values make ties, so the id tie-breaker is crossed at page boundaries.
DUES = ["2026-12-24", None, "2026-12-24T08:00:00-05:00", "2026-12-24", None, "2026-12-20T23:30:00+14:00"]
PRIORITIES = ["high", "low", "high", "urgent", "medium", "high", "low"]


async def _seed(agent: Agent, count: int, prefix: str = "Task", tag: str = "seed") -> list[int]:
    ids = []
    for index, due, priority in zip(range(count), cycle(DUES), cycle(PRIORITIES), strict=False):
        fields: dict[str, Any] = {"priority": priority, "tags": [tag]}
        if due is not None:
            fields["due"] = due
        ids.append((await agent.add(f"{prefix} {index}", **fields))["id"])
    return ids


async def test_default_page_is_20_and_the_last_page_has_no_cursor(agent: Agent) -> None:
    ids = await _seed(agent, 25)
    first = await agent.page()
    assert len(first["tasks"]) == 20
    assert isinstance(first["next_cursor"], str)
    second = await agent.page(cursor=first["next_cursor"])
    assert len(second["tasks"]) == 5
    assert second["next_cursor"] is None
    assert [task["id"] for task in first["tasks"] + second["tasks"]] == list(reversed(ids))

    # A page that is exactly full is still the last one: no cursor to an empty page.
    exact = await agent.page(limit=25)
    assert len(exact["tasks"]) == 25
    assert exact["next_cursor"] is None
    assert (await agent.page(limit=100))["next_cursor"] is None


async def test_limit_over_the_maximum_is_refused_not_capped(client: Client) -> None:
    agent = Agent(client)
    await _seed(agent, 2)
    text = await agent.fail("list_tasks", limit=101)
    assert "limit" in text
    assert "100" in text


async def test_walking_every_sort_order_sees_each_task_once_in_order(agent: Agent) -> None:
    await _seed(agent, 11)
    for sort in SORTS:
        full = await agent.ids(sort=sort, limit=100)
        assert len(full) == 11
        for limit in (1, 4):
            walked: list[int] = []
            cursor = None
            pages = 0
            while True:
                page = await agent.page(sort=sort, limit=limit, **({"cursor": cursor} if cursor else {}))
                pages += 1
                assert len(page["tasks"]) <= limit
                walked.extend(task["id"] for task in page["tasks"])
                cursor = page["next_cursor"]
                if cursor is None:
                    break
                assert len(page["tasks"]) == limit
            assert walked == full, (sort, limit)
            assert pages == -(-11 // limit)


async def test_no_repeat_or_skip_while_tasks_are_added_completed_and_deleted(agent: Agent) -> None:
    for sort in SORTS:
        initial = await _seed(agent, 10, prefix=sort, tag=sort)
        seen: list[int] = []
        gone: set[int] = set()
        cursor = None
        step = 0
        while True:
            filters = {"sort": sort, "tag": sort, "limit": 3}
            page = await agent.page(**filters, **({"cursor": cursor} if cursor else {}))
            seen.extend(task["id"] for task in page["tasks"])
            cursor = page["next_cursor"]
            if cursor is None:
                break
            # Between pages: add tasks that sort anywhere, and finish or delete one not yet seen.
            await _seed(agent, 2, prefix=f"{sort} new {step}", tag=sort)
            unseen = [task_id for task_id in initial if task_id not in seen and task_id not in gone]
            if unseen:
                victim = unseen[-1] if step % 2 == 0 else unseen[0]
                await agent.call("complete_task" if step % 2 == 0 else "delete_task", task_ids=[victim])
                gone.add(victim)
            step += 1
        assert step >= 2, sort
        assert len(seen) == len(set(seen)), (sort, seen)
        assert gone.isdisjoint(seen), sort
        assert [task_id for task_id in initial if task_id not in gone and task_id not in seen] == [], sort
        # What was seen comes in the order of a fresh listing.
        final = await agent.ids(sort=sort, tag=sort, limit=100)
        assert seen == [task_id for task_id in final if task_id in seen], sort


@pytest.mark.parametrize("sort", ["due", "priority", "newest", "oldest"])
async def test_tasks_whose_sort_key_stays_put_appear_once_while_others_move(agent: Agent, sort: str) -> None:
    """The stated guarantee: only a task whose own due or priority changes between pages may repeat
    or be missed; the id orders (newest, oldest) are immune to that too."""
    ids = await _seed(agent, 12, prefix=sort, tag=sort)
    movers = set(ids[::3])
    dues = cycle(["2020-01-01", "2099-01-01", "2026-06-15", ""])
    priorities = cycle(["urgent", "low", "high", "medium"])
    seen: list[int] = []
    cursor = None
    while True:
        page = await agent.page(sort=sort, tag=sort, limit=2, **({"cursor": cursor} if cursor else {}))
        seen.extend(task["id"] for task in page["tasks"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
        for mover in movers:  # every mover jumps somewhere else in the order between pages
            await agent.update(mover, due=next(dues), priority=next(priorities))
    steady = [task_id for task_id in ids if task_id not in movers]
    assert sorted(task_id for task_id in seen if task_id in steady) == sorted(steady), (sort, seen)
    if sort in ("newest", "oldest"):
        assert sorted(seen) == sorted(ids), (sort, seen)


async def test_a_cursor_only_continues_the_query_it_came_from(client: Client) -> None:
    agent = Agent(client)
    await _seed(agent, 5)
    cursor = (await agent.page(limit=1, priority="high"))["next_cursor"]
    assert cursor is not None
    for other in (
        {"priority": "low"},
        {},
        {"sort": "oldest", "priority": "high"},
        {"priority": "high", "tz": "Asia/Tokyo"},
    ):
        text = await agent.fail("list_tasks", cursor=cursor, **other)
        assert "cursor is not valid for this query" in text
        assert "same filters and sort" in text
        assert "leave cursor out" in text
    # A different page size is fine: the cursor marks a position, not a page number.
    rest = await agent.page(limit=100, priority="high", cursor=cursor)
    assert len(rest["tasks"]) == 1
    assert rest["next_cursor"] is None


GARBAGE_CURSORS = [
    "garbage",
    "!!!",
    base64.urlsafe_b64encode(b'{"q":"x","k":[1]}').decode(),
    base64.urlsafe_b64encode(b"[1,2,3]").decode(),
    base64.urlsafe_b64encode(b"\xff\xfe").decode(),
]


async def test_a_garbage_cursor_is_refused(client: Client) -> None:
    agent = Agent(client)
    for cursor in GARBAGE_CURSORS:
        text = await agent.fail("list_tasks", cursor=cursor)
        assert "cursor is not valid for this query" in text, cursor


async def test_a_forged_cursor_with_the_right_fingerprint_but_wrong_keys_is_refused(client: Client) -> None:
    agent = Agent(client)
    await _seed(agent, 3)
    real = (await agent.page(limit=1, sort="due"))["next_cursor"]
    assert real is not None
    body, _, signature = real.partition(".")
    data = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    for keys in ([1], ["not a date", 1], [data["k"][0], "x"], [data["k"][0], True]):
        payload = base64.urlsafe_b64encode(json.dumps({"q": data["q"], "k": keys}).encode()).decode()
        for forged in (payload, f"{payload}.{signature}"):
            text = await agent.fail("list_tasks", sort="due", cursor=forged)
            assert "cursor is not valid for this query" in text


@pytest.mark.parametrize(
    "keys",
    [
        ["2026-12-24T00:00:00", 1],  # a naive datetime
        ["0001-01-01T00:00:00+00:00", 1],  # out of the range of due values
        ["2026-12-24T00:00:00+00:00", 2**70],  # an id beyond 64 bits
        ["2026-12-24T00:00:00+00:00", 0],
        ["2026-12-24T00:00:00+00:00", True],
    ],
)
async def test_a_signed_cursor_with_impossible_keys_is_still_refused(
    client: Client, database: Database, keys: list[Any]
) -> None:
    """Defence in depth: even a cursor signed with the deployment's key has every key checked."""
    agent = Agent(client)
    await _seed(agent, 3)
    real = (await agent.page(limit=1, sort="due"))["next_cursor"]
    body = real.partition(".")[0]
    data = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))

    def signed(sort_keys: list[Any]) -> str:
        text = (
            base64.urlsafe_b64encode(json.dumps({"q": data["q"], "k": sort_keys}).encode())
            .decode()
            .rstrip("=")
        )
        signature = hmac.new(database.cursor_key, text.encode(), hashlib.sha256).digest()[:16]
        return f"{text}.{base64.urlsafe_b64encode(signature).decode().rstrip('=')}"

    # The control: the same construction with the real keys is a cursor this server accepts.
    assert len((await agent.page(limit=1, sort="due", cursor=signed(data["k"])))["tasks"]) == 1
    text = await agent.fail("list_tasks", sort="due", cursor=signed(keys))
    assert "cursor is not valid for this query" in text
