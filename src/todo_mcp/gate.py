"""ASGI middleware in front of every HTTP route: the Host allowlist and the bearer-token gate.

The gate verifies the token of each request (or uses the configured local user in no-auth mode),
answers 401/403/429 itself with the headers OAuth clients read, and hands the request on with:

- the Principal in a context variable, which the MCP SDK carries along with each message to the
  handler of that message, so a tool always acts for the token of the request that carried it;
- `scope["user"]` set to the SDK's AuthenticatedUser, so the SDK binds a stateful session (legacy
  Streamable HTTP and SSE) to the user who opened it and refuses it to anyone else.

JSON-RPC bodies posted to the MCP transports are read (up to a size limit) so that a tool call the
token's scopes do not allow is refused with HTTP 403 before it reaches the server.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Awaitable, Callable, Iterable
from contextvars import ContextVar
from dataclasses import dataclass

from mcp.server.auth.middleware.auth_context import auth_context_var
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken
from starlette.authentication import AuthCredentials
from starlette.datastructures import Headers
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from todo_mcp.auth import AuthError
from todo_mcp.identity import ALL_SCOPES, READ, WRITE, Principal
from todo_mcp.ratelimit import RateLimiter
from todo_mcp.server import WRITE_TOOLS

log = logging.getLogger(__name__)

PRINCIPAL_SCOPE_KEY = "todo_mcp.principal"
AUTH_FAILURES_PER_MINUTE = 10
MAX_BODY_BYTES = 4 * 1024 * 1024
SCOPE_HINT = " ".join(sorted(ALL_SCOPES))

# Paths anyone may read: liveness, readiness, OAuth metadata and the API docs.
PUBLIC_PATHS = frozenset({"/healthz", "/readyz", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"})
PUBLIC_PREFIXES = ("/.well-known/",)
# Load balancer probes often use the pod address as Host: health checks skip the allowlist.
HOST_EXEMPT_PATHS = frozenset({"/healthz", "/readyz"})

_principal: ContextVar[Principal | None] = ContextVar("todo_mcp_principal", default=None)


class MissingIdentityError(RuntimeError):
    """A tool ran without a verified identity: a wiring mistake, refused rather than guessed."""


def current_principal() -> Principal:
    """The identity of the request being handled (the `identity` callable of build_server)."""
    principal = _principal.get()
    if principal is None:
        raise MissingIdentityError("no verified identity for this request")
    return principal


def is_public(path: str) -> bool:
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)


# --- Host allowlist ---------------------------------------------------------------------------------

_HAS_PORT = re.compile(r":(\d+|\*)$")


def host_patterns(names: Iterable[str]) -> list[str]:
    """Host header patterns in the SDK's syntax: a bare name also matches it with any port."""
    patterns: list[str] = []
    for raw in names:
        name = raw.strip().lower()
        if not name:
            continue
        for pattern in (name,) if _HAS_PORT.search(name) else (name, f"{name}:*"):
            if pattern not in patterns:
                patterns.append(pattern)
    return patterns


def host_allowed(host: str | None, patterns: list[str]) -> bool:
    if not host:
        return False
    host = host.lower()
    for pattern in patterns:
        if pattern.endswith(":*"):
            if host.startswith(pattern[:-1]) and host[len(pattern) - 1 :].isdigit():
                return True
        elif host == pattern:
            return True
    return False


