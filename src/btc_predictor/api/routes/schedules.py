"""The worker's schedules: what runs on its own, how often, and when next."""

from __future__ import annotations

from fastapi import APIRouter

from btc_predictor.api.deps import EngineDep, NowDep, SettingsDep
from btc_predictor.jobs.schedules import list_schedules
from btc_predictor.shapes.results import ScheduleView

router = APIRouter(prefix="/schedules", tags=["schedules"])


@router.get("", response_model=list[ScheduleView])
def schedules(settings: SettingsDep, engine: EngineDep, now: NowDep) -> list[ScheduleView]:
    """The worker's schedules and their next run times."""
    return list_schedules(engine, settings, now=now)
