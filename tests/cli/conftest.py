"""CLI fixtures: an isolated data dir, a runner, and a fingerprint of what is stored."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from btc_predictor.cli.app import app


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """An isolated data dir; no online sources are ever reached (bad inputs fail first)."""
    return {"BTCP_DATA_DIR": str(tmp_path / "data"), "BTCP_SOURCES": "yahoo"}


def run(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args), env=env)
    return result.exit_code, result.stdout, result.stderr


def db_fingerprint(env: dict[str, str]) -> str:
    """A digest of every row of every table (candles, runs, versions, jobs, …)."""
    db = Path(env["BTCP_DATA_DIR"]) / "btc_predictor.db"
    with sqlite3.connect(db) as conn:
        tables = [
            name
            for (name,) in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"
            )
        ]
        rows = {t: sorted(map(repr, conn.execute(f'SELECT * FROM "{t}"'))) for t in tables}
    return hashlib.sha256(repr(rows).encode()).hexdigest()


@pytest.fixture
def seeded(env: dict[str, str], shared_data: Path) -> dict[str, str]:
    code, _out, err = run(
        env, "ingest", "--path", str(shared_data / "Bitstamp_BTCUSD_d.csv"), "--json"
    )
    assert code == 0, err
    return env
