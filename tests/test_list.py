"""list_tasks: each filter alone and combined, sort orders, and due windows in the caller's time zone."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from mcp import Client
from mcp.server import MCPServer

from tests.calls import Agent

pytestmark = pytest.mark.anyio


@pytest.fixture
async def agent(server: MCPServer[Any]) -> AsyncIterator[Agent]:
    """One protocol generation only: these tests are about queries, which both generations share."""
    async with Client(server, mode="2026-07-28") as client:
        yield Agent(client)


async def _catalogue(agent: Agent) -> dict[str, int]:
    """Five tasks with different fields; returns their ids by a short name."""
    specs: dict[str, dict[str, Any]] = {
        "milk": {
            "title": "Buy milk",
            "description": "from the corner shop",
            "priority": "low",
            "tags": ["errands", "home"],
            "due": "2026-12-20",
        },
        "report": {
            "title": "Write report",
            "description": "quarterly numbers for the board",
            "priority": "high",
            "tags": ["work"],
            "due": "2026-12-24T17:00:00+01:00[Europe/Paris]",
        },
        "plumber": {
            "title": "Call plumber",
            "priority": "urgent",
            "tags": ["home"],
            "due": "2026-12-22T09:00-05:00",
        },
        "book": {"title": "Read book", "description": "a novel about MILK farmers", "priority": "medium"},
        "meeting": {
            "title": "Board meeting prep",
            "priority": "high",
            "tags": ["work", "meeting"],
            "due": "2026-12-23",
        },
    }
    ids = {name: (await agent.call("add_task", **fields))["id"] for name, fields in specs.items()}
    await agent.call("complete_task", task_ids=[ids["meeting"]])
    return ids


async def test_date_bounds_hold_tasks_timed_at_the_edges_of_the_world(agent: Agent) -> None:
    """A timed task counts on its own local date, in zones from UTC-12 to UTC+14."""
    early = await agent.add("Kiritimati midnight", due="2026-06-02T00:00+14:00")  # 2026-06-01 10:00Z
    late = await agent.add("Baker Island last minute", due="2026-05-31T23:59-12:00")  # 2026-06-01 11:59Z
    on_the_day = await agent.add("On the day", due="2026-06-01T12:00Z")
    assert await agent.ids(due_after="2026-06-01") == [early["id"]]
    assert await agent.ids(due_before="2026-06-01") == [late["id"]]
    assert await agent.ids(due_after="2026-05-31", due_before="2026-06-02") == [on_the_day["id"]]


async def test_each_filter_alone_and_combined(agent: Agent) -> None:
    ids = await _catalogue(agent)

    async def names(**filters: object) -> set[str]:
        found = await agent.ids(**filters)
        assert len(found) == len(set(found))
        by_id = {v: k for k, v in ids.items()}
        return {by_id[i] for i in found}

    everything = set(ids)
    pending = everything - {"meeting"}
    assert await names() == pending
    assert await names(status="pending") == pending
    assert await names(status="completed") == {"meeting"}
    assert await names(status="all") == everything

    assert await names(priority="high") == {"report"}
    assert await names(priority="high", status="all") == {"report", "meeting"}
    assert await names(priority="low") == {"milk"}

    assert await names(tag="home") == {"milk", "plumber"}
    assert await names(tag="HOME") == {"milk", "plumber"}
    assert await names(tag="work", status="all") == {"report", "meeting"}
    assert await names(tag="nothing") == set()

    # Search covers the title and the description, any case, every word must match.
    assert await names(search="milk") == {"milk", "book"}
    assert await names(search="Milk") == {"milk", "book"}
    assert await names(search="corner") == {"milk"}
    assert await names(search="board") == {"report"}
    assert await names(search="board", status="all") == {"report", "meeting"}
    assert await names(search="quarterly board") == {"report"}
    assert await names(search="quarterly plumber") == set()

    # Dates compare calendar days; date-times compare instants (09:00-05:00 is 14:00Z).
    assert await names(due_before="2026-12-23") == {"milk", "plumber"}
    assert await names(due_after="2026-12-22") == {"report"}
    assert await names(due_after="2026-12-22", status="all") == {"report", "meeting"}
    assert await names(due_before="2026-12-22T14:30:00Z") == {"milk", "plumber"}
    assert await names(due_before="2026-12-22T13:30:00Z") == {"milk"}
    assert await names(due_before="2026-12-22T09:30:00-05:00[America/New_York]") == {"milk", "plumber"}
    assert await names(due_after="2026-12-24T15:30:00Z") == {"report"}
    assert await names(due_after="2026-12-24T16:30:00Z") == set()
    assert await names(due_after="2026-12-20", due_before="2026-12-24") == {"plumber"}

    assert await names(tag="home", priority="urgent") == {"plumber"}
    assert await names(search="milk", tag="errands") == {"milk"}
    assert await names(tag="work", status="all", due_before="2026-12-24") == {"meeting"}
    assert await names(search="board", priority="high", tag="work", status="completed") == {"meeting"}
    assert await names(priority="medium", due="none") == {"book"}
    assert await names(due="none", tag="home") == set()


async def test_sort_orders(agent: Agent) -> None:
    ids = await _catalogue(agent)
    order = ["milk", "report", "plumber", "book", "meeting"]

    async def sorted_names(sort: str) -> list[str]:
        by_id = {v: k for k, v in ids.items()}
        return [by_id[i] for i in await agent.ids(sort=sort, status="all")]

    assert await sorted_names("newest") == list(reversed(order))
    assert await sorted_names("oldest") == order
    # Soonest first (a date-only task counts at the end of its day), undated last.
    assert await sorted_names("due") == ["milk", "plumber", "meeting", "report", "book"]
    # Most urgent first, then soonest due.
    assert await sorted_names("priority") == ["plumber", "meeting", "report", "book", "milk"]
    assert await agent.ids() == await agent.ids(sort="newest")


async def test_a_due_filter_lists_soonest_first_unless_a_sort_is_given(agent: Agent) -> None:
    ids = await _catalogue(agent)
    by_id = {v: k for k, v in ids.items()}

    async def names(**filters: Any) -> list[str]:
        return [by_id[i] for i in await agent.ids(status="all", **filters)]

    assert await names(due_after="2026-12-01") == ["milk", "plumber", "meeting", "report"]
    assert await names(due_before="2026-12-24") == ["milk", "plumber", "meeting"]
    assert await names(due_after="2026-12-20") == ["plumber", "meeting", "report"]
    assert await names(due_after="2026-12-01", sort="newest") == ["meeting", "plumber", "report", "milk"]
    assert await names(due_after="2026-12-01", sort="priority") == ["plumber", "meeting", "report", "milk"]
    # Without a date there is nothing to order by: newest first, as with no filter.
    assert await names(due="none", tag=None) == ["book"]
    assert await agent.ids(due="none") == await agent.ids(due="none", sort="newest")


# --- due windows ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Planted:
    id: int
    day: date | None
    at: datetime | None
    pending: bool


def _window(window: str, tasks: list[Planted], zone: ZoneInfo, now: datetime) -> set[int]:
    """What the window means, written independently of the server: the oracle."""
    today = now.astimezone(zone).date()
    start = datetime.combine(today, time(0), tzinfo=zone)
    end = datetime.combine(today + timedelta(days=1), time(0), tzinfo=zone)
    chosen: set[int] = set()
    for task in tasks:
        if task.day is None:
            hit = window == "none"
        elif task.at is not None:
            hit = {
                "overdue": task.pending and task.at < now,
                "today": start <= task.at < end,
                "overdue_or_today": task.pending and task.at < end,
                "upcoming": task.at >= end,
            }.get(window, False)
        else:
            hit = {
                "overdue": task.pending and task.day < today,
                "today": task.day == today,
                "overdue_or_today": task.pending and task.day <= today,
                "upcoming": task.day > today,
            }.get(window, False)
        if hit:
            chosen.add(task.id)
    return chosen


def _offset_text(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds")


async def _plant(agent: Agent, zone_name: str, tag: str) -> list[Planted]:
    """Tasks around the caller's local today, written with offsets, with the zone, and as dates."""
    zone = ZoneInfo(zone_name)
    today = datetime.now(UTC).astimezone(zone).date()
    yesterday, tomorrow = today - timedelta(days=1), today + timedelta(days=1)

    def local(day: date, hour: int, minute: int) -> datetime:
        return datetime.combine(day, time(hour, minute), tzinfo=zone)

    specs: list[tuple[str, date | None, datetime | None, bool]] = [
        ("all-day yesterday", yesterday, None, True),
        ("all-day today", today, None, True),
        ("all-day tomorrow", tomorrow, None, True),
        ("yesterday 23:30 (offset)", yesterday, local(yesterday, 23, 30), True),
        ("today 00:00 (zone)", today, local(today, 0, 0), True),
        ("today 23:30 (zone)", today, local(today, 23, 30), True),
        ("tomorrow 00:30 (offset)", tomorrow, local(tomorrow, 0, 30), True),
        ("undated", None, None, True),
        ("completed all-day today", today, None, False),
        ("completed yesterday 12:00", yesterday, local(yesterday, 12, 0), False),
    ]
    planted = []
    for title, day, at, pending in specs:
        if at is None:
            due = day.isoformat() if day else None
        elif "(offset)" in title:
            due = _offset_text(at)
        else:
            due = f"{at.replace(tzinfo=None).isoformat()}[{zone_name}]"
        task = await agent.add(title, tags=[tag], **({"due": due} if due else {}))
        if not pending:
            await agent.call("complete_task", task_ids=[task["id"]])
        planted.append(Planted(id=task["id"], day=day, at=at, pending=pending))
    return planted


