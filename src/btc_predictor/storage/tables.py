"""Database tables (SQLAlchemy 2 declarative). Schema changes go through Alembic migrations."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    Date,
    DateTime,
    Double,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on every backend (SQLite stores them naive, in UTC)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Refuse naive datetimes; store UTC."""
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Return aware UTC datetimes."""
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    """Declarative base of all tables."""

    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UTCDateTime, dict[str, Any]: JSON}


class CandleRow(Base):
    """One stored daily candle; ``ts`` is its open time in UTC."""

    __tablename__ = "candles"

    asset: Mapped[str] = mapped_column(String(32), primary_key=True)
    interval: Mapped[str] = mapped_column(String(8), primary_key=True)
    ts: Mapped[datetime] = mapped_column(primary_key=True)
    open: Mapped[float] = mapped_column(Double)
    high: Mapped[float] = mapped_column(Double)
    low: Mapped[float] = mapped_column(Double)
    close: Mapped[float] = mapped_column(Double)
    volume: Mapped[float] = mapped_column(Double)
    source: Mapped[str] = mapped_column(String(64))
    ingested_at: Mapped[datetime]


class IngestRunRow(Base):
    """What one ingest did: where the data came from and what happened to it."""

    __tablename__ = "ingest_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    asset: Mapped[str] = mapped_column(String(32), index=True)
    interval: Mapped[str] = mapped_column(String(8))
    requested: Mapped[str] = mapped_column(String(200))
    source: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime]
    fetched: Mapped[int] = mapped_column(Integer, default=0)
    inserted: Mapped[int] = mapped_column(Integer, default=0)
    updated: Mapped[int] = mapped_column(Integer, default=0)
    rejected: Mapped[int] = mapped_column(Integer, default=0)
    fixed_volume: Mapped[int] = mapped_column(Integer, default=0)
    report: Mapped[dict[str, Any]] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)


class ModelVersionRow(Base):
    """A trained model version: what it is, what it was trained on, how it scored."""

    __tablename__ = "model_versions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    asset: Mapped[str] = mapped_column(String(32), index=True)
    model: Mapped[str] = mapped_column(String(32))
    # "price" or "risk": one active version per (asset, family).
    family: Mapped[str] = mapped_column(String(16), server_default=text("'price'"))
    created_at: Mapped[datetime]
    train_start: Mapped[date] = mapped_column(Date)
    train_end: Mapped[date] = mapped_column(Date)
    data_points: Mapped[int] = mapped_column(Integer)
    data_sha256: Mapped[str] = mapped_column(String(64))
    seed: Mapped[int] = mapped_column(Integer)
    training_duration: Mapped[float] = mapped_column(Double)
    holdout_mase: Mapped[float | None] = mapped_column(Double)
    summary: Mapped[dict[str, Any]] = mapped_column(JSON)
    pruned_at: Mapped[datetime | None]


class ModelArtifactRow(Base):
    """One artifact file of a version (model.onnx, weights.safetensors, meta.json)."""

    __tablename__ = "model_artifacts"

    version_id: Mapped[int] = mapped_column(
        ForeignKey("model_versions.id", ondelete="CASCADE"), primary_key=True
    )
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(Integer)
    content: Mapped[bytes] = mapped_column(LargeBinary)


class PromotionRow(Base):
    """One activation of a version for an asset and family; the newest live row is active."""

    __tablename__ = "promotions"
    __table_args__ = (Index("ix_promotions_asset_family", "asset", "family"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    asset: Mapped[str] = mapped_column(String(32), index=True)
    family: Mapped[str] = mapped_column(String(16), server_default=text("'price'"))
    version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"))
    promoted_at: Mapped[datetime]
    reason: Mapped[str] = mapped_column(Text)
    rolled_back_at: Mapped[datetime | None]


ACTIVE_JOB_STATUSES = ("queued", "running")
# The statuses that hold a job's dedupe key, as the unique index's SQL predicate.
_ACTIVE_JOB = "status IN ({})".format(", ".join(f"'{s}'" for s in ACTIVE_JOB_STATUSES))


class JobRow(Base):
    """A persisted job: any process can enqueue, the worker runs it, anyone can read it."""

    __tablename__ = "jobs"
    __table_args__ = (
        # At most one queued/running job per key (e.g. one training per asset and model).
        Index(
            "uq_jobs_active_key",
            "dedupe_key",
            unique=True,
            postgresql_where=text(_ACTIVE_JOB),
            sqlite_where=text(_ACTIVE_JOB),
        ),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), index=True)
    status: Mapped[str] = mapped_column(String(16), index=True)
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    dedupe_key: Mapped[str | None] = mapped_column(String(120))
    progress: Mapped[float] = mapped_column(Double, default=0.0)
    message: Mapped[str | None] = mapped_column(Text)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    heartbeat_at: Mapped[datetime | None]
    worker_id: Mapped[str | None] = mapped_column(String(64))
    cancel_requested: Mapped[bool] = mapped_column(default=False)


class PredictionRow(Base):
    """One served forecast (ledger), scored when its target day's candle arrives."""

    __tablename__ = "predictions"
    __table_args__ = (
        UniqueConstraint("asset", "model_version", "as_of", "horizon", name="uq_predictions_key"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    asset: Mapped[str] = mapped_column(String(32), index=True)
    model: Mapped[str] = mapped_column(String(32))
    model_version: Mapped[int] = mapped_column(Integer)
    as_of: Mapped[datetime]
    horizon: Mapped[int] = mapped_column(Integer)
    target_date: Mapped[date] = mapped_column(Date, index=True)
    forecast: Mapped[float] = mapped_column(Double)
    lower: Mapped[float] = mapped_column(Double)
    upper: Mapped[float] = mapped_column(Double)
    level: Mapped[int] = mapped_column(Integer)
    naive: Mapped[float] = mapped_column(Double)
    created_at: Mapped[datetime]
    actual: Mapped[float | None] = mapped_column(Double)
    abs_error: Mapped[float | None] = mapped_column(Double)
    naive_abs_error: Mapped[float | None] = mapped_column(Double)
    inside: Mapped[bool | None]
    scored_at: Mapped[datetime | None]


class ScheduleRow(Base):
    """When a worker schedule last ran and is due next."""

    __tablename__ = "schedules"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    last_run_at: Mapped[datetime | None]
    next_run_at: Mapped[datetime | None]
    last_job_id: Mapped[str | None] = mapped_column(String(36))


class WorkerRow(Base):
    """A job-worker process; ``heartbeat_at`` is written every poll so /health can see it."""

    __tablename__ = "workers"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    hostname: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    # Where ``pid`` means something (boot id and PID namespace): a same-scope worker whose
    # process is gone is dead at once, however fresh its last heartbeat.
    pid_scope: Mapped[str | None] = mapped_column(String(80))
    embedded: Mapped[bool]
    started_at: Mapped[datetime]
    heartbeat_at: Mapped[datetime] = mapped_column(index=True)


class IntervalScoreRow(Base):
    """A price version's forecast recorded at ingest; ``score`` = |log residual| / σ̂ once its
    target day closes. The adaptive interval level is replayed from these, never from traffic."""

    __tablename__ = "interval_scores"
    __table_args__ = (
        UniqueConstraint(
            "asset", "price_version", "origin_date", "horizon", name="uq_interval_scores_key"
        ),
        Index("ix_interval_scores_series", "asset", "price_version", "horizon"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    asset: Mapped[str] = mapped_column(String(32))
    price_version: Mapped[int] = mapped_column(Integer)
    risk_version: Mapped[int | None] = mapped_column(Integer)
    horizon: Mapped[int] = mapped_column(Integer)
    origin_date: Mapped[date] = mapped_column(Date)
    target_date: Mapped[date] = mapped_column(Date, index=True)
    last_close: Mapped[float] = mapped_column(Double)
    forecast: Mapped[float] = mapped_column(Double)
    sigma: Mapped[float | None] = mapped_column(Double)
    actual: Mapped[float | None] = mapped_column(Double)
    score: Mapped[float | None] = mapped_column(Double)
    created_at: Mapped[datetime]
    scored_at: Mapped[datetime | None]


class RiskPredictionRow(Base):
    """One served risk forecast (risk ledger), scored when its target day's candle arrives."""

    __tablename__ = "risk_predictions"
    __table_args__ = (
        UniqueConstraint(
            "asset", "model_version", "as_of", "horizon", name="uq_risk_predictions_key"
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    asset: Mapped[str] = mapped_column(String(32), index=True)
    model: Mapped[str] = mapped_column(String(32))
    model_version: Mapped[int] = mapped_column(Integer)
    price_version: Mapped[int | None] = mapped_column(Integer)
    as_of: Mapped[datetime]
    horizon: Mapped[int] = mapped_column(Integer)
    target_date: Mapped[date] = mapped_column(Date, index=True)
    last_close: Mapped[float] = mapped_column(Double)
    level: Mapped[int] = mapped_column(Integer)
    volatility: Mapped[float] = mapped_column(Double)
    range_pct: Mapped[float] = mapped_column(Double)
    range_lower_pct: Mapped[float | None] = mapped_column(Double)
    range_upper_pct: Mapped[float | None] = mapped_column(Double)
    naive_range_pct: Mapped[float] = mapped_column(Double)
    var_95: Mapped[float | None] = mapped_column(Double)
    var_99: Mapped[float | None] = mapped_column(Double)
    p_up: Mapped[float | None] = mapped_column(Double)
    created_at: Mapped[datetime]
    actual_range_pct: Mapped[float | None] = mapped_column(Double)
    abs_error: Mapped[float | None] = mapped_column(Double)
    naive_abs_error: Mapped[float | None] = mapped_column(Double)
    inside: Mapped[bool | None]
    loss_pct: Mapped[float | None] = mapped_column(Double)
    var_95_violated: Mapped[bool | None]
    var_99_violated: Mapped[bool | None]
    went_up: Mapped[bool | None]
    scored_at: Mapped[datetime | None]
