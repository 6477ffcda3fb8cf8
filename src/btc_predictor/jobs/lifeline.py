"""Process lifelines: a child of ``serve`` exits when ``serve`` dies.

Linux delivers a parent-death signal (``prctl(PR_SET_PDEATHSIG)``) the moment the parent goes;
a thread polling the parent pid every second is the fallback (other systems, or a failed
``prctl``), so a child never outlives ``serve`` by more than about a second.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import sys
import threading
import time

log = logging.getLogger(__name__)

PARENT_POLL = 1.0  # seconds between checks of the parent pid (the fallback)
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def exit_with_parent(parent_pid: int, *, poll: float = PARENT_POLL) -> None:
    """Die when ``parent_pid`` (this process's parent) dies: kernel signal plus a pid poll."""
    if sys.platform == "linux":
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
                log.warning("prctl(PR_SET_PDEATHSIG) failed: errno %d", ctypes.get_errno())
        except (OSError, AttributeError):
            log.warning("no prctl here; polling the parent pid instead", exc_info=True)
    _exit_if_orphaned(parent_pid)  # the parent may have died before the signal was armed
    thread = threading.Thread(
        target=_watch_parent, args=(parent_pid, poll), name="parent-watch", daemon=True
    )
    thread.start()


def _watch_parent(parent_pid: int, poll: float) -> None:
    """Poll the parent pid until it changes (reparented: the parent died)."""
    while True:
        _exit_if_orphaned(parent_pid)
        time.sleep(poll)


def _exit_if_orphaned(parent_pid: int) -> None:
    """Exit at once when this process is no longer ``parent_pid``'s child."""
    if os.getppid() != parent_pid:
        log.error("parent process %d is gone: exiting", parent_pid)
        os._exit(1)  # no clean-up: the parent that would wait for it is gone
