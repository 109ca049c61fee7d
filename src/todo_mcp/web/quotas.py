"""Each user's share of the server's long-lived resources: handshake-era sessions and SSE streams.

One user opening sessions or streams until the server's global limit is reached would lock every
other user out; a cap per user confines the damage to that user. Sessions are counted as the SDK
keeps them: one ends when the client deletes it, when the server answers 404 for it, or after
`idle_timeout` seconds with no request in flight (the SDK's own idle rule, with the same timeout).

Most clients never delete their sessions, so a user at the cap who opens another does not get a
refusal: the user's least recently used idle session is ended instead (a client that comes back
to it gets 404 and, as the protocol says, starts a new one). Only when every one of the user's
sessions has a request in flight is the new one refused, for a few seconds. SSE streams are live
connections and are never ended for another: past the cap, a new stream is refused.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import Message, Scope, Send

log = logging.getLogger(__name__)

SESSION_HEADER = "mcp-session-id"


@dataclass
class _Session:
    user: str
    in_flight: int = 0
    idle_since: float = 0.0


def _is_stream(scope: Scope) -> bool:
    return bool(scope["method"] == "GET" and scope["path"] == "/sse")


class UserQuotas:
    """Counts each user's open sessions and SSE streams, and says when a request would exceed them."""

    def __init__(
        self,
        *,
        sessions_per_user: int,
        streams_per_user: int,
        idle_timeout: float,
        clock: Callable[[], float] = time.monotonic,
        end_session: Callable[[str], bool] | None = None,
    ) -> None:
        """Caps per user, the idle timeout after which the SDK ends a session, and how to end one."""
        self.end_session = end_session
        self.sessions_per_user = sessions_per_user
        self.streams_per_user = streams_per_user
        self.idle_timeout = idle_timeout
        self._clock = clock
        self._streams: Counter[str] = Counter()
        self._sessions: dict[str, _Session] = {}

    def sessions_of(self, user: str) -> int:
        """How many sessions `user` has open now (expired ones are forgotten first)."""
        now = self._clock()
        for session_id, session in list(self._sessions.items()):
            if session.in_flight == 0 and now - session.idle_since >= self.idle_timeout:
                del self._sessions[session_id]
        return sum(1 for session in self._sessions.values() if session.user == user)

    def refusal(self, user: str, scope: Scope, *, initializes: bool) -> str | None:
        """Why this request would take more than the user's share, or None when it may go ahead.

        A new session past the cap first ends the user's least recently used idle one.
        """
        if _is_stream(scope) and self._streams[user] >= self.streams_per_user:
            return (
                f"This user has {self.streams_per_user} SSE streams open already, the most allowed; "
                "close one, or use Streamable HTTP (/mcp)"
            )
        opening = initializes and scope["path"] == "/mcp" and SESSION_HEADER not in Headers(scope=scope)
        if opening and self.sessions_of(user) >= self.sessions_per_user and not self._end_oldest(user):
            return (
                f"Every one of this user's {self.sessions_per_user} MCP sessions (the most allowed) has a "
                "request in progress; retry when one has finished, or end a session (DELETE /mcp)"
            )
        return None

    def _end_oldest(self, user: str) -> bool:
        """End the user's least recently used session that has no request in flight, if there is one."""
        idle = [
            (s.idle_since, sid) for sid, s in self._sessions.items() if s.user == user and not s.in_flight
        ]
        if not idle:
            return False
        _, session_id = min(idle)
        del self._sessions[session_id]
        if self.end_session is not None and self.end_session(session_id):
            log.info(
                "ended a user's least recently used MCP session: %d is the most allowed",
                self.sessions_per_user,
            )
        return True

    @asynccontextmanager
    async def held(self, user: str, scope: Scope, send: Send) -> AsyncIterator[Send]:
        """Count what the request holds while it runs; yields the `send` that watches its answer."""
        session_id = Headers(scope=scope).get(SESSION_HEADER)
        session = self._sessions.get(session_id) if session_id else None
        answer: dict[str, object] = {}

        async def watching(message: Message) -> None:
            if message["type"] == "http.response.start":
                answer["status"] = message["status"]
                answer["session"] = MutableHeaders(raw=list(message.get("headers", []))).get(SESSION_HEADER)
            await send(message)

        streaming = _is_stream(scope)
        # A session's own GET stream (server-to-client messages, which SDK clients keep open for as
        # long as they live) is not a request in progress: ending the session just closes it.
        working = session if session is not None and scope["method"] != "GET" else None
        self._streams[user] += streaming
        if working is not None:
            working.in_flight += 1
        try:
            yield watching
        finally:
            self._streams[user] -= streaming
            if working is not None:
                working.in_flight -= 1
                working.idle_since = self._clock()
            self._settle(user, session_id, scope["method"], answer)

    def _settle(self, user: str, session_id: str | None, method: str, answer: dict[str, object]) -> None:
        status = answer.get("status")
        opened = answer.get("session")
        if isinstance(opened, str) and not session_id and isinstance(status, int) and status < 400:
            self._sessions[opened] = _Session(user=user, idle_since=self._clock())
        ended = status == 404 or (method == "DELETE" and isinstance(status, int) and status < 300)
        if session_id and ended:
            self._sessions.pop(session_id, None)
