"""What a posted JSON-RPC message (or batch) asks for, read before it reaches the MCP server."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from todo_mcp.identity import READ
from todo_mcp.tools.records import scope_of


@dataclass
class Peek:
    """The scopes the messages need, how many count toward the rate limit, and whether one opens a session."""

    scopes: set[str] = field(default_factory=set)
    calls: int = 0
    initializes: bool = False
    # The id of a single request (not a batch, not a notification): a refusal can answer it.
    request_id: str | int | None = None


def peek(data: Any) -> Peek:
    """Read a parsed JSON-RPC body; anything that is not a message is left for the transport to refuse."""
    found = Peek()
    if (
        isinstance(data, dict)
        and isinstance(data.get("id"), str | int)
        and not isinstance(data.get("id"), bool)
    ):
        found.request_id = data["id"]
    for message in data if isinstance(data, list) else [data]:
        if not isinstance(message, dict):
            continue
        method = message.get("method")
        if method == "tools/call":
            found.calls += 1
            params = message.get("params")
            found.scopes.add(scope_of(params.get("name") if isinstance(params, dict) else None))
        elif method in ("resources/read", "prompts/get"):
            found.scopes.add(READ)
        elif method == "initialize":
            # Opening a session costs the server more than a call: it counts as one, and toward the
            # user's share of sessions.
            found.calls += 1
            found.initializes = True
    return found
