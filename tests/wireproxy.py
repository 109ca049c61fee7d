"""A TCP proxy in front of PostgreSQL that counts client→server turns.

A turn is a burst of bytes the client sends after the server has last spoken (or the first bytes
of a connection): one turn costs one network round trip. The proxy forwards a server reply only
after noting that the server spoke, so once an operation has returned to its caller, every turn it
caused is counted; reading the count needs no waiting.

Unencrypted connections (sslmode=disable) also get each turn's PostgreSQL message tags recorded
("P D S" = Parse, Describe, Sync), which makes a surprising count easy to explain.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field

_SSL_REQUEST = 80877103
_GSSENC_REQUEST = 80877104
_CANCEL_REQUEST = 80877102
_READ_SIZE = 65536
_KEEP_BYTES = 4096


@dataclass
class Turn:
    connection: int
    nbytes: int = 0
    messages: list[str] = field(default_factory=list)
    data: bytearray = field(default_factory=bytearray)  # the turn's first bytes, for debugging

    def __str__(self) -> str:
        return f"#{self.connection}:{' '.join(self.messages) or '?'}({self.nbytes}B)"


@dataclass
class Measurement:
    """The turns seen between the start and the end of a `with proxy.measure()` block."""

    turns: list[Turn] = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.turns)

    def __str__(self) -> str:
        return f"{self.count} turn(s): " + " | ".join(str(turn) for turn in self.turns)


class _ClientMessages:
    """Splits the client's byte stream into PostgreSQL message tags, for the turn log only."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.startup = True
        self.opaque = False
        self.awaiting_ssl_answer = False

    def feed(self, data: bytes) -> list[str]:
        if self.opaque:
            return []
        self.buffer += data
        tags: list[str] = []
        while True:
            if self.startup:
                if len(self.buffer) < 8:
                    return tags
                length, code = struct.unpack("!ii", self.buffer[:8])
                if len(self.buffer) < length:
                    return tags
                del self.buffer[:length]
                if code in (_SSL_REQUEST, _GSSENC_REQUEST):
                    tags.append("SSLRequest")
                    self.awaiting_ssl_answer = True
                elif code == _CANCEL_REQUEST:
                    tags.append("Cancel")
                else:
                    tags.append("Startup")
                    self.startup = False
                continue
            if len(self.buffer) < 5:
                return tags
            (length,) = struct.unpack("!i", self.buffer[1:5])
            if len(self.buffer) < length + 1:
                return tags
            tags.append(chr(self.buffer[0]))
            del self.buffer[: length + 1]

    def server_spoke(self, data: bytes) -> None:
        if self.awaiting_ssl_answer:
            self.awaiting_ssl_answer = False
            if data[:1] in (b"S", b"G"):
                self.opaque = True


class _Connection:
    def __init__(
        self,
        number: int,
        client: tuple[asyncio.StreamReader, asyncio.StreamWriter],
        server: tuple[asyncio.StreamReader, asyncio.StreamWriter],
    ) -> None:
        self.number = number
        self.client_reader, self.client_writer = client
        self.server_reader, self.server_writer = server
        self.server_spoke = True
        self.turn: Turn | None = None
        self.parser = _ClientMessages()
        self.cut_reply = False

    def abort(self) -> None:
        for writer in (self.client_writer, self.server_writer):
            writer.transport.abort()


