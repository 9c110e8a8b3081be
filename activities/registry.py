"""The activities an object offers: what the worker registers, and what test fakes offer.

Activities live on classes that receive their clients in ``__init__``; the
worker builds one object per class and registers :func:`activity_methods` of
each. Tests build small fakes with the same activity names and register them
through the same function, so the list of names is never kept twice.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from temporalio import activity


def activity_methods(*objects: object) -> list[Callable[..., Any]]:
    """Every ``@activity.defn`` bound method of ``objects`` (the SDK's own lookup)."""
    found: list[Callable[..., Any]] = []
    names: set[str] = set()
    for obj in objects:
        for _, member in inspect.getmembers(obj, inspect.ismethod):
            definition = activity._Definition.from_callable(member)
            if definition is None or definition.name is None:
                continue
            if definition.name in names:
                raise ValueError(f"activity {definition.name!r} is offered twice")
            names.add(definition.name)
            found.append(member)
    return found
