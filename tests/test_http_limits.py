"""Greedy and slow clients against a real `todo-ledger serve`: each is bounded, no one else waits.

A client that sends half a request, or trickles a body, loses its connection or gets 408 within
the read timeout; a declared 20 MB body is refused before it is read; one user cannot hold more
than a share of SSE streams.
"""

from __future__ import annotations

import socket
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack

import anyio
import httpx2
import pytest

from tests.http_helpers import ServerProcess, clean_env, running_server

pytestmark = pytest.mark.anyio

READ_TIMEOUT = 1.0
JSON = {"Content-Type": "application/json"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    cwd = tmp_path_factory.mktemp("limits")
    env = clean_env(
        TODO_MCP_DATA_DIR=str(cwd / "data"),
        TODO_MCP_STREAMS_PER_USER="2",
        TODO_MCP_HTTP_READ_TIMEOUT=str(READ_TIMEOUT),
        TODO_MCP_TIMEZONE="UTC",
    )
    with running_server("--no-auth", env=env, cwd=cwd) as running:
        yield running


def _raw(server: ServerProcess, data: bytes, wait: float = 10.0) -> tuple[bytes, float]:
    """Send `data` on a new connection; what comes back until the server closes it, and when."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", server.port), timeout=wait) as sock:
        sock.sendall(data)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    return received, time.monotonic() - started


async def test_a_client_that_never_finishes_its_headers_is_cut_off(server: ServerProcess) -> None:
    answer, elapsed = await anyio.to_thread.run_sync(
        _raw, server, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    )
    assert answer == b""
    assert READ_TIMEOUT <= elapsed < READ_TIMEOUT + 3


async def test_a_request_head_past_64_kib_is_a_431_and_a_closed_connection(server: ServerProcess) -> None:
    start = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Filler: " + b"a" * 70_000
    # A complete head, and one whose last header never ends (the parser has no line to hand over).
    for head in (start + b"\r\n\r\n", start):
        answer, elapsed = await anyio.to_thread.run_sync(_raw, server, head)
        assert answer.startswith(b"HTTP/1.1 431"), answer[:200]
        assert b"exceed 65536 bytes" in answer
        assert elapsed < 1


async def test_a_body_larger_than_the_head_limit_is_not_mistaken_for_a_head(server: ServerProcess) -> None:
    body = b'{"title": "' + b"a" * 100_000 + b'"}'
    head = (
        b"POST /api/tasks HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Connection: close\r\nContent-Length: %d\r\n\r\n" % len(body)
    )
    answer, _ = await anyio.to_thread.run_sync(_raw, server, head + body)
    # The body arrived with its head, in the same packets: judged as a body (by the routes, as too
    # long a title), not as a head.
    assert answer.startswith(b"HTTP/1.1 422"), answer[:200]


async def test_keep_alive_requests_in_a_row_are_all_answered(server: ServerProcess) -> None:
    one = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    last = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    answer, _ = await anyio.to_thread.run_sync(_raw, server, one * 3 + last)
    assert answer.count(b"HTTP/1.1 200") == 4, answer[:400]


async def test_a_trickled_body_is_a_408(server: ServerProcess) -> None:

    head = (
        b"POST /api/tasks HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: 100\r\n\r\n"
    )
    answer, elapsed = await anyio.to_thread.run_sync(_raw, server, head + b'{"title"')
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert b"did not arrive within" in answer
    assert elapsed < READ_TIMEOUT + 3


async def test_a_declared_20_mb_body_is_refused_before_it_is_sent(server: ServerProcess) -> None:
    head = (
        b"POST /api/tasks HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: 20000000\r\n\r\n"
    )
    answer, elapsed = await anyio.to_thread.run_sync(_raw, server, head)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert elapsed < 1


async def test_a_client_that_sends_a_20_mb_body_before_reading_still_reads_the_413(
    server: ServerProcess,
) -> None:
    """The refusal is sent before the body has arrived; the rest is read and dropped, not met with a reset."""
    body = b"x" * 20_000_000
    head = (
        b"POST /api/tasks HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n" % len(body)
    )
    answer, elapsed = await anyio.to_thread.run_sync(_raw, server, head + body)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b"send at most that" in answer
    assert elapsed < 5

    async def chunked() -> AsyncIterator[bytes]:
        for _ in range(20):
            yield body[:1_000_000]

    async with httpx2.AsyncClient(base_url=server.base, timeout=10) as http:
        for sent in (body, chunked()):  # its length declared, then not
            response = await http.post("/api/tasks", content=sent, headers=JSON)
            assert response.status_code == 413, response.text
            assert "send at most that" in response.json()["detail"]


def _upload_for_ever(server: ServerProcess, limit: float) -> tuple[bytes, float]:
    """Declare a 10 GB body and send it until the server cuts the connection (or `limit` seconds)."""
    started = time.monotonic()
    head = b"POST /api/tasks HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 10000000000\r\n\r\n"
    with socket.create_connection(("127.0.0.1", server.port), timeout=limit) as sock:
        sock.sendall(head)
        try:
            while time.monotonic() - started < limit:
                sock.sendall(b"x" * 65536)
        except OSError:
            pass
        elapsed = time.monotonic() - started
        try:
            return sock.recv(65536), elapsed
        except OSError:
            return b"", elapsed


async def test_a_refused_upload_that_goes_on_is_cut_off_within_seconds(server: ServerProcess) -> None:
    """What the server reads and drops after a refusal is bounded in time: 5 s at most."""
    answer, elapsed = await anyio.to_thread.run_sync(_upload_for_ever, server, 20.0)
    assert elapsed < 8, f"the server read an unwanted body for {elapsed:.1f} s"
    assert answer == b"" or answer.startswith(b"HTTP/1.1 413"), answer[:200]


async def _open_stream(stack: AsyncExitStack, http: httpx2.AsyncClient) -> int:
    """Open an SSE stream and read its endpoint event, leaving it open until `stack` closes."""
    response = await stack.enter_async_context(http.stream("GET", "/sse"))
    if response.status_code == 200:
        # Kept on the stack: a line iterator that is dropped closes the stream with it.
        lines = response.aiter_lines()
        stack.push_async_callback(lines.aclose)  # type: ignore[attr-defined]
        while not (await anext(lines)).startswith("data:"):
            pass
    return response.status_code


async def test_each_user_has_a_share_of_sse_streams(server: ServerProcess) -> None:
    async with httpx2.AsyncClient(base_url=server.base, timeout=10) as http:
        async with AsyncExitStack() as first:
            statuses = [await _open_stream(first, http) for _ in range(2)]
            async with AsyncExitStack() as third:
                refused = await _open_stream(third, http)
        # The server learns of the closed streams from their connections: a moment later.
        reopened = 0
        with anyio.fail_after(5):
            while reopened != 200:
                async with AsyncExitStack() as again:
                    reopened = await _open_stream(again, http)
    assert statuses == [200, 200]
    assert refused == 429
