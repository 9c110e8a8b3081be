"""Heartbeats for activities that work a while (each Cloudflare deployment step): a
background task beats while the block runs. Outside an activity (a method called directly)
it does nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from temporalio import activity


@contextlib.asynccontextmanager
async def heartbeating() -> AsyncIterator[None]:
    """Tell Temporal the step is alive while it works: a worker that dies is noticed within
    the heartbeat timeout, not the step's whole timeout. (Three beats per timeout; the SDK
    throttles what it sends.)"""
    timeout = activity.info().heartbeat_timeout if activity.in_activity() else None
    every = max(0.5, timeout.total_seconds() / 3) if timeout else 2.0

    async def beat() -> None:
        while True:
            activity.heartbeat()
            await asyncio.sleep(every)

    task = asyncio.create_task(beat()) if activity.in_activity() else None
    try:
        yield
    finally:
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
