"""A child of ``serve`` dies with it: the parent-death signal, and the pid poll without it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

CHILD = """
import ctypes, sys, time
from pathlib import Path
from btc_predictor.jobs import lifeline

if sys.argv[1] == "poll":  # no prctl: only the fallback poll can notice
    def no_libc(*args, **kwargs):
        raise OSError("no libc here")
    ctypes.CDLL = no_libc
# With prctl, a poll too slow to matter: only the kernel's signal can end it in time.
lifeline.exit_with_parent(int(sys.argv[2]), poll=30.0 if sys.argv[1] == "prctl" else 1.0)
Path(sys.argv[3]).write_text("armed")
time.sleep(60)
"""

PARENT = """
import os, subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", sys.argv[1], sys.argv[2], str(os.getpid()), sys.argv[3]])
print(child.pid, flush=True)
time.sleep(60)
"""


def wait_until(predicate: object, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize(("mode", "within"), [("prctl", 1.0), ("poll", 3.0)])
def test_the_child_exits_when_its_parent_is_killed(
    tmp_path: Path, mode: str, within: float
) -> None:
    armed = tmp_path / "armed"
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, CHILD, mode, str(armed)], stdout=subprocess.PIPE
    )
    assert parent.stdout is not None
    child_pid = int(parent.stdout.readline())
    try:
        assert wait_until(armed.exists, 30), "the child never armed its lifeline"
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        killed = time.monotonic()
        assert wait_until(lambda: not running(child_pid), within + 2)
        assert time.monotonic() - killed <= within
    finally:
        parent.stdout.close()
        if running(child_pid):
            os.kill(child_pid, signal.SIGKILL)


def running(pid: int) -> bool:
    """Alive and not a zombie (an orphan's zombie waits for whichever process adopted it)."""
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


def test_a_child_whose_parent_died_before_arming_exits_at_once() -> None:
    code = "from btc_predictor.jobs import lifeline; lifeline.exit_with_parent(1); print('alive')"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60)
    assert done.returncode == 1 and b"alive" not in done.stdout
