"""Logging: batched request lines, immediate warnings, JSON lines."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from btc_predictor.logs import BatchingHandler, JsonFormatter


def record(level: int, message: str, **fields: object) -> logging.LogRecord:
    """A log record as the request log makes them."""
    return logging.makeLogRecord(
        {"name": "btc_predictor.api", "levelno": level, "levelname": logging.getLevelName(level),
         "msg": message, "fields": fields}
    )


def on_disk(path: Path) -> list[str]:
    """The lines that reached the file (not those still in a buffer)."""
    return path.read_text().splitlines()


def test_info_lines_are_batched_and_flushed_within_the_interval(tmp_path: Path) -> None:
    path = tmp_path / "log"
    with path.open("w") as stream:
        handler = BatchingHandler(stream, interval=0.2)
        handler.setFormatter(logging.Formatter("%(message)s"))
        for i in range(100):
            handler.emit(record(logging.INFO, f"GET /predict {i}"))
        assert on_disk(path) == []  # no write system call per line
        deadline = time.monotonic() + 5
        while len(on_disk(path)) < 100 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert on_disk(path) == [f"GET /predict {i}" for i in range(100)]
        handler.close()


def test_warnings_are_written_at_once_and_close_flushes(tmp_path: Path) -> None:
    path = tmp_path / "log"
    with path.open("w") as stream:
        handler = BatchingHandler(stream, interval=60)
        handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
        handler.emit(record(logging.INFO, "queued line"))
        handler.emit(record(logging.WARNING, "database slow"))
        assert on_disk(path) == ["INFO queued line", "WARNING database slow"]
        handler.emit(record(logging.INFO, "last line"))
        handler.close()
        assert on_disk(path)[-1] == "INFO last line"


def test_json_lines_carry_the_request_fields(tmp_path: Path) -> None:
    path = tmp_path / "log"
    with path.open("w") as stream:
        handler = BatchingHandler(stream, interval=60)
        handler.setFormatter(JsonFormatter())
        handler.emit(record(logging.INFO, "GET /predict 200", request_id="abc", status=200))
        handler.close()
    line = json.loads(on_disk(path)[0])
    assert line["request_id"] == "abc" and line["status"] == 200 and line["level"] == "info"


def test_a_stream_without_a_file_descriptor_still_works() -> None:
    import io

    stream = io.StringIO()
    handler = BatchingHandler(stream, interval=60)
    handler.emit(record(logging.INFO, "hello"))
    handler.close()
    assert stream.getvalue() == "hello\n"


def test_a_stream_closed_under_the_handler_does_not_break_reconfiguring() -> None:
    import io

    stream = io.StringIO()
    handler = BatchingHandler(stream, interval=60)
    stream.close()  # e.g. a test runner's captured stderr, gone after the command
    handler.close()  # configure_logging closes the previous handler: must not raise
