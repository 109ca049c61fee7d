"""What issue 2 promises about each tool, through the real MCP client on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import anyio
import asyncpg
import pytest
from mcp import Client
from mcp.server import MCPServer
from mcp.shared.exceptions import MCPError
from mcp.types import INVALID_PARAMS, TextResourceContents

from tests.calls import Agent, only_text
from todo_mcp.config import load_settings
from todo_mcp.identity import WRITE, local_identity
from todo_mcp.storage.engine import Database
from todo_mcp.storage.url import parse_database_url
from todo_mcp.tools import records
from todo_mcp.tools.server import build_server

pytestmark = pytest.mark.anyio

# Derived from the one list of tool records, as registration, the HTTP gate and read-only mode are.
TOOLS = {record.name for record in records.TOOLS}
READ_TOOLS = {record.name for record in records.TOOLS if record.hints.read_only}


def _stamp(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


# --- round trips ---------------------------------------------------------------------------------------


async def test_add_returns_the_task_and_get_and_list_show_the_same(client: Client) -> None:
    agent = Agent(client)
    before = datetime.now(UTC).replace(microsecond=0)
    task = await agent.add(
        "  Write the report ",
        description="Quarterly numbers",
        priority="high",
        due="2026-12-24T17:00:00+01:00[Europe/Paris]",
        tags=["Work", "q4", "work"],
    )
    assert isinstance(task["id"], int)
    assert task["title"] == "Write the report"
    assert task["description"] == "Quarterly numbers"
    assert task["priority"] == "high"
    assert task["due"] == "2026-12-24T17:00:00+01:00[Europe/Paris]"
    assert task["tags"] == ["work", "q4"]
    assert task["status"] == "pending"
    assert task["version"] == 1
    assert task["created_at"] == task["updated_at"]
    assert before <= _stamp(task["created_at"]) <= datetime.now(UTC)
    assert "completed_at" not in task
    assert "deleted_at" not in task

    assert await agent.get(task["id"]) == task
    assert (await agent.page())["tasks"] == [task]


async def test_defaults_of_a_minimal_task(client: Client) -> None:
    agent = Agent(client)
    task = await agent.add("Buy milk")
    assert task["priority"] == "medium"
    assert task["tags"] == []
    assert "due" not in task
    assert "description" not in task


async def test_every_tool_declares_an_output_schema_and_errors_carry_text_only(client: Client) -> None:
    agent = Agent(client)
    tools = {tool.name: tool for tool in (await client.list_tools()).tools}
    assert set(tools) == TOOLS
    for tool in tools.values():
        assert tool.output_schema is not None, tool.name
        assert tool.output_schema["type"] == "object"
    text = await agent.fail("get_task", task_id=987654321)
    assert "987654321 was not found" in text
    assert "list_tasks" in text


DUE_ROUND_TRIPS = [
    ("2026-12-24", "2026-12-24"),
    ("2026-12-24T17:00:00Z", "2026-12-24T17:00:00Z"),
    ("2026-12-24T17:00Z", "2026-12-24T17:00:00Z"),
    ("2026-12-24T17:00:00+01:00", "2026-12-24T17:00:00+01:00"),
    ("2026-12-24T17:00:00-03:30", "2026-12-24T17:00:00-03:30"),
    ("2026-12-24T23:30:00-08:00", "2026-12-24T23:30:00-08:00"),
    ("2026-12-24T17:00:00.125+05:45", "2026-12-24T17:00:00.125000+05:45"),
    ("2026-12-24T17:00[Europe/Paris]", "2026-12-24T17:00:00+01:00[Europe/Paris]"),
    ("2026-12-24T23:30:00+14:00[Pacific/Kiritimati]", "2026-12-24T23:30:00+14:00[Pacific/Kiritimati]"),
    ("2026-07-04T23:30[America/Los_Angeles]", "2026-07-04T23:30:00-07:00[America/Los_Angeles]"),
    # 01:30 happens twice in Los Angeles that night; the offset says which one is meant.
    ("2026-11-01T01:30-07:00[America/Los_Angeles]", "2026-11-01T01:30:00-07:00[America/Los_Angeles]"),
    ("2026-11-01T01:30-08:00[America/Los_Angeles]", "2026-11-01T01:30:00-08:00[America/Los_Angeles]"),
]


async def test_due_round_trips_exactly(client: Client) -> None:
    agent = Agent(client)
    other = await agent.add("Updated to each due value")
    created: dict[int, str] = {}
    for given, returned in DUE_ROUND_TRIPS:
        task = await agent.add(f"Due {given}", due=given)
        assert task["due"] == returned, given
        assert (await agent.get(task["id"]))["due"] == returned, given
        assert (await agent.update(other["id"], due=given))["due"] == returned, given
        assert (await agent.get(other["id"]))["due"] == returned, given
        created[task["id"]] = returned
    listed = await agent.list_all(due_after="2026-01-01", limit=100)
    assert {task["id"]: task["due"] for task in listed if task["id"] != other["id"]} == created


async def test_the_two_instants_of_a_repeated_hour_stay_distinct(client: Client) -> None:
    agent = Agent(client)
    first = await agent.add("First 01:30", due="2026-11-01T01:30-07:00[America/Los_Angeles]")
    second = await agent.add("Second 01:30", due="2026-11-01T01:30-08:00[America/Los_Angeles]")
    # Only the first one is before 08:45Z (01:30 PDT = 08:30Z, 01:30 PST = 09:30Z).
    before = await agent.ids(due_before="2026-11-01T08:45:00Z")
    assert before == [first["id"]]
    assert await agent.ids(due_after="2026-11-01T08:45:00Z") == [second["id"]]


BAD_DUES = [
    (
        "2026-12-24T17:00",
        ["no offset or zone", "2026-12-24T17:00+01:00", "2026-12-24T17:00[Europe/Paris]", "2026-12-24"],
    ),
    ("2026-12-24 09:30:00", ["no offset or zone", "2026-12-24 09:30:00+01:00"]),
    ("2026-02-30", ["not a real calendar date", "2026-12-24T17:00:00+01:00"]),
    ("2026-12-24T17:00+02:00[Europe/Paris]", ["does not match Europe/Paris", "drop the offset"]),
    ("2026-12-24T17:00[Europe/Pariss]", ["unknown time zone", "IANA name"]),
    ("2026-03-08T02:30[America/Los_Angeles]", ["does not exist in America/Los_Angeles", "outside the gap"]),
    ("next friday", ["not understood", "2026-12-24"]),
    ("9999-12-31", ["out of range", "from 1000-01-01 to 9998-12-31"]),
    ("0001-01-01T00:00+14:00", ["out of range", "from 1000-01-01 to 9998-12-31"]),
]


async def test_bad_due_values_are_refused_with_what_to_send(client: Client) -> None:
    agent = Agent(client)
    task = await agent.add("Target", due="2026-12-24")
    for due, expected in BAD_DUES:
        for tool, arguments in (("add_task", {"title": "x"}), ("update_task", {"task_id": task["id"]})):
            text = await agent.fail(tool, due=due, **arguments)
            for fragment in expected:
                assert fragment in text, (tool, text)
    assert await agent.list_all(status="all") == [task]


# --- partial updates and versions ------------------------------------------------------------------


async def test_update_changes_only_the_fields_it_names(client: Client) -> None:
    agent = Agent(client)
    original = await agent.add(
        "Plan trip",
        description="Flights and hotel",
        priority="low",
        due="2026-12-24T09:00:00+09:00[Asia/Tokyo]",
        tags=["travel", "family"],
    )
    task_id = original["id"]
    changes: list[tuple[str, Any, Any]] = [
        ("title", "Plan the trip", "Plan the trip"),
        ("priority", "urgent", "urgent"),
        ("description", "Only flights", "Only flights"),
        ("tags", ["Travel", "solo"], ["travel", "solo"]),
        ("due", "2026-12-31", "2026-12-31"),
        ("due", "2027-01-02T08:00-05:00", "2027-01-02T08:00:00-05:00"),
    ]
    expected = dict(original)
    for field, value, stored in changes:
        updated = await agent.update(task_id, **{field: value})
        expected[field] = stored
        expected["version"] += 1
        expected["updated_at"] = updated["updated_at"]
        assert updated == expected, field
        assert await agent.get(task_id) == expected


async def test_update_keeps_due_and_its_zone_when_other_fields_change(client: Client) -> None:
    agent = Agent(client)
    task = await agent.add("Call", due="2026-12-24T23:30:00+14:00[Pacific/Kiritimati]", tags=["phone"])
    updated = await agent.update(task["id"], title="Call back", priority="high")
    assert updated["due"] == "2026-12-24T23:30:00+14:00[Pacific/Kiritimati]"
    assert updated["tags"] == ["phone"]
    assert updated["title"] == "Call back"


async def test_empty_values_clear_description_due_and_tags(client: Client) -> None:
    agent = Agent(client)
    task = await agent.add("Clear me", description="notes", due="2026-12-24", tags=["a", "b"])
    cleared = await agent.update(task["id"], description="", due="", tags=[])
    assert "description" not in cleared
    assert "due" not in cleared
    assert cleared["tags"] == []
    assert cleared["title"] == "Clear me"
    assert await agent.get(task["id"]) == cleared
    assert await agent.ids(due="none") == [task["id"]]


async def test_update_with_nothing_to_change_returns_the_task_as_it_is(client: Client) -> None:
    agent = Agent(client)
    task = await agent.add("Same", description="kept")
    assert await agent.update(task["id"]) == task
    nulls = dict.fromkeys(("title", "description", "priority", "due", "tags", "status", "expected_version"))
    assert await agent.update(task["id"], **nulls) == task
    assert await agent.update(task["id"], expected_version=1) == task
    text = await agent.fail("update_task", task_id=task["id"], expected_version=2)
    assert "expected_version 2, current version 1" in text
    assert "was not found" in await agent.fail("update_task", task_id=987654321)
    assert (await agent.get(task["id"]))["version"] == 1


async def test_reopening_a_completed_task_clears_completed_at(client: Client) -> None:
    agent = Agent(client)
    task = await agent.add("Reopen")
    (done,) = (await agent.call("complete_task", task_ids=[task["id"]]))["results"]
    assert done["ok"] is True
    assert done["task"]["status"] == "completed"
    assert done["task"]["version"] == 2
    assert _stamp(done["task"]["completed_at"]) >= _stamp(task["created_at"])

    reopened = await agent.update(task["id"], status="pending")
    assert reopened["status"] == "pending"
    assert "completed_at" not in reopened
    assert reopened["version"] == 3
    assert await agent.ids() == [task["id"]]

    completed = await agent.update(task["id"], status="completed")
    assert completed["status"] == "completed"
    assert "completed_at" in completed
    assert await agent.ids() == []
    assert await agent.ids(status="completed") == [task["id"]]


async def test_version_increments_on_every_write(client: Client) -> None:
    agent = Agent(client)
    task = await agent.add("Versions")
    task_id = task["id"]
    versions = [task["version"]]
    versions.append((await agent.update(task_id, title="Versions 2"))["version"])
    versions.append((await agent.update(task_id, title="Versions 2"))["version"])
    versions.append((await agent.call("complete_task", task_ids=[task_id]))["results"][0]["task"]["version"])
    versions.append((await agent.update(task_id, status="pending"))["version"])
    versions.append((await agent.call("delete_task", task_ids=[task_id]))["results"][0]["task"]["version"])
    versions.append(
        (await agent.call("delete_task", task_ids=[task_id], restore=True))["results"][0]["task"]["version"]
    )
    assert versions == [1, 2, 3, 4, 5, 6, 7]
    assert (await agent.get(task_id))["version"] == 7


async def test_expected_version_refuses_to_overwrite_a_newer_change(client: Client) -> None:
    agent = Agent(client)
    task = await agent.add("Shared", description="v1")
    task_id = task["id"]
    await agent.update(task_id, description="someone else's change")
    text = await agent.fail("update_task", task_id=task_id, description="mine", expected_version=1)
    assert "expected_version 1" in text
    assert "current version 2" in text
    assert "get_task" in text
    unchanged = await agent.get(task_id)
    assert unchanged["description"] == "someone else's change"
    assert unchanged["version"] == 2
    updated = await agent.update(task_id, description="mine", expected_version=2)
    assert (updated["description"], updated["version"]) == ("mine", 3)


async def test_an_expected_version_beyond_any_real_one_is_a_conflict(client: Client) -> None:
    agent = Agent(client)
    task = await agent.add("Versioned")
    for expected in (2**31, 2**63, 10**30):
        text = await agent.fail("update_task", task_id=task["id"], title="x", expected_version=expected)
        assert f"expected_version {expected}, current version 1" in text
    assert await agent.get(task["id"]) == task


async def test_update_of_a_missing_task_is_not_found(client: Client) -> None:
    agent = Agent(client)
    text = await agent.fail("update_task", task_id=424242424, title="x", expected_version=1)
    assert text.endswith("Task 424242424 was not found. Use list_tasks to find the id of an existing task.")


# --- complete and delete, one or many ---------------------------------------------------------------


async def test_bulk_complete_reports_a_result_per_id(client: Client, database: Database) -> None:
    agent = Agent(client)
    mine = [await agent.add(f"Mine {i}") for i in range(3)]
    someone_else = local_identity(f"someone-else-{uuid.uuid4().hex}")
    other_server = build_server(
        database, settings=load_settings(TODO_MCP_TIMEZONE="UTC"), identity=lambda: someone_else
    )
    async with Client(other_server, mode=client.mode) as other_client:
        theirs = await Agent(other_client).add("Theirs")
    missing = 987654321
    await agent.call("complete_task", task_ids=[mine[2]["id"]])

    ids = [mine[0]["id"], theirs["id"], missing, mine[1]["id"], mine[2]["id"]]
    results = (await agent.call("complete_task", task_ids=ids))["results"]
    assert [item["id"] for item in results] == ids
    assert [item["ok"] for item in results] == [True, False, False, True, True]
    assert (
        results[1]["error"]
        == f"Task {theirs['id']} was not found. Use list_tasks to find the id of an existing task."
    )
    assert (
        results[2]["error"]
        == f"Task {missing} was not found. Use list_tasks to find the id of an existing task."
    )
    assert "task" not in results[1]
    assert results[0]["task"]["status"] == "completed"
    assert results[0]["task"]["version"] == 2
    # Completing an already completed task changes nothing, not even its version.
    assert results[4]["task"]["version"] == 2
    assert results[4]["task"]["completed_at"] == (await agent.get(mine[2]["id"]))["completed_at"]
    assert await agent.ids() == []

    async with Client(other_server, mode=client.mode) as other_client:
        still = await Agent(other_client).get(theirs["id"])
    assert (still["status"], still["version"]) == ("pending", 1)


async def test_completing_twice_keeps_the_version(client: Client) -> None:
    agent = Agent(client)
    task = await agent.add("Twice")
    first = (await agent.call("complete_task", task_ids=[task["id"]]))["results"][0]["task"]
    second = (await agent.call("complete_task", task_ids=[task["id"]]))["results"][0]["task"]
    assert first == second
    assert second["version"] == 2


async def test_single_id_failures_are_tool_errors(client: Client) -> None:
    agent = Agent(client)
    for tool, extra in (("complete_task", {}), ("delete_task", {}), ("delete_task", {"restore": True})):
        text = await agent.fail(tool, task_ids=[55555555, 55555555], **extra)
        assert "Task 55555555 was not found" in text


async def test_ids_beyond_64_bits_are_simply_not_found(client: Client) -> None:
    agent = Agent(client)
    task = await agent.add("Real")
    for huge in (2**63, 10**20):
        not_found = f"Task {huge} was not found. Use list_tasks to find the id of an existing task."
        assert (await agent.fail("get_task", task_id=huge)).endswith(not_found)
        assert (await agent.fail("update_task", task_id=huge, title="x")).endswith(not_found)
        assert (await agent.fail("complete_task", task_ids=[huge])).endswith(not_found)
        assert (await agent.fail("delete_task", task_ids=[huge])).endswith(not_found)
        assert "not found" in await agent.fail("delete_task", task_ids=[huge], restore=True)
        assert "no task at" in await agent.read_error(f"task://{huge}")
        results = (await agent.call("complete_task", task_ids=[task["id"], huge]))["results"]
        assert [(item["id"], item["ok"]) for item in results] == [(task["id"], True), (huge, False)]
        assert results[1]["error"] == not_found


async def test_bulk_tools_take_a_list_of_one_to_a_hundred_ids(client: Client) -> None:
    agent = Agent(client)
    task = await agent.add("One")
    for tool in ("complete_task", "delete_task"):
        assert "task_ids: is required" in await agent.fail(tool)
        assert "task_ids: is required" in await agent.fail(tool, task_ids=None)
        assert "at least 1 item" in await agent.fail(tool, task_ids=[])
        assert "task_id: is not an argument" in await agent.fail(tool, task_id=task["id"])
    assert (await agent.get(task["id"]))["version"] == 1


async def test_soft_delete_hides_the_task_everywhere_and_undo_restores_it(client: Client) -> None:
    agent = Agent(client)
    keep = await agent.add("Keep")
    task = await agent.add(
        "Delete me", description="important notes", priority="urgent", due="2026-12-24T10:00Z", tags=["x"]
    )
    task_id = task["id"]
    (deleted,) = (await agent.call("delete_task", task_ids=[task_id]))["results"]
    assert deleted["ok"] is True
    assert "deleted_at" in deleted["task"]

    not_found = f"Task {task_id} was not found. Use list_tasks to find the id of an existing task."
    assert (await agent.fail("get_task", task_id=task_id)).endswith(not_found)
    assert (await agent.fail("update_task", task_id=task_id, title="x")).endswith(not_found)
    assert (await agent.fail("complete_task", task_ids=[task_id])).endswith(not_found)
    assert (await agent.fail("delete_task", task_ids=[task_id])).endswith(not_found)
    assert await agent.ids(status="all") == [keep["id"]]
    assert await agent.ids(search="important") == []
    assert await agent.ids(tag="x") == []
    assert await agent.ids(due="overdue") == []
    assert "no task at" in await agent.read_error(f"task://{task_id}")

    (restored,) = (await agent.call("delete_task", task_ids=[task_id], restore=True))["results"]
    assert restored["ok"] is True
    back = restored["task"]
    assert "deleted_at" not in back
    assert back["version"] == task["version"] + 2
    assert {k: v for k, v in back.items() if k not in ("version", "updated_at")} == {
        k: v for k, v in task.items() if k not in ("version", "updated_at")
    }
    assert await agent.get(task_id) == back
    assert await agent.ids(status="all") == [task_id, keep["id"]]

    # Undo of a task that is not deleted reports it unchanged.
    (again,) = (await agent.call("delete_task", task_ids=[task_id], restore=True))["results"]
    assert again["task"] == back


async def test_bulk_delete_and_undo(client: Client) -> None:
    agent = Agent(client)
    tasks = [await agent.add(f"Bulk {i}") for i in range(4)]
    chosen = [tasks[0]["id"], tasks[2]["id"], 987654321]
    results = (await agent.call("delete_task", task_ids=chosen))["results"]
    assert [(item["id"], item["ok"]) for item in results] == [
        (chosen[0], True),
        (chosen[1], True),
        (chosen[2], False),
    ]
    assert await agent.ids() == [tasks[3]["id"], tasks[1]["id"]]
    restored = (await agent.call("delete_task", task_ids=chosen[:2], restore=True))["results"]
    assert [item["ok"] for item in restored] == [True, True]
    assert await agent.ids() == [task["id"] for task in reversed(tasks)]


# --- input limits --------------------------------------------------------------------------------------


LIMITS: list[tuple[str, dict[str, Any], list[str]]] = [
    ("add_task", {"title": "x" * 201}, ["title", "at most 200 characters"]),
    ("add_task", {"title": "   "}, ["title is empty", "send a short title"]),
    ("add_task", {"title": "x", "description": "d" * 4001}, ["description", "at most 4000 characters"]),
    ("add_task", {"title": "x", "tags": [f"t{i}" for i in range(11)]}, ["tags", "at most 10 items"]),
    ("add_task", {"title": "x", "tags": ["two words"]}, ["'two words'", "single words without spaces"]),
    ("add_task", {"title": "x", "tags": ["t" * 33]}, ["tags", "at most 32 characters"]),
    ("add_task", {"title": "x", "priority": "p1"}, ["priority", "'low', 'medium', 'high' or 'urgent'"]),
    ("add_task", {"title": "x", "client_request_id": "k" * 129}, ["client_request_id", "at most 128"]),
    ("update_task", {"task_id": 1, "title": "x" * 201}, ["title", "at most 200 characters"]),
    ("update_task", {"task_id": 1, "description": "d" * 4001}, ["description", "at most 4000 characters"]),
    ("update_task", {"task_id": 1, "tags": ["a b"]}, ["single words without spaces"]),
    ("complete_task", {"task_ids": list(range(1, 102))}, ["task_ids", "at most 100 items"]),
    ("delete_task", {"task_ids": list(range(1, 102))}, ["task_ids", "at most 100 items"]),
    ("list_tasks", {"search": "s" * 201}, ["search", "at most 200 characters"]),
    ("list_tasks", {"search": "a\x00b"}, ["search", "NUL character", "remove it"]),
    ("add_task", {"title": "a\x00b"}, ["title", "NUL character", "remove it"]),
    ("add_task", {"title": "x", "description": "\x00"}, ["description", "NUL character"]),
    ("add_task", {"title": "x", "tags": ["a\x00"]}, ["tags", "NUL character"]),
    ("add_task", {"title": "x", "client_request_id": "\x00"}, ["client_request_id", "NUL character"]),
    ("list_tasks", {"limit": 101}, ["limit: must be at most 100"]),
    ("list_tasks", {"limit": 0}, ["limit: must be at least 1"]),
    ("undo_changes", {"last": 21}, ["last: must be at most 20"]),
    ("undo_changes", {"change_ids": []}, ["change_ids: needs at least 1 item"]),
    ("undo_changes", {"change_ids": ["seven"]}, ["change_ids.0: must be a whole number"]),
    ("list_changes", {"since": "yesterday"}, ["since: is not a date-time", "2026-12-01T09:00:00Z"]),
    ("list_changes", {"until": "2026-12-01T09:00:00"}, ["until: needs a UTC offset"]),
    ("list_changes", {"task_id": 0}, ["task_id: must be at least 1"]),
    ("list_tasks", {"tz": "Mars/Base"}, ["unknown time zone", "IANA name"]),
    ("list_tasks", {"sort": "alphabetical"}, ["sort", "'newest', 'oldest', 'due' or 'priority'"]),
    (
        "list_tasks",
        {"due": "someday"},
        ["due", "'overdue', 'today', 'overdue_or_today', 'upcoming' or 'none'"],
    ),
]


async def test_input_limits_are_refused_with_what_to_send(client: Client) -> None:
    agent = Agent(client)
    for tool, arguments, expected in LIMITS:
        text = await agent.fail(tool, **arguments)
        for fragment in expected:
            assert fragment in text, (tool, text)
    assert await agent.list_all(status="all") == []


async def test_limits_at_the_edge_are_accepted(client: Client) -> None:
    agent = Agent(client)
    task = await agent.add("x" * 200, description="d" * 4000, tags=[f"t{i}" for i in range(10)])
    assert len(task["title"]) == 200
    assert len(task["description"]) == 4000
    # Rows in a list are compact: long descriptions are cut, get_task has the full text.
    (listed,) = (await agent.page(limit=100))["tasks"]
    assert (await agent.page(search="x" * 200))["tasks"] != []
    assert listed["id"] == task["id"]
    assert len(listed["description"]) == 200
    assert listed["description"].endswith("…")
    assert (await agent.get(task["id"]))["description"] == "d" * 4000
    results = (await agent.call("complete_task", task_ids=[task["id"]] * 100))["results"]
    assert [item["id"] for item in results] == [task["id"]]


# --- annotations, read-only mode, size of tools/list ----------------------------------------------------


async def test_every_tool_carries_all_four_annotations(client: Client) -> None:
    tools = (await client.list_tools()).tools
    read_only = set()
    for tool in tools:
        hints = tool.annotations
        assert hints is not None, tool.name
        values = [hints.read_only_hint, hints.destructive_hint, hints.idempotent_hint, hints.open_world_hint]
        assert all(isinstance(value, bool) for value in values), (tool.name, hints)
        if hints.read_only_hint:
            read_only.add(tool.name)
            assert hints.destructive_hint is False
            assert hints.idempotent_hint is True
        assert hints.open_world_hint is False
    assert read_only == READ_TOOLS
    # The HTTP gate demands todo:write for exactly the tools that are not read-only.
    assert {tool.name for tool in tools} - read_only == {r.name for r in records.TOOLS if r.scope == WRITE}
    by_name = {tool.name: tool.annotations for tool in tools if tool.annotations is not None}
    assert by_name["delete_task"].destructive_hint is True
    assert by_name["update_task"].destructive_hint is True
    assert by_name["add_task"].destructive_hint is False
    assert by_name["complete_task"].idempotent_hint is True


async def test_read_only_mode_lists_only_the_read_tools(
    client: Client, database: Database, owner: str
) -> None:
    writer = Agent(client)
    task = await writer.add("Visible in read-only mode")
    settings = load_settings(TODO_MCP_TIMEZONE="UTC", TODO_MCP_READ_ONLY=True)
    server: MCPServer[Any] = build_server(database, settings=settings, identity=lambda: local_identity(owner))
    async with Client(server, mode=client.mode) as read_only_client:
        tools = (await read_only_client.list_tools()).tools
        assert {tool.name for tool in tools} == READ_TOOLS
        reader = Agent(read_only_client)
        assert await reader.get(task["id"]) == task
        assert await reader.ids() == [task["id"]]
        for tool in TOOLS - READ_TOOLS:
            # An unknown tool is a protocol error (invalid params) that names the tools there are.
            with pytest.raises(MCPError) as refused:
                await read_only_client.call_tool(tool, {"task_id": task["id"], "title": "x"})
            assert refused.value.code == INVALID_PARAMS
            assert refused.value.message.startswith(f"Unknown tool: {tool!r}; the tools are ")
            assert "list_tasks" in refused.value.message
    assert await writer.get(task["id"]) == task


async def test_tools_list_fits_in_12000_bytes(client: Client) -> None:
    result = await client.list_tools()
    wire = json.dumps(result.model_dump(mode="json", by_alias=True, exclude_none=True), separators=(",", ":"))
    assert len(wire.encode()) < 12_000, len(wire.encode())


# --- resource template and prompt -------------------------------------------------------------------


async def test_task_resource_template_reads_the_task_as_json(client: Client) -> None:
    agent = Agent(client)
    templates = (await client.list_resource_templates()).resource_templates
    assert "task://{task_id}" in [template.uri_template for template in templates]
    task = await agent.add("Resource", due="2026-12-24T17:00[Europe/Paris]", tags=["r"])
    result = await client.read_resource(f"task://{task['id']}", cache_mode="bypass")
    (content,) = result.contents
    assert isinstance(content, TextResourceContents)
    assert content.mime_type == "application/json"
    assert json.loads(content.text) == task
    updated = await agent.update(task["id"], title="Resource 2")
    result = await client.read_resource(f"task://{task['id']}", cache_mode="bypass")
    (content,) = result.contents
    assert isinstance(content, TextResourceContents)
    assert json.loads(content.text) == updated
    assert "no task at task://abc" in await agent.read_error("task://abc")


async def test_plan_day_prompt_lists_overdue_and_todays_tasks_by_id(client: Client) -> None:
    agent = Agent(client)
    zone = "Pacific/Kiritimati"
    today = datetime.now(UTC).astimezone(ZoneInfo(zone)).date()
    overdue = await agent.add("Overdue report", due="2020-01-01", priority="high")
    due_today = await agent.add("Today call", due=today.isoformat(), tags=["phone"])
    later = await agent.add("Later", due="2099-01-01")
    done = await agent.add("Done already", due="2020-01-02")
    await agent.call("complete_task", task_ids=[done["id"]])

    prompts = {prompt.name: prompt for prompt in (await client.list_prompts()).prompts}
    assert "plan_day" in prompts
    result = await client.get_prompt("plan_day", {"tz": zone})
    text = "\n".join(message.content.text for message in result.messages if message.content.type == "text")
    assert f"[{overdue['id']}] Overdue report" in text
    assert f"[{due_today['id']}] Today call" in text
    assert "tags phone" in text
    assert f"[{later['id']}]" not in text
    assert f"[{done['id']}]" not in text
    assert zone in text
    # Most urgent first.
    assert text.index(f"[{overdue['id']}]") < text.index(f"[{due_today['id']}]")


async def test_concurrent_updates_with_the_same_expected_version_let_exactly_one_win(client: Client) -> None:
    agent = Agent(client)
    task = await agent.add("Contended")
    winners: list[dict[str, Any]] = []
    losers: list[str] = []

    async def attempt(index: int) -> None:
        result = await client.call_tool(
            "update_task", {"task_id": task["id"], "title": f"Writer {index}", "expected_version": 1}
        )
        if result.is_error:
            losers.append(only_text(result))
        else:
            assert result.structured_content is not None
            winners.append(result.structured_content)

    async with anyio.create_task_group() as group:
        for index in range(10):
            group.start_soon(attempt, index)
    assert len(winners) == 1
    assert winners[0]["version"] == 2
    assert len(losers) == 9
    for text in losers:
        assert "expected_version 1, current version 2" in text, text
    winner = dict(winners[0])
    assert isinstance(winner.pop("change_id"), int)
    assert await agent.get(task["id"]) == winner


async def _update_behind_a_concurrent_writer(pg_url: str, sql: str, **arguments: Any) -> str:
    """update_task waits on a row another transaction has changed; once that commits, its error text."""
    database = Database.open(parse_database_url(pg_url))
    principal = local_identity(f"user-{uuid.uuid4().hex}")
    server = build_server(
        database, settings=load_settings(TODO_MCP_TIMEZONE="UTC"), identity=lambda: principal
    )
    holder = await asyncpg.connect(pg_url)
    watcher = await asyncpg.connect(pg_url)
    try:
        async with Client(server, mode="2026-07-28") as client:
            agent = Agent(client)
            task = await agent.add("Contended")
            texts: list[str] = []

            async def update() -> None:
                texts.append(await agent.fail("update_task", task_id=task["id"], **arguments))

            transaction = holder.transaction()
            await transaction.start()
            await holder.execute(sql, task["id"])
            async with anyio.create_task_group() as group:
                group.start_soon(update)
                with anyio.fail_after(10):
                    while not await watcher.fetchval(
                        "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid) "
                        "WHERE NOT l.granted AND a.datname = current_database()"
                    ):
                        pass
                await transaction.commit()
            return texts[0]
    finally:
        await holder.close()
        await watcher.close()
        await database.dispose()


async def test_a_conflict_reports_the_version_a_concurrent_writer_committed(pg_url: str) -> None:
    text = await _update_behind_a_concurrent_writer(
        pg_url,
        "UPDATE tasks SET version = version + 1, title = 'theirs' WHERE id = $1",
        title="mine",
        expected_version=1,
    )
    assert "expected_version 1, current version 2" in text


async def test_an_update_racing_a_delete_is_not_found(pg_url: str) -> None:
    text = await _update_behind_a_concurrent_writer(
        pg_url, "UPDATE tasks SET version = version + 1, deleted_at = now() WHERE id = $1", title="mine"
    )
    assert "was not found" in text
