"""uvicorn under pyinstrument, for ``bench.reads --profile-api``: where an API process spends
its time while a benchmark drives it.

    .venv/bin/python -m bench.profile_api REPORT.txt <uvicorn arguments>

pyinstrument is not a project dependency (``.venv/bin/pip install pyinstrument``). The text
report (the event loop's whole stack: idle time shows as the selector) is written when uvicorn
stops on SIGTERM or SIGINT, with the session beside it: ``pyinstrument --load
REPORT.pyisession --show-all`` shows the library frames the text hides. (``pyinstrument -m
uvicorn`` writes nothing: uvicorn raises the signal again after its graceful shutdown.)
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import uvicorn.main
from pyinstrument import Profiler


def main(report: Path, uvicorn_args: list[str]) -> None:
    # uvicorn re-raises the signal that stopped it once it is done; let that be a no-op here.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)
    profiler = Profiler(interval=0.001, async_mode="disabled")
    profiler.start()
    try:
        uvicorn.main.main(uvicorn_args, standalone_mode=False)
    finally:
        session = profiler.stop()
        report.write_text(profiler.output_text(unicode=True, color=False, show_all=False))
        session.save(str(report.with_suffix(".pyisession")))


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2:])
