"""Two users on one database: each sees only their own tasks, and the other's ids look like nothing."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
import sqlalchemy as sa
from mcp import Client

from tests.calls import Agent
from todo_mcp.config import Settings
from todo_mcp.identity import local_identity
from todo_mcp.storage.engine import Database
from todo_mcp.storage.session import Session
from todo_mcp.storage.statements import Statement
from todo_mcp.storage.table import tasks_table
from todo_mcp.tools.server import build_server

pytestmark = pytest.mark.anyio


@pytest.fixture
async def intruder(client: Client, database: Database, settings: Settings) -> AsyncIterator[Agent]:
    """User B: a second server on the same database, acting for another identity."""
    principal = local_identity(f"intruder-{uuid.uuid4().hex}")
    server = build_server(database, settings=settings, identity=lambda: principal)
    async with Client(server, mode=client.mode) as other:
        yield Agent(other)


# A second id in the bulk forms: with a single id, a failure is the call's error, not a row.
ABSENT = 777_777_777_777


async def _answers(agent: Agent, task_id: int) -> dict[str, str]:
    """The error text of every way to reach one task by id."""
    return {
        "get_task": await agent.fail("get_task", task_id=task_id),
        "update_task": await agent.fail("update_task", task_id=task_id, title="mine now"),
        "update_task+version": await agent.fail(
            "update_task", task_id=task_id, title="x", expected_version=1
        ),
        "complete_task": await agent.fail("complete_task", task_ids=[task_id]),
        "delete_task": await agent.fail("delete_task", task_ids=[task_id]),
        "undo": await agent.fail("delete_task", task_ids=[task_id], restore=True),
        "bulk complete": str((await agent.call("complete_task", task_ids=[task_id, ABSENT]))["results"]),
        "bulk delete": str((await agent.call("delete_task", task_ids=[task_id, ABSENT]))["results"]),
        "bulk undo": str(
            (await agent.call("delete_task", task_ids=[task_id, ABSENT], restore=True))["results"]
        ),
        "resource": await agent.read_error(f"task://{task_id}"),
    }


async def test_another_users_task_answers_exactly_like_a_missing_one(
    client: Client, intruder: Agent, database: Database, owner: str
) -> None:
    victim = Agent(client)
    live = await victim.add("Secret plan", description="only mine", tags=["private"], due="2026-12-24")
    deleted = await victim.add("Deleted secret")
    await victim.call("delete_task", task_ids=[deleted["id"]])

    seen_live = await _answers(intruder, live["id"])
    seen_deleted = await _answers(intruder, deleted["id"])
    assert "was not found" in seen_live["get_task"]

    # Remove both rows for good: the same ids now name tasks that do not exist at all.
    gone = Statement(
        sa.delete(tasks_table).where(tasks_table.c.id == sa.bindparam("id", type_=sa.BigInteger()))
    )

    async def remove(session: Session) -> None:
        for task_id in (live["id"], deleted["id"]):
            await session.rows(gone, {"id": task_id})

    await database.run(remove)
    assert await _answers(intruder, live["id"]) == seen_live
    assert await _answers(intruder, deleted["id"]) == seen_deleted
    # And an id that never existed differs only by the number.
    never = 9_000_000_000 + live["id"]
    assert {k: v.replace(str(never), "N") for k, v in (await _answers(intruder, never)).items()} == {
        k: v.replace(str(live["id"]), "N") for k, v in seen_live.items()
    }


async def test_another_user_cannot_see_or_change_my_tasks(client: Client, intruder: Agent) -> None:
    victim = Agent(client)
    mine = await victim.add("Secret plan", description="launch codes", tags=["private"], due="2020-01-01")
    done = await victim.add("Finished secret", tags=["private"])
    await victim.call("complete_task", task_ids=[done["id"]])

    theirs = await intruder.add("Their own", tags=["private"])
    for filters in (
        {"status": "all"},
        {"status": "completed"},
        {"tag": "private", "status": "all"},
        {"search": "secret", "status": "all"},
        {"search": "launch"},
        {"due": "overdue"},
        {"due_before": "2021-01-01"},
        {"sort": "due", "status": "all"},
        {"sort": "priority", "status": "all"},
        {"sort": "oldest", "status": "all"},
    ):
        seen = await intruder.ids(**filters)
        assert mine["id"] not in seen, filters
        assert done["id"] not in seen, filters
    assert await intruder.ids(status="all") == [theirs["id"]]
    prompt = await intruder.client.get_prompt("plan_day", {})
    assert "Secret plan" not in str(prompt.messages)
    assert "Secret plan" in str((await client.get_prompt("plan_day", {})).messages)
    assert await victim.ids(status="all") == [done["id"], mine["id"]]

    # The attempts above and these writes left the victim's tasks untouched.
    await _answers(intruder, mine["id"])
    await intruder.call("complete_task", task_ids=[mine["id"], theirs["id"]])
    assert await victim.get(mine["id"]) == mine
    assert (await intruder.get(theirs["id"]))["status"] == "completed"


async def test_idempotency_keys_belong_to_their_user(client: Client, intruder: Agent) -> None:
    victim = Agent(client)
    mine = await victim.add("Same key", client_request_id="shared-key")
    theirs = await intruder.add("Same key", client_request_id="shared-key")
    assert theirs["id"] != mine["id"]
    other = await intruder.add("Other content", client_request_id="only-mine")
    assert other["title"] == "Other content"
    assert await victim.ids() == [mine["id"]]
    assert await intruder.ids() == [other["id"], theirs["id"]]
