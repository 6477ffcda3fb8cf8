"""Request shapes: the one place bounds and defaults live, for CLI, API and jobs alike."""

from __future__ import annotations

import ast
from datetime import date
from pathlib import Path

import pytest
from pydantic import BaseModel, ValidationError

from btc_predictor.forecasting import promotion, registry
from btc_predictor.shapes.common import (
    MODEL_NAMES,
    PRICE_MODEL_NAMES,
    PROMOTION_MODES,
    RISK_MODEL_NAMES,
    family_of,
)
from btc_predictor.shapes.jobs import JOB_KINDS, JOB_PARAMS
from btc_predictor.shapes.requests import (
    BacktestRequest,
    ForecastQuery,
    ForecastRequest,
    IngestJob,
    PredictQuery,
    RefreshRequest,
    RetrainRequest,
    TrainRequest,
)

SHAPES = Path(__file__).resolve().parents[2] / "src" / "btc_predictor" / "shapes"


def test_shapes_import_only_the_ground_floor_and_pydantic() -> None:
    allowed = {"btc_predictor.shapes", "btc_predictor.errors", "btc_predictor.config"}
    for path in SHAPES.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("btc_predictor"):
                assert any(node.module == a or node.module.startswith(a + ".") for a in allowed), (
                    f"{path.name} imports {node.module}"
                )


def test_model_names_and_promotion_modes_match_the_forecasting_core() -> None:
    assert list(PRICE_MODEL_NAMES) == registry.model_names()
    assert list(RISK_MODEL_NAMES) == registry.risk_model_names()
    assert list(MODEL_NAMES) == registry.model_names() + registry.risk_model_names()
    assert all(family_of(n) == registry.model_family(n) for n in MODEL_NAMES)
    assert PROMOTION_MODES == promotion.PROMOTION_MODES


def test_job_kinds_are_listed_once_with_their_shapes() -> None:
    assert JOB_KINDS == tuple(JOB_PARAMS) == ("ingest", "train", "backtest", "retrain")


@pytest.mark.parametrize(
    ("shape", "defaults"),
    [
        (TrainRequest, {"asset": "BTC-USD", "seed": 0, "promote": "auto", "model": None}),
        (BacktestRequest, {"horizon": 7, "level": 90, "refit_every": 30, "days": None}),
        (ForecastRequest, {"asset": "BTC-USD", "horizon": 7, "level": 90, "model": None}),
        (IngestJob, {"asset": "BTC-USD", "force": False, "bootstrap": False}),
    ],
)
def test_defaults_are_stated_once(shape: type[BaseModel], defaults: dict[str, object]) -> None:
    made = shape()
    assert {key: getattr(made, key) for key in defaults} == defaults


@pytest.mark.parametrize(
    ("shape", "payload"),
    [
        (TrainRequest, '{"seed": false}'),  # a bool is not a seed
        (TrainRequest, '{"seed": 2147483648}'),  # seeds are 31-bit everywhere
        (TrainRequest, '{"seed": 1e400}'),
        (TrainRequest, '{"seed": 1.5}'),
        (TrainRequest, '{"start": 0}'),  # lax parsing would read 1970-01-01
        (TrainRequest, '{"start": "2024-02-30"}'),
        (TrainRequest, '{"promote": "sometimes"}'),
        (TrainRequest, '{"model": "prophet"}'),
        (TrainRequest, '{"asset": "../x"}'),
        (TrainRequest, '{"surprise": 1}'),  # unknown fields are refused
        (IngestJob, '{"force": 0}'),
        (IngestJob, '{"source": "csv"}'),  # jobs never read server files
        (IngestJob, '{"path": "/etc/passwd"}'),
        (RefreshRequest, '{"source": "ftp"}'),
        (BacktestRequest, '{"days": 30, "start": "2024-01-01"}'),
        (BacktestRequest, '{"level": 100}'),
        (BacktestRequest, '{"horizon": 0}'),
        (RetrainRequest, '{"promote": "always"}'),  # a retrain follows the promotion rule
    ],
)
def test_bad_json_is_refused_strictly(shape: type[BaseModel], payload: str) -> None:
    with pytest.raises(ValidationError):
        shape.model_validate_json(payload)


def test_json_mode_still_parses_iso_days_and_normalises_symbols() -> None:
    request = BacktestRequest.model_validate_json('{"asset": "eth/usd", "start": "2024-01-05"}')
    assert (request.asset, request.start) == ("ETH-USD", date(2024, 1, 5))


def test_query_shapes_take_text_and_ignore_cache_busters() -> None:
    query = ForecastQuery.model_validate({"horizon": "3", "level": "80", "_": "1712345"})
    assert (query.horizon, query.level) == (3, 80)
    assert PredictQuery.model_validate({"asset": "btc-usd", "t": "x"}).next_day() == (
        ForecastRequest(asset="BTC-USD", horizon=1)
    )


def test_a_retrain_is_a_train_under_the_promotion_rule() -> None:
    retrain = RetrainRequest(asset="ETH-USD", model="gru", seed=4, reason="weekly")
    assert retrain.as_train() == TrainRequest(asset="ETH-USD", model="gru", seed=4)
