"""The in-process token buckets behind the 429 answers."""

from __future__ import annotations

import pytest

from todo_mcp.limits import RateLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_of_the_limit_then_a_steady_refill() -> None:
    clock = Clock()
    limiter = RateLimiter(6, clock=clock)
    assert [limiter.take("alice") for _ in range(6)] == [None] * 6
    assert limiter.take("alice") == 10  # one event every 10 s at 6 per minute
    assert limiter.take("bob") is None, "keys are limited separately"
    clock.now += 10
    assert limiter.take("alice") is None
    assert limiter.take("alice") == 10


def test_retry_after_consumes_nothing_and_record_counts_even_when_over() -> None:
    clock = Clock()
    limiter = RateLimiter(2, clock=clock)
    assert limiter.retry_after("10.0.0.1") is None
    limiter.record("10.0.0.1")
    limiter.record("10.0.0.1")
    limiter.record("10.0.0.1")
    assert limiter.retry_after("10.0.0.1") == 30
    clock.now += 30
    assert limiter.retry_after("10.0.0.1") is None


def test_memory_stays_bounded_under_a_flood_of_new_keys() -> None:
    clock = Clock()
    limiter = RateLimiter(5, clock=clock, max_keys=100)
    for n in range(10_000):
        limiter.record(f"198.51.100.{n}")  # every bucket stays below full: nothing refills
        assert len(limiter._buckets) <= 100
    # The newest keys are still limited after the sweeps.
    assert limiter.retry_after("198.51.100.9999") is None
    limiter.record("198.51.100.9999")
    limiter.record("198.51.100.9999")
    limiter.record("198.51.100.9999")
    limiter.record("198.51.100.9999")
    assert limiter.retry_after("198.51.100.9999") is not None


def test_a_limit_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        RateLimiter(0)
