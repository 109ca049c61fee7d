"""Who a request acts for, and the one check of what it may do.

Over HTTP the principal is the verified token's subject with the token's scopes; over stdio it
is the configured user with every scope. Identity never comes from tool arguments.
"""

from __future__ import annotations

from dataclasses import dataclass

from todo_mcp.errors import ScopeMissing

READ = "todo:read"
WRITE = "todo:write"
ALL_SCOPES = frozenset({READ, WRITE})


@dataclass(frozen=True)
class Principal:
    """A user, the scopes their credential grants, and the OAuth client it was issued to (if any)."""

    user_id: str
    scopes: frozenset[str] = ALL_SCOPES
    client: str | None = None


@dataclass(frozen=True)
class Actor:
    """Who makes a change, for the ledger: the user, the client they use, and the tool or route."""

    owner: str
    via: str
    client: str | None = None


def local_identity(user_id: str) -> Principal:
    """The single local user of a stdio session (or of the explicit no-auth loopback mode)."""
    return Principal(user_id=user_id, scopes=ALL_SCOPES)


def require(principal: Principal, scope: str) -> str:
    """The principal's user id if its scopes include `scope`; otherwise ScopeMissing."""
    if scope not in principal.scopes:
        raise ScopeMissing(scope, principal.scopes)
    return principal.user_id
