"""uvicorn's HTTP/1.1 protocol (httptools) with a deadline and a size limit for each request's head.

uvicorn closes a keep-alive connection that stays idle after a response, but a client that has
sent part of a request (a few header bytes, then nothing) would hold its connection for ever, and
one that keeps sending header lines would grow the server's memory without end. Here every
connection must complete a request's head (request line and headers) within `header_timeout`
seconds of opening, and again after each response, in at most `max_head_bytes`; past either the
connection is closed (with 431 for a head too large). A request in progress, a long SSE stream
included, is untouched.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

HEAD_TOO_LARGE = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"connection: close\r\ncontent-length: %d\r\n\r\n%s"
)


class BoundedHttpProtocol(HttpToolsProtocol):
    """HTTP/1.1 that closes a connection whose request head is late or too large."""

    header_timeout = 10.0
    max_head_bytes = 64 * 1024
    _header_deadline: asyncio.TimerHandle | None = None
    _unparsed = 0  # bytes received while no request's head was complete
    _head_bytes = 0  # the current head's request line and headers, as parsed
    _refused = False

    @classmethod
    def bounded(cls, seconds: float) -> type[BoundedHttpProtocol]:
        """This protocol with its own deadline (uvicorn takes a class, not an instance)."""
        return type("BoundedHttpProtocol", (cls,), {"header_timeout": seconds})

    def connection_made(self, transport: Any) -> None:
        """Start the clock for the first request's head."""
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        """Feed the parser; a head still incomplete after more than the limit is refused."""
        if self._refused:
            return
        waiting = self._awaiting_head()
        if waiting:
            self._unparsed += len(data)
        super().data_received(data)
        if waiting and self._awaiting_head() and self._unparsed > self.max_head_bytes:
            self._refuse_head()

    def on_message_begin(self) -> None:
        """A new request: its head is counted from here."""
        self._head_bytes = 0
        super().on_message_begin()

    def on_url(self, url: bytes) -> None:
        """Count the request line."""
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        """Count a header line."""
        self._count(len(name) + len(value) + 4)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        """A request's head is complete and within the limit: answer it."""
        if self._refused:
            return
        self._unparsed = 0
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        """Body bytes, unless the request was refused."""
        if not self._refused:
            super().on_body(body)

    def on_message_complete(self) -> None:
        """The end of a request, unless it was refused."""
        if not self._refused:
            super().on_message_complete()

    def on_response_complete(self) -> None:
        """Start the clock for the next request's head on this connection."""
        super().on_response_complete()
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        """Stop the clock with the connection."""
        if self._header_deadline is not None:
            self._header_deadline.cancel()
        super().connection_lost(exc)

    def _awaiting_head(self) -> bool:
        # No request whose head has been read is being answered (or waits in the pipeline).
        return self.cycle is None or (self.cycle.response_complete and not self.pipeline)

    def _count(self, size: int) -> None:
        self._head_bytes += size
        if self._head_bytes > self.max_head_bytes:
            self._refuse_head()

    def _arm(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
        self._unparsed = 0
        self._header_deadline = self.loop.call_later(self.header_timeout, self._headers_overdue)

    def _headers_overdue(self) -> None:
        if self._awaiting_head() and not self.transport.is_closing():
            self.logger.info("closing a connection whose request headers took over %gs", self.header_timeout)
            self.transport.close()

    def _refuse_head(self) -> None:
        if self._refused:
            return
        self._refused = True
        self.logger.info("closing a connection whose request head exceeded %d bytes", self.max_head_bytes)
        message = f"The request line and headers exceed {self.max_head_bytes} bytes; send less.".encode()
        self.transport.write(HEAD_TOO_LARGE % (len(message), message))
        self.transport.close()
