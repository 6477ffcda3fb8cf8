"""Logging setup: human text or one JSON object per line (``BTCP_LOG_FORMAT``)."""

from __future__ import annotations

import io
import json
import logging
import sys
import threading
from datetime import UTC, datetime
from typing import TextIO

from btc_predictor.config import Settings


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON line (extra ``fields`` are merged in)."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as a JSON object string."""
        payload = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        payload.update(getattr(record, "fields", {}))
        if record.exc_info:
            payload["exception"] = self.formatException(record.exc_info)
        return json.dumps(payload, default=str)


class BatchingHandler(logging.StreamHandler[TextIO]):
    """Writes lines through a 64 KB buffer flushed every ``interval`` seconds.

    A StreamHandler on stderr makes one write system call per record; at thousands of
    requests per second the access log alone was ~10% of a worker's CPU. INFO lines are
    batched (at most ``interval`` late); WARNING and above flush at once, as does exit.
    """

    def __init__(self, stream: TextIO | None = None, *, interval: float = 0.5) -> None:
        target = stream or sys.stderr
        super().__init__(_buffered(target))
        self._stop = threading.Event()
        self._flusher = threading.Thread(
            target=self._flush_every, args=(interval,), name="log-flush", daemon=True
        )
        self._flusher.start()

    def emit(self, record: logging.LogRecord) -> None:
        """Write the formatted record; flush only for warnings and errors."""
        try:
            line = self.format(record) + "\n"
            with self.lock:  # type: ignore[union-attr]
                self.stream.write(line)
                if record.levelno >= logging.WARNING:
                    self.stream.flush()
        except Exception:  # logging must never raise into the request
            self.handleError(record)

    def flush(self) -> None:
        """Write what is buffered (a stream closed under us, e.g. by a test runner, is skipped)."""
        with self.lock:  # type: ignore[union-attr]
            try:
                if not self.stream.closed:
                    self.stream.flush()
            except (OSError, ValueError):  # the descriptor went away: nothing left to do
                pass

    def _flush_every(self, interval: float) -> None:
        while not self._stop.wait(interval):
            self.flush()

    def close(self) -> None:
        """Stop the flusher and write what is buffered."""
        self._stop.set()
        self.flush()
        super().close()


def _buffered(stream: TextIO) -> TextIO:
    """A block-buffered text stream on the same file descriptor (or the stream itself)."""
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, io.UnsupportedOperation):  # e.g. pytest's capture
        return stream
    return open(fd, "w", buffering=1 << 16, encoding="utf-8", errors="backslashreplace",
                closefd=False)


def configure_logging(settings: Settings, *, level: int = logging.INFO) -> None:
    """Route btc_predictor's logs to stderr in the configured format."""
    for old in logging.getLogger("btc_predictor").handlers:
        old.close()
    handler = BatchingHandler()
    if settings.log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("btc_predictor")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