class WireProxy:
    """Listens on 127.0.0.1 (a free port) and forwards every connection to the upstream server.

    `turn_delay` holds each turn back that many seconds before forwarding it: one simulated
    round-trip time per turn, for benchmarks.
    """

    def __init__(self, upstream_port: int = 5432, *, upstream_host: str = "127.0.0.1") -> None:
        self.upstream = (upstream_host, upstream_port)
        self.turn_delay = 0.0
        self.turns: list[Turn] = []
        self.connections_opened = 0
        self._connections: dict[int, _Connection] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None
        self._cut_next_reply = False
        self.refuse_next = 0
        self.refused = 0
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._holes: list[asyncio.StreamWriter] = []

    @property
    def port(self) -> int:
        assert self._server is not None, "the proxy is not running"
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    def url(self, database: str, *, user: str = "postgres", query: str = "sslmode=disable") -> str:
        return f"postgresql://{user}@127.0.0.1:{self.port}/{database}" + (f"?{query}" if query else "")

    @property
    def black_hole(self) -> bool:
        """A network black hole: new connections are accepted and never answered, and the client's
        bytes on open connections go nowhere. Set back to False, open connections carry on."""
        return not self._flowing.is_set()

    @black_hole.setter
    def black_hole(self, on: bool) -> None:
        if on:
            self._flowing.clear()
        else:
            self._flowing.set()

    @property
    def open_connections(self) -> int:
        return len(self._connections)

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)

    async def aclose(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in self._holes:
            writer.transport.abort()
        await self.drop_all()
        if self._server is not None:
            await self._server.wait_closed()

    async def __aenter__(self) -> WireProxy:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    @contextlib.contextmanager
    def measure(self) -> Iterator[Measurement]:
        """Collect the turns made inside the block (any connection)."""
        start = len(self.turns)
        measurement = Measurement()
        try:
            yield measurement
        finally:
            measurement.turns = self.turns[start:]

    async def drop_all(self) -> int:
        """Abort every open connection on both sides, as a server that hangs up would; returns how many.

        When this returns, the proxy has closed its sockets; the client learns of it the next time
        its event loop polls.
        """
        dropped = list(self._connections.values())
        for connection in dropped:
            connection.abort()
        tasks = [task for task in self._tasks if task is not asyncio.current_task()]
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        return len(dropped)

    def cut_next_reply(self) -> None:
        """Abort the connection that next hears from the server, without forwarding that reply.

        The server has then received (and, in autocommit, committed) the client's last statement,
        while the client sees its connection die in the middle of the operation.
        """
        self._cut_next_reply = True

    @contextlib.asynccontextmanager
    async def _track(self) -> AsyncIterator[None]:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            yield
        finally:
            self._tasks.discard(task)

    async def _accept(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        async with self._track():
            if self.black_hole:
                self._holes.append(client_writer)  # held open, never answered
                return
            if self.refuse_next > 0:
                # A server that is not ready yet (a compute waking up): the connection is reset.
                self.refuse_next -= 1
                self.refused += 1
                client_writer.transport.abort()
                return
            try:
                server = await asyncio.open_connection(*self.upstream)
            except OSError:
                client_writer.transport.abort()
                return
            self.connections_opened += 1
            connection = _Connection(self.connections_opened, (client_reader, client_writer), server)
            self._connections[connection.number] = connection
            try:
                await asyncio.gather(self._client_to_server(connection), self._server_to_client(connection))
            finally:
                self._connections.pop(connection.number, None)
                connection.abort()

    async def _client_to_server(self, connection: _Connection) -> None:
        try:
            while data := await connection.client_reader.read(_READ_SIZE):
                await self._flowing.wait()
                if connection.server_spoke:
                    connection.server_spoke = False
                    connection.turn = Turn(connection.number)
                    self.turns.append(connection.turn)
                    if self.turn_delay:
                        await asyncio.sleep(self.turn_delay)
                assert connection.turn is not None
                connection.turn.nbytes += len(data)
                connection.turn.data += data[: max(0, _KEEP_BYTES - len(connection.turn.data))]
                connection.turn.messages += connection.parser.feed(data)
                connection.server_writer.write(data)
                await connection.server_writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            connection.abort()

    async def _server_to_client(self, connection: _Connection) -> None:
        try:
            while data := await connection.server_reader.read(_READ_SIZE):
                if self._cut_next_reply:
                    self._cut_next_reply = False
                    return
                # Noted before forwarding: the client cannot answer a reply it has not received.
                connection.server_spoke = True
                connection.parser.server_spoke(data)
                connection.client_writer.write(data)
                await connection.client_writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            connection.abort()
