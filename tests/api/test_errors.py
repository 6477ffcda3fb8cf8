"""The error contract (DESIGN §7): RFC 9457 problems on every path, Allow on every 405, HEAD on
every GET route, unreadable bodies as 422, the dashboard's security headers."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import exc as sa_exc

from btc_predictor import telemetry
from btc_predictor.api import app as api_app
from btc_predictor.api import errors_http
from btc_predictor.api.schemas import ErrorResponse
from btc_predictor.errors import UnavailableError
from tests.api.conftest import AUTH

JSON_BODY = {**AUTH, "Content-Type": "application/json"}


def assert_problem(answer: Any, status: int, code: str, path: str) -> dict[str, Any]:
    """``answer`` is the problem document DESIGN §7 describes, tied to its request id."""
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = answer.json()
    ErrorResponse.model_validate(body)
    assert body["type"] == f"/problems/{code}" and body["code"] == code
    assert body["status"] == status and body["instance"] == path
    assert body["title"] and body["detail"]
    assert body["request_id"] == answer.headers["X-Request-ID"]
    assert ("errors" in body) == (status == 422)
    return body


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("GET", "/predict?level=3", 422, "invalid_parameter"),  # hot route, validation
        ("GET", "/api/v1/forecast?horizon=0", 422, "invalid_parameter"),
        ("GET", "/api/v1/forecast?horizon=31", 422, "invalid_parameter"),  # > BTCP_MAX_HORIZON
        ("GET", "/predict?asset=DOGE-USD", 404, "asset_not_found"),  # hot route, domain error
        ("GET", "/api/v1/forecast?asset=DOGE-USD", 404, "asset_not_found"),
        ("GET", "/api/v1/risk?horizon=0", 422, "invalid_parameter"),  # hot route
        ("GET", "/api/v1/risk?horizon=31", 422, "invalid_parameter"),  # > BTCP_MAX_HORIZON
        ("GET", "/api/v1/risk?level=100", 422, "invalid_parameter"),
        ("GET", "/api/v1/risk?model=nope", 422, "invalid_parameter"),
        ("GET", "/api/v1/risk?asset=DOGE-USD", 404, "asset_not_found"),
        ("GET", "/api/v1/risk", 409, "no_model"),  # no risk version trained
        ("GET", "/api/v1/risk?model=garch", 409, "no_model"),
        ("GET", "/api/v1/jobs?limit=0", 422, "invalid_parameter"),  # FastAPI route
        ("GET", "/api/v1/models/999", 404, "model_not_found"),
        ("POST", "/api/v1/train", 401, "unauthorized"),
        ("GET", "/nope", 404, "not_found"),
        ("POST", "/predict", 405, "method_not_allowed"),
        ("DELETE", "/health", 405, "method_not_allowed"),
    ],
)
def test_every_error_is_a_problem(
    client: TestClient, method: str, path: str, status: int, code: str
) -> None:
    answer = client.request(method, path)
    assert_problem(answer, status, code, path.split("?")[0])


@pytest.mark.parametrize("model", ["har", "naive-range", "garch", "ewma-vol"])
def test_a_risk_model_asked_for_a_price_forecast_names_the_risk_endpoint(
    client: TestClient, model: str
) -> None:
    answer = client.get("/api/v1/forecast", params={"model": model})
    detail = assert_problem(answer, 422, "invalid_parameter", "/api/v1/forecast")["detail"]
    assert f"`{model}` is a risk model" in detail and "GET /api/v1/risk" in detail, detail


@pytest.mark.parametrize("model", ["lstm", "drift", "naive", "ensemble"])
def test_a_price_model_asked_for_a_risk_forecast_names_the_forecast_endpoint(
    client: TestClient, model: str
) -> None:
    answer = client.get("/api/v1/risk", params={"model": model})
    detail = assert_problem(answer, 422, "invalid_parameter", "/api/v1/risk")["detail"]
    assert f"`{model}` is a price model" in detail and "GET /api/v1/forecast" in detail, detail


def test_no_risk_model_says_what_to_train(client: TestClient) -> None:
    detail = assert_problem(client.get("/api/v1/risk"), 409, "no_model", "/api/v1/risk")["detail"]
    assert "run `btc-predictor train --model har --asset BTC-USD`" in detail, detail


def test_a_client_request_id_is_the_problems(client: TestClient) -> None:
    answer = client.get("/nope", headers={"X-Request-ID": "trace-42"})
    assert assert_problem(answer, 404, "not_found", "/nope")["request_id"] == "trace-42"


def test_the_body_cap_answers_a_problem(client: TestClient) -> None:
    declared = client.post("/api/v1/train", content=b"x" * 70_000, headers=JSON_BODY)
    assert_problem(declared, 413, "too_large", "/api/v1/train")

    def chunks():  # no Content-Length: the cap trips while the body streams in
        for _ in range(10):
            yield b" " * 10_000

    streamed = client.post("/api/v1/train", content=chunks(), headers=JSON_BODY)
    assert_problem(streamed, 413, "too_large", "/api/v1/train")


@pytest.mark.parametrize(
    ("kind", "body"),
    [
        ("invalid JSON", b'{"model": '),
        ("deep nesting", b"[" * 5_000 + b"]" * 5_000),
        ("huge integer", b'{"epochs": ' + b"9" * 5_000 + b"}"),
        ("invalid UTF-8", b'{"model": "\xff\xfe"}'),
    ],
)
def test_an_unreadable_body_is_an_invalid_parameter(
    client: TestClient, kind: str, body: bytes
) -> None:
    answer = client.post("/api/v1/train", content=body, headers=JSON_BODY)
    problem = assert_problem(answer, 422, "invalid_parameter", "/api/v1/train")
    assert problem["errors"] and problem["errors"][0]["type"] == "json_invalid", kind


def test_a_bug_is_a_500_problem_with_its_request_id(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_: Any, **__: Any) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(client.app.state.serving, "cached", broken)  # type: ignore[attr-defined]
    answer = client.get("/api/v1/forecast")
    body = assert_problem(answer, 500, "internal", "/api/v1/forecast")
    assert "a bug" not in answer.text and body["request_id"] in body["detail"]


@pytest.mark.parametrize(
    "failure",
    [
        sa_exc.TimeoutError("QueuePool limit of size 5 overflow 10 reached"),  # pool exhausted
        sa_exc.OperationalError("SELECT 1", {}, Exception('server at "10.0.0.7", port 5432')),
        sa_exc.InterfaceError("SELECT 1", {}, Exception("the connection is closed")),
        UnavailableError("the database did not answer within 10 s"),  # our deadline
    ],
    ids=["pool-timeout", "operational", "interface", "deadline"],
)
def test_every_database_failure_is_a_503_unavailable(
    client: TestClient, monkeypatch: pytest.MonkeyPatch, failure: Exception
) -> None:
    def down(*_: Any, **__: Any) -> None:
        raise failure

    monkeypatch.setattr("btc_predictor.jobs.queue.list_jobs", down)
    answer = client.get("/api/v1/jobs")
    body = assert_problem(answer, 503, "unavailable", "/api/v1/jobs")
    assert "10.0.0.7" not in answer.text and "5432" not in answer.text, body


def test_a_database_bug_is_a_500_internal_not_a_503(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_: Any, **__: Any) -> None:
        raise sa_exc.IntegrityError("INSERT", {}, Exception("duplicate key"))

    monkeypatch.setattr("btc_predictor.jobs.queue.list_jobs", broken)
    assert_problem(client.get("/api/v1/jobs"), 500, "internal", "/api/v1/jobs")


def test_the_envelope_counts_and_logs_a_request_that_ends_in_cancellation(
    caplog: pytest.LogCaptureFixture,
) -> None:
    observed: list[tuple[str, str | None, int]] = []

    class Recorder(telemetry.RequestMetrics):
        def observe(self, method: str, endpoint: str | None, status: int, seconds: float) -> None:
            observed.append((method, endpoint, status))

    async def hangs_up(scope: Any, receive: Any, send: Any) -> None:
        raise asyncio.CancelledError  # the client went away mid-request

    envelope = api_app.Envelope(hangs_up, metrics=Recorder(), cap=1024, templates={})
    scope = {"type": "http", "method": "GET", "path": "/api/v1/jobs", "headers": []}

    async def nothing() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def sink(message: Any) -> None:
        pass

    with caplog.at_level(logging.INFO, "btc_predictor.api"), pytest.raises(asyncio.CancelledError):
        asyncio.run(envelope(scope, nothing, sink))
    assert observed == [("GET", None, api_app.CLIENT_GONE)]
    assert any("GET /api/v1/jobs 499" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("POST", "/predict", "GET, HEAD"),  # hot route
        ("DELETE", "/api/v1/forecast", "GET, HEAD"),  # hot route
        ("POST", "/api/v1/risk", "GET, HEAD"),  # hot route
        ("PUT", "/health", "GET, HEAD"),
        ("POST", "/api/v1/jobs/some-id", "DELETE, GET, HEAD"),  # two routes on one path
        ("GET", "/api/v1/train", "POST"),
        ("POST", "/ui/index.html", "GET, HEAD"),  # static files
    ],
)
def test_every_405_says_what_is_allowed(
    client: TestClient, method: str, path: str, allow: str
) -> None:
    answer = client.request(method, path)
    assert_problem(answer, 405, "method_not_allowed", path)
    assert answer.headers["Allow"] == allow


@pytest.mark.parametrize(
    "path",
    [
        "/predict",  # hot routes
        "/api/v1/forecast",
        "/health/live",
        "/evaluate",
        "/api/v1/jobs",
        "/api/v1/assets",
        "/api/v1/schedules",
        "/ui/",
    ],
)
def test_head_answers_every_get_route(client: TestClient, path: str) -> None:
    got, head = client.get(path), client.head(path)
    assert got.status_code == head.status_code == 200, (got.text, head.text)
    assert head.content == b""
    for name in ("content-type", "content-length"):
        assert head.headers[name] == got.headers[name]


def test_head_is_not_a_documented_operation(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert not [p for p, ops in paths.items() if "head" in ops]


def test_every_422_is_documented_as_the_problem(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    assert "HTTPValidationError" not in schema["components"]["schemas"]
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            params = operation.get("parameters") or operation.get("requestBody")
            if not params:
                continue
            content = operation["responses"]["422"]["content"]
            for media in ("application/json", "application/problem+json"):
                ref = content[media]["schema"]["$ref"]
                assert ref.endswith("/ErrorResponse"), (method, path)


def test_error_body_is_the_documented_shape() -> None:
    body = errors_http.error_body(409, "run train", "no_model", instance="/x", request_id="r")
    assert ErrorResponse.model_validate(body).model_dump(exclude_none=True) == body
    assert body["title"] == "No model" and "errors" not in body


@pytest.mark.parametrize("path", ["/ui", "/ui/", "/ui/js/app.js", "/ui/style.css"])
def test_the_dashboard_sends_security_headers(client: TestClient, path: str) -> None:
    answer = client.get(path, follow_redirects=False)
    assert answer.status_code in (200, 307)
    assert answer.headers["Content-Security-Policy"] == (
        "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'"
    )
    assert answer.headers["X-Frame-Options"] == "DENY"
    assert answer.headers["X-Content-Type-Options"] == "nosniff"
