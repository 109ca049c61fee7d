"""List cursors: the sort key of the last row of a page, tied to the query that made it.

A cursor is opaque to callers. It holds a short fingerprint of the filters and sort order, so a
cursor sent with another query is refused instead of silently giving a wrong page.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from datetime import datetime
from typing import Any

from todo_mcp.errors import InvalidCursor
from todo_mcp.models import SortOrder, TaskQuery

# sort name -> ((column, descending), ...); the last column is always the unique id.
SORTS: dict[SortOrder, tuple[tuple[str, bool], ...]] = {
    "newest": (("id", True),),
    "oldest": (("id", False),),
    "due": (("due_sort", False), ("id", False)),
    "priority": (("priority", True), ("due_sort", False), ("id", False)),
}


def _fingerprint(query: TaskQuery) -> str:
    payload = query.model_dump(mode="json", exclude={"cursor", "limit"})
    digest = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).digest()
    return base64.urlsafe_b64encode(digest[:6]).decode()


def encode_cursor(query: TaskQuery, row: Any) -> str:
    """The cursor that continues `query` after `row`."""
    keys: list[Any] = []
    for column, _ in SORTS[query.sort]:
        value = getattr(row, column)
        keys.append(value.isoformat() if isinstance(value, datetime) else value)
    raw = json.dumps({"q": _fingerprint(query), "k": keys}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(query: TaskQuery, cursor: str) -> list[Any]:
    """The sort key a cursor continues after; InvalidCursor if it was not made for `query`."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        data = json.loads(raw)
        keys = data["k"]
        columns = SORTS[query.sort]
        if data["q"] != _fingerprint(query) or len(keys) != len(columns):
            raise ValueError("cursor of another query")
        return [_key(column, value) for (column, _), value in zip(columns, keys, strict=True)]
    except (ValueError, KeyError, TypeError, binascii.Error, UnicodeDecodeError):
        raise InvalidCursor from None


def _key(column: str, value: Any) -> Any:
    if column == "due_sort":
        return datetime.fromisoformat(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise ValueError("cursor key of the wrong type")
