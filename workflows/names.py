"""The names Temporal knows our workflows and signals by, read from their definitions.

Outbox rows store a workflow's and a signal's name as text (they are sent
later, by a relay). Building that text from the decorated method, never
retyping it, keeps a rename in one place.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from temporalio import workflow


def workflow_name(run_fn: Callable[..., Any]) -> str:
    """The workflow type of a ``@workflow.run`` method, e.g. ``OrderPlacement.run``."""
    name = workflow._Definition.must_from_run_fn(run_fn).name
    if name is None:
        raise ValueError(f"{run_fn.__qualname__} is a dynamic workflow: it has no name")
    return name


def signal_name(signal_fn: Callable[..., Any]) -> str:
    """The name of a ``@workflow.signal`` method, e.g. ``OrderPlacement.payment_succeeded``."""
    return workflow._SignalDefinition.must_name_from_fn_or_str(signal_fn)
