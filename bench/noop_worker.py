"""The worker of ``bench/noop.py``, in a process of its own, built like ``worker.py``'s.

    .venv/bin/python -m bench.noop_worker --task-queue noop --address 127.0.0.1:7233

Two workers as the engine has: the workflows and their activities on ``--task-queue``, the
notifications on ``{task queue}-notify``, with the engine's slot counts and the engine's data
converter (the AES-GCM codec with ``CODEC_KEYS`` from the environment), so a payload costs
what it costs the engine. Runs until SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
from datetime import timedelta

from temporalio.client import Client
from temporalio.worker import Worker

from bench.noop import NoopOrder, NoopShipment, noop_notify, noop_step
from fulfil.codec import KeyRing, data_converter
from fulfil.settings import Settings, notify_task_queue


async def run(task_queue: str, address: str, namespace: str) -> None:
    settings = Settings()
    client = await Client.connect(
        address,
        namespace=namespace,
        data_converter=data_converter(KeyRing.parse(settings.codec_keys)),
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    workers = [
        Worker(
            client,
            task_queue=task_queue,
            workflows=[NoopOrder, NoopShipment],
            activities=[noop_step],
            max_concurrent_activities=200,
            sticky_queue_schedule_to_start_timeout=timedelta(
                seconds=settings.sticky_schedule_to_start_seconds
            ),
        ),
        Worker(
            client,
            task_queue=notify_task_queue(task_queue),
            activities=[noop_notify],
            max_concurrent_activities=settings.notify_concurrency,
        ),
    ]
    async with contextlib.AsyncExitStack() as running:
        for worker in workers:
            await running.enter_async_context(worker)
        print(f"noop worker on {task_queue}", flush=True)
        await stop.wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task-queue", required=True)
    parser.add_argument("--address", required=True)
    parser.add_argument("--namespace", default="default")
    args = parser.parse_args()
    status = 0
    try:
        asyncio.run(run(args.task_queue, args.address, args.namespace))
    except Exception as err:
        print(f"noop worker crashed: {err!r}", file=sys.stderr)
        status = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)  # temporalio can abort the interpreter at exit (sdk-python #300)
