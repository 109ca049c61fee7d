"""The event loop `todo-ledger serve` runs on."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


def fast_event_loop() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The event loop of uvloop, where it is built (not on Windows); None for the standard one.

    Imported only by `serve`: stdio keeps the standard loop, which starts sooner.
    """
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop
