"""Backtests: a backtest's id is its job's id."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Response

from btc_predictor.api import schemas as s
from btc_predictor.api.deps import Authorized, EngineDep, SubmitDep
from btc_predictor.errors import JobNotFoundError
from btc_predictor.jobs import queue
from btc_predictor.shapes.common import ASSET_PATTERN
from btc_predictor.shapes.requests import BacktestRequest
from btc_predictor.shapes.results import JobView
from btc_predictor.sources.base import parse_asset

router = APIRouter(prefix="/backtests", tags=["backtests"])


@router.post(
    "",
    status_code=202,
    response_model=JobView,
    dependencies=[Authorized],
    responses=s.errors_for(401, 404),
)
def start(submit: SubmitDep, body: BacktestRequest) -> dict[str, Any]:
    """Queue a walk-forward backtest; ``Location`` points at its result."""
    return submit("backtest", body, location="/api/v1/backtests/{id}")


@router.get("", response_model=list[JobView])
def list_backtests(
    engine: EngineDep,
    asset: Annotated[str | None, Query(pattern=ASSET_PATTERN)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> list[dict[str, Any]]:
    """Backtest jobs newest first (results without their series)."""
    rows = queue.list_jobs(engine, kind="backtest", limit=limit)
    symbol = parse_asset(asset).symbol if asset else None
    return [_summary(j) for j in rows if symbol is None or j["params"].get("asset") == symbol]


def _summary(job: dict[str, Any]) -> dict[str, Any]:
    """A backtest job without its (large) series."""
    result = job["result"]
    if result is not None:
        result = {k: v for k, v in result.items() if k != "series"}
    return {**job, "result": result}


@router.get("/{backtest_id}", responses={202: {"model": JobView}, **s.errors_for(404)})
def get_backtest(
    engine: EngineDep, response: Response, backtest_id: Annotated[str, Path(max_length=64)]
) -> dict[str, Any]:
    """The backtest JSON (with ``series``) once done; 202 with the job while it runs."""
    job = queue.get_job(engine, backtest_id)
    if job["kind"] != "backtest":
        raise JobNotFoundError(f"job {backtest_id} is a {job['kind']} job, not a backtest")
    if job["status"] == "succeeded" and job["result"] is not None:
        result: dict[str, Any] = job["result"]
        return result
    response.status_code = 202
    return job
