"""Database faults on real PostgreSQL through a fault-injecting proxy: bounded time, honest answers.

A black-holed database (packets go nowhere) costs each call at most the statement or connect
timeout; a call cut off after its statement was sent says that its outcome is unknown and how
to retry safely; a connection that failed is never handed out again.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator

import httpx2
import pytest
from fastapi import FastAPI

from tests.calls import Agent
from tests.wired import Wire, open_wire, rows_titled
from todo_mcp.config import Settings
from todo_mcp.web.app import create_app

pytestmark = pytest.mark.anyio

TIMEOUT = 1.0  # the statement and connect timeouts of these tests, in seconds


@pytest.fixture
async def wire(pg_url: str, owner: str, settings: Settings) -> AsyncIterator[Wire]:
    async with open_wire(
        pg_url, owner, settings, f"&connect_timeout={TIMEOUT}", statement_timeout=TIMEOUT
    ) as w:
        yield w


async def _timed_failure(agent: Agent, tool: str, **arguments: object) -> tuple[str, float]:
    started = time.monotonic()
    text = await agent.fail(tool, **arguments)
    return text, time.monotonic() - started


async def test_a_black_holed_database_costs_each_call_one_timeout_and_says_what_happened(wire: Wire) -> None:
    agent = Agent(wire.client)
    task = await agent.add("before the outage")
    wire.proxy.black_hole = True

    sent, first = await _timed_failure(agent, "add_task", title="during the outage", client_request_id="k-1")
    unreachable, second = await _timed_failure(agent, "list_tasks")
    read_sent, third = await _timed_failure(agent, "get_task", task_id=task["id"])

    # The pooled connection carried the statement: its outcome is unknown, and the text says how to retry.
    assert "may or may not have created the task" in sent
    assert "Retrying add_task with the same client_request_id is safe" in sent
    # It was discarded; a new connection cannot be opened: nothing was sent, nothing changed.
    assert "cannot be reached right now" in unreachable
    assert "nothing was changed" in unreachable
    assert "nothing was changed" in read_sent
    for elapsed in (first, second, third):
        assert elapsed < TIMEOUT * 3, (first, second, third)
    assert wire.invalidations, "the connection that timed out was thrown away"

    wire.proxy.black_hole = False
    again = await agent.add("during the outage", client_request_id="k-1")
    assert again["title"] == "during the outage"
    assert await agent.get(task["id"]) == task


async def test_a_write_cut_off_after_sending_says_its_outcome_is_unknown(
    wire: Wire, pg_url: str, owner: str
) -> None:
    agent = Agent(wire.client)
    task = await agent.add("target")
    # Each cut must fall on the reply to the statement itself: a cut connection is discarded, so the
    # same statement first runs once on the new connection (which opens it and prepares the statement).
    await agent.add("warm keyed", client_request_id=f"warm-{uuid.uuid4().hex}")
    wire.proxy.cut_next_reply()
    created = await agent.fail("add_task", title="cut", client_request_id="cut-1")
    await agent.update(task["id"], title="warm")
    wire.proxy.cut_next_reply()
    updated = await agent.fail("update_task", task_id=task["id"], title="renamed")
    await agent.page()
    wire.proxy.cut_next_reply()
    listed = await agent.fail("list_tasks")

    assert "may or may not have created the task" in created
    assert "same client_request_id is safe" in created
    assert "update_task was sent" in updated
    assert "get_task" in updated
    assert "expected_version" in updated
    assert "nothing was changed" in listed
    # The safe retry finds the task the cut-off call made.
    assert (await agent.add("cut", client_request_id="cut-1"))["version"] == 1
    assert await rows_titled(pg_url, owner, "cut") == 1
    assert (await agent.get(task["id"]))["title"] == "renamed", "the cut-off update had been applied"


@pytest.fixture
async def app(wire: Wire, settings: Settings, owner: str) -> AsyncIterator[FastAPI]:
    local = settings.model_copy(update={"user_id": owner, "rate_limit_per_minute": 0})
    application = create_app(local, database=wire.db, verifier=None)
    async with application.router.lifespan_context(application):
        yield application


async def test_rest_answers_database_faults_with_503_and_what_to_do(wire: Wire, app: FastAPI) -> None:
    async with httpx2.AsyncClient(
        transport=httpx2.ASGITransport(app=app), base_url="http://127.0.0.1"
    ) as http:
        task = (await http.post("/api/tasks", json={"title": "rest target"})).json()
        await http.post("/api/tasks", json={"title": "warm"}, headers={"Idempotency-Key": "rest-warm"})
        wire.proxy.cut_next_reply()
        created = await http.post("/api/tasks", json={"title": "cut"}, headers={"Idempotency-Key": "rest-1"})
        await http.patch(f"/api/tasks/{task['id']}", json={"title": "warm"})
        wire.proxy.cut_next_reply()
        patched = await http.patch(f"/api/tasks/{task['id']}", json={"title": "renamed"})
        wire.proxy.black_hole = True
        read = await http.get(f"/api/tasks/{task['id']}")
        wire.proxy.black_hole = False
        again = await http.post("/api/tasks", json={"title": "cut"}, headers={"Idempotency-Key": "rest-1"})
    for response in (created, patched, read):
        assert response.status_code == 503, response.text
        assert response.headers["retry-after"]
    assert "same Idempotency-Key is safe" in created.json()["detail"]
    assert "If-Match" in patched.json()["detail"]
    assert "nothing was changed" in read.json()["detail"]
    assert again.status_code == 201
