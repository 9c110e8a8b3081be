"""The dev stack's console: one lock so the lines of the children and ours never interleave."""

from __future__ import annotations

import sys
import threading
from typing import TextIO

console_lock = threading.Lock()
COLOURS = ("36", "33", "32", "35", "34", "91", "96", "93")


def _use_colour(stream: TextIO) -> bool:
    return stream.isatty()


def emit(
    prefix: str, line: str, *, colour: str | None = None, stream: TextIO | None = None
) -> None:
    out = stream or sys.stdout
    label = f"{prefix:<9}|"
    if colour and _use_colour(out):
        label = f"\033[{colour}m{label}\033[0m"
    with console_lock:
        out.write(f"{label} {line}\n")
        out.flush()


def say(message: str) -> None:
    for line in message.splitlines() or [""]:
        emit("devstack", line, colour="1")
