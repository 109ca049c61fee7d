"""The answers the bearer gate gives instead of a route: 401 and 403 with RFC 6750/9728 headers, 429.

The WWW-Authenticate header names the resource metadata (RFC 9728), which names the
authorization server, and the scopes to ask for; MCP and REST share these answers. A 429 or 503
to an MCP request carries a JSON-RPC error for that request as its body, which MCP clients show
their caller (they read a non-2xx body only when it is one).
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.responses import JSONResponse, Response

from todo_mcp.errors import ScopeMissing
from todo_mcp.identity import ALL_SCOPES

SCOPE_HINT = " ".join(sorted(ALL_SCOPES))


@dataclass(frozen=True)
class Denial:
    """An answer the gate gives instead of the route."""

    status: int
    error: str | None  # None when no credentials were sent (RFC 6750 §3.1: no error code then)
    description: str
    scope: str = SCOPE_HINT
    retry_after: int | None = None


def scope_denial(error: ScopeMissing, what: str) -> Denial:
    """The 403 for a token without the scope that `what` ("This call", "This route") needs.

    Its scope hint is what the token has plus what it lacks: a client that asks for exactly
    that keeps the access it had instead of trading it for the new scope.
    """
    wanted = " ".join(sorted(error.granted | {error.needed}))
    return Denial(
        403,
        "insufficient_scope",
        f"{what} needs the {error.needed} scope, which the token lacks; get a token granting {wanted}",
        scope=wanted,
    )


def _quoted(text: str) -> str:
    """A value safe inside a quoted WWW-Authenticate parameter."""
    return "".join(ch for ch in text if ch.isprintable()).replace("\\", "/").replace('"', "'")


# JSON-RPC's range for implementation-defined server errors: the call was not made, try again later.
TRY_LATER = -32000


def denial_response(
    denial: Denial, resource_metadata_url: str | None, request_id: str | int | None = None
) -> Response:
    """The HTTP response for `denial`: WWW-Authenticate on 401/403, Retry-After on 429/503.

    The body carries RFC 6750's `error` and `error_description`, and the same text as `detail`,
    the field every error body of this server has; a 429 or 503 to the MCP request `request_id`
    is instead that request's JSON-RPC error.
    """
    headers: dict[str, str] = {}
    if denial.status in (429, 503):
        headers["Retry-After"] = str(denial.retry_after or 1)
    if denial.status in (401, 403):
        parts: list[str] = []
        if denial.error is not None:
            parts += [f'error="{denial.error}"', f'error_description="{_quoted(denial.description)}"']
        if resource_metadata_url is not None:
            parts.append(f'resource_metadata="{resource_metadata_url}"')
        parts.append(f'scope="{denial.scope}"')
        headers["WWW-Authenticate"] = "Bearer " + ", ".join(parts)
    if request_id is not None and denial.status in (429, 503):
        refusal = {
            "code": TRY_LATER,
            "message": denial.description,
            "data": {"retry_after": denial.retry_after or 1},
        }
        return JSONResponse(
            {"jsonrpc": "2.0", "id": request_id, "error": refusal}, status_code=denial.status, headers=headers
        )
    error = denial.error or ("rate_limited" if denial.status == 429 else "unauthorized")
    body = {"error": error, "error_description": denial.description, "detail": denial.description}
    return JSONResponse(body, status_code=denial.status, headers=headers)
