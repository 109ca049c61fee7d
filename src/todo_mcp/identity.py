"""Who a request acts for: the verified token's subject over HTTP, the configured user over stdio."""

from __future__ import annotations

from dataclasses import dataclass

READ = "todo:read"
WRITE = "todo:write"
ALL_SCOPES = frozenset({READ, WRITE})


@dataclass(frozen=True)
class Principal:
    user_id: str
    scopes: frozenset[str] = ALL_SCOPES


def local_identity(user_id: str) -> Principal:
    """The single local user of a stdio session (or of the explicit no-auth loopback mode)."""
    return Principal(user_id=user_id, scopes=ALL_SCOPES)
