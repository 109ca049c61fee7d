"""Repeating tasks: completing one makes the next occurrence, dated by the RRULE rules, on both databases."""

from __future__ import annotations

import json
import random
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from mcp import Client

from tests.calls import Agent
from todo_mcp.recurrence import DAYS, parse_repeat

pytestmark = pytest.mark.anyio


async def _complete(agent: Agent, task_id: int) -> dict[str, Any]:
    (item,) = (await agent.call("complete_task", task_ids=[task_id]))["results"]
    assert isinstance(item, dict)
    assert item["ok"], item
    assert item["task"]["status"] == "completed", item
    return item


async def _next_due(agent: Agent, due: str, repeat: str) -> str | None:
    task = await agent.add("Repeating", due=due, repeat=repeat)
    following = (await _complete(agent, task["id"])).get("next")
    return following["due"] if following else None


# Dates in 2035: the next occurrence is the first after the day the task is done (today), so the
# due dates here lie ahead of it.
@pytest.mark.parametrize(
    ("due", "repeat", "expected"),
    [
        # 09:00 in Paris stays 09:00 when summer time ends (28 October 2035): the offset moves.
        ("2035-10-25T09:00:00[Europe/Paris]", "FREQ=WEEKLY", "2035-11-01T09:00:00+01:00[Europe/Paris]"),
        ("2035-03-22T09:00:00[Europe/Paris]", "FREQ=WEEKLY", "2035-03-29T09:00:00+02:00[Europe/Paris]"),
        # ...and in New York, whose clocks change on 4 November 2035.
        (
            "2035-11-02T18:30:00[America/New_York]",
            "FREQ=DAILY;INTERVAL=3",
            "2035-11-05T18:30:00-05:00[America/New_York]",
        ),
        # A fixed offset is kept as given.
        ("2035-12-04T09:00:00+05:30", "FREQ=DAILY", "2035-12-05T09:00:00+05:30"),
        # Date-only tasks stay date-only.
        ("2035-12-04", "FREQ=MONTHLY;BYDAY=-1FR", "2035-12-28"),
        ("2035-12-04", "FREQ=WEEKLY;INTERVAL=2;BYDAY=MO,TH", "2035-12-06"),
        ("2035-12-06", "FREQ=WEEKLY;INTERVAL=2;BYDAY=MO,TH", "2035-12-17"),
        ("2035-12-04", "FREQ=MONTHLY;BYDAY=2TU", "2035-12-11"),
        # RFC 5545: a month without the 31st has no occurrence, it is skipped (not moved to the 30th).
        ("2035-01-31", "FREQ=MONTHLY;BYMONTHDAY=31", "2035-03-31"),
        ("2035-03-31", "FREQ=MONTHLY;BYMONTHDAY=31", "2035-05-31"),
        # BYMONTHDAY=-1 is the last day of every month.
        ("2035-01-31", "FREQ=MONTHLY;BYMONTHDAY=-1", "2035-02-28"),
        # February 29th repeats yearly only in leap years.
        ("2036-02-29", "FREQ=YEARLY", "2040-02-29"),
        ("2035-12-04", "FREQ=DAILY;INTERVAL=7;UNTIL=20351215", "2035-12-11"),
        ("2035-12-11", "FREQ=DAILY;INTERVAL=7;UNTIL=20351215", None),
    ],
)
async def test_the_next_occurrence_is_dated_by_the_rule_in_the_tasks_zone(
    client: Client, due: str, repeat: str, expected: str | None
) -> None:
    assert await _next_due(Agent(client), due, repeat) == expected


async def test_a_task_done_late_is_next_due_after_the_day_it_was_done(client: Client) -> None:
    agent = Agent(client)
    today = datetime.now(UTC).date()  # the settings' zone is UTC
    mondays = await _next_due(agent, "2020-01-06", "FREQ=WEEKLY;BYDAY=MO")
    assert mondays == (today + timedelta(days=7 - today.weekday())).isoformat()
    # The rule keeps its phase: every other week, counted from the week it was first due.
    fortnight = await _next_due(agent, "2020-01-06", "FREQ=WEEKLY;INTERVAL=2")
    assert fortnight is not None
    following = date.fromisoformat(fortnight)
    assert following > today
    assert (following - date(2020, 1, 6)).days % 14 == 0
    assert (following - today).days <= 14


async def test_the_next_occurrence_copies_the_task_and_the_result_shows_both(client: Client) -> None:
    agent = Agent(client)
    task = await agent.add(
        "Water the plants",
        description="the big ones too",
        priority="high",
        tags=["home"],
        due="2035-12-01",
        repeat="FREQ=DAILY;INTERVAL=3;COUNT=2",
    )
    assert task["repeat_summary"] == "every 3 days, 1 more time"
    item = await _complete(agent, task["id"])
    following = item["next"]
    assert following["id"] != task["id"]
    assert following["status"] == "pending"
    for field in ("title", "description", "priority", "tags"):
        assert following[field] == task[field]
    assert (following["due"], following["repeat"]) == ("2035-12-04", "FREQ=DAILY;INTERVAL=3;COUNT=1")
    assert following["repeat_summary"] == "every 3 days, this time only"
    listed = {t["id"]: t for t in (await agent.page())["tasks"]}
    assert listed[following["id"]]["repeat_summary"] == "every 3 days, this time only"
    assert "next" not in await _complete(agent, following["id"])


async def test_after_completion_rules_count_from_the_day_it_is_done(client: Client) -> None:
    agent = Agent(client)
    today = datetime.now(UTC).date()
    late = await agent.add(
        "Descale the kettle", due="2020-01-01", repeat="FREQ=DAILY;INTERVAL=3;FROM=COMPLETION"
    )
    assert late["repeat_summary"] == "3 days after each completion"
    following = (await _complete(agent, late["id"]))["next"]
    assert following["due"] in {(today + timedelta(days=n)).isoformat() for n in (3, 4)}


