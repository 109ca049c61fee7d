"""In-process rate limits: token buckets keyed by a client address or a user id.

The counts live in this process only, so behind a load balancer each replica limits on its own
(N replicas let through up to N times the configured rate). `CallBudget` is each user's calls
per minute, shared by the MCP tools and the REST routes of one process.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from todo_mcp.errors import RateLimited


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """Allows `per_minute` events per key: a burst of that size, then a steady refill."""

    def __init__(
        self, per_minute: int, *, clock: Callable[[], float] = time.monotonic, max_keys: int = 50_000
    ) -> None:
        if per_minute < 1:
            raise ValueError("per_minute must be at least 1")
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self.max_keys = max_keys
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}

    def _bucket(self, key: str) -> _Bucket:
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self.max_keys:
                self._make_room(now)
            bucket = self._buckets[key] = _Bucket(self.capacity, now)
        else:
            bucket.tokens = min(self.capacity, bucket.tokens + (now - bucket.updated) * self.rate)
            bucket.updated = now
        return bucket

    def _make_room(self, now: float) -> None:
        """Keep memory bounded by dropping keys.

        First the keys whose bucket has refilled (they hold no information), and if a flood of new
        keys left none of those, the oldest tenth. Each sweep frees at least a tenth of the table,
        so sweeps stay rare.
        """
        for key in [
            k for k, b in self._buckets.items() if b.tokens + (now - b.updated) * self.rate >= self.capacity
        ]:
            del self._buckets[key]
        if len(self._buckets) > self.max_keys - max(1, self.max_keys // 10):
            for key in list(itertools.islice(self._buckets, max(1, self.max_keys // 10))):
                del self._buckets[key]

    def _wait(self, bucket: _Bucket) -> int:
        return max(1, math.ceil((1.0 - bucket.tokens) / self.rate))

    def retry_after(self, key: str) -> int | None:
        """Seconds until `key` may act again, or None if it may act now (nothing is consumed)."""
        bucket = self._bucket(key)
        return None if bucket.tokens >= 1.0 else self._wait(bucket)

    def take(self, key: str) -> int | None:
        """Consume one event for `key`; None if allowed, else the seconds to wait (nothing consumed)."""
        bucket = self._bucket(key)
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return None
        return self._wait(bucket)

    def record(self, key: str) -> None:
        """Count one event (e.g. a failed login) whether or not the key is already over the limit."""
        bucket = self._bucket(key)
        bucket.tokens = max(0.0, bucket.tokens - 1.0)


class CallBudget:
    """Each user's calls per minute, spent by tool calls, REST calls and session openings alike."""

    def __init__(self, per_minute: int) -> None:
        """A budget of `per_minute` calls per user; 0 means no limit."""
        self.per_minute = per_minute
        self._limiter = RateLimiter(per_minute) if per_minute > 0 else None

    def spend(self, user: str, calls: int = 1) -> None:
        """Take `calls` from the user's budget, or raise RateLimited (with the wait) taking nothing more."""
        if self._limiter is None:
            return
        for _ in range(calls):
            wait = self._limiter.take(user)
            if wait is not None:
                raise RateLimited(self.per_minute, wait)
