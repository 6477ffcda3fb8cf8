"""The building blocks of every shape: the strict base model and the bounded field types.

Bounds and defaults are stated here once; the API schema, the CLI and stored job params all
read them from these types.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

ASSET_PATTERN = r"^[A-Za-z0-9]{2,12}[-/][A-Za-z0-9]{2,6}$"
DEFAULT_ASSET = "BTC-USD"
DEFAULT_HORIZON = 7
DEFAULT_LEVEL = 90
DEFAULT_REFIT_EVERY = 30
MAX_SEED = 2**31 - 1

# The registry's names (a test keeps them equal), so OpenAPI lists the valid models.
ModelName = Literal["naive", "drift", "seed-lstm", "lstm", "gru", "transformer", "ensemble"]
PromoteMode = Literal["auto", "always", "never"]
PROMOTION_MODES: tuple[str, ...] = get_args(PromoteMode)
JobKind = Literal["ingest", "train", "backtest", "retrain"]
JOB_KINDS: tuple[str, ...] = get_args(JobKind)
JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]
JOB_STATUSES: tuple[str, ...] = get_args(JobStatus)


def _day_text(value: Any) -> Any:
    """Only ISO text (or a date) is a day: lax parsing would read ``0`` as 1970-01-01."""
    if isinstance(value, date) or (isinstance(value, str) and len(value) == 10):
        return value
    raise ValueError("a day is written YYYY-MM-DD")


Asset = Annotated[str, Field(pattern=ASSET_PATTERN, description="BASE-QUOTE, e.g. BTC-USD")]
Day = Annotated[date, Field(strict=False), BeforeValidator(_day_text)]
Seed = Annotated[int, Field(ge=0, le=MAX_SEED, description="random seed (reproducible)")]
Level = Annotated[int, Field(ge=50, le=99, description="interval level in percent")]
# The schema's outer bound; BTCP_MAX_HORIZON (default 30) is checked by the services.
Horizon = Annotated[int, Field(ge=1, le=365, description="days ahead (1..BTCP_MAX_HORIZON)")]
Epochs = Annotated[int, Field(ge=1, le=10_000, description="cap on training epochs")]
Days = Annotated[int, Field(ge=1, le=20_000)]
RefitEvery = Annotated[int, Field(ge=1, le=3650, description="refit the model every K days")]


class Shape(BaseModel):
    """A request shape: immutable, strict scalars, unknown fields refused."""

    model_config = ConfigDict(frozen=True, strict=True, extra="forbid")


class Query(BaseModel):
    """A query-string shape: values arrive as text, unknown parameters are ignored."""

    model_config = ConfigDict(frozen=True, extra="ignore")
