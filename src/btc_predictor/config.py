"""Settings: the only place that reads the environment (prefix ``BTCP_``)."""

from __future__ import annotations

import re
from datetime import date, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|[smhdw]?)\s*$")
_UNIT_SECONDS = {"": 1, "ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
# The one rule for asset symbols, here on the ground floor so that settings (BTCP_ASSETS),
# request shapes and sources all apply it: BASE-QUOTE, ``/`` accepted, any case.
ASSET_PATTERN = r"^[A-Za-z0-9]{2,12}[-/][A-Za-z0-9]{2,6}$"


def normalise_symbol(text: str) -> str:
    """``btc/usd`` -> ``BTC-USD``; ValueError for anything not of the form BASE-QUOTE."""
    value = text.strip()
    if not re.fullmatch(ASSET_PATTERN, value):
        raise ValueError(f"`{text}` is not of the form BASE-QUOTE (for example BTC-USD or ETH-USD)")
    return value.upper().replace("/", "-")


def blocking_file(path: Path) -> Path | None:
    """The file standing where ``path`` or one of its folders would be, if any."""
    for candidate in (path, *path.parents):
        if candidate.exists():
            return None if candidate.is_dir() else candidate
    return None


def parse_duration(value: object) -> timedelta:
    """Parse ``250ms``, ``90``, ``45m``, ``6h``, ``2d`` or ``1w`` into a timedelta."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, int | float):
        return timedelta(seconds=float(value))
    match = _DURATION.match(str(value).lower())
    if not match:
        raise ValueError(f"`{value}` is not a duration (use e.g. 250ms, 90s, 45m, 6h, 2d, 1w)")
    return timedelta(seconds=float(match.group(1)) * _UNIT_SECONDS[match.group(2)])


def _split_csv(value: object) -> object:
    """Accept a comma-separated string for list settings."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]
CsvList = Annotated[list[str], NoDecode, BeforeValidator(_split_csv)]


class Settings(BaseSettings):
    """Every tunable of btc-predictor; see the README's configuration table."""

    model_config = SettingsConfigDict(env_prefix="BTCP_", extra="ignore", populate_by_name=True)

    data_dir: Path = Path("./data")
    database_url: str | None = None
    sources: CsvList = Field(default_factory=lambda: ["yahoo", "exchange:bitstamp"])
    assets: CsvList = Field(default_factory=lambda: ["BTC-USD"])
    bootstrap_csv: Path | None = None
    train_start: date = date(2018, 1, 1)
    default_model: str = "lstm"
    train_epochs: int | None = Field(default=None, ge=1)
    max_horizon: int = Field(default=30, ge=1, le=365)
    max_data_age: Duration = timedelta(days=2)
    api_key: str | None = None
    embedded_worker: bool = True
    worker_port: int = Field(default=9101, ge=0, le=65535)
    # The worker's /health/live and /metrics side server; 0.0.0.0 in containers.
    worker_host: str = "127.0.0.1"
    keep_versions: int = Field(default=10, ge=1)
    log_format: Literal["text", "json"] = "text"
    # prometheus-client's multiprocess directory; ``serve`` sets it for its processes.
    metrics_dir: Path | None = Field(default=None, validation_alias="PROMETHEUS_MULTIPROC_DIR")
    source_timeout: Duration = timedelta(seconds=20)
    source_retries: int = Field(default=4, ge=0, le=10)
    # Yahoo's chart API, or a mirror/proxy of it.
    yahoo_url: str = "https://query1.finance.yahoo.com"
    # API
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    cors_origins: CsvList = Field(default_factory=list)
    max_body_bytes: int = Field(default=64 * 1024, ge=1024)
    state_poll: Duration = timedelta(seconds=1)
    # Worker and schedules
    refresh_delay: Duration = timedelta(minutes=5)
    retrain_every: Duration = timedelta(days=7)
    job_stale_after: Duration = timedelta(minutes=2)
    worker_poll: Duration = timedelta(seconds=1)
    # Forecast-health alerts (exported as bitcoin_lstm_alert_threshold) and the retraining
    # they trigger: live MAE above naive's by this margin, or 90% coverage outside the band,
    # on every one of the last ``degraded_days`` days, queues a retrain once per cooldown.
    alert_live_error_margin: float = Field(default=0.10, ge=0, le=10)
    alert_coverage_min: float = Field(default=0.80, ge=0, le=1)
    alert_coverage_max: float = Field(default=0.97, ge=0, le=1)
    alert_min_scored: int = Field(default=10, ge=1)
    alert_latency_p95: Duration = timedelta(milliseconds=250)
    alert_error_ratio: float = Field(default=0.05, gt=0, le=1)
    degraded_days: int = Field(default=3, ge=1, le=30)
    retrain_cooldown: Duration = timedelta(days=7)
    # Serving cache (issue 14): one LRU per API process over loaded model versions, each
    # holding its model run on the current data (every horizon and level derives from it).
    max_loaded_models: int = Field(default=64, ge=1)
    # Risk models (issue 15): the risk model trained beside the default price model, first,
    # wherever no model is named (train, models bootstrap, ./run.sh local, retrain schedule).
    default_risk_model: str = "har"
    # Price intervals (issue 16): ``adaptive`` normalises conformal scores by σ̂ from the risk
    # model and corrects the level online from realised misses; ``static`` is plain split
    # conformal. Walk-forward backtests refit ``default_risk_model`` inside each fold.
    intervals: Literal["adaptive", "static"] = "adaptive"
    # Database deadlines (issue 12): client-side, because a server-side timeout never fires
    # on a stalled link. The statement timeout bounds each unit of an API request's database
    # work (connect, ping and queries); migrations and the worker's writes are exempt.
    db_connect_timeout: Duration = timedelta(seconds=3)
    db_pool_timeout: Duration = timedelta(seconds=5)
    db_statement_timeout: Duration = timedelta(seconds=10)
    # --- process supervision and bounded waits (issue 12) ---
    # How long the original's POST /train waits for its job before answering 202 with it.
    legacy_train_wait: Duration = timedelta(seconds=120)
    # Bound on a graceful stop after SIGTERM: pending requests and the embedded worker included.
    shutdown_grace: Duration = timedelta(seconds=10)
    # Set by ``serve`` for the processes it starts (not a user setting): they exit with it.
    supervisor_pid: int | None = Field(default=None, ge=1)

    @field_validator("assets")
    @classmethod
    def _check_assets(cls, value: list[str]) -> list[str]:
        """Every tracked asset in its one spelling, each once (a typo must not be tracked)."""
        symbols = [normalise_symbol(asset) for asset in value]
        twice = sorted({symbol for symbol in symbols if symbols.count(symbol) > 1})
        if twice:
            raise ValueError(f"{', '.join(twice)} listed more than once")
        return symbols

    @field_validator("db_connect_timeout", "db_pool_timeout", "db_statement_timeout")
    @classmethod
    def _check_deadline(cls, value: timedelta) -> timedelta:
        """A database deadline must be positive (zero would mean "wait for ever")."""
        if value.total_seconds() <= 0:
            raise ValueError("must be longer than 0 (e.g. 250ms, 3s)")
        return value

    @field_validator("data_dir")
    @classmethod
    def _check_data_dir(cls, value: Path) -> Path:
        """A folder, or a path where one can be made (not a file, nor under one)."""
        blocker = blocking_file(value)
        if blocker is not None:
            raise ValueError(f"{blocker} is a file, not a folder")
        return value

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: str | None) -> str | None:
        """An SQLAlchemy URL (the message never repeats it: it may hold a password)."""
        if not value:
            return None
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        try:
            make_url(value)
        except (ArgumentError, ValueError):
            raise ValueError(
                "not a database URL (use sqlite:///path/to/file.db or "
                "postgresql+psycopg://user:password@host:5432/name)"
            ) from None
        return value

    def is_stale(self, age_seconds: float) -> bool:
        """Data older than ``max_data_age`` is still served, flagged ``stale``."""
        return age_seconds > self.max_data_age.total_seconds()

    @property
    def resolved_database_url(self) -> str:
        """The SQLAlchemy URL: the configured one, else a SQLite file in the data dir."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'btc_predictor.db').resolve()}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Settings read once from the environment (tests build ``Settings(...)`` directly)."""
    return Settings()
