"""The HTTP app built in-process on an already-open database: REST and MCP through ASGI, no port."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx2
import jsonschema
import pytest
from fastapi import FastAPI
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from tests.calls import Agent
from todo_mcp.config import Settings
from todo_mcp.storage.engine import Database
from todo_mcp.web.app import create_app

pytestmark = pytest.mark.anyio

BASE = "http://127.0.0.1"


@pytest.fixture
async def app(database: Database, owner: str) -> AsyncIterator[FastAPI]:
    settings = Settings(TODO_MCP_USER_ID=owner, TODO_MCP_TIMEZONE="UTC", TODO_MCP_RATE_LIMIT_PER_MINUTE=0)
    application = create_app(settings, database=database, verifier=None)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def http(app: FastAPI) -> AsyncIterator[httpx2.AsyncClient]:
    async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url=BASE) as client:
        yield client


def _error_body_validator(spec: dict[str, Any]) -> jsonschema.Draft202012Validator:
    """A validator for the declared ErrorBody, resolving references inside the OpenAPI document."""
    schema = {"$ref": "#/components/schemas/ErrorBody", "components": spec["components"]}
    return jsonschema.Draft202012Validator(schema)


async def test_rest_and_mcp_share_the_open_database(http: httpx2.AsyncClient) -> None:
    created = await http.post("/api/tasks", json={"title": "Over REST", "tags": ["in-process"]})
    assert created.status_code == 201, created.text
    async with Client(streamable_http_client(f"{BASE}/mcp", http_client=http), mode="2026-07-28") as client:
        agent = Agent(client)
        (listed,) = (await agent.page(tag="in-process"))["tasks"]
        made = created.json()
        assert isinstance(made.pop("change_id"), int)
        assert listed == made
        done = (await agent.call("complete_task", task_ids=[listed["id"]]))["results"][0]["task"]
    read = await http.get(f"/api/tasks/{listed['id']}")
    assert read.json() == done
    assert read.headers["etag"] == '"2"'


async def test_every_rest_error_body_has_the_documented_shape(http: httpx2.AsyncClient) -> None:
    spec = (await http.get("/openapi.json")).json()
    validator = _error_body_validator(spec)
    task = (await http.post("/api/tasks", json={"title": "Versioned"})).json()
    url = f"/api/tasks/{task['id']}"
    answers = {
        404: await http.get("/api/tasks/987654321"),
        409: await http.patch(url, json={"title": "x"}, headers={"If-Match": '"7"'}),
        422: await http.post("/api/tasks", json={"title": "", "owner": "x"}),
    }
    documented = spec["paths"]["/api/tasks/{task_id}"]["patch"]["responses"]
    for status, response in answers.items():
        assert response.status_code == status, response.text
        validator.validate(response.json())
    assert {"404", "409", "422"} <= set(documented)
    assert answers[409].json()["current_version"] == 1
    problems = {error["field"]: error["problem"] for error in answers[422].json()["errors"]}
    assert set(problems) == {"body.title", "body.owner"}
    assert problems["body.owner"] == "is not an accepted field"
    assert "Use list_tasks" not in answers[404].json()["detail"], "REST words its own errors"


async def test_the_ledger_over_rest_reads_changes_and_history_and_undoes(http: httpx2.AsyncClient) -> None:
    spec = (await http.get("/openapi.json")).json()
    assert {"/api/changes", "/api/changes/undo", "/api/tasks/{task_id}/history"} <= set(spec["paths"])
    task = (await http.post("/api/tasks", json={"title": "Buy milk"})).json()
    url = f"/api/tasks/{task['id']}"
    renamed = await http.patch(url, json={"title": "Buy oat milk"})
    assert renamed.status_code == 200, renamed.text
    changes = (await http.get("/api/changes", params={"limit": 1})).json()
    (latest,) = changes["changes"]
    assert latest["change_id"] == renamed.json()["change_id"]
    assert latest["via"] == "PATCH /api/tasks/{task_id}"
    assert latest["tasks"][0]["after"] == {"title": "Buy oat milk", "version": 2}
    more = (await http.get("/api/changes", params={"limit": 1, "cursor": changes["next_cursor"]})).json()
    assert more["changes"][0]["via"] == "POST /api/tasks"
    assert (await http.get("/api/tasks/987654321/history")).status_code == 404
    history = (await http.get(f"{url}/history")).json()
    assert [change["change_id"] for change in history["changes"]] == [latest["change_id"], task["change_id"]]

    preview = await http.post("/api/changes/undo", json={"dry_run": True})
    assert preview.status_code == 200, preview.text
    assert (await http.get(url)).json()["title"] == "Buy oat milk"
    undo = (await http.post("/api/changes/undo", json={})).json()
    assert undo["undone"] == [latest["change_id"]]
    assert (await http.get(url)).json()["title"] == "Buy milk"

    validator = _error_body_validator(spec)
    again = await http.post("/api/changes/undo", json={"change_ids": [latest["change_id"]]})
    missing = await http.post("/api/changes/undo", json={"change_ids": [10**12]})
    bad = await http.get("/api/changes", params={"since": "yesterday"})
    for response, status in ((again, 409), (missing, 404), (bad, 422)):
        assert response.status_code == status, response.text
        validator.validate(response.json())
    assert f"undo change {undo['change_id']} to redo it" in again.json()["detail"]
    assert bad.json()["errors"][0]["field"] == "query.since"
    assert bad.json()["errors"][0]["problem"].startswith("is not a date-time: send ISO 8601")
    bare = await http.post("/api/changes/undo")
    assert bare.status_code == 200, bare.text
    assert bare.json()["undone"] == [task["change_id"]], "no body: the last change not undone yet"
    assert (await http.get(url)).status_code == 404, "undoing its creation deleted it"
    other = (await http.post("/api/tasks", json={"title": "Call Ana"})).json()
    await http.patch(f"/api/tasks/{other['id']}", json={"title": "Call Ana back"})
    nothing = await http.post("/api/changes/undo", json={"change_ids": [other["change_id"]]})
    assert nothing.status_code == 409, nothing.text
    validator.validate(nothing.json())
    assert nothing.json()["detail"].startswith(f"Nothing was undone: task {other['id']} was changed after")
    assert (
        missing.json()["detail"] == "Change 1000000000000 was not found; GET /api/changes lists your changes."
    )
