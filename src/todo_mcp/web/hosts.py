"""The Host and Origin allowlists: 421 for a host that is not served here, 403 for a foreign origin.

This is the only Host check (the SDK's own is switched off): it protects every route against DNS
rebinding and misrouted traffic, and a browser page from an origin that is not allowed cannot
drive the server.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from todo_mcp.config import Settings

log = logging.getLogger(__name__)

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")
LOOPBACK_ORIGINS = ("http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*")
# Load balancer probes often use the pod address as Host: health checks skip the allowlist.
HOST_EXEMPT_PATHS = frozenset({"/healthz", "/readyz"})

_HAS_PORT = re.compile(r":(\d+|\*)$")


def host_patterns(names: Iterable[str]) -> list[str]:
    """Host header patterns: "name:port", or "name:*" (any port); a bare name matches both forms."""
    patterns: list[str] = []
    for raw in names:
        name = raw.strip().lower()
        if not name:
            continue
        for pattern in (name,) if _HAS_PORT.search(name) else (name, f"{name}:*"):
            if pattern not in patterns:
                patterns.append(pattern)
    return patterns


def matches(value: str | None, patterns: Iterable[str]) -> bool:
    """Whether a Host or Origin value matches one of `patterns` ("...:*" stands for any port)."""
    if not value:
        return False
    value = value.lower()
    for pattern in patterns:
        if pattern.endswith(":*"):
            if value.startswith(pattern[:-1]) and value[len(pattern) - 1 :].isdigit():
                return True
        elif value == pattern:
            return True
    return False


def allowed_hosts(settings: Settings) -> list[str] | None:
    """Host header patterns to accept, or None when TODO_MCP_ALLOWED_HOSTS is "*" (no check)."""
    if "*" in settings.allowed_hosts:
        return None
    names = list(LOOPBACK_NAMES)
    if settings.public_url:
        names.append(urlsplit(settings.public_url).netloc)
    return host_patterns([*names, *settings.allowed_hosts])


def allowed_origins(settings: Settings) -> list[str]:
    """Browser origins that may call: loopback pages, the public URL's origin, TODO_MCP_CORS_ORIGINS."""
    origins = [origin.lower() for origin in LOOPBACK_ORIGINS]
    if settings.public_url:
        parts = urlsplit(settings.public_url)
        origins.append(f"{parts.scheme}://{parts.netloc}".lower())
    return [*origins, *(origin.lower() for origin in settings.cors_origins)]


class HostGuard:
    """Answers 421 for a Host outside the allowlist and 403 for an Origin outside its own."""

    def __init__(self, app: ASGIApp, *, hosts: list[str] | None, origins: list[str]) -> None:
        """Guard `app`; `hosts` None accepts every Host header."""
        self.app = app
        self.hosts = hosts
        self.origins = origins

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Refuse the request here, or hand it on."""
        if scope["type"] == "http" and scope["path"] not in HOST_EXEMPT_PATHS:
            headers = Headers(scope=scope)
            host, origin = headers.get("host"), headers.get("origin")
            if self.hosts is not None and not matches(host, self.hosts):
                log.warning("refused a request for host %r (not in TODO_MCP_ALLOWED_HOSTS)", host)
                detail = "Misdirected request: this host name is not served here (the operator can add it to "
                await JSONResponse({"detail": detail + "TODO_MCP_ALLOWED_HOSTS)"}, 421)(scope, receive, send)
                return
            # A CORS preflight is answered by the CORS middleware, which refuses foreign origins itself.
            if origin is not None and scope["method"] != "OPTIONS" and not matches(origin, self.origins):
                log.warning("refused a request from origin %r (not in TODO_MCP_CORS_ORIGINS)", origin)
                detail = (
                    "Forbidden origin: pages from this origin may not call this server (the operator can "
                )
                await JSONResponse({"detail": detail + "add it to TODO_MCP_CORS_ORIGINS)"}, 403)(
                    scope, receive, send
                )
                return
        await self.app(scope, receive, send)
