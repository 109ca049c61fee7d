"""The ledger: every write is a change an agent can read back and undo, on both databases."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from mcp import Client

from tests.calls import Agent
from todo_mcp.config import Settings
from todo_mcp.identity import local_identity
from todo_mcp.storage.engine import Database
from todo_mcp.storage.ledger import prune_changes
from todo_mcp.tools.server import build_server

pytestmark = pytest.mark.anyio


async def _changes(agent: Agent, **query: Any) -> list[dict[str, Any]]:
    changes: list[dict[str, Any]] = (await agent.call("list_changes", **query))["changes"]
    return changes


async def test_every_write_is_recorded_with_its_fields_before_and_after(client: Client) -> None:
    agent = Agent(client)
    task = await agent.add("Buy milk", tags=["home"])
    await agent.update(task["id"], title="Buy oat milk", priority="high")
    done = await agent.call("complete_task", task_ids=[task["id"]])
    await agent.call("delete_task", task_ids=[task["id"]])
    created, updated = agent.changes
    assert isinstance(created, int)
    assert isinstance(updated, int)
    assert updated > created
    assert isinstance(done["change_id"], int)
    assert done["change_id"] > updated

    changes = await _changes(agent)
    assert [change["via"] for change in changes] == [
        "delete_task",
        "complete_task",
        "update_task",
        "add_task",
    ]
    deleted, completed, renamed, added = changes
    assert all(change["client"] == "mcp" for change in changes), changes
    assert added["change_id"] == created
    assert renamed["change_id"] == updated
    assert added["tasks"] == [
        {
            "task_id": task["id"],
            "title": "Buy milk",
            "after": {
                "title": "Buy milk",
                "status": "pending",
                "priority": "medium",
                "tags": ["home"],
                "version": 1,
            },
        }
    ]
    (item,) = renamed["tasks"]
    assert item["before"] == {"title": "Buy milk", "priority": "medium", "version": 1}
    assert item["after"] == {"title": "Buy oat milk", "priority": "high", "version": 2}
    (item,) = completed["tasks"]
    assert item["before"]["status"] == "pending"
    assert item["after"]["status"] == "completed"
    assert set(item["after"]) == {"status", "completed_at", "version"}
    assert set(deleted["tasks"][0]["after"]) == {"deleted_at", "version"}


async def test_a_write_that_changes_nothing_records_nothing(client: Client) -> None:
    agent = Agent(client)
    task = await agent.add("Once")
    first = await agent.call("complete_task", task_ids=[task["id"]])
    again = await agent.call("complete_task", task_ids=[task["id"]])
    assert "change_id" in first
    assert "change_id" not in again
    assert len(await _changes(agent, task_id=task["id"])) == 2


async def test_changes_page_newest_first_without_repeats_and_filter_by_task_and_time(client: Client) -> None:
    agent = Agent(client)
    tasks = [await agent.add(f"Task {n}") for n in range(5)]
    await agent.update(tasks[1]["id"], title="Task one")
    seen: list[int] = []
    cursor = None
    while True:
        page = await agent.call("list_changes", limit=2, **({"cursor": cursor} if cursor else {}))
        assert len(page["changes"]) <= 2
        seen += [change["change_id"] for change in page["changes"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == sorted(seen, reverse=True)
    assert len(seen) == len(set(seen)) == 6
    history = await _changes(agent, task_id=tasks[1]["id"])
    assert [change["via"] for change in history] == ["update_task", "add_task"]
    assert all(len(change["tasks"]) == 1 for change in history)
    latest = history[0]["at"]
    recent = await _changes(agent, since=latest)
    assert history[0]["change_id"] in [c["change_id"] for c in recent]
    assert all(c["at"] >= latest for c in recent)
    assert all(c["at"] < latest for c in await _changes(agent, until=latest))
    assert await _changes(agent, until="2000-01-01T00:00:00Z") == []
    cursor = page_cursor(await agent.call("list_changes", limit=1))
    error = await agent.fail("list_changes", task_id=tasks[0]["id"], cursor=cursor)
    assert "next_cursor of the previous list_changes call" in error
    assert "UTC offset" in await agent.fail("list_changes", since="2026-12-01T09:00:00")


def page_cursor(page: dict[str, Any]) -> str:
    cursor = page["next_cursor"]
    assert isinstance(cursor, str)
    return cursor


async def test_undo_returns_tasks_to_how_they_were_and_can_itself_be_undone(client: Client) -> None:
    agent = Agent(client)
    task = await agent.add("Pay rent", due="2026-12-01")
    await agent.update(task["id"], title="Pay the rent", due="2026-12-02", tags=["money"])

    preview = await agent.call("undo_changes", dry_run=True)
    assert preview["dry_run"] is True
    assert "change_id" not in preview
    assert (await agent.get(task["id"]))["title"] == "Pay the rent"
    undo = await agent.call("undo_changes")
    assert undo["undone"] == [agent.changes[1]]
    assert undo["refused"] == []
    assert undo["tasks"] == preview["tasks"]
    (item,) = undo["tasks"]
    assert item["after"] == {"title": "Pay rent", "due": "2026-12-01", "tags": [], "version": 3}
    now = await agent.get(task["id"])
    assert (now["title"], now["due"], now["tags"], now["version"]) == ("Pay rent", "2026-12-01", [], 3)

    changes = await _changes(agent)
    assert changes[0]["change_id"] == undo["change_id"]
    assert changes[0]["undoes"] == [agent.changes[1]]
    assert changes[1]["undone_by"] == undo["change_id"]

    redo = await agent.call("undo_changes", change_ids=[undo["change_id"]])
    assert redo["undone"] == [undo["change_id"]]
    assert (await agent.get(task["id"]))["title"] == "Pay the rent"
    changes = await _changes(agent)
    assert [c["via"] for c in changes] == ["undo_changes", "undo_changes", "update_task", "add_task"]
    assert changes[1]["undoes"] == [agent.changes[1]], "an undone undo still says what it undid"
    assert changes[1]["undone_by"] == redo["change_id"]
    assert "undone_by" not in changes[2]


async def test_undo_of_a_create_deletes_and_of_a_delete_restores(client: Client) -> None:
    agent = Agent(client)
    kept = await agent.add("Keep me")
    dropped = await agent.call("delete_task", task_ids=[kept["id"]])
    await agent.call("undo_changes", change_ids=[dropped["change_id"]])
    assert (await agent.get(kept["id"]))["title"] == "Keep me"
    mistake = await agent.add("Created by mistake")
    undo = await agent.call("undo_changes", change_ids=[agent.changes[-1]])
    assert undo["tasks"][0]["after"]["deleted_at"]
    assert mistake["id"] not in await agent.ids(status="all")
    gone = await _changes(agent, task_id=mistake["id"])
    assert [change["via"] for change in gone] == ["undo_changes", "add_task"], (
        "a deleted task keeps its history"
    )


async def test_last_n_walks_back_over_changes_not_yet_undone(client: Client) -> None:
    agent = Agent(client)
    task = await agent.add("Draft")
    for title in ("One", "Two", "Three"):
        await agent.update(task["id"], title=title)
    await agent.call("undo_changes")
    assert (await agent.get(task["id"]))["title"] == "Two"
    both = await agent.call("undo_changes", last=2)
    assert both["undone"] == agent.changes[1:3]
    assert (await agent.get(task["id"]))["title"] == "Draft"


async def test_a_task_changed_since_is_refused_and_the_rest_are_undone(client: Client) -> None:
    agent = Agent(client)
    first, second = await agent.add("First"), await agent.add("Second")
    bulk = await agent.call("complete_task", task_ids=[first["id"], second["id"]])
    await agent.update(first["id"], title="First, renamed", status="pending")
    undo = await agent.call("undo_changes", change_ids=[bulk["change_id"]])
    (refusal,) = undo["refused"]
    assert refusal["task_id"] == first["id"]
    assert refusal["change_id"] == bulk["change_id"]
    assert refusal["current_version"] == 3
    assert set(refusal["changed"]) == {"title", "status", "completed_at"}
    assert [item["task_id"] for item in undo["tasks"]] == [second["id"]]
    assert (await agent.get(second["id"]))["status"] == "pending"
    assert (await agent.get(first["id"]))["title"] == "First, renamed"


async def test_undo_names_what_it_cannot_find_or_already_undid(client: Client) -> None:
    agent = Agent(client)
    await agent.add("Something")
    undo = await agent.call("undo_changes")
    missing = await agent.fail("undo_changes", change_ids=[10**12])
    assert missing == (
        "Change 1000000000000 was not found. Use list_changes to find the change_id of one of your changes."
    )
    again = await agent.fail("undo_changes", change_ids=[agent.changes[0]])
    assert f"already undone by change {undo['change_id']}" in again
    assert "not both" in await agent.fail("undo_changes", change_ids=[1], last=2)
    assert (await agent.fail("undo_changes", change_ids=[])).endswith("change_ids: needs at least 1 item")
    nothing = await agent.fail("undo_changes", last=5)
    assert nothing == "Nothing was undone: you have no change left to undo (list_changes shows your changes)."
    assert (await agent.fail("undo_changes", dry_run=True)).startswith(
        "Nothing was undone: you have no change"
    )


@pytest.fixture
async def intruder(database: Database, settings: Settings, client: Client) -> AsyncIterator[Agent]:
    server = build_server(database, settings=settings, identity=lambda: local_identity("ledger-intruder"))
    async with Client(server, mode=client.mode) as other:
        yield Agent(other)


async def test_another_users_change_answers_exactly_like_a_missing_one(
    client: Client, intruder: Agent
) -> None:
    agent = Agent(client)
    task = await agent.add("Mine")
    mine = agent.changes[0]
    assert isinstance(mine, int)
    theirs = await intruder.fail("undo_changes", change_ids=[mine])
    assert theirs == (await intruder.fail("undo_changes", change_ids=[10**12])).replace(
        str(10**12), str(mine)
    )
    history = await intruder.fail("list_changes", task_id=task["id"])
    assert history == (await intruder.fail("list_changes", task_id=10**12)).replace(
        str(10**12), str(task["id"])
    )
    assert history.startswith(f"Task {task['id']} was not found.")
    assert all(change["change_id"] != mine for change in await _changes(intruder))
    assert (await agent.get(task["id"]))["title"] == "Mine"


async def test_pruning_forgets_old_changes_and_never_touches_tasks(
    client: Client, database: Database, settings: Settings
) -> None:
    agent = Agent(client)
    task = await agent.add("Kept forever")
    await agent.update(task["id"], title="Still kept")
    assert len(await _changes(agent)) == 2
    assert await database.run(prune_changes, before=datetime.now(UTC) - timedelta(days=1)) == 0
    assert len(await _changes(agent)) == 2
    removed = await database.run(prune_changes, before=datetime.now(UTC) + timedelta(seconds=2))
    assert removed >= 2
    assert await _changes(agent) == []
    assert (await agent.get(task["id"]))["title"] == "Still kept"
    assert (await agent.fail("undo_changes")).startswith("Nothing was undone: you have no change left")


async def test_an_undo_that_would_undo_nothing_is_an_error_naming_each_task(client: Client) -> None:
    agent = Agent(client)
    task = await agent.add("Plan the trip")
    created = agent.changes[-1]
    await agent.update(task["id"], title="Plan the Lisbon trip")
    error = await agent.fail("undo_changes", change_ids=[created])
    assert error == (
        f"Nothing was undone: task {task['id']} was changed after change {created} "
        "(title; now at version 2). Those changes stay; to change a task anyway, read it with get_task "
        "and send update_task."
    )
    preview = await agent.call("undo_changes", change_ids=[created], dry_run=True)
    assert preview["tasks"] == []
    assert preview["refused"][0]["changed"] == ["title"]
    assert (await agent.get(task["id"]))["title"] == "Plan the Lisbon trip"


async def test_an_undo_refused_by_a_delete_says_how_to_restore_the_task(client: Client) -> None:
    agent = Agent(client)
    task = await agent.add("Renew passport")
    await agent.update(task["id"], title="Renew the passport")
    renamed = agent.changes[-1]
    await agent.call("delete_task", task_ids=[task["id"]])
    error = await agent.fail("undo_changes", change_ids=[renamed])
    assert error == (
        f"Nothing was undone: task {task['id']} was deleted after change {renamed} (now at version 3). "
        f"Those changes stay; delete_task with task_ids [{task['id']}] and restore true brings it back."
    )