WINDOWS = ["overdue", "today", "overdue_or_today", "upcoming", "none"]


@pytest.mark.parametrize("zone_name", ["Pacific/Kiritimati", "America/Los_Angeles"])
async def test_due_windows_use_the_callers_time_zone(agent: Agent, zone_name: str) -> None:
    planted = await _plant(agent, zone_name, "mine")
    zone, utc = ZoneInfo(zone_name), ZoneInfo("UTC")
    now = datetime.now(UTC)
    # The case is only worth running if "today" in this zone and in UTC pick different tasks;
    # with tasks at 00:00 and 23:30 local that holds whatever time it is.
    assert _window("today", planted, zone, now) != _window("today", planted, utc, now)

    for window in WINDOWS:
        for status in ("all", "pending"):
            subset = [task for task in planted if status == "all" or task.pending]
            for tz, oracle_zone in ((zone_name, zone), (None, utc)):
                # Without tz, the server's configured zone (UTC in these tests) decides.
                filters = {"due": window, "status": status, "tag": "mine", **({"tz": tz} if tz else {})}
                before = datetime.now(UTC).replace(microsecond=0)
                found = await agent.ids(**filters)
                after = datetime.now(UTC)
                # The server's clock reads whole seconds; an oracle from before and after the call keeps
                # the check exact even if a boundary (local midnight, a due time) passes meanwhile.
                expected = [_window(window, subset, oracle_zone, moment) for moment in (before, after)]
                assert len(found) == len(set(found))
                assert set(found) in expected, (filters, found, expected[0])
