"""The original API's paths and fields (extra fields added), plus health and metrics."""

from __future__ import annotations

import asyncio
import functools
import os
import time
from typing import Annotated, Any

import psutil
from fastapi import APIRouter, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from btc_predictor import __version__
from btc_predictor.api import schemas as s
from btc_predictor.api.deps import Authorized, EngineDep, NowDep, SettingsDep
from btc_predictor.api.hot import legacy_prediction, serve_forecast
from btc_predictor.api.stopping import STOPPING
from btc_predictor.jobs import queue as jobs
from btc_predictor.services import versions
from btc_predictor.services.health import LIVE_DAYS, summarize
from btc_predictor.services.ledger import live_window
from btc_predictor.shapes.common import ASSET_PATTERN, DEFAULT_ASSET
from btc_predictor.shapes.requests import LegacyTrainQuery, PredictQuery
from btc_predictor.sources.base import parse_asset

router = APIRouter(tags=["original API"])
AssetQuery = Annotated[str, Query(pattern=ASSET_PATTERN, description="BASE-QUOTE")]
_PROCESS = psutil.Process(os.getpid())
LEGACY_POLL = 0.25  # seconds between looks at the job a legacy POST /train waits for


@router.get("/", response_model=s.RootResponse)
def root(engine: EngineDep, now: NowDep) -> dict[str, Any]:
    """Service banner with the default asset's model status."""
    row = versions.active_version(engine, DEFAULT_ASSET)
    return {
        "message": "btc-predictor: honest crypto price forecasts (see /docs and /ui)",
        "status": "running",
        "version": __version__,
        "timestamp": now.isoformat(),
        "model_status": f"{row.model} v{row.id} active" if row else "no model trained",
    }


@router.post(
    "/train",
    response_model=s.LegacyTrainResponse,
    dependencies=[Authorized],
    responses={
        202: {
            "model": s.LegacyTrainResponse,
            "description": "Still training after BTCP_LEGACY_TRAIN_WAIT: the job is at Location",
        },
        **s.errors_for(401, 404, 409),
    },
)
async def train(
    request: Request,
    response: Response,
    settings: SettingsDep,
    engine: EngineDep,
    now: NowDep,
    query: Annotated[LegacyTrainQuery, Query()],
) -> dict[str, Any]:
    """Train (promote auto) and answer when the job ends, as the original did, but for at
    most BTCP_LEGACY_TRAIN_WAIT: then 202 with the job (it keeps running)."""
    params = query.as_train()
    job = await run_in_threadpool(
        functools.partial(jobs.submit, engine, settings, kind="train", params=params, now=now)
    )
    deadline = time.monotonic() + settings.legacy_train_wait.total_seconds()
    while job["status"] in ("queued", "running"):
        left = deadline - time.monotonic()
        # A client that went away, or a stop, must not be held up by this wait.
        if left <= 0 or STOPPING.is_set() or await request.is_disconnected():
            return _legacy_pending(job, response)
        await asyncio.sleep(min(LEGACY_POLL, left))
        job = await run_in_threadpool(jobs.get_job, engine, job["id"])
    return _legacy_train(job)


def _legacy_pending(job: dict[str, Any], response: Response) -> dict[str, Any]:
    """The original's fields for a training still under way: 202, its job at Location."""
    url = f"/api/v1/jobs/{job['id']}"
    response.status_code = 202
    response.headers["Location"] = url
    return {
        "message": f"training is still {job['status']}: follow job {job['id']} at {url}",
        "rmse": None,
        "mae": None,
        "r2": None,
        "mase": None,
        "model_saved": False,
        "model_version": None,
        "promoted": False,
        "promotion_reason": "",
        "training_duration": None,
        "job_id": job["id"],
    }


def _legacy_train(job: dict[str, Any]) -> dict[str, Any]:
    """The original's training response from a finished job."""
    result = job["result"] or {}
    metrics = result.get("metrics", {})
    ok = job["status"] == "succeeded"
    return {
        "message": "model trained"
        if ok
        else f"training {job['status']}: {job['error'] or ''}".strip(),
        "rmse": metrics.get("rmse"),
        "mae": metrics.get("mae"),
        "r2": metrics.get("r2"),
        "mase": metrics.get("mase"),
        "model_saved": ok,
        "model_version": result.get("version"),
        "promoted": bool(result.get("promoted")),
        "promotion_reason": result.get("promotion_reason", job["error"] or ""),
        "training_duration": result.get("training_duration"),
        "job_id": job["id"],
    }


@router.get("/predict", response_model=s.LegacyPredictResponse, responses=s.errors_for(404, 409))
async def predict(
    request: Request, now: NowDep, query: Annotated[PredictQuery, Query()]
) -> dict[str, Any]:
    """Next-day forecast with its interval (served from memory once computed)."""
    return legacy_prediction(await serve_forecast(request, query.next_day(), now), now)


@router.get("/evaluate", response_model=s.EvaluateResponse, responses=s.errors_for(404))
def evaluate(engine: EngineDep, now: NowDep, asset: AssetQuery = DEFAULT_ASSET) -> dict[str, Any]:
    """Holdout metrics of the active model next to naive, and live interval coverage."""
    symbol = parse_asset(asset).symbol
    row = versions.active_version(engine, symbol)
    if row is None:
        return {
            "model_exists": False,
            **dict.fromkeys(
                (
                    "training_date",
                    "rmse",
                    "mae",
                    "r2",
                    "training_duration",
                    "data_points_used",
                    "mase",
                    "naive_mae",
                    "directional_accuracy",
                    "coverage",
                )
            ),
        }
    metrics, naive = (
        row.summary.get("metrics", {}),
        row.summary.get("baseline", {}).get("naive", {}),
    )
    live = summarize(live_window(engine, asset=symbol, end=now.date(), days=LIVE_DAYS)).get(1)
    return {
        "model_exists": True,
        "training_date": row.created_at.isoformat(),
        "rmse": metrics.get("rmse"),
        "mae": metrics.get("mae"),
        "r2": metrics.get("r2"),
        "training_duration": row.training_duration,
        "data_points_used": row.data_points,
        "mase": metrics.get("mase"),
        "naive_mae": naive.get("mae"),
        "directional_accuracy": metrics.get("directional_accuracy"),
        "coverage": live.coverage if live else None,
    }


@router.get("/model-info", response_model=s.ModelInfoResponse, responses=s.errors_for(404))
def model_info(engine: EngineDep, asset: AssetQuery = DEFAULT_ASSET) -> dict[str, Any]:
    """Which stored artifacts serve the asset (paths name them in the model store)."""
    row = versions.active_version(engine, parse_asset(asset).symbol)
    if row is None:
        return {
            "model_exists": False,
            "scaler_exists": False,
            "model_path": None,
            "scaler_path": None,
            "status": "no model trained",
            "model_version": None,
            "model": None,
            "trained_at": None,
            "train_start": None,
            "train_end": None,
        }
    base = f"db://model_versions/{row.id}"
    return {
        "model_exists": True,
        "scaler_exists": True,
        "model_path": f"{base}/model.onnx",
        "scaler_path": f"{base}/meta.json",
        "status": "active",
        "model_version": row.id,
        "model": row.model,
        "trained_at": row.created_at.isoformat(),
        "train_start": row.train_start.isoformat(),
        "train_end": row.train_end.isoformat(),
    }
