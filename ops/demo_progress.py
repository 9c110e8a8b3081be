"""How ``fulfil demo`` (``ops/demo.py``) runs its scenarios and shows them: one progress row
a scenario while they run side by side, the table of outcomes at the end, and the polling
every scenario waits with (a deadline, never an open-ended wait).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from ops.config import OpsError
from ops.display import out, text

T = TypeVar("T")


@dataclass
class Outcome:
    scenario: str
    subject: str
    expected: str
    actual: str
    ok: bool
    seconds: float


class Tracker:
    """One scenario's row in the progress display."""

    def __init__(self, progress: Progress, scenario: str, total: int) -> None:
        self._progress = progress
        self._total = total
        self.task: TaskID = progress.add_task(scenario, total=total, state="starting")

    def update(self, state: str, *, completed: int | None = None) -> None:
        shown = None if completed is None else min(completed, self._total)
        self._progress.update(self.task, state=state, completed=shown)

    def finish(self, outcome: Outcome) -> None:
        mark = "[green]ok[/green]" if outcome.ok else "[red]NOT OK[/red]"
        self._progress.update(
            self.task, completed=self._total, state=f"{text(outcome.actual)}  {mark}"
        )


# (name, expected end, progress steps, run): what ``ops/demo.py`` lists.
Scenario = tuple[str, str, int, Callable[[Tracker], Awaitable[tuple[str, str, bool]]]]


def progress_display() -> Progress:
    """The live display: a row a scenario with its bar, count, time and state."""
    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description:<27}"),
        BarColumn(bar_width=20),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[state]}"),
        console=out,
    )


async def run_scenario(progress: Progress, scenario: Scenario) -> Outcome:
    name, expected, steps, run = scenario
    track = Tracker(progress, name, steps)
    started = time.monotonic()
    try:
        subject, actual, ok = await run(track)
    except OpsError as err:
        subject, actual, ok = "—", f"error: {err}", False
    outcome = Outcome(name, subject, expected, actual, ok, time.monotonic() - started)
    track.finish(outcome)
    return outcome


def outcome_table(outcomes: list[Outcome]) -> Table:
    table = Table(title="fulfil demo: outcomes", title_justify="left")
    table.add_column("scenario")
    table.add_column("id", no_wrap=True)
    table.add_column("expected end")
    table.add_column("actual")
    table.add_column("took", justify="right")
    table.add_column("ok", justify="center")
    for o in outcomes:
        table.add_row(
            text(o.scenario),
            text(o.subject),
            text(o.expected),
            text(o.actual),
            f"{o.seconds:.0f} s",
            "[green]✓[/green]" if o.ok else "[red]✗[/red]",
        )
    return table


async def poll(
    read: Callable[[], Awaitable[T]],
    done: Callable[[T], bool],
    *,
    seconds: float,
    interval: float = 0.5,
    seen: Callable[[T], None] | None = None,
) -> tuple[T, bool]:
    """Read until ``done`` or the deadline; returns the last value and whether it was done."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while True:
        value = await read()
        if seen is not None:
            seen(value)
        if done(value):
            return value, True
        if loop.time() >= deadline:
            return value, False
        await asyncio.sleep(min(interval, max(deadline - loop.time(), 0.0)))
