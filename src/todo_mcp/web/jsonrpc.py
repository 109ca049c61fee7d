"""Reading a posted JSON-RPC body once, bounded, to learn what its calls need before they run."""

from __future__ import annotations

import json

from starlette.types import Message, Receive

from todo_mcp.identity import READ
from todo_mcp.tools.records import scope_of

MAX_BODY_BYTES = 4 * 1024 * 1024


def needed_scopes(body: bytes) -> tuple[set[str], int]:
    """The scopes a JSON-RPC message (or batch) needs, and how many tool calls it holds."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return set(), 0  # the transport answers the parse error itself
    needed: set[str] = set()
    calls = 0
    for message in data if isinstance(data, list) else [data]:
        if not isinstance(message, dict):
            continue
        method = message.get("method")
        if method == "tools/call":
            calls += 1
            params = message.get("params")
            needed.add(scope_of(params.get("name") if isinstance(params, dict) else None))
        elif method in ("resources/read", "prompts/get"):
            needed.add(READ)
    return needed, calls


async def read_body(receive: Receive, limit: int) -> tuple[bytes | None, list[Message]]:
    """The whole request body (None when it exceeds `limit`), plus any non-body message received."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks), [message]
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None, []
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks), []


def replay(body: bytes, extra: list[Message], receive: Receive) -> Receive:
    """A `receive` that hands the application the body already read, then the rest of the stream."""
    pending: list[Message] = [{"type": "http.request", "body": body, "more_body": False}, *extra]

    async def replayed() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replayed
