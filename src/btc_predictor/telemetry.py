"""Prometheus metrics: every metric btc-predictor exposes is named here.

Process metrics (requests, jobs, ingests, CPU, memory) live in prometheus-client's default
registry; with ``PROMETHEUS_MULTIPROC_DIR`` set (``serve`` sets it) they are written to files
shared by every process of one server and summed when scraped. Forecast-health gauges come
from the database, so every API replica reports the same values: they are built at scrape
time by :mod:`btc_predictor.api.metrics` under the names listed in ``HEALTH_METRICS``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import psutil
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, multiprocess
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

# A cached /predict answers in well under a millisecond; training takes seconds to minutes.
REQUEST_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10)
TRAINING_BUCKETS = (0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800, 3600)

REQUESTS_TOTAL = Counter(
    "bitcoin_lstm_requests_total",
    "HTTP requests by method, route template and status.",
    ["method", "endpoint", "status"],
)
REQUEST_DURATION = Histogram(
    "bitcoin_lstm_request_duration_seconds",
    "HTTP request duration by method and route template.",
    ["method", "endpoint"],
    buckets=REQUEST_BUCKETS,
)
PREDICTIONS_TOTAL = Counter(
    "bitcoin_lstm_predictions_total", "Forecasts served (GET /predict and /api/v1/forecast)."
)
TRAINING_DURATION = Histogram(
    "bitcoin_lstm_training_duration_seconds",
    "Wall time of training runs (holdout fit + final fit + export).",
    ["asset", "model"],
    buckets=TRAINING_BUCKETS,
)
JOBS_TOTAL = Counter(
    "bitcoin_lstm_jobs_total",
    "Jobs that reached an end state, by kind and final status.",
    ["kind", "status"],
)
INGEST_ROWS_TOTAL = Counter(
    "bitcoin_lstm_ingest_rows_total",
    "Candles handled by ingests: inserted, updated, unchanged or rejected.",
    ["asset", "source", "result"],
)
SOURCE_ERRORS_TOTAL = Counter(
    "bitcoin_lstm_source_errors_total",
    "Market-data source failures (after retries), by source.",
    ["source"],
)
# Why the health schedule queued a retrain: the price model's live error or coverage, or the
# risk model's live range error.
RETRAIN_REASONS = ("live_error", "coverage", "range_error")
RETRAINS_TRIGGERED_TOTAL = Counter(
    "bitcoin_lstm_retrains_triggered_total",
    "Retraining jobs queued because live forecast health degraded, by reason (live_error, "
    "coverage: the price model; range_error: the risk model).",
    ["asset", "reason"],
)
# Summed over the live processes of one server (API workers + embedded job worker).
CPU_PERCENT = Gauge(
    "bitcoin_lstm_cpu_usage_percent",
    "CPU used by this service's processes (100 = one core).",
    multiprocess_mode="livesum",
)
MEMORY_BYTES = Gauge(
    "bitcoin_lstm_memory_usage_bytes",
    "Resident memory of this service's processes.",
    multiprocess_mode="livesum",
)

# Built from the database at scrape time (name -> (help, labels)).
HEALTH_METRICS: dict[str, tuple[str, tuple[str, ...]]] = {
    "bitcoin_lstm_model_r2_score": (
        "Holdout R² of the newest version of each model kind (R² flatters price models).",
        ("asset", "model"),
    ),
    "bitcoin_lstm_model_mase": (
        "Holdout MASE (vs naive, < 1 beats it) of the newest version of each model kind.",
        ("asset", "model"),
    ),
    "bitcoin_lstm_model_info": (
        "1 for the active model version of each asset.",
        ("asset", "model", "version"),
    ),
    "bitcoin_lstm_last_price": ("Newest stored daily close.", ("asset",)),
    "bitcoin_lstm_data_age_seconds": (
        "Seconds since the newest stored day closed.",
        ("asset",),
    ),
    "bitcoin_lstm_forecast": (
        "The active model's forecast: point and 90% interval bounds per horizon (days).",
        ("asset", "horizon", "bound"),
    ),
    "bitcoin_lstm_live_abs_error": (
        "Mean absolute error of scored ledger forecasts over the last 30 days; "
        'model="naive" is the naive forecast on the same days.',
        ("asset", "horizon", "model"),
    ),
    "bitcoin_lstm_live_interval_coverage": (
        "Share of scored ledger forecasts (last 30 days) whose 90% interval held the close.",
        ("asset", "horizon"),
    ),
    "bitcoin_lstm_live_scored_forecasts": (
        "Scored ledger forecasts in the last 30 days (alerts wait for enough of them).",
        ("asset", "horizon"),
    ),
    # Risk (issue 17): the scored risk ledger and the adaptive interval state.
    "bitcoin_lstm_live_range_abs_error": (
        "Mean absolute error (percentage points) of scored range forecasts over the last 30 "
        'days; model="naive-range" is the naive range (the last closed day\'s) on the same days.',
        ("asset", "horizon", "model"),
    ),
    "bitcoin_lstm_live_range_scored_forecasts": (
        "Scored risk ledger forecasts in the last 30 days (alerts wait for enough of them).",
        ("asset", "horizon"),
    ),
    "bitcoin_lstm_live_var_violation_ratio": (
        "Share of the newest 250 scored next-day targets whose close fell below VaR at the "
        "level (95: expect 0.05, 99: expect 0.01).",
        ("asset", "level"),
    ),
    "bitcoin_lstm_live_var_scored_days": (
        "Scored next-day targets behind the VaR violation ratio (at most 250).",
        ("asset", "level"),
    ),
    "bitcoin_lstm_live_range_pct": (
        "The newest scored next-day range forecast (range % of the previous close): "
        "forecast, lower, upper, naive and the realised range.",
        ("asset", "series"),
    ),
    "bitcoin_lstm_live_var_loss_pct": (
        "The newest scored next-day VaR 95/99 and the realised loss (% of the previous close; "
        "negative = a gain).",
        ("asset", "series"),
    ),
    "bitcoin_lstm_interval_adaptive_level": (
        "Coverage level the adaptive intervals apply for nominal 90% (0.9 in a steady regime).",
        ("asset", "horizon"),
    ),
    "bitcoin_lstm_alert_threshold": (
        "Alert thresholds from settings (BTCP_ALERT_*), used by monitoring/alerts.yml.",
        ("name",),
    ),
}
FORECAST_HORIZONS = (1, 7)

# Request labels stay bounded: methods outside this set share one value, unknown paths too.
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED = "unmatched"


class RequestMetrics:
    """Counts requests by route template; labelled children are cached (hot path)."""

    def __init__(self) -> None:
        self._counts: dict[tuple[str, str, int], Counter] = {}
        self._durations: dict[tuple[str, str], Histogram] = {}

    def observe(self, method: str, endpoint: str | None, status: int, seconds: float) -> None:
        """Record one finished request (``endpoint`` None: no route matched)."""
        method = method if method in _METHODS else "other"
        endpoint = endpoint or UNMATCHED
        key = (method, endpoint, status)
        counter = self._counts.get(key)
        if counter is None:
            counter = self._counts[key] = REQUESTS_TOTAL.labels(method, endpoint, str(status))
        counter.inc()
        duration = self._durations.get(key[:2])
        if duration is None:
            duration = self._durations[key[:2]] = REQUEST_DURATION.labels(method, endpoint)
        duration.observe(seconds)


class ProcessUsage:
    """Sets this process's CPU and memory gauges (summed over a server's processes)."""

    def __init__(self) -> None:
        self._process = psutil.Process(os.getpid())
        self._process.cpu_percent(None)  # the first reading only starts the interval

    def update(self) -> None:
        """Read CPU (since the last update) and RSS into the gauges."""
        CPU_PERCENT.set(self._process.cpu_percent(None))
        MEMORY_BYTES.set(self._process.memory_info().rss)


class _Default(Collector):
    """This process's default registry, as one collector of a scrape registry."""

    def collect(self) -> Iterable[Metric]:
        """Everything registered in prometheus-client's default registry."""
        return REGISTRY.collect()


