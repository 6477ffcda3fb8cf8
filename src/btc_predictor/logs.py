"""Logging setup: human text or one JSON object per line (``BTCP_LOG_FORMAT``)."""

from __future__ import annotations

import io
import json
import logging
import sys
import threading
import time
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

    def write_line(self, line: str) -> None:
        """Append an already formatted INFO line (see AccessLine)."""
        try:
            with self.lock:  # type: ignore[union-attr]
                self.stream.write(line + "\n")
        except (OSError, ValueError):  # a closed stream: the line is lost, never the request
            pass

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
    return open(
        fd, "w", buffering=1 << 16, encoding="utf-8", errors="backslashreplace", closefd=False
    )


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class TextFormatter(logging.Formatter):
    """The human format (a class of its own so the access line can recognise it)."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)


class AccessLine:
    """Writes one request's log line without a LogRecord (the API's hot path).

    The line is the one the configured handler would write (text or JSON, same fields); a
    LogRecord, its formatter and the handler chain cost about as much as serving a cached
    forecast. With any other logging set-up (e.g. pytest's capture) it logs normally.
    """

    def __init__(self, logger: logging.Logger) -> None:
        self.logger = logger
        self._second, self._asctime = -1, ""

    def __call__(self, message: str, fields: dict[str, object]) -> None:
        """Log ``message`` (INFO) with its structured ``fields``."""
        if not self.logger.isEnabledFor(logging.INFO):
            return
        handler = self._fast_handler()
        if handler is None:
            self.logger.info(message, extra={"fields": fields})
            return
        now = time.time()
        if isinstance(handler.formatter, JsonFormatter):
            payload = {
                "ts": datetime.fromtimestamp(now, UTC).isoformat(),
                "level": "info",
                "logger": self.logger.name,
                "message": message,
                **fields,
            }
            line = json.dumps(payload, default=str)
        else:
            line = f"{self._stamp(now)} INFO {self.logger.name}: {message}"
        handler.write_line(line)

    def _fast_handler(self) -> BatchingHandler | None:
        """configure_logging's handler, when it alone receives this logger's records."""
        logger: logging.Logger | None = self.logger
        while logger is not None:
            if logger.handlers:
                only = logger.handlers[0] if len(logger.handlers) == 1 else None
                fast = isinstance(only, BatchingHandler) and type(only.formatter) in (
                    TextFormatter,
                    JsonFormatter,
                )
                return only if fast and not logger.propagate else None  # type: ignore[return-value]
            logger = logger.parent if logger.propagate else None
        return None

    def _stamp(self, now: float) -> str:
        """``asctime`` as logging.Formatter writes it (local time, milliseconds)."""
        second = int(now)
        if second != self._second:
            self._second = second
            self._asctime = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(second))
        return f"{self._asctime},{int((now - second) * 1000):03d}"


def configure_logging(settings: Settings, *, level: int = logging.INFO) -> None:
    """Route btc_predictor's logs to stderr in the configured format."""
    for old in logging.getLogger("btc_predictor").handlers:
        old.close()
    handler = BatchingHandler()
    if settings.log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter())
    root = logging.getLogger("btc_predictor")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
