"""One request shape per use case: ingest/refresh, train/retrain, backtest, forecast, risk.

The CLI builds them from its flags, the API takes them as bodies or query models, and jobs
store them as JSON params and validate them again (JSON mode) before running.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Self

from pydantic import BeforeValidator, ConfigDict, Field, model_validator

from btc_predictor.shapes.common import (
    DEFAULT_ASSET,
    DEFAULT_HORIZON,
    DEFAULT_LEVEL,
    DEFAULT_REFIT_EVERY,
    Asset,
    Day,
    Days,
    Epochs,
    Horizon,
    Level,
    ModelFamily,
    ModelName,
    PriceModelName,
    PromoteMode,
    Query,
    RefitEvery,
    RiskModelName,
    Seed,
    Shape,
)

ONLINE_SOURCE_PATTERN = r"^(yahoo|exchange:[a-z0-9_]{2,32})$"


def _online(value: object) -> object:
    """Jobs and HTTP requests fetch from online sources; ``csv`` would read a server file."""
    if value == "csv":
        raise ValueError("csv reads a file on the server: use yahoo or exchange:<id>")
    if isinstance(value, str) and not re.match(ONLINE_SOURCE_PATTERN, value):
        raise ValueError(f"unknown source `{value}` (online sources: yahoo, exchange:<id>)")
    return value


# The online source kinds (a CSV path cannot come over HTTP); exchange ids are ccxt's.
OnlineSource = Annotated[str, Field(pattern=ONLINE_SOURCE_PATTERN), BeforeValidator(_online)]


class IngestRequest(Shape):
    """``btc-predictor ingest``: any source, including a CSV file (checked by sources/)."""

    asset: Asset = DEFAULT_ASSET
    source: str | None = Field(default=None, max_length=64)
    path: Path | None = None
    since: Day | None = None
    force: bool = False


class RefreshRequest(Shape):
    """``POST /api/v1/assets/{asset}/refresh``: the ingest flags an online refresh takes."""

    source: OnlineSource | None = None
    since: Day | None = None
    force: bool = False


class IngestJob(RefreshRequest):
    """An ``ingest`` job's params: a refresh of one asset, optionally bootstrapping."""

    asset: Asset = DEFAULT_ASSET
    bootstrap: bool = False  # the first ingest of an empty database (BOOTSTRAP_CSV aware)
    then_train: bool = False  # queue the default model's training once the data is in


class ModelFit(Shape):
    """What every fit of a model is given: asset, model kind, window start, seed, epochs."""

    asset: Asset = DEFAULT_ASSET
    model: ModelName | None = None  # None: BTCP_DEFAULT_MODEL
    start: Day | None = None  # None: BTCP_TRAIN_START
    seed: Seed = 0
    epochs: Epochs | None = None


class TrainRequest(ModelFit):
    """``btc-predictor train`` and ``POST /api/v1/train``."""

    promote: PromoteMode = "auto"


class RetrainRequest(ModelFit):
    """A ``retrain`` job: a train under the promotion rule, with why it was queued."""

    reason: str | None = Field(default=None, min_length=1, max_length=200)
    # "schedule", "health" (degraded live forecasts), or None: queued by hand.
    trigger: str | None = Field(default=None, min_length=1, max_length=40)

    def as_train(self) -> TrainRequest:
        """The train it runs: ``promote=auto``, the promotion rule decides."""
        return TrainRequest(**self.model_dump(exclude={"reason", "trigger"}))


class BacktestRequest(ModelFit):
    """``btc-predictor backtest`` and ``POST /api/v1/backtests`` (``days`` xor ``start``)."""

    # The schema states the exclusivity too, so clients (and schemathesis) know it.
    model_config = ConfigDict(
        json_schema_extra={
            "not": {
                "required": ["days", "start"],
                "properties": {"days": {"type": "integer"}, "start": {"type": "string"}},
            }
        }
    )
    days: Days | None = None  # None with no start: the last 365 days
    refit_every: RefitEvery = DEFAULT_REFIT_EVERY
    horizon: Horizon = DEFAULT_HORIZON
    level: Level = DEFAULT_LEVEL

    @model_validator(mode="after")
    def _one_span(self) -> Self:
        """A span is given by its length or by its first day, not both."""
        if self.days is not None and self.start is not None:
            raise ValueError("give days or start, not both")
        return self


class ForecastRequest(Shape):
    """``btc-predictor predict`` and ``GET /api/v1/forecast`` (also the cache key's part)."""

    asset: Asset = DEFAULT_ASSET
    horizon: Horizon = DEFAULT_HORIZON
    level: Level = DEFAULT_LEVEL
    # None: the active price version. Risk models are refused, naming where to ask for them.
    model: PriceModelName | None = None


class ForecastQuery(ForecastRequest):
    """The forecast query string: text values, unknown parameters (cache-busters) ignored."""

    model_config = ConfigDict(strict=False, extra="ignore")


class RiskRequest(Shape):
    """``btc-predictor risk`` and ``GET /api/v1/risk`` (also the risk cache key's part)."""

    asset: Asset = DEFAULT_ASSET
    horizon: Horizon = DEFAULT_HORIZON
    level: Level = DEFAULT_LEVEL
    # None: the active risk version. Price models are refused, naming where to ask for them.
    model: RiskModelName | None = None


class RiskQuery(RiskRequest):
    """The risk query string: text values, unknown parameters (cache-busters) ignored."""

    model_config = ConfigDict(strict=False, extra="ignore")


class PredictQuery(Query):
    """The original's ``GET /predict`` query: the next day of one asset."""

    asset: Asset = DEFAULT_ASSET
    level: Level = DEFAULT_LEVEL

    def next_day(self) -> ForecastRequest:
        """The forecast it asks for: horizon 1 of the active version."""
        return ForecastRequest(asset=self.asset, horizon=1, level=self.level)


class RollbackRequest(Shape):
    """The body of ``POST /api/v1/models/{asset}/rollback`` (``models rollback --family``)."""

    family: ModelFamily = "price"


class LegacyTrainQuery(Query):
    """The original's ``POST /train`` (query parameters): train, promotion rule on."""

    asset: Asset = DEFAULT_ASSET
    model: ModelName | None = None
    epochs: Epochs | None = None

    def as_train(self) -> TrainRequest:
        """The train it asks for."""
        return TrainRequest(asset=self.asset, model=self.model, epochs=self.epochs)
