"""One database round trip per operation, counted at the wire, and recovery from dropped connections.

Every tool, the task resource and the plan_day prompt run through the real in-memory MCP client,
the real server and a real pooled engine whose connections pass through `WireProxy`, which counts
client→server turns. The first use of a statement on a connection prepares it (one extra turn);
after that, each call must cost exactly one turn, with arguments other than the warm-up's so that
a statement text that varied with the arguments would show up as a new preparation.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import anyio
import asyncpg
import pytest
from mcp import Client
from mcp.types import CallToolResult, GetPromptResult, ReadResourceResult, TextContent, TextResourceContents
from sqlalchemy.engine import make_url

from tests.wired import FAST_BACKOFF, Wire, list_pool_of, open_wire, plain_url, pool_of, rows_titled
from tests.wireproxy import Measurement, Turn, WireProxy
from todo_mcp.config import Settings
from todo_mcp.identity import Actor
from todo_mcp.models import Task, TaskCreate
from todo_mcp.storage import repository
from todo_mcp.storage.engine import Database
from todo_mcp.storage.session import PostgresSession, Session
from todo_mcp.storage.writes import Written
from todo_mcp.tools import records

pytestmark = pytest.mark.anyio

Result = CallToolResult | ReadResourceResult | GetPromptResult


@pytest.fixture
async def wire(pg_url: str, owner: str, settings: Settings) -> AsyncIterator[Wire]:
    async with open_wire(pg_url, owner, settings) as opened:
        yield opened


def _ok(result: Result) -> None:
    if isinstance(result, CallToolResult):
        assert not result.is_error, result.content


def _data(result: Result) -> dict[str, Any]:
    assert isinstance(result, CallToolResult)
    assert not result.is_error, result.content
    data: dict[str, Any] | None = result.structured_content
    assert data is not None
    return data


def _text(result: Result) -> str:
    if isinstance(result, ReadResourceResult):
        content = result.contents[0]
        assert isinstance(content, TextResourceContents)
        return content.text
    if isinstance(result, GetPromptResult):
        message = result.messages[0].content
        assert isinstance(message, TextContent)
        return message.text
    block = result.content[0]
    assert isinstance(block, TextContent)
    return block.text


async def _nothing(session: Session) -> None:
    return None


async def _pooled_connections_closed(db: Database) -> tuple[int, anyio.Event]:
    """How many connections are pooled (idle), and an event set when every driver learns its socket closed."""
    closed = anyio.Event()
    if not pool_of(db).idle():
        await db.run(_nothing)  # opens the pooled connection
    # A connection already dropped stays idle until a call checks it out (and replaces it).
    drivers = [driver for driver in (*pool_of(db).idle(), *list_pool_of(db).idle()) if not driver.is_closed()]

    def noticed(_connection: object) -> None:
        if all(driver.is_closed() for driver in drivers):
            closed.set()

    for driver in drivers:
        driver.add_termination_listener(noticed)
    return len(drivers), closed


# --- the instrument -----------------------------------------------------------------------------------


async def test_the_proxy_counts_each_round_trip_once_on_many_concurrent_connections(pg_url: str) -> None:
    upstream = make_url(pg_url)
    async with WireProxy(upstream.port or 5432, upstream_host=upstream.host or "127.0.0.1") as proxy:
        proxied = upstream.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
        conns = [await asyncpg.connect(f"{proxied}?sslmode=disable") for _ in range(8)]
        closed = [anyio.Event() for _ in conns]
        for conn, event_ in zip(conns, closed, strict=True):
            conn.add_termination_listener(lambda _connection, done=event_: done.set())
        assert proxy.open_connections == 8

        async def each(call: Callable[[Any, int], Coroutine[Any, Any, object]]) -> Measurement:
            with proxy.measure() as measurement:
                async with anyio.create_task_group() as group:
                    for n, conn in enumerate(conns):
                        group.start_soon(call, conn, n)
            return measurement

        simple = await each(lambda conn, n: conn.execute("SELECT 1"))
        prepared = await each(lambda conn, n: conn.fetchval("SELECT $1::int", n))
        cached = await each(lambda conn, n: conn.fetchval("SELECT $1::int", n + 100))

        assert [t.messages for t in simple.turns] == [["Q"]] * 8, simple
        assert sorted(t.connection for t in simple.turns) == list(range(1, 9)), simple
        assert prepared.count == 16, prepared
        assert sorted(t.connection for t in prepared.turns) == sorted(list(range(1, 9)) * 2), prepared
        assert [t.messages for t in cached.turns] == [["B", "E", "S"]] * 8, cached

        assert await proxy.drop_all() == 8
        with anyio.fail_after(10):
            for done in closed:
                await done.wait()
        assert all(conn.is_closed() for conn in conns)
        assert proxy.open_connections == 0


# --- exactly one turn per operation ------------------------------------------------------------------


Call = Callable[[], Awaitable[Result]]


@dataclass
class Case:
    label: str
    warm_up: Call
    measured: Call
    check: Callable[[Result], object]


async def _cases(c: Client) -> list[Case]:
    """Every tool (with its variants), the resource and the prompt; seeds the tasks they act on.

    Each warm-up call uses the statement its case measures, with other arguments. Run in order:
    later cases expect the changes of earlier ones.
    """

    async def add(**arguments: Any) -> dict[str, Any]:
        return _data(await c.call_tool("add_task", arguments))

    seeded = [
        await add(title=f"seed {n}", priority="high", tags=["home"], due="2020-01-01", description="milk")
        for n in range(8)
    ]
    ids = [task["id"] for task in seeded]
    first_page = _data(await c.call_tool("list_tasks", {"limit": 1}))
    page2_cursor, page3_cursor = first_page["next_cursor"], None
    assert page2_cursor is not None
    page2 = _data(await c.call_tool("list_tasks", {"limit": 1, "cursor": page2_cursor}))
    page3_cursor = page2["next_cursor"]
    assert page3_cursor is not None
    version_now = _data(await c.call_tool("get_task", {"task_id": ids[2]}))["version"]
    weekly = [
        await add(
            title=f"weekly {n}", due="2035-12-04T09:00:00[Europe/Paris]", repeat="FREQ=WEEKLY;BYDAY=MO,TH"
        )
        for n in range(2)
    ]
    changes_cursor = _data(await c.call_tool("list_changes", {"limit": 1}))["next_cursor"]
    retry_key = f"retry-{uuid.uuid4().hex}"

    def tool(name: str, **arguments: Any) -> Call:
        return lambda: c.call_tool(name, arguments)

    return [
        Case(
            "add_task",
            tool("add_task", title="warm"),
            tool(
                "add_task",
                title="Buy bread",
                description="rye",
                priority="urgent",
                due="2031-02-03",
                tags=["shop", "food"],
            ),
            lambda r: _data(r)["title"] == "Buy bread",
        ),
        Case(
            "add_task client_request_id",
            tool("add_task", title="warm key", client_request_id=f"warm-{uuid.uuid4().hex}"),
            tool("add_task", title="Keyed", client_request_id=retry_key),
            lambda r: _data(r)["title"] == "Keyed",
        ),
        Case(
            "add_task retry of client_request_id",
            tool("add_task", title="warm key 2", client_request_id=f"warm-{uuid.uuid4().hex}"),
            tool("add_task", title="Keyed", client_request_id=retry_key),
            lambda r: _data(r)["version"] == 1,
        ),
        Case(
            "list_tasks",
            tool("list_tasks"),
            tool("list_tasks", limit=5),
            lambda r: len(_data(r)["tasks"]) == 5,
        ),
        Case(
            "list_tasks status",
            tool("list_tasks", status="completed"),
            tool("list_tasks", status="pending", limit=4),
            lambda r: len(_data(r)["tasks"]) == 4,
        ),
        Case(
            "list_tasks status=all",
            tool("list_tasks", status="all"),
            tool("list_tasks", status="all", limit=2),
            lambda r: len(_data(r)["tasks"]) == 2,
        ),
        Case(
            "list_tasks priority",
            tool("list_tasks", priority="low"),
            tool("list_tasks", priority="high"),
            lambda r: {t["priority"] for t in _data(r)["tasks"]} == {"high"},
        ),
        Case(
            "list_tasks tag",
            tool("list_tasks", tag="none"),
            tool("list_tasks", tag="home"),
            lambda r: len(_data(r)["tasks"]) == 8,
        ),
        Case(
            "list_tasks search",
            tool("list_tasks", search="nothing"),
            tool("list_tasks", search="milk"),
            lambda r: len(_data(r)["tasks"]) == 8,
        ),
        Case(
            "list_tasks due window",
            tool("list_tasks", due="today"),
            tool("list_tasks", due="today", tz="Asia/Tokyo"),
            lambda r: _data(r)["tasks"] == [],
        ),
        Case(
            "list_tasks overdue",
            tool("list_tasks", due="overdue"),
            tool("list_tasks", due="overdue", limit=3),
            lambda r: len(_data(r)["tasks"]) == 3,
        ),
        Case(
            "list_tasks due_before/due_after",
            tool("list_tasks", due_after="2019-01-01", due_before="2021-01-01"),
            tool("list_tasks", due_after="2019-06-01", due_before="2020-06-01"),
            lambda r: len(_data(r)["tasks"]) == 8,
        ),
        Case(
            "list_tasks sort=priority",
            tool("list_tasks", sort="priority"),
            tool("list_tasks", sort="priority", limit=2),
            lambda r: _data(r)["tasks"][0]["priority"] == "urgent",
        ),
        Case(
            "list_tasks cursor page",
            tool("list_tasks", limit=1, cursor=page2_cursor),
            tool("list_tasks", limit=1, cursor=page3_cursor),
            lambda r: len(_data(r)["tasks"]) == 1,
        ),
        Case(
            "get_task",
            tool("get_task", task_id=ids[0]),
            tool("get_task", task_id=ids[1]),
            lambda r: _data(r)["id"] == ids[1],
        ),
        Case(
            "update_task",
            tool("update_task", task_id=ids[0], title="warm title"),
            tool("update_task", task_id=ids[1], priority="low", due="", tags=["x"]),
            lambda r: _data(r)["priority"] == "low" and "due" not in _data(r),
        ),
        Case(
            "update_task expected_version",
            tool("update_task", task_id=ids[0], description="warm", expected_version=2),
            tool("update_task", task_id=ids[2], title="checked", expected_version=version_now),
            lambda r: _data(r)["version"] == version_now + 1,
        ),
        Case(
            "update_task version conflict",
            tool("update_task", task_id=ids[0], description="stale", expected_version=1),
            tool("update_task", task_id=ids[2], title="stale", expected_version=version_now),
            lambda r: isinstance(r, CallToolResult) and r.is_error and "current version" in _text(r),
        ),
        Case(
            "complete_task",
            tool("complete_task", task_ids=[ids[3]]),
            tool("complete_task", task_ids=[ids[4]]),
            lambda r: _data(r)["results"][0]["task"]["status"] == "completed",
        ),
        Case(
            "complete_task bulk",
            tool("complete_task", task_ids=[ids[3], ids[5]]),
            tool("complete_task", task_ids=[ids[5], ids[6], ids[7]]),
            lambda r: [item["ok"] for item in _data(r)["results"]] == [True, True, True],
        ),
        Case(
            "delete_task",
            tool("delete_task", task_ids=[ids[3]]),
            tool("delete_task", task_ids=[ids[4]]),
            lambda r: _data(r)["results"][0]["ok"] is True,
        ),
        Case(
            "delete_task bulk",
            tool("delete_task", task_ids=[ids[5], ids[6]]),
            tool("delete_task", task_ids=[ids[7], ids[0], 10**12]),
            lambda r: [item["ok"] for item in _data(r)["results"]] == [True, True, False],
        ),
        Case(
            "delete_task undo",
            tool("delete_task", task_ids=[ids[3]], restore=True),
            tool("delete_task", task_ids=[ids[4], ids[5]], restore=True),
            lambda r: [item["ok"] for item in _data(r)["results"]] == [True, True],
        ),
        Case(
            "complete_task repeating",
            tool("complete_task", task_ids=[weekly[0]["id"]]),
            tool("complete_task", task_ids=[weekly[1]["id"]]),
            lambda r: _data(r)["results"][0]["next"]["due"] == "2035-12-06T09:00:00+01:00[Europe/Paris]",
        ),
        Case(
            "list_changes",
            tool("list_changes", limit=1),
            tool("list_changes", limit=5),
            lambda r: len(_data(r)["changes"]) == 5,
        ),
        Case(
            "list_changes task_id",
            tool("list_changes", task_id=ids[0]),
            tool("list_changes", task_id=ids[1]),
            lambda r: _data(r)["changes"][-1]["via"] == "add_task",
        ),
        Case(
            "list_changes cursor",
            tool("list_changes", limit=1, cursor=changes_cursor),
            tool("list_changes", limit=2, cursor=changes_cursor),
            lambda r: len(_data(r)["changes"]) == 2,
        ),
        Case(
            "undo_changes dry_run",
            tool("undo_changes", dry_run=True),
            tool("undo_changes", last=2, dry_run=True),
            lambda r: _data(r)["dry_run"] is True,
        ),
        Case(
            "undo_changes",
            tool("undo_changes"),
            tool("undo_changes", last=1),
            lambda r: len(_data(r)["undone"]) == 1,
        ),
        Case(
            "undo_changes change_ids",
            tool("undo_changes", change_ids=[seeded[0]["change_id"]], dry_run=True),
            tool("undo_changes", change_ids=[weekly[1]["change_id"]]),
            lambda r: _data(r)["tasks"][0]["after"]["deleted_at"] is not None,
        ),
        Case(
            "resource task://{id}",
            lambda: c.read_resource(f"task://{ids[1]}"),
            lambda: c.read_resource(f"task://{ids[2]}"),
            lambda r: Task.model_validate_json(_text(r)).id == ids[2],
        ),
        Case(
            "prompt plan_day",
            lambda: c.get_prompt("plan_day", {}),
            lambda: c.get_prompt("plan_day", {"tz": "America/New_York"}),
            lambda r: f"[{ids[2]}]" in _text(r),
        ),
    ]


async def test_every_tool_resource_and_prompt_costs_one_round_trip_when_warm(
    wire: Wire, pg_url: str, owner: str
) -> None:
    cases = await _cases(wire.client)
    measured_tools = {case.label.split()[0] for case in cases}
    assert {record.name for record in records.TOOLS} <= measured_tools, "every tool needs a case here"
    table: list[tuple[str, Measurement, Measurement]] = []
    for case in cases:
        with wire.proxy.measure() as warm:
            warm_result = await case.warm_up()
        if "conflict" not in case.label:
            _ok(warm_result)
        with wire.proxy.measure() as hot:
            result = await case.measured()
        assert case.check(result), f"{case.label}: unexpected result {result}"
        table.append((case.label, warm, hot))

    report = "\n".join(f"{label:38} warm-up {warm.count:2}  measured {hot}" for label, warm, hot in table)
    assert all(hot.count == 1 for _, _, hot in table), f"every warm operation must be one turn:\n{report}"
    # One connection for the list queries (planned per call), one for everything else.
    assert wire.proxy.connections_opened == 2, (
        f"one pooled connection of each kind served everything:\n{report}"
    )

    # The retried client_request_id returned the first task instead of inserting another.
    assert await rows_titled(pg_url, owner, "Keyed") == 1


async def test_without_named_statements_a_warm_call_is_still_one_round_trip(
    pg_url: str, owner: str, settings: Settings
) -> None:
    """The pooler option (pgbouncer=true) sends Parse, Bind, Execute and Sync together: one turn."""
    async with open_wire(pg_url, owner, settings, "&pgbouncer=true") as wire:
        cases = await _cases(wire.client)
        table: list[tuple[str, Measurement]] = []
        for case in cases:
            await case.warm_up()
            with wire.proxy.measure() as hot:
                result = await case.measured()
            assert case.check(result), f"{case.label}: unexpected result {result}"
            table.append((case.label, hot))
    report = "\n".join(f"{label:38} {hot}" for label, hot in table)
    assert all(hot.count == 1 for _, hot in table), report
    assert all(hot.turns[0].messages == ["P", "B", "E", "S"] for _, hot in table), report


def _connection_set_up(turn: Turn) -> bool:
    # Startup, then any password exchange ('p'); there is no TLS to the proxy.
    return "Startup" in turn.messages or "p" in turn.messages


async def test_on_a_new_connection_each_operation_adds_only_one_turn_to_prepare(
    wire: Wire, pg_url: str
) -> None:
    """What a connection dropped while idle costs: set-up, then prepare and run; no type look-ups."""
    cases = await _cases(wire.client)
    table: list[tuple[str, Measurement]] = []
    for case in cases:
        await _hang_up(wire, pg_url, "proxy")
        with wire.proxy.measure() as fresh:
            result = await case.measured()
        assert case.check(result), f"{case.label}: unexpected result {result}"
        table.append((case.label, fresh))

    report = "\n".join(f"{label:38} {fresh}" for label, fresh in table)
    statement_turns = [[t for t in fresh.turns if not _connection_set_up(t)] for _, fresh in table]
    assert all(len(turns) == 2 for turns in statement_turns), f"expected prepare + execute:\n{report}"
    assert all(turns[0].messages[0] == "P" for turns in statement_turns), report
    assert all(fresh.turns[0].messages == ["Startup"] for _, fresh in table), report


# --- dropped connections ------------------------------------------------------------------------------


async def _hang_up(wire: Wire, pg_url: str, how: str) -> None:
    """Close the idle pooled connections from the far side and wait until their drivers have noticed."""
    pooled, closed = await _pooled_connections_closed(wire.db)
    if how == "proxy":
        assert await wire.proxy.drop_all() == pooled
    else:
        admin = await asyncpg.connect(plain_url(pg_url))
        try:
            # With a timeout, pg_terminate_backend waits until the backend has exited.
            terminated = await admin.fetch(
                "SELECT pg_terminate_backend(pid, 10000) AS done FROM pg_stat_activity "
                "WHERE application_name = $1",
                wire.application_name,
            )
        finally:
            await admin.close()
        assert [row["done"] for row in terminated] == [True] * pooled

    with anyio.fail_after(10):
        await closed.wait()


@pytest.mark.parametrize("how", ["proxy", "server"])
async def test_a_connection_closed_while_idle_is_replaced_without_failing_the_call(
    wire: Wire, pg_url: str, owner: str, how: str, caplog: pytest.LogCaptureFixture
) -> None:
    """`proxy`: the network drops it; `server`: PostgreSQL terminates the backend, as Neon does."""
    caplog.set_level(logging.INFO, logger="todo_mcp.storage.engine")
    c = wire.client
    first = _data(await c.call_tool("add_task", {"title": "before"}))
    assert _data(await c.call_tool("get_task", {"task_id": first["id"]}))["title"] == "before"

    await _hang_up(wire, pg_url, how)
    opened = wire.proxy.connections_opened
    read = await c.call_tool("get_task", {"task_id": first["id"]})
    assert _data(read)["title"] == "before"
    assert wire.proxy.connections_opened == opened + 1

    await _hang_up(wire, pg_url, how)
    opened = wire.proxy.connections_opened
    written = _data(await c.call_tool("add_task", {"title": "after the drop"}))
    assert _data(await c.call_tool("get_task", {"task_id": written["id"]}))["title"] == "after the drop"
    assert wire.proxy.connections_opened == opened + 1
    assert await rows_titled(pg_url, owner, "after the drop") == 1

    # Both times the checkout check saw the closed connection locally; no call needed a retry.
    assert wire.invalidations == ["closed while idle"] * 2
    assert not [r for r in caplog.records if "retrying" in r.getMessage()]


async def test_a_connection_closed_after_checkout_but_before_sending_is_retried_once(
    wire: Wire, pg_url: str, owner: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="todo_mcp.storage.engine")
    _data(await wire.client.call_tool("add_task", {"title": "warm"}))
    attempts = 0

    async def create_after_hang_up(session: Session, *, actor: Actor, data: TaskCreate) -> Written:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            assert isinstance(session, PostgresSession)
            driver = session.conn
            closed = anyio.Event()
            driver.add_termination_listener(lambda _connection: closed.set())
            assert await wire.proxy.drop_all() == 1
            with anyio.fail_after(10):
                await closed.wait()
        return await repository.create_task(session, actor=actor, data=data)

    written = await wire.db.run(
        create_after_hang_up, actor=Actor(owner, via="test"), data=TaskCreate(title="raced")
    )

    assert written.task.title == "raced"
    assert attempts == 2
    assert await rows_titled(pg_url, owner, "raced") == 1
    retries = [r for r in caplog.records if "retrying" in r.getMessage()]
    assert len(retries) == 1, caplog.text


async def test_a_write_cut_off_after_the_server_received_it_is_not_repeated(
    wire: Wire, pg_url: str, owner: str
) -> None:
    """The server committed the insert but its reply never arrived: retrying could insert twice."""
    c = wire.client
    key = f"cut-{uuid.uuid4().hex}"
    _data(await c.call_tool("add_task", {"title": "warm"}))
    _data(await c.call_tool("add_task", {"title": "warm keyed", "client_request_id": f"w-{key}"}))

    wire.proxy.cut_next_reply()
    cut = await c.call_tool("add_task", {"title": "cut off"})
    assert cut.is_error
    assert await rows_titled(pg_url, owner, "cut off") == 1

    # The safe retry is the caller's, with a client_request_id: it returns the task already made.
    # Prepared first on the new connection, so that the cut falls on the insert's own reply.
    _data(await c.call_tool("add_task", {"title": "warm keyed", "client_request_id": f"w2-{key}"}))
    wire.proxy.cut_next_reply()
    cut = await c.call_tool("add_task", {"title": "cut off keyed", "client_request_id": key})
    assert cut.is_error
    again = _data(await c.call_tool("add_task", {"title": "cut off keyed", "client_request_id": key}))
    assert again["version"] == 1
    assert await rows_titled(pg_url, owner, "cut off keyed") == 1


async def test_a_database_that_refuses_new_connections_for_a_moment_is_waited_for(
    wire: Wire, pg_url: str, owner: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A restarting server or a waking Neon compute resets the first attempts: the call still succeeds."""
    caplog.set_level(logging.WARNING, logger="todo_mcp.storage.engine")
    await _hang_up(wire, pg_url, "proxy")
    wire.proxy.refuse_next = len(FAST_BACKOFF)
    written = _data(await wire.client.call_tool("add_task", {"title": "after the restart"}))
    assert wire.proxy.refused == len(FAST_BACKOFF)
    assert written["title"] == "after the restart"
    assert await rows_titled(pg_url, owner, "after the restart") == 1
    retries = [r.getMessage() for r in caplog.records if "retrying in" in r.getMessage()]
    assert len(retries) == len(FAST_BACKOFF), retries


