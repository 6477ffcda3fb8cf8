"""``/metrics``: request series by route template, bounded labels, forecast-health gauges."""

from __future__ import annotations

import random
import string

from fastapi.testclient import TestClient
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families


def request_series() -> set[tuple[str, str, str]]:
    """The (method, endpoint, status) label sets of bitcoin_lstm_requests_total so far."""
    return {
        (s.labels["method"], s.labels["endpoint"], s.labels["status"])
        for family in REGISTRY.collect()
        if family.name == "bitcoin_lstm_requests"
        for s in family.samples
        if s.name == "bitcoin_lstm_requests_total"
    }


def random_path(rng: random.Random) -> str:
    """A path no route serves (random segments, sometimes with a query or odd bytes)."""
    segments = [
        "".join(rng.choices(string.ascii_letters + string.digits + "-_.~%", k=rng.randint(1, 12)))
        for _ in range(rng.randint(1, 4))
    ]
    return "/" + "/".join(segments) + (f"?q={rng.random()}" if rng.random() < 0.3 else "")


def test_a_thousand_unknown_paths_add_no_series(client: TestClient) -> None:
    rng = random.Random(7)
    for method in ("GET", "POST", "DELETE", "PURGE", "BREW"):  # each status/method once first
        client.request(method, "/warm-up/not-a-route")
    before = request_series()
    for _ in range(1000):
        client.request(rng.choice(["GET", "POST", "DELETE", "PURGE", "BREW"]), random_path(rng))
    after = request_series()
    assert after == before
    unmatched = {s for s in after if s[1] == "unmatched"}
    assert {m for m, _, _ in unmatched} <= {"GET", "POST", "DELETE", "other"}


def test_requests_are_labelled_by_route_template(client: TestClient) -> None:
    client.get("/predict")
    client.get("/api/v1/forecast?horizon=3")
    client.get("/api/v1/jobs/0b9d4bde-3c4e-4a55-9a0c-4f1c1b2a7e11")
    client.get("/api/v1/models/123456")
    series = request_series()
    assert ("GET", "/predict", "200") in series
    assert ("GET", "/api/v1/forecast", "200") in series
    assert ("GET", "/api/v1/jobs/{job_id}", "404") in series
    assert any(m == "GET" and e.startswith("/api/v1/models/{") for m, e, _ in series)
    assert not any("0b9d4bde" in e or "123456" in e for _, e, _ in series)


def test_metrics_exposition_has_the_original_names_and_forecast_health(client: TestClient) -> None:
    client.get("/predict")
    text = client.get("/metrics").text
    names = {family.name for family in text_string_to_metric_families(text)}
    original = {
        "bitcoin_lstm_requests",
        "bitcoin_lstm_request_duration_seconds",
        "bitcoin_lstm_predictions",
        "bitcoin_lstm_training_duration_seconds",
        "bitcoin_lstm_cpu_usage_percent",
        "bitcoin_lstm_memory_usage_bytes",
        "bitcoin_lstm_model_r2_score",
    }
    assert original <= names
    health = {
        "bitcoin_lstm_model_mase",
        "bitcoin_lstm_model_info",
        "bitcoin_lstm_last_price",
        "bitcoin_lstm_forecast",
        "bitcoin_lstm_data_age_seconds",
        "bitcoin_lstm_alert_threshold",
    }
    assert health <= names
    assert 'bitcoin_lstm_model_info{asset="BTC-USD",model="drift",version="1"} 1.0' in text
    buckets = [
        line
        for line in text.splitlines()
        if line.startswith('bitcoin_lstm_request_duration_seconds_bucket{endpoint="/predict"')
    ]
    assert 'le="0.0005"' in buckets[0]  # buckets resolve a sub-millisecond service
