"""uvicorn's HTTP/1.1 protocol (httptools): a deadline and a size limit for each head; a lingering close.

uvicorn closes a keep-alive connection that stays idle after a response, but a client that has
sent part of a request (a few header bytes, then nothing) would hold its connection for ever, and
one that keeps sending header lines would grow the server's memory without end. Here every
connection must complete a request's head (request line and headers) within `header_timeout`
seconds of opening, and again after each response, in at most `max_head_bytes`; past either the
connection is closed (with 431 for a head too large). A request in progress, a long SSE stream
included, is untouched.

A refusal sent before the request has fully arrived (413 for a body too large, 408, 431) ends the
connection; closing a socket while the client is still sending makes the kernel answer with a
reset, which throws away the refusal before most clients read it (they send the whole body
first). So the server stops writing and reads on, dropping what arrives, until the client ends
the connection, sends nothing for `linger_idle` seconds, or `linger_seconds` have passed.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

HEAD_TOO_LARGE = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"connection: close\r\ncontent-length: %d\r\n\r\n%s"
)


class _LingeringTransport:
    """The connection's transport as uvicorn sees it: its `close` is the protocol's lingering close."""

    def __init__(self, transport: Any, protocol: BoundedHttpProtocol) -> None:
        self._transport = transport
        self._protocol = protocol

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)

    def close(self) -> None:
        self._protocol.close_after_reading()

    def is_closing(self) -> bool:
        return self._protocol.lingering or bool(self._transport.is_closing())


class BoundedHttpProtocol(HttpToolsProtocol):
    """HTTP/1.1 that closes a connection whose request head is late or too large, lingering."""

    header_timeout = 10.0
    max_head_bytes = 64 * 1024
    linger_seconds = 5.0
    linger_idle = 1.0
    lingering = False
    _raw: Any = None  # the transport itself, under the lingering one uvicorn holds
    _linger_timer: asyncio.TimerHandle | None = None
    _linger_until = 0.0
    _last_received = 0.0
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
        self._raw = transport
        self.transport = cast("asyncio.Transport", _LingeringTransport(transport, self))
        self._arm()

    def data_received(self, data: bytes) -> None:
        """Feed the parser; a head still incomplete after more than the limit is refused."""
        if self.lingering:
            self._last_received = self.loop.time()
            return
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
        """Stop the clocks with the connection."""
        for timer in (self._header_deadline, self._linger_timer):
            if timer is not None:
                timer.cancel()
        super().connection_lost(exc)

    def eof_received(self) -> None:
        """The client has finished sending: a lingering connection closes now."""
        if self.lingering:
            self._raw.close()
            return
        super().eof_received()

    def shutdown(self) -> None:
        """The server is stopping: nothing lingers."""
        if self.lingering:
            self._raw.close()
            return
        super().shutdown()

    def close_after_reading(self) -> None:
        """Close, after reading and dropping whatever the client is still sending (see the module)."""
        if self.lingering or self._raw.is_closing():
            return
        body_coming = self.cycle is not None and self.cycle.more_body and not self.cycle.disconnected
        if not (body_coming or self._refused) or not self._raw.can_write_eof():
            self._raw.close()
            return
        self.lingering = True
        self._raw.write_eof()  # the answer goes out, then end-of-stream
        self._raw.resume_reading()
        self._last_received = self.loop.time()
        self._linger_until = self._last_received + self.linger_seconds
        self._linger_timer = self.loop.call_later(self.linger_idle, self._linger_check)

    def _linger_check(self) -> None:
        now = self.loop.time()
        idle_until = self._last_received + self.linger_idle
        if now >= self._linger_until or now >= idle_until:
            self._raw.close()
            return
        wake = min(idle_until, self._linger_until) - now
        self._linger_timer = self.loop.call_later(wake, self._linger_check)

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