async def test_a_database_that_stays_unreachable_is_a_clear_error_and_changes_nothing(
    wire: Wire, pg_url: str, owner: str
) -> None:
    await _hang_up(wire, pg_url, "proxy")
    wire.proxy.refuse_next = len(FAST_BACKOFF) + 1
    result = await wire.client.call_tool("add_task", {"title": "never stored"})
    assert result.is_error
    assert result.structured_content is None
    text = result.content[0].text if isinstance(result.content[0], TextContent) else ""
    assert "cannot be reached right now" in text, text
    assert "nothing was changed" in text
    assert wire.proxy.refused == len(FAST_BACKOFF) + 1
    assert await rows_titled(pg_url, owner, "never stored") == 0
    assert (
        _data(await wire.client.call_tool("add_task", {"title": "stored later"}))["title"] == "stored later"
    )


async def test_prepared_statements_get_names_unique_across_clients(wire: Wire) -> None:
    """Behind PgBouncer (Neon's pooler) a server connection serves many clients: no name may repeat.

    asyncpg's own type introspection at connect keeps its numbered names; every statement the
    repository runs gets a unique one.
    """
    _data(await wire.client.call_tool("add_task", {"title": "named"}))
    (driver,) = pool_of(wire.db).idle()
    rows = await driver.fetch("SELECT name, statement FROM pg_prepared_statements")
    ours = [row["name"] for row in rows if "tasks" in row["statement"]]
    assert ours, "the tool call prepared its statement on this (only) pooled connection"
    assert all(re.fullmatch(r"__todo_mcp_[0-9a-f]{32}__", name) for name in ours), ours
