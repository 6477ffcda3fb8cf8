"""The serving state's background logging: one line per change of state during an outage."""

from __future__ import annotations

import logging

import pytest
from sqlalchemy.exc import OperationalError

from btc_predictor.api.state import Outage
from btc_predictor.errors import UnavailableError

log = logging.getLogger("tests.outage")


def test_an_outage_is_logged_once_per_change_not_per_attempt(
    caplog: pytest.LogCaptureFixture,
) -> None:
    outage = Outage("state poll", log)
    refused = OperationalError("SELECT 1", {}, Exception("connection refused"))
    with caplog.at_level(logging.INFO, "tests.outage"):
        for _ in range(30):  # 30 polls of a stalled or refused database
            outage.failed(refused)
            outage.failed(UnavailableError("the database did not answer within 10 s"))
        outage.ended()
        outage.ended()
        outage.failed(RuntimeError("a bug"))
        outage.failed(RuntimeError("a bug"))
    lines = [(r.levelname, r.getMessage().split(":")[0], bool(r.exc_info)) for r in caplog.records]
    assert lines == [
        ("WARNING", "state poll failing", False),
        ("WARNING", "state poll recovered after 0.0 s", False),
        ("ERROR", "state poll failing", True),  # not the database: its traceback, once
    ]