async def test_undoing_a_completion_removes_the_next_occurrence_and_reopens_the_task(client: Client) -> None:
    agent = Agent(client)
    task = await agent.add("Review", due="2035-12-28", repeat="FREQ=MONTHLY;BYDAY=-1FR")
    done = await agent.call("complete_task", task_ids=[task["id"]])
    following = done["results"][0]["next"]
    undo = await agent.call("undo_changes", change_ids=[done["change_id"]])
    assert sorted(item["task_id"] for item in undo["tasks"]) == sorted([task["id"], following["id"]])
    assert await agent.ids() == [task["id"]]
    assert (await agent.get(task["id"]))["status"] == "pending"


async def test_a_rule_can_be_changed_or_cleared_and_an_unreadable_one_is_refused_with_examples(
    client: Client,
) -> None:
    agent = Agent(client)
    task = await agent.add("Rent", repeat="freq=monthly;bymonthday=1")
    assert (task["repeat"], task["repeat_summary"]) == ("FREQ=MONTHLY;BYMONTHDAY=1", "monthly on the 1st")
    changed = await agent.update(task["id"], repeat="FREQ=WEEKLY;INTERVAL=2;BYDAY=MO,TH")
    assert changed["repeat_summary"] == "every 2 weeks on Mon, Thu"
    cleared = await agent.update(task["id"], repeat="")
    assert "repeat" not in cleared
    assert "repeat_summary" not in cleared
    error = await agent.fail("add_task", title="Plants", repeat="every tuesday")
    assert error.startswith("Invalid arguments for add_task: repeat: is not a repeat rule this server reads")
    assert "FREQ=WEEKLY;BYDAY=MO,TH" in error
    assert await agent.ids() == [task["id"]]


def _random_rule(rng: random.Random) -> str:
    freq = rng.choice(["DAILY", "WEEKLY", "MONTHLY", "YEARLY"])
    parts = [f"FREQ={freq}", f"INTERVAL={rng.choice([1, 1, 2, 3, 5])}"]
    if freq in ("WEEKLY", "MONTHLY", "YEARLY") and rng.random() < 0.5:
        days = rng.sample(range(7), rng.randint(1, 3))
        ordinal = rng.choice(["", "", "1", "2", "-1", "-2"]) if freq != "WEEKLY" else ""
        parts.append("BYDAY=" + ",".join(f"{ordinal}{DAYS[day]}" for day in days))
    elif freq in ("MONTHLY", "YEARLY") and rng.random() < 0.6:
        parts.append("BYMONTHDAY=" + ",".join(str(d) for d in rng.sample([1, 15, 28, 29, 30, 31, -1, -2], 2)))
    if freq == "YEARLY" and (len(parts) > 2 or rng.random() < 0.5):
        parts.append(f"BYMONTH={rng.randint(1, 12)}")
    if rng.random() < 0.2:
        parts.append(f"UNTIL={date(2027, rng.randint(1, 12), 1):%Y%m%d}")
    return ";".join(parts)


async def test_the_databases_next_date_agrees_with_dateutil_on_random_rules(pg_url: str) -> None:
    rng = random.Random(20261130)
    cases = []
    for _ in range(800):
        rule = parse_repeat(_random_rule(rng))
        due = date(2024, 1, 1) + timedelta(days=rng.randint(0, 4 * 366))
        # Done on the due day, early, or late (up to two years late).
        done = due + timedelta(days=rng.choice([0, 0, -3, 1, 9, 40, 400, 700]))
        cases.append((rule, due, done))
    connection = await asyncpg.connect(pg_url)
    try:
        found = await connection.fetch(
            "SELECT todo_ledger_next_date(s::jsonb, d, x) AS next "
            "FROM unnest($1::text[], $2::date[], $3::date[]) WITH ORDINALITY AS u(s, d, x, n) ORDER BY n",
            [json.dumps(rule.spec()) for rule, _, _ in cases],
            [due for _, due, _ in cases],
            [done for _, _, done in cases],
        )
    finally:
        await connection.close()
    mismatches = [
        (rule.text(), due, done, row["next"], rule.next_date(due, done))
        for (rule, due, done), row in zip(cases, found, strict=True)
        if row["next"] != rule.next_date(due, done)
    ]
    assert mismatches == []


async def test_a_completion_whose_next_occurrence_changed_since_stays_as_it_is(client: Client) -> None:
    agent = Agent(client)
    gym = await agent.add("Gym", due="2035-12-03", repeat="FREQ=WEEKLY;BYDAY=MO,TH")
    laundry = await agent.add("Laundry")
    done = await agent.call("complete_task", task_ids=[gym["id"], laundry["id"]])
    following = done["results"][0]["next"]
    await agent.update(following["id"], title="Gym (legs)")
    undo = await agent.call("undo_changes", change_ids=[done["change_id"]])
    assert [item["task_id"] for item in undo["tasks"]] == [laundry["id"]]
    refused = {item["task_id"]: item for item in undo["refused"]}
    assert refused[gym["id"]]["reason"] == (
        f"its next occurrence, task {following['id']}, was changed since, so neither is undone"
    )
    assert refused[following["id"]]["changed"] == ["title"]
    assert sorted(await agent.ids()) == sorted([laundry["id"], following["id"]]), "no second pending Gym"
    only_gym = await agent.call("complete_task", task_ids=[following["id"]])
    await agent.update(only_gym["results"][0]["next"]["id"], priority="high")
    error = await agent.fail("undo_changes", change_ids=[only_gym["change_id"]])
    assert f"task {following['id']} stays completed because its next occurrence" in error
