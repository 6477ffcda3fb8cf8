"""``serve``'s run directories: those of a killed server are removed, live ones kept."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import psutil

from btc_predictor.api.serve import OWNER_FILE, RUN_DIR_PREFIX, remove_stale_run_dirs


def run_dir(parent: Path, name: str, owner: str | None, age: float = 0.0) -> Path:
    path = parent / f"{RUN_DIR_PREFIX}{name}"
    path.mkdir()
    (path / "counter_1.db").write_bytes(b"x")
    if owner is not None:
        (path / OWNER_FILE).write_text(owner)
    if age:
        then = time.time() - age
        os.utime(path, (then, then))
    return path


def test_only_the_run_dirs_of_stopped_servers_are_removed(tmp_path: Path) -> None:
    me = psutil.Process()
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    live = run_dir(tmp_path, "live", f"{me.pid} {me.create_time()}")
    killed = run_dir(tmp_path, "killed", f"{ended.pid} {time.time()}")
    reused = run_dir(tmp_path, "reused", f"{me.pid} {me.create_time() - 3600}")
    starting = run_dir(tmp_path, "starting", None)
    legacy = run_dir(tmp_path, "legacy", None, age=3600)
    garbled = run_dir(tmp_path, "garbled", "not a pid")
    other = tmp_path / "unrelated"
    other.mkdir()
    removed = remove_stale_run_dirs(tmp_path)
    assert sorted(removed) == sorted([killed, reused, legacy, garbled])
    assert live.exists() and starting.exists() and other.exists()
    assert not killed.exists()
