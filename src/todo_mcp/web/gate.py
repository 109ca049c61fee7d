"""The bearer gate in front of every non-public route: identify, then scope, rate limit and quotas.

It verifies the token of each request (or uses the configured local user in no-auth mode),
answers 401/403/429 itself with the headers OAuth clients read, and hands the request on with:

- the Principal in a context variable, which the MCP SDK carries along with each message to the
  handler of that message, so a tool always acts for the token of the request that carried it;
- `scope["user"]` set to the SDK's AuthenticatedUser, so the SDK binds a stateful session (legacy
  Streamable HTTP and SSE) to the user who opened it and refuses it to anyone else.

JSON-RPC bodies posted to the MCP transports (read and parsed once by `todo_mcp.web.body`) are
looked at so that a tool call the token's scopes do not allow is refused with HTTP 403 before it
reaches a tool.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from contextvars import ContextVar

from mcp.server.auth.middleware.auth_context import auth_context_var
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from todo_mcp.auth.errors import AuthError
from todo_mcp.auth.resources import ProtectedResources, transport_of
from todo_mcp.errors import RateLimited, ScopeMissing
from todo_mcp.identity import READ, WRITE, Principal, require
from todo_mcp.limits import CallBudget, RateLimiter
from todo_mcp.web.body import PARSED_BODY_KEY
from todo_mcp.web.challenge import Denial, denial_response, scope_denial
from todo_mcp.web.jsonrpc import Peek, peek
from todo_mcp.web.quotas import UserQuotas

log = logging.getLogger(__name__)

PRINCIPAL_SCOPE_KEY = "todo_mcp.principal"
AUTH_FAILURES_PER_MINUTE = 10

# Paths anyone may read: liveness, readiness, OAuth metadata and the API docs.
PUBLIC_PATHS = frozenset({"/healthz", "/readyz", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"})
PUBLIC_PREFIXES = ("/.well-known/",)

_principal: ContextVar[Principal | None] = ContextVar("todo_mcp_principal", default=None)

Authenticate = Callable[[str], Awaitable[Principal]]


class MissingIdentityError(RuntimeError):
    """A tool ran without a verified identity: a wiring mistake, refused rather than guessed."""


def current_principal() -> Principal:
    """The identity of the request being handled (the `identity` callable of build_server)."""
    principal = _principal.get()
    if principal is None:
        raise MissingIdentityError("no verified identity for this request")
    return principal


def is_public(path: str) -> bool:
    """Whether `path` is served without a token."""
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)


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


class BearerGate:
    """Authenticates every non-public request, then applies scopes, rate limits and quotas.

    `authenticate` (the token verifier; it raises AuthError for a token it refuses) is None in
    no-auth mode, where every request acts for `local`.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        authenticate: Authenticate | None,
        local: Principal | None,
        resources: ProtectedResources | None,
        budget: CallBudget,
        quotas: UserQuotas,
        failures_per_minute: int = AUTH_FAILURES_PER_MINUTE,
    ) -> None:
        """Guard `app` with a token verifier, or act for `local` (exactly one of the two)."""
        if (authenticate is None) == (local is None):
            raise ValueError("give exactly one of authenticate (tokens) or local (no-auth mode)")
        self.app = app
        self.authenticate = authenticate
        self.local = local
        self.resources = resources
        self.failures = RateLimiter(failures_per_minute)
        self.budget = budget
        self.quotas = quotas

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Refuse the request with 401/403/429/503, or hand it on acting for its principal."""
        if scope["type"] != "http" or is_public(scope["path"]):
            await self.app(scope, receive, send)
            return
        outcome = await self._identify(scope)
        if isinstance(outcome, Denial):
            await self._deny(outcome, scope, receive, send)
            return
        principal, token = outcome
        found = self._peek(scope)
        denial = self._scope_denial(principal, found.scopes)
        # Legacy SSE: the POST only acknowledges, and the client reads every answer on its stream (the
        # SDK clients end the session on a non-2xx POST). The call goes in, and the server's own scope
        # check answers it on the stream with a JSON-RPC error.
        if denial is not None and not scope["path"].startswith("/messages"):
            await self._deny(denial, scope, receive, send)
            return
        denial = self._rate_denial(principal, found.calls) or self._quota_denial(principal, scope, found)
        if denial is not None:
            await self._deny(denial, scope, receive, send)
            return
        async with self.quotas.held(principal.user_id, scope, send) as watched:
            await self._forward(principal, token, scope, receive, watched)

    def _peek(self, scope: Scope) -> Peek:
        """What the request asks for, and how many calls it spends here.

        Tool calls are counted by the MCP server itself, which answers a limited call on the channel
        the client reads: an HTTP 429 breaks MCP clients' sessions.
        """
        if scope["path"].startswith("/api/"):
            return Peek(calls=1)
        if scope["method"] == "POST":
            found = peek(scope.get(PARSED_BODY_KEY))
            return Peek(scopes=found.scopes, calls=int(found.initializes), initializes=found.initializes)
        return Peek()

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
        try:
            return await self.authenticate(token), token
        except AuthError as error:
            return self._refused(scope, error)

    def _refused(self, scope: Scope, error: AuthError) -> Denial:
        """A refused token; an address past its share of failures is told to slow down instead.

        Only failures count: a valid token is verified and let in whatever its address did before.
        """
        if error.status != 401:
            return Denial(error.status, error.error, error.description, retry_after=5)
        address = _client_address(scope)
        wait = self.failures.retry_after(address)
        self.failures.record(address)
        if wait is not None:
            description = f"Too many failed authentications from this address; retry in {wait} s"
            return Denial(429, None, description, retry_after=wait)
        return Denial(error.status, error.error, error.description)

    def _scope_denial(self, principal: Principal, needed: set[str]) -> Denial | None:
        for scope in (WRITE, READ):
            if scope in needed:
                try:
                    require(principal, scope)
                except ScopeMissing as error:
                    return scope_denial(error, "This call")
        return None

    def _rate_denial(self, principal: Principal, calls: int) -> Denial | None:
        try:
            self.budget.spend(principal.user_id, calls)
        except RateLimited as error:
            description = (
                f"Too many calls for this user (the limit is {error.limit} per minute); "
                f"retry in {error.retry_after} s"
            )
            return Denial(429, None, description, retry_after=error.retry_after)
        return None

    def _quota_denial(self, principal: Principal, scope: Scope, found: Peek) -> Denial | None:
        reason = self.quotas.refusal(principal.user_id, scope, initializes=found.initializes)
        return None if reason is None else Denial(429, None, reason, retry_after=5)

    async def _forward(
        self, principal: Principal, token: str | None, scope: Scope, receive: Receive, send: Send
    ) -> None:
        user = AuthenticatedUser(
            AccessToken(
                token=token or "",
                client_id=principal.user_id,
                scopes=sorted(principal.scopes),
                subject=principal.user_id,
            )
        )
        scope["user"] = user
        scope[PRINCIPAL_SCOPE_KEY] = principal
        principal_token = _principal.set(principal)
        user_token = auth_context_var.set(user)
        try:
            await self.app(scope, receive, send)
        finally:
            auth_context_var.reset(user_token)
            _principal.reset(principal_token)

    async def _deny(self, denial: Denial, scope: Scope, receive: Receive, send: Send) -> None:
        if denial.status != 401 or denial.error is not None:
            log.info(
                "refused %s %s: %s %s", scope["method"], scope["path"], denial.status, denial.description
            )
        url = self.resources.metadata_url(transport_of(scope["path"])) if self.resources else None
        mcp_post = scope["method"] == "POST" and not scope["path"].startswith("/api/")
        request_id = peek(scope.get(PARSED_BODY_KEY)).request_id if mcp_post else None
        await denial_response(denial, url, request_id)(scope, receive, send)