def scrape_registry(metrics_dir: Path | None, *extra: Collector) -> CollectorRegistry:
    """What one scrape exposes: every process's metrics (multiprocess mode) or this one's."""
    registry = CollectorRegistry(auto_describe=False)
    if metrics_dir is not None:
        multiprocess.MultiProcessCollector(registry, path=str(metrics_dir))  # type: ignore[no-untyped-call]
    else:
        registry.register(_Default())
    for collector in extra:
        registry.register(collector)
    return registry


def process_exited(metrics_dir: Path | None) -> None:
    """Drop this process's live gauges from the shared files (multiprocess mode)."""
    if metrics_dir is not None:
        multiprocess.mark_process_dead(os.getpid(), path=str(metrics_dir))  # type: ignore[no-untyped-call]


def totals(registry: CollectorRegistry) -> dict[str, float]:
    """Sums of every sample by sample name (``/monitoring`` reads its figures from here)."""
    sums: dict[str, float] = {}
    for family in registry.collect():
        for sample in family.samples:
            sums[sample.name] = sums.get(sample.name, 0.0) + sample.value
    return sums


def initialize_worker_series(
    assets: Iterable[str], sources: Iterable[str], job_kinds: Iterable[str]
) -> None:
    """Export zeros for the worker's known label sets, so "none yet" reads 0, not absent."""
    for kind in job_kinds:
        for status in ("succeeded", "failed", "cancelled"):
            JOBS_TOTAL.labels(kind, status)
    for source in sources:
        SOURCE_ERRORS_TOTAL.labels(source)
    for asset in assets:
        for reason in RETRAIN_REASONS:
            RETRAINS_TRIGGERED_TOTAL.labels(asset, reason)
