"""List cursors: the sort key of the last row of a page, tied to its query and signed.

A cursor is opaque to callers. It holds a short fingerprint of the filters and sort order, so a
cursor sent with another query is refused instead of silently giving a wrong page, and an HMAC
with the deployment's key, so a cursor nobody issued is refused before anything in it is read.
Every key it carries is checked for type and range all the same.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel

from todo_mcp.due import DUE_FIRST
from todo_mcp.errors import InvalidCursor
from todo_mcp.models import SortOrder, TaskQuery
from todo_mcp.storage.table import ID_MAX, NO_DUE_SORT, RANK_PRIORITY

# sort name -> ((column, descending), ...); the last column is always the unique id.
SORTS: dict[SortOrder, tuple[tuple[str, bool], ...]] = {
    "newest": (("id", True),),
    "oldest": (("id", False),),
    "due": (("due_sort", False), ("id", False)),
    "priority": (("priority", True), ("due_sort", False), ("id", False)),
}
_SIGNATURE_BYTES = 16
_EARLIEST = datetime.combine(DUE_FIRST, datetime.min.time(), tzinfo=UTC) - timedelta(days=1)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _fingerprint(query: BaseModel) -> str:
    # The fields in their declared order: the same query always gives the same text.
    payload = query.model_dump_json(exclude={"cursor", "limit"})
    return _b64(hashlib.sha256(payload.encode()).digest()[:6])


def _signature(key: bytes, body: str) -> str:
    return _b64(hmac.new(key, body.encode(), hashlib.sha256).digest()[:_SIGNATURE_BYTES])


def sign_keys(query: BaseModel, keys: list[Any], key: bytes) -> str:
    """A cursor holding `keys` (JSON values) for `query`, signed with `key`."""
    body = _b64(json.dumps({"q": _fingerprint(query), "k": keys}, separators=(",", ":")).encode())
    return f"{body}.{_signature(key, body)}"


def signed_keys(query: BaseModel, cursor: str, key: bytes, count: int) -> list[Any]:
    """The `count` keys of a cursor; InvalidCursor unless this deployment made it for `query`.

    The keys are still to be checked for type and range by the caller (ValueError, TypeError).
    """
    body, _, signature = cursor.partition(".")
    if not hmac.compare_digest(signature.encode(), _signature(key, body).encode()):
        raise InvalidCursor(type(query).__name__)
    try:
        data = json.loads(_unb64(body))
        keys = data["k"]
        if data["q"] != _fingerprint(query) or not isinstance(keys, list) or len(keys) != count:
            raise ValueError("cursor of another query")
    except (ValueError, KeyError, TypeError, binascii.Error, UnicodeDecodeError):
        raise InvalidCursor(type(query).__name__) from None
    return keys


def encode_cursor(query: TaskQuery, row: Mapping[str, Any], key: bytes) -> str:
    """The cursor that continues `query` after `row`, signed with `key`."""
    keys: list[Any] = []
    for column, _ in SORTS[query.order]:
        value = row[column]
        keys.append(value.isoformat() if isinstance(value, datetime) else value)
    return sign_keys(query, keys, key)


def decode_cursor(query: TaskQuery, cursor: str, key: bytes) -> list[Any]:
    """The sort key a cursor continues after; InvalidCursor unless this deployment made it for `query`."""
    columns = SORTS[query.order]
    keys = signed_keys(query, cursor, key, len(columns))
    try:
        return [_key(column, value) for (column, _), value in zip(columns, keys, strict=True)]
    except (ValueError, TypeError):
        raise InvalidCursor(type(query).__name__) from None


def id_key(value: Any) -> int:
    """An id sort key, checked for type and range (ValueError otherwise)."""
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= ID_MAX:
        raise ValueError("id key out of range")
    return value


def _key(column: str, value: Any) -> Any:
    """One sort key, checked for the column's type and range."""
    if column == "due_sort":
        instant = datetime.fromisoformat(value)
        if instant.tzinfo is None or not _EARLIEST <= instant <= NO_DUE_SORT:
            raise ValueError("due key out of range")
        return instant
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError("key of the wrong type")
    if column == "priority" and value not in RANK_PRIORITY:
        raise ValueError("priority key out of range")
    if column == "id" and not 1 <= value <= ID_MAX:
        raise ValueError("id key out of range")
    return value
