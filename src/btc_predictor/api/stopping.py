"""Whether this API process is stopping: a long wait (the original's POST /train) answers at
once instead of holding a graceful shutdown until uvicorn cancels it."""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Any

STOPPING = threading.Event()


def watch_stop_signals() -> None:
    """Chain onto the SIGTERM/SIGINT handlers the server installed (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        return  # in-process test clients: no signals to watch
    for signum in (signal.SIGTERM, signal.SIGINT):
        previous = signal.getsignal(signum)
        if callable(previous):
            signal.signal(signum, _chained(previous))


def _chained(previous: Any) -> Any:
    """A handler that marks the process stopping, then runs the server's own."""

    def handle(signum: int, frame: FrameType | None) -> None:
        """Mark, then pass on."""
        STOPPING.set()
        previous(signum, frame)

    return handle
