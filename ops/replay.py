"""``fulfil replay``: do the runs in Temporal still replay with the code checked out here?

For every workflow type the worker registers (``worker.WORKFLOWS``) it lists the newest open
and closed runs (``--limit`` per type, shared between the two when both exist), fetches their
histories and replays them with :class:`temporalio.worker.Replayer` and the engine's data
converter (the codec: histories are encrypted). A run that no longer replays is reported with
its run id and the error; a ``NondeterminismError`` means a change needs ``workflow.patched``
before it is deployed (ARCHITECTURE.md: "Workflow changes with runs in flight are versioned").
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from temporalio.client import Client, WorkflowExecution, WorkflowHistory
from temporalio.runtime import LoggingConfig, Runtime, TelemetryConfig, TelemetryFilter
from temporalio.service import RPCError
from temporalio.worker import Replayer
from temporalio.workflow import NondeterminismError

from fulfil.settings import Settings
from ops.config import EXIT_FOUND_PROBLEM, EXIT_OK
from ops.display import out, text
from ops.runs import connect_temporal, run_link
from workflows.names import workflow_name

FETCH_CONCURRENCY = 8
ERROR_CHARS = 600
CORE_MESSAGE = re.compile(r'message: "((?:[^"\\]|\\.)*)"')
RPC_TIMEOUT = timedelta(seconds=30)


@dataclass
class ReplayFailure:
    workflow_type: str
    workflow_id: str
    run_id: str
    nondeterministic: bool
    error: str


@dataclass
class TypeReport:
    workflow_type: str
    open: int = 0
    closed: int = 0
    replayed: int = 0
    unavailable: int = 0  # listed, but the history could not be fetched (deleted meanwhile)
    failures: list[ReplayFailure] = field(default_factory=list)

    @property
    def nondeterministic(self) -> int:
        return sum(1 for f in self.failures if f.nondeterministic)

    @property
    def other_errors(self) -> int:
        return sum(1 for f in self.failures if not f.nondeterministic)


def type_names(workflows: Sequence[type[Any]]) -> dict[str, type[Any]]:
    return {workflow_name(cls.run): cls for cls in workflows}


async def recent_runs(client: Client, workflow_type: str, limit: int) -> list[WorkflowExecution]:
    """The newest ``limit`` runs of a type: half open, half closed when both have enough."""
    base = f"WorkflowType = '{workflow_type}'"
    open_runs = await _list(client, f"{base} AND ExecutionStatus = 'Running'", limit)
    closed_runs = await _list(client, f"{base} AND ExecutionStatus != 'Running'", limit)
    take_open = min(len(open_runs), max(limit - len(closed_runs), (limit + 1) // 2))
    return open_runs[:take_open] + closed_runs[: limit - take_open]


async def _list(client: Client, query: str, limit: int) -> list[WorkflowExecution]:
    return [
        execution
        async for execution in client.list_workflows(query, limit=limit, rpc_timeout=RPC_TIMEOUT)
    ]


async def replay_recent(
    client: Client,
    workflows: Sequence[type[Any]],
    *,
    limit: int,
    on_listed: Callable[[int], None] = lambda total: None,
    on_replayed: Callable[[], None] = lambda: None,
) -> list[TypeReport]:
    """Replay the recent runs of every type; ``on_listed`` gets the number of runs to replay,
    ``on_replayed`` is called once per run (fetch failures included)."""
    names = type_names(workflows)
    reports = {name: TypeReport(name) for name in names}
    listed = await asyncio.gather(*(recent_runs(client, name, limit) for name in names))
    runs = [run for per_type in listed for run in per_type]
    for run in runs:
        report = reports[run.workflow_type]
        if run.status is not None and run.status.name == "RUNNING":
            report.open += 1
        else:
            report.closed += 1
    on_listed(len(runs))

    gate = asyncio.Semaphore(FETCH_CONCURRENCY)

    async def fetch(run: WorkflowExecution) -> WorkflowHistory | None:
        async with gate:
            try:
                return await client.get_workflow_handle(run.id, run_id=run.run_id).fetch_history(
                    rpc_timeout=RPC_TIMEOUT
                )
            except RPCError:
                return None

    fetched = await asyncio.gather(*(fetch(run) for run in runs))
    histories: list[tuple[WorkflowExecution, WorkflowHistory]] = []
    for run, history in zip(runs, fetched, strict=True):
        if history is None:
            reports[run.workflow_type].unavailable += 1
            on_replayed()
        else:
            histories.append((run, history))

    async def feed() -> AsyncIterator[WorkflowHistory]:
        for _, history in histories:
            yield history

    replayer = Replayer(workflows=list(workflows), data_converter=client.data_converter)
    async with replayer.workflow_replay_iterator(feed()) as results:
        index = 0
        async for result in results:
            run, _ = histories[index]
            index += 1
            report = reports[run.workflow_type]
            failure = result.replay_failure
            if failure is None:
                report.replayed += 1
            else:
                report.failures.append(
                    ReplayFailure(
                        workflow_type=run.workflow_type,
                        workflow_id=run.id,
                        run_id=run.run_id,
                        nondeterministic=isinstance(failure, NondeterminismError),
                        error=failure_message(failure),
                    )
                )
            on_replayed()
    return [reports[name] for name in names]


def failure_message(failure: Exception) -> str:
    """The core's own message when it wraps one (``Failure { message: "..." }``)."""
    found = CORE_MESSAGE.search(str(failure))
    return f"{type(failure).__name__}: {found.group(1) if found else failure}"


