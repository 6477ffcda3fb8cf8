"""The database-derived gauges of ``/metrics`` (forecast health).

Every API replica reads the same database, so these gauges are built at scrape time from it
(no per-process state to aggregate): model quality, prices, data age, the active forecast,
live error against naive and interval coverage from the scored ledger (the rule in
:mod:`btc_predictor.services.health`), and the alert thresholds from settings.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from datetime import date, datetime
from typing import Any

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from sqlalchemy import Engine

from btc_predictor.api.state import Outage
from btc_predictor.config import Settings
from btc_predictor.errors import BtcpError
from btc_predictor.services import ledger, risk_health, versions
from btc_predictor.services.health import LIVE_DAYS, summarize, thresholds
from btc_predictor.services.ingest import newest_candles
from btc_predictor.shapes.requests import ForecastRequest
from btc_predictor.shapes.results import HoldoutMetrics
from btc_predictor.sources.base import data_age
from btc_predictor.storage import deadlines
from btc_predictor.storage.db import HEALTH_SECONDS
from btc_predictor.telemetry import FORECAST_HORIZONS, HEALTH_METRICS

log = logging.getLogger(__name__)
ForecastFn = Callable[[ForecastRequest, datetime], dict[str, Any]]
Sample = tuple[str, tuple[str, ...], float]  # (metric name, label values, value)


class HealthCollector(Collector):
    """Builds the forecast-health gauges from the database (cached for ``ttl`` seconds)."""

    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        *,
        forecast: ForecastFn,
        clock: Callable[[], datetime],
        ttl: float = 5.0,
    ) -> None:
        self.settings, self.engine, self.forecast, self.clock = settings, engine, forecast, clock
        self.ttl = ttl
        self._lock = threading.Lock()
        self._cached: tuple[float, list[Sample]] | None = None
        self._outage = Outage("forecast-health metrics", log)

    def collect(self) -> Iterable[Metric]:
        """One gauge family per HEALTH_METRICS name (thresholds even when the DB is down)."""
        families = {
            name: GaugeMetricFamily(name, help_text, labels=list(labels))
            for name, (help_text, labels) in HEALTH_METRICS.items()
        }
        for name, labels, value in self._samples():
            families[name].add_metric(list(labels), value)
        return list(families.values())

    def _samples(self) -> list[Sample]:
        """The samples, recomputed at most every ``ttl`` seconds."""
        with self._lock:
            if self._cached is not None and time.monotonic() - self._cached[0] < self.ttl:
                return self._cached[1]
            samples: list[Sample] = [
                ("bitcoin_lstm_alert_threshold", (name,), value)
                for name, value in thresholds(self.settings).items()
            ]
            try:
                # The health probes' budget: a scrape must answer while the database stalls.
                with deadlines.budget(HEALTH_SECONDS):
                    samples += self._database_samples(self.clock())
            except Exception as exc:  # a scrape must still answer while the database is down
                self._outage.failed(exc)
            else:
                self._outage.ended()
            self._cached = (time.monotonic(), samples)
            return samples

    def _database_samples(self, now: datetime) -> list[Sample]:
        """Samples for every asset with stored candles."""
        newest = newest_candles(self.engine)
        samples: list[Sample] = []
        for asset, candle in newest.items():
            age = data_age(candle.ts, now)
            samples += [
                ("bitcoin_lstm_last_price", (asset,), float(candle.close)),
                ("bitcoin_lstm_data_age_seconds", (asset,), age),
            ]
            samples += _model_samples(self.engine, asset)
        for asset in newest:
            samples += self._forecast_samples(asset, now)
            samples += _live_samples(self.engine, asset, now.date())
            samples += _risk_samples(self.engine, asset, now.date())
            samples += _adaptive_samples(self.settings, self.engine, asset)
        return samples

    def _forecast_samples(self, asset: str, now: datetime) -> list[Sample]:
        """Point and 90% bounds of the active forecast (none without an active model)."""
        try:
            payload = self.forecast(
                ForecastRequest(asset=asset, horizon=max(FORECAST_HORIZONS)), now
            )
        except BtcpError:
            return []
        samples: list[Sample] = []
        for point in payload["points"]:
            if point["horizon"] in FORECAST_HORIZONS:
                labels = (asset, str(point["horizon"]))
                samples += [
                    ("bitcoin_lstm_forecast", (*labels, "point"), point["value"]),
                    ("bitcoin_lstm_forecast", (*labels, "lower"), point["lower"]),
                    ("bitcoin_lstm_forecast", (*labels, "upper"), point["upper"]),
                ]
        return samples


def _model_samples(engine: Engine, asset: str) -> list[Sample]:
    """Holdout MASE and R² of the newest price version of each kind, and the active one."""
    samples: list[Sample] = []
    active: list[Sample] = []
    seen: set[str] = set()
    # Price versions only: a risk model's MASE is a range MASE, another quantity.
    for version in versions.list_models(engine, asset=asset, family="price"):  # newest first
        model = version.model
        if version.active:
            active.append(("bitcoin_lstm_model_info", (asset, model, str(version.id)), 1.0))
        if model in seen:
            continue
        seen.add(model)
        if not isinstance(version.metrics, HoldoutMetrics):
            continue
        pairs = (
            ("bitcoin_lstm_model_mase", version.metrics.mase),
            ("bitcoin_lstm_model_r2_score", version.metrics.r2),
        )
        samples += [(name, (asset, model), v) for name, v in pairs if v is not None]
    return samples + active


def _live_samples(engine: Engine, asset: str, today: date) -> list[Sample]:
    """Live error (served models and naive), coverage and counts per horizon."""
    samples: list[Sample] = []
    rows = ledger.live_window(engine, asset=asset, end=today, days=LIVE_DAYS)
    for horizon, live in summarize(rows).items():
        h = str(horizon)
        for model, mae in live.mae_by_model.items():
            if model == "naive":  # an active naive model is the reference series itself
                continue
            samples.append(("bitcoin_lstm_live_abs_error", (asset, h, model), mae))
        samples += [
            ("bitcoin_lstm_live_abs_error", (asset, h, "naive"), live.naive_mae),
            ("bitcoin_lstm_live_interval_coverage", (asset, h), live.coverage),
            ("bitcoin_lstm_live_scored_forecasts", (asset, h), float(live.n)),
        ]
    return samples


def _risk_samples(engine: Engine, asset: str, today: date) -> list[Sample]:
    """Live range error (risk models and naive-range), VaR violations, the newest scored pair.

    Three indexed reads per asset: a 30-day aggregate, the newest 250 next-day targets, one row.
    """
    samples: list[Sample] = []
    for horizon, live in risk_health.live_range(engine, asset=asset, end=today).items():
        h = str(horizon)
        for model, mae in live.mae_by_model.items():
            if model == risk_health.NAIVE_RANGE:  # an active naive-range is the baseline itself
                continue
            samples.append(("bitcoin_lstm_live_range_abs_error", (asset, h, model), mae))
        samples += [
            (
                "bitcoin_lstm_live_range_abs_error",
                (asset, h, risk_health.NAIVE_RANGE),
                live.naive_mae,
            ),
            ("bitcoin_lstm_live_range_scored_forecasts", (asset, h), float(live.n)),
        ]
    for var in ledger.var_violations(engine, asset=asset):
        if var.ratio is not None:
            lv = str(var.level)
            samples += [
                ("bitcoin_lstm_live_var_violation_ratio", (asset, lv), var.ratio),
                ("bitcoin_lstm_live_var_scored_days", (asset, lv), float(var.n)),
            ]
    last = risk_health.last_scored(engine, asset)
    if last is not None:
        samples += [
            ("bitcoin_lstm_live_range_pct", (asset, k), v) for k, v in last.range_pct.items()
        ]
        samples += [
            ("bitcoin_lstm_live_var_loss_pct", (asset, k), v) for k, v in last.var_loss_pct.items()
        ]
    return samples


def _adaptive_samples(settings: Settings, engine: Engine, asset: str) -> list[Sample]:
    """The level the adaptive intervals apply for nominal 90%, per dashboard horizon."""
    samples: list[Sample] = []
    for horizon in FORECAST_HORIZONS:
        level = risk_health.adaptive_level(settings, engine, asset, horizon)
        if level is not None:
            samples.append(("bitcoin_lstm_interval_adaptive_level", (asset, str(horizon)), level))
    return samples
