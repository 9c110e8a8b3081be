"""The transactional outbox: Temporal starts and signals owed by committed rows.

The API writes a row in the same transaction as the order (or the verified
webhook) and answers at once; :meth:`OutboxRelay.dispatch` then delivers it in
the background. The worker runs :meth:`OutboxRelay.run` to re-drive anything
not yet delivered (Temporal was down, the API died after commit), so an outage
delays work but loses none. Starts use business workflow ids and are
idempotent, so delivering a row twice is harmless.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.sql import func
from sqlalchemy.sql.elements import ColumnElement
from temporalio.client import Client, WorkflowHandle
from temporalio.common import (
    SearchAttributeKey,
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from db.models import OutboxMessage

log = logging.getLogger(__name__)

START_WORKFLOW = "start_workflow"
# How long a relay owns the rows it took before another may take them again.
CLAIM = timedelta(seconds=30)
# Temporal calls in flight at once per delivery pass (rows of one workflow stay in order).
DELIVERY_CONCURRENCY = 16
SIGNAL_WORKFLOW = "signal_workflow"


def start_message(
    workflow: str,
    workflow_id: str,
    arg: dict[str, Any],
    *,
    search_attributes: dict[str, str] | None = None,
    summary: str | None = None,
    task_queue: str | None = None,
) -> OutboxMessage:
    """A workflow start; ``task_queue`` pins it (else the relay's own queue)."""
    return OutboxMessage(
        kind=START_WORKFLOW,
        workflow_id=workflow_id,
        payload={
            "workflow": workflow,
            "arg": arg,
            "search_attributes": search_attributes or {},
            "summary": summary,
            "task_queue": task_queue,
        },
    )


def signal_message(
    workflow_id: str,
    signal: str,
    arg: dict[str, Any],
    *,
    start: dict[str, Any] | None = None,
) -> OutboxMessage:
    """A signal; with ``start`` (workflow, arg, search_attributes, summary) a signal-with-start."""
    return OutboxMessage(
        kind=SIGNAL_WORKFLOW,
        workflow_id=workflow_id,
        payload={"signal": signal, "arg": arg, "start": start},
    )


ClientProvider = Callable[[], Awaitable[Client]]


class OutboxRelay:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        client: ClientProvider,
        task_queue: str,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._client = client
        self._task_queue = task_queue

    async def dispatch(self, ids: Sequence[int]) -> None:
        """Deliver these rows now (called by the API right after its commit)."""
        rows = await self._claim(
            OutboxMessage.id.in_(ids), OutboxMessage.dispatched_at.is_(None), limit=len(ids)
        )
        await self._deliver(rows)

    async def redrive(self, older_than: timedelta, limit: int = 200) -> int:
        """Deliver rows left undispatched for longer than ``older_than``."""
        rows = await self._claim(
            OutboxMessage.dispatched_at.is_(None),
            OutboxMessage.created_at < func.now() - older_than,
            or_(
                OutboxMessage.next_attempt_at.is_(None),
                OutboxMessage.next_attempt_at <= func.now(),
            ),
            limit=limit,
        )
        await self._deliver(rows)
        return len(rows)

    async def _claim(self, *conditions: ColumnElement[bool], limit: int) -> list[OutboxMessage]:
        """Take rows for a while, in a short transaction of their own.

        No connection or row lock is held across the calls to Temporal (under a
        burst of webhooks that starved the pool); another relay skips a claimed
        row until the claim lapses.
        """
        async with self._sessionmaker.begin() as session:
            ids = (
                select(OutboxMessage.id)
                .where(*conditions)
                .order_by(OutboxMessage.id)
                .limit(limit)
                .with_for_update(skip_locked=True)
                .scalar_subquery()
            )
            claimed = await session.scalars(
                update(OutboxMessage)
                .where(OutboxMessage.id.in_(ids))
                .values(next_attempt_at=func.now() + CLAIM)
                .returning(OutboxMessage),
                execution_options={"synchronize_session": False},
            )
            return list(claimed.all())

    async def run(self, interval: float, stop: asyncio.Event) -> None:
        """The relay loop of the worker."""
        while not stop.is_set():
            try:
                count = await self.redrive(older_than=timedelta(seconds=interval))
                if count:
                    log.info("outbox re-drove rows", extra={"count": count})
            except Exception:
                log.exception("outbox relay pass failed")
            try:
                await asyncio.wait_for(stop.wait(), timeout=interval)
            except TimeoutError:
                pass

    async def _deliver(self, rows: Sequence[OutboxMessage]) -> None:
        if not rows:
            return
        delivered: list[int] = []
        failed: dict[int, str] = {}
        try:
            client = await self._client()
        except Exception as err:
            failed = {row.id: f"temporal unavailable: {err}" for row in rows}
        else:
            # One workflow's rows in order (a start before its signals); workflows side by side.
            by_workflow: dict[str, list[OutboxMessage]] = {}
            for row in sorted(rows, key=lambda r: r.id):
                by_workflow.setdefault(row.workflow_id, []).append(row)
            limit = asyncio.Semaphore(DELIVERY_CONCURRENCY)

            async def deliver_in_order(group: list[OutboxMessage]) -> None:
                async with limit:
                    for index, row in enumerate(group):
                        try:
                            await self._send(client, row)
                            delivered.append(row.id)
                        except Exception as err:
                            log.warning(
                                "outbox delivery failed",
                                extra={
                                    "outbox_id": row.id,
                                    "workflow_id": row.workflow_id,
                                    "error": str(err),
                                },
                            )
                            # The rest of this workflow's rows wait for it (order matters).
                            for later in group[index:]:
                                failed[later.id] = str(err)
                            return

            await asyncio.gather(*(deliver_in_order(group) for group in by_workflow.values()))
        async with self._sessionmaker.begin() as session:
            if delivered:
                await session.execute(
                    update(OutboxMessage)
                    .where(OutboxMessage.id.in_(delivered))
                    .values(dispatched_at=func.now(), attempts=OutboxMessage.attempts + 1)
                )
            for row in rows:
                if row.id in failed:
                    # Try again later, backing off: 1 s, 2 s, 4 s … at most 5 minutes apart.
                    backoff = timedelta(seconds=min(2 ** min(row.attempts + 1, 9), 300))
                    await session.execute(
                        update(OutboxMessage)
                        .where(OutboxMessage.id == row.id)
                        .values(
                            attempts=OutboxMessage.attempts + 1,
                            last_error=failed[row.id][:2000],
                            next_attempt_at=func.now() + backoff,
                        )
                    )

    async def _send(self, client: Client, row: OutboxMessage) -> None:
        payload = row.payload
        if row.kind == START_WORKFLOW:
            try:
                await self._start(client, row.workflow_id, payload)
            except WorkflowAlreadyStartedError:
                pass  # started before (and maybe finished): exactly what we wanted
        elif row.kind == SIGNAL_WORKFLOW:
            start = payload.get("start")
            if start is None:
                handle: WorkflowHandle[Any, Any] = client.get_workflow_handle(row.workflow_id)
                try:
                    await handle.signal(payload["signal"], payload["arg"])
                except RPCError as err:
                    if err.status != RPCStatusCode.NOT_FOUND:
                        raise
                    # The run is over (e.g. a tracking webhook after delivery): nothing to change.
                    log.info(
                        "signal for a closed workflow dropped",
                        extra={"workflow_id": row.workflow_id, "signal": payload["signal"]},
                    )
            else:
                try:
                    await self._start(
                        client,
                        row.workflow_id,
                        start,
                        start_signal=payload["signal"],
                        start_signal_args=[payload["arg"]],
                    )
                except WorkflowAlreadyStartedError:
                    pass  # the run is over: a late event has nothing left to change
        else:
            raise ValueError(f"unknown outbox kind {row.kind!r}")

    async def _start(
        self,
        client: Client,
        workflow_id: str,
        spec: dict[str, Any],
        *,
        start_signal: str | None = None,
        start_signal_args: Sequence[Any] = (),
    ) -> None:
        attributes = TypedSearchAttributes(
            [
                SearchAttributePair(SearchAttributeKey.for_keyword(name), value)
                for name, value in (spec.get("search_attributes") or {}).items()
            ]
        )
        await client.start_workflow(
            spec["workflow"],
            spec["arg"],
            id=workflow_id,
            task_queue=spec.get("task_queue") or self._task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            search_attributes=attributes,
            static_summary=spec.get("summary"),
            start_signal=start_signal,
            start_signal_args=start_signal_args,
        )