class HostGuard:
    """421 for a Host header outside the allowlist (DNS rebinding, misrouted traffic)."""

    def __init__(self, app: ASGIApp, *, patterns: list[str]) -> None:
        self.app = app
        self.patterns = patterns

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] not in HOST_EXEMPT_PATHS:
            host = Headers(scope=scope).get("host")
            if not host_allowed(host, self.patterns):
                log.warning("refused a request for host %r (not in TODO_MCP_ALLOWED_HOSTS)", host)
                response = PlainTextResponse(
                    "Misdirected request: this host name is not served here "
                    "(the operator can add it to TODO_MCP_ALLOWED_HOSTS)",
                    status_code=421,
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


# --- the bearer gate --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Denial:
    """An answer the gate gives instead of the route."""

    status: int
    error: str | None  # None when no credentials were sent (RFC 6750 §3.1: no error code then)
    description: str
    scope: str = SCOPE_HINT
    retry_after: int | None = None


Authenticate = Callable[[str], Awaitable[Principal]]


def _quoted(text: str) -> str:
    """A value safe inside a quoted WWW-Authenticate parameter."""
    return "".join(ch for ch in text if ch.isprintable()).replace("\\", "/").replace('"', "'")


def denial_response(denial: Denial, resource_metadata_url: str | None) -> Response:
    headers: dict[str, str] = {}
    if denial.status == 429:
        headers["Retry-After"] = str(denial.retry_after or 1)
        body = {"error": "rate_limited", "error_description": denial.description}
    else:
        parts: list[str] = []
        if denial.error is not None:
            parts += [f'error="{denial.error}"', f'error_description="{_quoted(denial.description)}"']
        if resource_metadata_url is not None:
            parts.append(f'resource_metadata="{resource_metadata_url}"')
        parts.append(f'scope="{denial.scope}"')
        headers["WWW-Authenticate"] = "Bearer " + ", ".join(parts)
        body = {"error": denial.error or "unauthorized", "error_description": denial.description}
    return JSONResponse(body, status_code=denial.status, headers=headers)


def _bearer_token(scope: Scope) -> str | None:
    header = Headers(scope=scope).get("authorization")
    if header is None:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip()


def _client_address(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


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
            name = params.get("name") if isinstance(params, dict) else None
            needed.add(WRITE if name in WRITE_TOOLS else READ)
        elif method in ("resources/read", "prompts/get"):
            needed.add(READ)
    return needed, calls


async def _read_body(receive: Receive, limit: int) -> tuple[bytes | None, list[Message]]:
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


def _replay(body: bytes, extra: list[Message], receive: Receive) -> Receive:
    pending: list[Message] = [{"type": "http.request", "body": body, "more_body": False}, *extra]

    async def replayed() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replayed


class BearerGate:
    """Authenticates every non-public request and applies scopes and rate limits.

    `authenticate` (the token verifier; it raises AuthError for a token it refuses) is None in
    no-auth mode, where every request acts for `local`.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        authenticate: Authenticate | None,
        local: Principal | None,
        resource_metadata_url: str | None,
        calls_per_minute: int,
        failures_per_minute: int = AUTH_FAILURES_PER_MINUTE,
        max_body_bytes: int = MAX_BODY_BYTES,
    ) -> None:
        if (authenticate is None) == (local is None):
            raise ValueError("give exactly one of authenticate (tokens) or local (no-auth mode)")
        self.app = app
        self.authenticate = authenticate
        self.local = local
        self.resource_metadata_url = resource_metadata_url
        self.failures = RateLimiter(failures_per_minute)
        self.calls = RateLimiter(calls_per_minute) if calls_per_minute > 0 else None
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or is_public(scope["path"]):
            await self.app(scope, receive, send)
            return
        outcome = await self._identify(scope)
        if isinstance(outcome, Denial):
            await self._deny(outcome, scope, receive, send)
            return
        principal, token = outcome

        calls = 0
        if scope["path"].startswith("/api/"):
            calls = 1
        elif scope["method"] == "POST":
            body, extra = await _read_body(receive, self.max_body_bytes)
            if body is None:
                await PlainTextResponse("Request body too large", status_code=413)(scope, receive, send)
                return
            needed, calls = needed_scopes(body)
            for required in (WRITE, READ):
                if required in needed and required not in principal.scopes:
                    denial = Denial(
                        403,
                        "insufficient_scope",
                        f"This call needs the {required} scope, which the token lacks; "
                        f"get a token granting {required}",
                        scope=required,
                    )
                    await self._deny(denial, scope, receive, send)
                    return
            receive = _replay(body, extra, receive)
        if calls and self.calls is not None:
            for _ in range(calls):
                wait = self.calls.take(principal.user_id)
                if wait is not None:
                    description = (
                        f"Too many calls for this user (the limit is {int(self.calls.capacity)} per minute); "
                        f"retry in {wait} s"
                    )
                    await self._deny(Denial(429, None, description, retry_after=wait), scope, receive, send)
                    return

        user = AuthenticatedUser(
            AccessToken(
                token=token or "",
                client_id=principal.user_id,
                scopes=sorted(principal.scopes),
                subject=principal.user_id,
            )
        )
        scope["user"] = user
        scope["auth"] = AuthCredentials(sorted(principal.scopes))
        scope[PRINCIPAL_SCOPE_KEY] = principal
        principal_token = _principal.set(principal)
        user_token = auth_context_var.set(user)
        try:
            await self.app(scope, receive, send)
        finally:
            auth_context_var.reset(user_token)
            _principal.reset(principal_token)

    async def _identify(self, scope: Scope) -> tuple[Principal, str | None] | Denial:
        if self.local is not None:
            return self.local, None
        assert self.authenticate is not None
        token = _bearer_token(scope)
        # "Bearer" with an empty token is a failed attempt (invalid_token), not a request without credentials.
        if token is None:
            return Denial(
                401,
                None,
                "This endpoint needs a bearer token: send 'Authorization: Bearer <access token>'. "
                "The resource_metadata URL in WWW-Authenticate names the authorization server.",
            )
        address = _client_address(scope)
        wait = self.failures.retry_after(address)
        if wait is not None:
            return Denial(
                429,
                None,
                f"Too many failed authentications from this address; retry in {wait} s",
                retry_after=wait,
            )
        try:
            principal = await self.authenticate(token)
        except AuthError as error:
            if error.status == 401:
                self.failures.record(address)
            return Denial(error.status, error.error, error.description)
        return principal, token

    async def _deny(self, denial: Denial, scope: Scope, receive: Receive, send: Send) -> None:
        if denial.status != 401 or denial.error is not None:
            log.info(
                "refused %s %s: %s %s", scope["method"], scope["path"], denial.status, denial.description
            )
        await denial_response(denial, self.resource_metadata_url)(scope, receive, send)
