"""Prometheus metrics: every metric btc-predictor exposes is defined here (default registry)."""

from __future__ import annotations

from prometheus_client import Counter

JOBS_TOTAL = Counter(
    "bitcoin_lstm_jobs_total",
    "Jobs that reached an end state, by kind and final status.",
    ["kind", "status"],
)
