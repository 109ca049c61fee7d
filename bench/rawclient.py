"""A minimal MCP client over Streamable HTTP for load: raw HTTP/1.1 on one keep-alive socket.

It speaks the handshake generation (2025-11-25: `initialize`, then requests in its session) or
the stateless 2026-07-28 one (each request carries its protocol version), builds each request as
bytes and reads the reply without an HTTP library, so that on a small machine the load generator
costs far less CPU than the server it measures.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

MODERN = "2026-07-28"
LEGACY = "2025-11-25"
META = {"io.modelcontextprotocol/protocolVersion": MODERN, "io.modelcontextprotocol/clientCapabilities": {}}


class RpcError(RuntimeError):
    """The server answered with a JSON-RPC error, a tool error or an HTTP error."""


@dataclass
class RawClient:
    """One keep-alive connection to `host:port`, sending one request at a time."""

    host: str
    port: int
    token: str | None = None
    path: str = "/mcp"
    modern: bool = False
    _reader: asyncio.StreamReader | None = None
    _writer: asyncio.StreamWriter | None = None
    _next_id: int = 0
    _prefix: dict[tuple[str, str], bytes] = field(default_factory=dict)

    _session: str | None = None

    async def connect(self) -> RawClient:
        """Open the connection; in the handshake generation, initialize a session on it."""
        self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        if not self.modern:
            info = {"name": "bench-rawclient", "version": "1"}
            params = {"protocolVersion": LEGACY, "capabilities": {}, "clientInfo": info}
            await self.request("initialize", params)
            await self.request("notifications/initialized")
        return self

    async def close(self) -> None:
        """End the session (if any) and close the connection; RpcError if the server kept the session."""
        refused = None
        if self._writer is not None and self._session is not None:
            auth = f"Authorization: Bearer {self.token}\r\n" if self.token else ""
            self._writer.write(
                (
                    f"DELETE {self.path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n{auth}"
                    f"MCP-Protocol-Version: {LEGACY}\r\nMcp-Session-Id: {self._session}\r\n\r\n"
                ).encode()
            )
            status, _, payload = await self._response()
            self._session = None
            if status >= 300:  # a session left open would weigh on the server for the rest of the run
                refused = RpcError(f"DELETE of the session: HTTP {status}: {payload[:200]!r}")
        if self._writer is not None:
            self._writer.close()
            await self._writer.wait_closed()
        if refused is not None:
            raise refused

    def _head(self, method: str, name: str) -> bytes:
        key = (method, name)
        if key not in self._prefix:
            lines = [
                f"POST {self.path} HTTP/1.1",
                f"Host: {self.host}:{self.port}",
                "Accept: application/json, text/event-stream",
                "Content-Type: application/json",
            ]
            if self.modern:
                lines += [f"MCP-Protocol-Version: {MODERN}", f"Mcp-Method: {method}"]
                if name:
                    lines.append(f"Mcp-Name: {name}")
            elif self._session is not None:
                lines += [f"MCP-Protocol-Version: {LEGACY}", f"Mcp-Session-Id: {self._session}"]
            if self.token:
                lines.append(f"Authorization: Bearer {self.token}")
            self._prefix[key] = ("\r\n".join(lines) + "\r\n").encode()
        return self._prefix[key]

    async def request(self, method: str, params: dict[str, Any] | None = None, name: str = "") -> Any:
        """Send one JSON-RPC request and return its result (RpcError for anything else)."""
        assert self._writer is not None, "not connected"
        message: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if self.modern:
            message["params"] = {**(params or {}), "_meta": META}
        elif params is not None:
            message["params"] = params
        notification = method.startswith("notifications/")
        if not notification:
            self._next_id += 1
            message["id"] = self._next_id
        body = json.dumps(message, separators=(",", ":")).encode()
        self._writer.write(self._head(method, name) + b"Content-Length: %d\r\n\r\n" % len(body) + body)
        status, headers, payload = await self._response()
        if notification and status == 202:
            return None
        if status != 200:
            raise RpcError(f"HTTP {status}: {payload[:200]!r}")
        if method == "initialize":
            self._session = headers.get("mcp-session-id")
            self._prefix.clear()
        reply = json.loads(_json_of(payload))
        if "error" in reply:
            raise RpcError(str(reply["error"]))
        return reply["result"]

    async def call_tool(self, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        """A tools/call; the structured content of a result that is not an error."""
        result = await self.request("tools/call", {"name": name, "arguments": arguments}, name=name)
        if result.get("isError"):
            raise RpcError(result["content"][0]["text"])
        content: dict[str, Any] = result.get("structuredContent") or {}
        return content

    async def _response(self) -> tuple[int, dict[str, str], bytes]:
        assert self._reader is not None
        head = await self._reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {
            k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)
        }
        if headers.get("transfer-encoding") == "chunked":
            chunks = []
            while True:
                size = int((await self._reader.readuntil(b"\r\n"))[:-2], 16)
                data = await self._reader.readexactly(size + 2)
                if size == 0:
                    break
                chunks.append(data[:-2])
            return status, headers, b"".join(chunks)
        return status, headers, await self._reader.readexactly(int(headers.get("content-length", "0")))


def _json_of(payload: bytes) -> bytes:
    """The JSON-RPC message of a JSON body or of the `data:` line of a one-event SSE stream."""
    if payload[:1] == b"{":
        return payload
    for line in payload.split(b"\n"):
        if line.startswith(b"data:"):
            return line[5:].strip()
    raise RpcError(f"no JSON-RPC message in {payload[:200]!r}")
