"""The ledger over REST: the caller's changes, one task's history, and undo.

The same repository calls and models as the list_changes and undo_changes tools.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Query

from todo_mcp.change_models import ChangePage, ChangeQuery, UndoRequest, UndoResult
from todo_mcp.storage import repository
from todo_mcp.web.rest_errors import ROUTE_RESPONSES, documented
from todo_mcp.web.routes import Db, Reader, TaskIdPath, Writer, bearer_scheme, example_response

CHANGE_EXAMPLE: dict[str, Any] = {
    "change_id": 8,
    "at": "2026-12-20T09:35:00Z",
    "via": "update_task",
    "client": "claude-desktop",
    "tasks": [
        {
            "task_id": 42,
            "title": "Buy oat milk",
            "before": {"title": "Buy milk", "version": 1},
            "after": {"title": "Buy oat milk", "version": 2},
        }
    ],
}
UNDO_EXAMPLES = {
    "last": {"summary": "Undo my last change", "value": {}},
    "some": {"summary": "Undo two changes", "value": {"change_ids": [7, 8]}},
    "preview": {
        "summary": "Show what undoing my last 3 changes would do",
        "value": {"last": 3, "dry_run": True},
    },
}
UNDO_EXAMPLE: dict[str, Any] = {
    "dry_run": False,
    "change_id": 9,
    "undone": [8],
    "tasks": [
        {
            "task_id": 42,
            "title": "Buy milk",
            "before": {"title": "Buy oat milk", "version": 2},
            "after": {"title": "Buy milk", "version": 3},
        }
    ],
    "refused": [],
}


read_router = APIRouter(
    prefix="/api", tags=["changes"], dependencies=[Depends(bearer_scheme)], responses=ROUTE_RESPONSES
)
write_router = APIRouter(
    prefix="/api", tags=["changes"], dependencies=[Depends(bearer_scheme)], responses=ROUTE_RESPONSES
)
PAGE = example_response(
    "One page of changes, newest first", {"changes": [CHANGE_EXAMPLE], "next_cursor": None}
)


@read_router.get(
    "/changes", summary="List my changes", response_model=ChangePage, responses={**PAGE, **documented(422)}
)
async def list_changes(db: Db, owner: Reader, query: Annotated[ChangeQuery, Query()]) -> ChangePage:
    """Every recorded write of yours (by any client), newest first; filter by task_id, since and until."""
    return await db.run(repository.list_changes, owner=owner, query=query, cursor_key=db.cursor_key)


@read_router.get(
    "/tasks/{task_id}/history",
    summary="A task's history",
    response_model=ChangePage,
    responses={**PAGE, **documented(404, 422)},
)
async def task_history(
    db: Db,
    owner: Reader,
    task_id: TaskIdPath,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page.")] = None,
) -> ChangePage:
    """The changes that touched one task (deleted or not), newest first; 404 for a task that is not yours."""
    query = ChangeQuery(task_id=task_id, limit=limit, cursor=cursor)
    return await db.run(repository.list_changes, owner=owner, query=query, cursor_key=db.cursor_key)


@write_router.post(
    "/changes/undo",
    summary="Undo changes",
    response_model=UndoResult,
    responses={
        **example_response("What was undone, and what was refused", UNDO_EXAMPLE),
        **documented(404, 409, 422),
    },
)
async def undo_changes(
    db: Db, actor: Writer, request: Annotated[UndoRequest | None, Body(openapi_examples=UNDO_EXAMPLES)] = None
) -> UndoResult:
    """Undo changes by id, or your last N (default 1), as one new change; dry_run shows without writing.

    No body is the same as `{}`: the last change. A task that changed since is left alone and listed
    in `refused` with its current version; when nothing at all could be undone the answer is 409.
    """
    chosen = request if request is not None else UndoRequest()
    return await db.run(repository.undo_changes, actor=actor, request=chosen)
