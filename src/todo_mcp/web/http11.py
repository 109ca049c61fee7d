"""uvicorn's HTTP/1.1 protocol with a deadline for the headers of each request.

uvicorn closes a keep-alive connection that stays idle after a response, but a client that has
sent part of a request (a few header bytes, then nothing) holds its connection for ever. Here
every connection must complete a request's headers within `header_timeout` seconds of opening,
and again after each response; a request in progress (a long SSE stream included) is untouched.
"""

from __future__ import annotations

import asyncio
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol


class BoundedH11Protocol(H11Protocol):
    """HTTP/1.1 that closes a connection whose request headers do not arrive in time."""

    header_timeout = 10.0
    _header_deadline: asyncio.TimerHandle | None = None

    @classmethod
    def with_header_timeout(cls, seconds: float) -> type[BoundedH11Protocol]:
        """This protocol with its own deadline (uvicorn takes a class, not an instance)."""
        return type("BoundedH11Protocol", (cls,), {"header_timeout": seconds})

    def connection_made(self, transport: Any) -> None:
        """Start the clock for the first request's headers."""
        super().connection_made(transport)
        self._arm()

    def on_response_complete(self) -> None:
        """Start the clock for the next request's headers on this connection."""
        super().on_response_complete()
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        """Stop the clock with the connection."""
        if self._header_deadline is not None:
            self._header_deadline.cancel()
        super().connection_lost(exc)

    def _arm(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
        self._header_deadline = self.loop.call_later(self.header_timeout, self._headers_overdue)

    def _headers_overdue(self) -> None:
        # IDLE: no request's headers have been completed since the clock started.
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.logger.info("closing a connection whose request headers took over %gs", self.header_timeout)
            self.transport.close()
