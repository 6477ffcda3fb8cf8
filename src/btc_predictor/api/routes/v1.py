"""``/api/v1``: every versioned resource router, in one list."""

from fastapi import APIRouter

from btc_predictor.api.routes import (
    assets,
    backtests,
    forecast,
    jobs,
    models,
    predictions,
    risk,
    schedules,
    train,
)
from btc_predictor.api.routing import answer_head

router = APIRouter()
for module in (assets, forecast, risk, train, jobs, schedules, models, backtests, predictions):
    router.include_router(answer_head(module.router))
