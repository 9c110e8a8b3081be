"""Waiting for a run to reach a state: polled, with a deadline.

The deadline is long for the no-cache runs (``max_cached_workflows=0``). There the SDK
evicts a run after every task, and a query or task that arrived meanwhile is dropped
("There were leftover buffered tasks when evicting run"); the server hands it out again
only when the workflow task timeout, 10 s, has passed. Two such drops on a loaded machine
used up the earlier 20 s deadline (CI, 2026-11-30). A run that never gets there still
fails, a minute later.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable

WAIT_SECONDS = 60.0
# Each query replays the whole history in the no-cache runs: poll gently.
POLL_SECONDS = 0.1


async def until(
    check: Callable[[], bool | Awaitable[bool]],
    what: str | Callable[[], str],
    timeout: float = WAIT_SECONDS,
) -> None:
    """Return once ``check()`` holds; fail with ``never: {what}`` after ``timeout`` seconds
    (``what`` may be a function, to describe the last state seen)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        outcome = check()
        if inspect.isawaitable(outcome):
            outcome = await outcome
        if outcome:
            return
        if loop.time() >= deadline:
            raise AssertionError(f"never: {what() if callable(what) else what}")
        await asyncio.sleep(POLL_SECONDS)
