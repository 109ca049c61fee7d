"""This server as OAuth protected resources (RFC 9728): one resource URL per MCP transport.

TODO_MCP_PUBLIC_URL names the Streamable HTTP endpoint (https://todo.example.com/mcp) or the base
URL the app is served under (https://todo.example.com, or https://example.com/todo behind a
proxy); a trailing slash is dropped once, here. Each transport is its own resource, because
OAuth clients check that the metadata names exactly the URL they connected to.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

METADATA_PATH = "/.well-known/oauth-protected-resource"
TRANSPORTS = ("mcp", "sse")


@dataclass(frozen=True)
class ProtectedResources:
    """The public origin and path prefix of the app, and the resources and metadata derived from them."""

    origin: str
    prefix: str  # the path the app is served under: "" at the root, "/todo" behind a proxy

    @classmethod
    def from_public_url(cls, public_url: str) -> ProtectedResources:
        """The resources of an app whose MCP endpoint (or base URL) is `public_url`."""
        parts = urlsplit(public_url.strip())
        path = parts.path.rstrip("/")
        for transport in TRANSPORTS:
            path = path.removesuffix(f"/{transport}")
        return cls(origin=f"{parts.scheme}://{parts.netloc}", prefix=path)

    def resource(self, transport: str) -> str:
        """The resource URL of `transport` ("mcp" or "sse"): what a client connects to."""
        return f"{self.origin}{self.prefix}/{transport}"

    def metadata_path(self, transport: str) -> str:
        """Where the metadata of `transport` is served (RFC 9728's path-inserted well-known URL)."""
        return f"{METADATA_PATH}{self.prefix}/{transport}"

    def metadata_url(self, transport: str) -> str:
        """The full URL of the metadata of `transport`."""
        return self.origin + self.metadata_path(transport)

    def audiences(self) -> list[str]:
        """Every spelling of every resource a client may have asked a token for (the base URL too)."""
        names = [self.resource(t) for t in TRANSPORTS] + [self.origin + self.prefix]
        return [spelling for name in names for spelling in (name, name + "/")]


def transport_of(path: str) -> str:
    """Which transport a request path belongs to: the SSE stream and its message endpoint, or /mcp.

    REST routes count as /mcp: its metadata names the same authorization server and scopes.
    """
    return "sse" if path.startswith(("/sse", "/messages")) else "mcp"
