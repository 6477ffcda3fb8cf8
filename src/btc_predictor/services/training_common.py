"""What price and risk training share: the training window and its checks, the library
versions recorded in meta.json, and storing + promoting a trained version.

Price orchestration is ``services.training``, risk ``services.risk_training``; both end in
:func:`store_and_promote`, parametrised by the candidate's family (its summary's) and whether
its kind is a baseline (the promotion rule's one family-specific input).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from datetime import date, datetime
from importlib.metadata import PackageNotFoundError, version
from itertools import pairwise

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from btc_predictor.config import Settings
from btc_predictor.errors import BtcpError, NoDataError, NotEnoughDataError
from btc_predictor.forecasting.intervals import MIN_RESIDUALS
from btc_predictor.forecasting.promotion import (
    PromotionEvidence,
    promotion_decision,
)
from btc_predictor.forecasting.training import DayErrors, split_index
from btc_predictor.shapes.results import Calibration, TrainResult, TrainSummary
from btc_predictor.sources.base import DAY, Candle, utc_day
from btc_predictor.storage import model_store as store
from btc_predictor.storage import repository as repo
from btc_predictor.storage.db import read_session, write_session


def load_window(engine: Engine, asset: str, start: date) -> list[Candle]:
    """Stored candles from ``start``: NoDataError when there are none or they have a gap."""
    with read_session(engine) as session:
        candles = repo.load_candles(session=session, asset=asset, start=utc_day(start))
    if not candles:
        raise NoDataError(
            f"no data for {asset} from {start}: run `btc-predictor ingest --asset {asset}`"
        )
    _refuse_gaps(asset, candles)
    return candles


def _refuse_gaps(asset: str, candles: list[Candle]) -> None:
    """NoDataError naming the first gap in the window, with what to run."""
    for before, after in pairwise(candles):
        if after.ts - before.ts != DAY:
            raise NoDataError(
                f"{asset} is missing {before.ts.date() + DAY}..{after.ts.date() - DAY} in the "
                f"training window: backfill with `btc-predictor ingest --asset {asset} "
                f"--since {before.ts.date()}` or train with --start {after.ts.date()}"
            )


def min_training_days(max_horizon: int) -> int:
    """Fewest closes whose 20% holdout yields MIN_RESIDUALS residuals at every horizon."""
    n = 1
    while n - split_index(n) - max_horizon + 1 < MIN_RESIDUALS:
        n += 1
    return n


def require_calibration_days(asset: str, days: list[date], max_horizon: int) -> None:
    """NotEnoughDataError unless the holdout can calibrate intervals for every horizon."""
    need = min_training_days(max_horizon)
    if len(days) < need:
        raise NotEnoughDataError(
            f"{asset} has {len(days)} days from {days[0]}; training for "
            f"horizons up to {max_horizon} needs at least {need} (use an earlier --start)"
        )


def library_versions(packages: tuple[str, ...]) -> dict[str, str]:
    """Versions of the libraries that shaped the artifacts."""
    found = {}
    for package in packages:
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            continue
    found["python"] = sys.version.split()[0]
    return found


@dataclass(frozen=True, slots=True)
class Candidate:
    """A fitted and verified version about to be stored: what it measured, its artifacts,
    its holdout residuals (the result's calibration), and whether its kind is a baseline
    (never auto-promoted)."""

    summary: TrainSummary
    artifacts: store.ArtifactSet
    residuals_per_horizon: list[list[float]]
    is_baseline: bool


def store_and_promote(
    settings: Settings, engine: Engine, candidate: Candidate, mode: str, now: datetime
) -> TrainResult:
    """Write the version, decide on promotion and prune, all in one transaction."""
    summary, artifacts = candidate.summary, candidate.artifacts
    with write_session(engine) as session:
        version_id = store.save_version(
            session=session, version=_new_version(summary, now), artifacts=artifacts
        )  # in its family: a risk version never displaces the serving price version
        promoted, reason = _decide(session, candidate, mode)
        if promoted:
            store.promote(session=session, version_id=version_id, reason=reason, now=now)
        store.prune(
            session=session,
            asset=summary.asset,
            model=summary.model,
            keep=settings.keep_versions,
            now=now,
        )
        result = TrainResult(
            **dict(summary), version=version_id, promoted=promoted, promotion_reason=reason
        )
        row = store.get_version(session=session, version_id=version_id)
        row.summary = result.model_dump(mode="json", exclude={"calibration"})
    calibration = Calibration(residuals_per_horizon=candidate.residuals_per_horizon)
    return result.model_copy(update={"calibration": calibration})


def _new_version(summary: TrainSummary, now: datetime) -> store.NewVersion:
    """The version row fields from a training summary."""
    return store.NewVersion(
        asset=summary.asset,
        model=summary.model,
        family=summary.family,
        created_at=now,
        train_start=summary.train_start,
        train_end=summary.train_end,
        data_points=summary.data_points_used,
        data_sha256=summary.data_sha256,
        seed=summary.seed,
        training_duration=summary.training_duration,
        holdout_mase=summary.metrics.mase,
        summary={},
    )


def _decide(session: Session, candidate: Candidate, mode: str) -> tuple[bool, str]:
    """The DESIGN promotion rule against the active version of the candidate's family.

    Risk versions compare range MASE on the same holdout days (their day errors are absolute
    range errors against naive-range); ``naive-range`` is a baseline, never auto-promoted."""
    summary = candidate.summary
    evidence = PromotionEvidence(
        summary.model,
        candidate.is_baseline,
        summary.metrics.mase,
        DayErrors.from_json(candidate.artifacts.meta["day_errors"]),
    )
    active_id = store.active_version_id(session=session, asset=summary.asset, family=summary.family)
    if active_id is None or mode != "auto":
        return promotion_decision(evidence, None, mode=mode)
    try:
        active = store.load_artifacts(session=session, version_id=active_id).meta
    except BtcpError as exc:
        return True, f"promoted: the active version {active_id} is unusable ({exc.message})"
    incumbent = PromotionEvidence(
        str(active.get("model")),
        False,
        active.get("metrics", {}).get("mase"),
        DayErrors.from_json(active["day_errors"]) if "day_errors" in active else None,
        label=f"active v{active_id}",
    )
    return promotion_decision(evidence, incumbent, mode=mode)
