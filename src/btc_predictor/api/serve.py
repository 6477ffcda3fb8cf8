"""The ``serve`` process: uvicorn with the API's workers, plus the embedded job worker.

One function owns the supervision: the shared metrics directory (set before any process
imports prometheus_client), migration before any worker starts, the job-worker subprocess at a
lower CPU priority, and a SIGTERM that leaves through the clean-up.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from btc_predictor.config import Settings


def run_server(settings: Settings, *, host: str, port: int, workers: int) -> None:
    """Serve the API until stopped; with ``embedded_worker`` also run one job worker."""
    import uvicorn

    from btc_predictor.api.auth import resolve_api_key
    from btc_predictor.storage.db import create_db_engine, upgrade

    resolve_api_key(settings)  # refuse to start without a key on PostgreSQL
    engine = create_db_engine(settings)
    upgrade(engine)  # migrate once, before any worker process starts
    engine.dispose()
    metrics_dir = _metrics_dir(settings)
    worker = None
    if settings.embedded_worker:
        # Lower CPU priority: its start-up and trainings must not slow the API's answers
        # (on a 2-core machine they compete for the same cores).
        worker = subprocess.Popen(
            [sys.executable, "-m", "btc_predictor", "worker"],
            preexec_fn=lambda: os.nice(10),  # runs before any thread of ours exists
        )
    # uvicorn re-raises the SIGTERM it handled once it has shut down; with the default
    # handler that would kill this process before `finally` stops the job worker.
    signal.signal(signal.SIGTERM, _exit_cleanly)
    try:
        uvicorn.run(
            "btc_predictor.api.app:app_from_environment",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            log_level="warning",
            access_log=False,
        )
    finally:
        if worker is not None:
            worker.terminate()
            worker.wait(timeout=30)
        if settings.metrics_dir is None:
            shutil.rmtree(metrics_dir, ignore_errors=True)


def _exit_cleanly(_signum: int, _frame: object) -> None:
    """SIGTERM after uvicorn's graceful shutdown: leave through the ``finally`` blocks."""
    raise SystemExit(0)


def _metrics_dir(settings: Settings) -> Path:
    """Share metric files between this server's processes (prometheus-client multiprocess).

    Set before any process imports prometheus_client: uvicorn's workers and the embedded job
    worker inherit it, so one scrape of /metrics sums them all. A configured directory
    (PROMETHEUS_MULTIPROC_DIR) is emptied first, as prometheus-client requires.
    """
    if settings.metrics_dir is None:
        path = Path(tempfile.mkdtemp(prefix="btcp-metrics-"))
    else:
        path = settings.metrics_dir
        path.mkdir(parents=True, exist_ok=True)
        for stale in path.glob("*.db"):
            stale.unlink()
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(path)
    if "prometheus_client" in sys.modules:  # this process's own metrics would be missed
        raise RuntimeError("prometheus_client was imported before serve set its metrics dir")
    return path