async def replay_command(settings: Settings, *, limit: int) -> int:
    from worker import WORKFLOWS  # what the worker runs is what must replay

    # Each failing replay is reported below; the SDK core's own warning about it would repeat it.
    quiet = TelemetryFilter(core_level="ERROR", other_level="ERROR")
    Runtime.set_default(Runtime(telemetry=TelemetryConfig(logging=LoggingConfig(filter=quiet))))
    client = await connect_temporal(settings)
    progress = Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(bar_width=30),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=out,
        transient=True,
    )
    with progress:
        task = progress.add_task("listing runs", total=None)
        reports = await replay_recent(
            client,
            WORKFLOWS,
            limit=limit,
            on_listed=lambda total: progress.update(task, total=total, description="replaying"),
            on_replayed=lambda: progress.advance(task),
        )
    out.print(summary_table(settings, reports, limit))
    failures = [failure for report in reports for failure in report.failures]
    if failures:
        out.print(failures_table(settings, failures))
    nondeterministic = sum(report.nondeterministic for report in reports)
    replayed = sum(report.replayed for report in reports)
    if not failures:
        out.print(f"[green bold]{replayed} runs replayed, none nondeterministic.[/]")
        return EXIT_OK
    out.print(
        f"[red bold]{len(failures)} of {replayed + len(failures)} runs do not replay "
        f"({nondeterministic} nondeterministic).[/] A change to a workflow with runs in "
        "flight goes behind workflow.patched()."
    )
    return EXIT_FOUND_PROBLEM


def summary_table(settings: Settings, reports: list[TypeReport], limit: int) -> Table:
    table = Table(
        title=f"replay against this checkout (newest {limit} runs per type, "
        f"namespace {settings.temporal_namespace})",
        title_justify="left",
    )
    table.add_column("workflow type")
    table.add_column("open", justify="right")
    table.add_column("closed", justify="right")
    table.add_column("replayed", justify="right")
    table.add_column("nondeterministic", justify="right")
    table.add_column("other errors", justify="right")
    table.add_column("history gone", justify="right")
    for r in reports:
        table.add_row(
            r.workflow_type,
            str(r.open),
            str(r.closed),
            f"[green]{r.replayed}[/green]" if r.replayed else "0",
            f"[red bold]{r.nondeterministic}[/]" if r.nondeterministic else "0",
            f"[red]{r.other_errors}[/red]" if r.other_errors else "0",
            str(r.unavailable),
        )
    return table


def failures_table(settings: Settings, failures: list[ReplayFailure]) -> Table:
    table = Table(title="runs that do not replay", title_justify="left", show_lines=True)
    table.add_column("type")
    table.add_column("workflow id / run id", overflow="fold")
    table.add_column("kind")
    table.add_column("error", overflow="fold")
    for f in failures:
        link = run_link(settings, f.workflow_id, f.run_id)
        where = f"{text(f.workflow_id)}\n{text(f.run_id)}\n{text(link)}"
        kind = "[red bold]nondeterministic[/]" if f.nondeterministic else "[red]error[/red]"
        table.add_row(f.workflow_type, where, kind, text(f.error[:ERROR_CHARS]))
    return table
