"""Reading a request body once, for every route: bounded in size and time, JSON parsed and depth-checked.

A body larger than the limit is refused from its Content-Length before a byte is read, or as
soon as the bytes that arrive pass the limit. A JSON body is parsed here, once, so that nesting
too deep for any task operation is a 400 rather than a crash further in, and so that the bearer
gate can read which calls it holds. The application then receives the same bytes again.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import anyio
from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger(__name__)

PARSED_BODY_KEY = "todo_mcp.json"
MAX_DEPTH = 32
MCP_PATHS = ("/mcp", "/messages")
PARSE_ERROR = -32700


def depth(value: Any) -> int:
    """How deeply lists and objects nest in a parsed JSON value (a scalar is 0)."""
    deepest = 0
    pending: list[tuple[Any, int]] = [(value, 0)]
    while pending:
        item, level = pending.pop()
        if isinstance(item, dict | list):
            level += 1
            deepest = max(deepest, level)
            pending.extend((child, level) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


def refusal(scope: Scope, status: int, reason: str) -> JSONResponse:
    """A 4xx in the shape of the route: a JSON-RPC error on the MCP transports, an ErrorBody on REST.

    After a 408 or 413 part of the body is still on its way, so the connection is closed.
    """
    if scope["path"].startswith(MCP_PATHS):
        code = PARSE_ERROR if status == 400 else -32600
        body: dict[str, Any] = {"jsonrpc": "2.0", "id": None, "error": {"code": code, "message": reason}}
    else:
        body = {"detail": reason}
    headers = {"Connection": "close"} if status in (408, 413) else None
    return JSONResponse(body, status_code=status, headers=headers)


async def _read(receive: Receive, limit: int) -> tuple[bytes | None, list[Message]]:
    """The whole body (None once it passes `limit`), plus any non-body message received."""
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


def _replay(body: bytes, extra: list[Message], receive: Receive) -> Receive:
    pending: list[Message] = [{"type": "http.request", "body": body, "more_body": False}, *extra]

    async def replayed() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replayed


def _parse(body: bytes) -> tuple[Any, str | None]:
    """The parsed JSON body, or the reason it cannot be used."""
    try:
        data = json.loads(body)
    except UnicodeDecodeError:
        return None, "the body is not valid UTF-8; send JSON encoded as UTF-8"
    except RecursionError:
        return None, f"the JSON body nests deeper than {MAX_DEPTH} levels; no task operation needs that"
    except ValueError as error:
        return None, f"the body is not valid JSON ({str(error).splitlines()[0][:120]}); send one JSON value"
    if depth(data) > MAX_DEPTH:
        return None, f"the JSON body nests deeper than {MAX_DEPTH} levels; no task operation needs that"
    return data, None


class BodyReader:
    """Reads each request body once, within `max_bytes` and `timeout` seconds, and replays it."""

    def __init__(self, app: ASGIApp, *, max_bytes: int, timeout: float) -> None:
        """Guard `app`: bodies over `max_bytes` get 413, bodies slower than `timeout` seconds 408."""
        self.app = app
        self.max_bytes = max_bytes
        self.timeout = timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Refuse the request here, or hand it on with its body read."""
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        too_large = f"the request body is larger than {self.max_bytes} bytes; send at most that"
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await refusal(scope, 413, too_large)(scope, receive, send)
            return
        try:
            with anyio.fail_after(self.timeout):
                body, extra = await _read(receive, self.max_bytes)
        except TimeoutError:
            reason = f"the request body did not arrive within {self.timeout:g} s"
            await refusal(scope, 408, reason)(scope, receive, send)
            return
        if body is None:
            await refusal(scope, 413, too_large)(scope, receive, send)
            return
        if body and "json" in headers.get("content-type", "").lower():
            data, problem = _parse(body)
            if problem is not None:
                log.info("refused %s %s: %s", scope["method"], scope["path"], problem)
                await refusal(scope, 400, problem)(scope, receive, send)
                return
            scope[PARSED_BODY_KEY] = data
        await self.app(scope, _replay(body, extra, receive), send)
