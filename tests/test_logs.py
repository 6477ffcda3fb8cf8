"""Logging: batched request lines, immediate warnings, JSON lines."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from btc_predictor.logs import BatchingHandler, JsonFormatter

Configure = Callable[[str], tuple[logging.Logger, Path]]


def record(level: int, message: str, **fields: object) -> logging.LogRecord:
    """A log record as the request log makes them."""
    return logging.makeLogRecord(
        {
            "name": "btc_predictor.api",
            "levelno": level,
            "levelname": logging.getLevelName(level),
            "msg": message,
            "fields": fields,
        }
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


@pytest.fixture
def configured(tmp_path: Path) -> Iterator[Callable[[str], tuple[logging.Logger, Path]]]:
    """configure_logging's set-up with its stream on a file; undone after the test."""
    from btc_predictor.config import Settings
    from btc_predictor.logs import configure_logging

    root, streams = logging.getLogger("btc_predictor"), []

    def configure(log_format: str) -> tuple[logging.Logger, Path]:
        path = tmp_path / "log"
        configure_logging(Settings(log_format=log_format))
        handler = root.handlers[0]
        assert isinstance(handler, BatchingHandler)
        handler.stream = path.open("w")
        streams.append(handler.stream)
        return logging.getLogger("btc_predictor.api"), path

    yield configure
    for handler in root.handlers:
        handler.close()
    root.handlers.clear()
    root.propagate, root.level = True, logging.NOTSET
    for stream in streams:
        stream.close()


def test_the_access_line_is_the_line_the_logger_writes(configured: Configure) -> None:
    from btc_predictor.logs import AccessLine

    api, path = configured("text")
    fields = {"request_id": "r1", "method": "GET", "path": "/predict", "status": 200, "ms": 0.05}
    AccessLine(api)("GET /predict 200 0.05ms id=r1", fields)
    api.info("GET /predict 200 0.05ms id=r1", extra={"fields": fields})
    logging.getLogger("btc_predictor").handlers[0].flush()
    fast, slow = on_disk(path)
    # Same shape and text; only the clock may differ.
    assert (
        fast.split(" ", 2)[2]
        == slow.split(" ", 2)[2]
        == "INFO btc_predictor.api: GET /predict 200 0.05ms id=r1"
    )
    assert len(fast.split(" ", 2)[1]) == len(slow.split(" ", 2)[1]) == len("12:00:00,000")


def test_the_json_access_line_has_the_json_formatters_fields(configured: Configure) -> None:
    from btc_predictor.logs import AccessLine

    api, path = configured("json")
    fields = {"request_id": "r2", "method": "POST", "path": "/train", "status": 401, "ms": 1.5}
    AccessLine(api)("POST /train 401 1.50ms id=r2", fields)
    api.info("POST /train 401 1.50ms id=r2", extra={"fields": fields})
    logging.getLogger("btc_predictor").handlers[0].flush()
    fast, slow = (json.loads(line) for line in on_disk(path))
    assert fast.keys() == slow.keys()
    assert {k: v for k, v in fast.items() if k != "ts"} == {
        k: v for k, v in slow.items() if k != "ts"
    }


def test_other_logging_set_ups_get_ordinary_records(caplog: object) -> None:
    from btc_predictor.logs import AccessLine

    logger = logging.getLogger("tests.access")  # no BatchingHandler on its chain
    with caplog.at_level(logging.INFO, logger="tests.access"):  # type: ignore[attr-defined]
        AccessLine(logger)("GET / 200 0.10ms id=x", {"status": 200})
    assert caplog.records[0].getMessage() == "GET / 200 0.10ms id=x"  # type: ignore[attr-defined]
    assert caplog.records[0].fields == {"status": 200}  # type: ignore[attr-defined]
