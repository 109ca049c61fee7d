"""Due values, tags and input limits, checked on the models alone (no database, no MCP)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from todo_mcp.due import format_due, parse_due
from todo_mcp.models import Task, TaskCreate, TaskPatch, TaskQuery
from todo_mcp.storage.table import NO_DUE_SORT


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-12-24", "2026-12-24"),
        ("2026-12-24T17:00:00Z", "2026-12-24T17:00:00Z"),
        ("2026-12-24T17:00Z", "2026-12-24T17:00:00Z"),
        ("2026-12-24T17:00:00+01:00", "2026-12-24T17:00:00+01:00"),
        ("2026-12-24 17:00-0330", "2026-12-24T17:00:00-03:30"),
        ("2026-12-24T17:00:00.250+05:45", "2026-12-24T17:00:00.250000+05:45"),
        ("2026-12-24T17:00[Europe/Paris]", "2026-12-24T17:00:00+01:00[Europe/Paris]"),
        ("2026-07-01T09:15:00-07:00[America/Los_Angeles]", "2026-07-01T09:15:00-07:00[America/Los_Angeles]"),
        ("2026-12-24T23:30+14:00[Pacific/Kiritimati]", "2026-12-24T23:30:00+14:00[Pacific/Kiritimati]"),
        # The hour that happens twice when clocks go back: the offset picks which one.
        ("2026-10-25T02:30+01:00[Europe/Paris]", "2026-10-25T02:30:00+01:00[Europe/Paris]"),
        ("2026-10-25T02:30+02:00[Europe/Paris]", "2026-10-25T02:30:00+02:00[Europe/Paris]"),
    ],
)
def test_due_text_is_canonical_and_survives_storage(text: str, expected: str) -> None:
    due = parse_due(text)
    assert due.text() == expected
    # What the database keeps (the UTC instant, the date, the zone) formats back to the same text.
    stored_at = due.at.astimezone(UTC) if due.at is not None else None
    assert format_due(due.day, stored_at, due.tz) == expected
    again = parse_due(expected)
    assert (again.day, again.tz) == (due.day, due.tz)
    # astimezone: datetimes in a repeated hour compare unequal across zones (PEP 495).
    assert (again.at and again.at.astimezone(UTC)) == stored_at


@pytest.mark.parametrize(
    ("text", "instant"),
    [
        ("2026-12-24T17:00:00Z", datetime(2026, 12, 24, 17, 0, tzinfo=UTC)),
        ("2026-12-24T17:00:00-08:00", datetime(2026, 12, 25, 1, 0, tzinfo=UTC)),
        ("2026-12-24T23:30[Pacific/Kiritimati]", datetime(2026, 12, 24, 9, 30, tzinfo=UTC)),
        ("2026-10-25T02:30+01:00[Europe/Paris]", datetime(2026, 10, 25, 1, 30, tzinfo=UTC)),
        ("2026-10-25T02:30+02:00[Europe/Paris]", datetime(2026, 10, 25, 0, 30, tzinfo=UTC)),
    ],
)
def test_due_denotes_the_instant_it_was_given(text: str, instant: datetime) -> None:
    due = parse_due(text)
    assert due.at is not None
    assert due.at.astimezone(UTC) == instant
    assert due.sort_key == instant
    assert due.day == date.fromisoformat(text[:10])


def test_date_only_due_has_no_instant_and_sorts_at_the_end_of_its_day() -> None:
    due = parse_due("2026-12-24")
    assert due.at is None
    assert due.tz is None
    assert due.sort_key == datetime(2026, 12, 24, 23, 59, 59, tzinfo=UTC)
    assert due.sort_key < NO_DUE_SORT


def test_naive_date_time_is_refused_with_the_forms_to_send() -> None:
    with pytest.raises(ValueError, match="no offset or zone") as raised:
        parse_due("2026-12-24T17:00")
    message = str(raised.value)
    assert "2026-12-24T17:00+01:00" in message
    assert "2026-12-24T17:00[Europe/Paris]" in message
    assert "just the date 2026-12-24" in message


FORMS = "send a date 2026-12-24, a date-time with offset 2026-12-24T17:00:00+01:00"


@pytest.mark.parametrize(
    ("text", "complaint", "hint"),
    [
        ("2026-02-30", "not a real calendar date", FORMS),
        ("2026-13-01", "not a real calendar date", FORMS),
        ("2026-12-24T25:00Z", "not a real time of day", FORMS),
        ("tomorrow", "not understood", FORMS),
        ("24/12/2026", "not understood", FORMS),
        ("2026-12-24T17:00[Europe/Paris", "not understood", FORMS),
        ("2026-12-24T17:00+02:00[Europe/Paris]", "does not match Europe/Paris", "drop the offset or fix it"),
        ("2026-12-24T17:00Z[America/New_York]", "does not match America/New_York", "drop the offset"),
        ("2026-12-24T17:00[Mars/Olympus_Mons]", "unknown time zone", "use an IANA name such as Europe/Paris"),
        ("2026-12-24T17:00+24:00", "out of range", "offsets run from -23:59 to +23:59"),
        # 02:30 never happens in Paris on the night clocks go forward.
        ("2026-03-29T02:30[Europe/Paris]", "does not exist in Europe/Paris", "send a time outside the gap"),
        ("2026-03-29T02:30+01:00[Europe/Paris]", "does not exist", "send a time outside the gap"),
        # Far enough from datetime's limits and from the sort position of undated tasks.
        ("0999-12-31", "out of range", "send a date from 1000-01-01 to 9998-12-31"),
        ("9999-01-01", "out of range", "send a date from 1000-01-01 to 9998-12-31"),
        ("9999-12-31T23:00-05:00", "out of range", "9998-12-31"),
    ],
)
def test_invalid_due_is_refused_with_what_to_send(text: str, complaint: str, hint: str) -> None:
    with pytest.raises(ValueError, match=complaint) as raised:
        parse_due(text)
    assert hint in str(raised.value)


@pytest.mark.parametrize("text", ["1000-01-01T00:00+14:00", "9998-12-31T23:59-23:59", "9998-12-31"])
def test_the_ends_of_the_due_range_sort_before_undated_tasks(text: str) -> None:
    assert parse_due(text).sort_key < NO_DUE_SORT


def test_format_due_of_nothing_is_none() -> None:
    assert format_due(None, None, None) is None
    instant = datetime(2026, 1, 2, 3, 4, tzinfo=timezone(timedelta(hours=-5)))
    assert format_due(date(2026, 1, 2), instant, None) == "2026-01-02T08:04:00Z"
    paris = datetime(2026, 1, 2, 9, 4, tzinfo=ZoneInfo("Europe/Paris"))
    assert format_due(date(2026, 1, 2), paris, "Europe/Paris") == "2026-01-02T09:04:00+01:00[Europe/Paris]"


# --- tags and limits ---------------------------------------------------------------------------------


def test_tags_are_lowercased_stripped_and_deduplicated_in_order() -> None:
    task = TaskCreate(title="  Buy milk ", tags=[" Work", "work", "HOME", "errands"])
    assert task.title == "Buy milk"
    assert task.tags == ["work", "home", "errands"]
    assert TaskPatch(tags=[]).tags == []


@pytest.mark.parametrize(
    ("fields", "field", "hint"),
    [
        ({"title": "x" * 201}, "title", "at most 200 characters"),
        ({"title": "   "}, "title", "send a short title"),
        ({"title": "x", "description": "d" * 4001}, "description", "at most 4000 characters"),
        ({"title": "x", "tags": [f"t{i}" for i in range(11)]}, "tags", "at most 10 items"),
        ({"title": "x", "tags": ["two words"]}, "tags", "single words without spaces or commas"),
        ({"title": "x", "tags": ["a,b"]}, "tags", "single words without spaces or commas"),
        ({"title": "x", "tags": ["t" * 33]}, "tags.0", "at most 32 characters"),
        ({"title": "x", "priority": "critical"}, "priority", "'low', 'medium', 'high' or 'urgent'"),
        ({"title": "x", "client_request_id": "k" * 129}, "client_request_id", "at most 128 characters"),
        ({"title": "x", "due": "2026-12-24T17:00"}, "due", "no offset or zone"),
        ({"title": "a\x00b"}, "title", "NUL character"),
        ({"title": "x", "description": "\x00"}, "description", "NUL character"),
        ({"title": "x", "tags": ["a\x00"]}, "tags.0", "NUL character"),
        ({"title": "x", "client_request_id": "k\x00"}, "client_request_id", "NUL character"),
    ],
)
def test_create_limits(fields: dict[str, Any], field: str, hint: str) -> None:
    with pytest.raises(ValidationError) as raised:
        TaskCreate(**fields)
    (error,) = raised.value.errors()
    assert ".".join(str(part) for part in error["loc"]) == field
    assert hint in error["msg"]


def test_limits_at_the_edge_are_accepted() -> None:
    task = TaskCreate(
        title="x" * 200,
        description="d" * 4000,
        tags=[f"t{i}" for i in range(10)],
        client_request_id="k" * 128,
    )
    assert len(task.tags) == 10
    assert TaskQuery(limit=100, search="s" * 200).limit == 100


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"limit": 101}, "limit"),
        ({"limit": 0}, "limit"),
        ({"search": "s" * 201}, "search"),
        ({"search": "a\x00"}, "search"),
        ({"tz": "Nowhere"}, "tz"),
    ],
)
def test_query_limits(fields: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as raised:
        TaskQuery(**fields)
    assert raised.value.errors()[0]["loc"] == (field,)


def test_query_defaults() -> None:
    query = TaskQuery()
    assert (query.status, query.order, query.limit, query.cursor) == ("pending", "newest", 20, None)
    assert TaskQuery(due="today").order == "due"
    assert TaskQuery(due_before="2026-12-24").order == "due"
    assert TaskQuery(due="today", sort="priority").order == "priority"
    assert TaskQuery(due="none").order == "newest"


def test_patch_names_only_the_fields_it_was_given() -> None:
    assert TaskPatch(title="New").changes() == {"title": "New"}
    assert TaskPatch(description="", due="", tags=[]).changes() == {"description": "", "due": "", "tags": []}
    assert TaskPatch(expected_version=3).changes() == {}
    assert TaskPatch(due="2026-12-24T17:00Z").due == "2026-12-24T17:00:00Z"
    with pytest.raises(ValidationError, match="no offset or zone"):
        TaskPatch(due="2026-12-24T17:00")


def test_task_rows_leave_out_empty_fields() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    task = Task(
        id=1, title="x", status="pending", priority="low", tags=[], version=1, created_at=now, updated_at=now
    )
    assert task.model_dump(mode="json") == {
        "id": 1,
        "title": "x",
        "status": "pending",
        "priority": "low",
        "tags": [],
        "version": 1,
        "created_at": "2026-01-01T00:00:00Z",
        "updated_at": "2026-01-01T00:00:00Z",
    }
