"""The building blocks of every shape: the strict base model and the bounded field types.

Bounds and defaults are stated here once; the API schema, the CLI and stored job params all
read them from these types.
"""

from __future__ import annotations

import contextlib
from datetime import date, datetime
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
)

# ASSET_PATTERN is re-exported: the API's path and query parameters take it from here.
from btc_predictor.config import ASSET_PATTERN as ASSET_PATTERN
from btc_predictor.config import normalise_symbol

DEFAULT_ASSET = "BTC-USD"
DEFAULT_HORIZON = 7
DEFAULT_LEVEL = 90
DEFAULT_REFIT_EVERY = 30
MAX_SEED = 2**31 - 1
# Version ids are the model_versions key, an INTEGER column: 32-bit on PostgreSQL, whose
# driver refuses a larger value in a query (SQLite overflows only past 2^63 - 1).
MAX_VERSION_ID = 2**31 - 1

# The registry's names (a test keeps them equal), so OpenAPI lists the valid models.
PriceModelKind = Literal["naive", "drift", "seed-lstm", "lstm", "gru", "transformer", "ensemble"]
RiskModelKind = Literal["naive-range", "ewma-vol", "har", "garch"]
ModelKind = Literal[PriceModelKind, RiskModelKind]
MODEL_NAMES: tuple[str, ...] = get_args(ModelKind)
PRICE_MODEL_NAMES: tuple[str, ...] = get_args(PriceModelKind)
RISK_MODEL_NAMES: tuple[str, ...] = get_args(RiskModelKind)
# A version's family: price models forecast closes, risk models the daily range and volatility.
ModelFamily = Literal["price", "risk"]
MODEL_FAMILIES: tuple[str, ...] = get_args(ModelFamily)
PromoteMode = Literal["auto", "always", "never"]
PROMOTION_MODES: tuple[str, ...] = get_args(PromoteMode)
JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]
JOB_STATUSES: tuple[str, ...] = get_args(JobStatus)


def _symbol(value: Any) -> Any:
    """``btc/usd`` -> ``BTC-USD``: one spelling of a symbol everywhere (others: refused)."""
    if not isinstance(value, str):
        return value  # the str type refuses it
    return normalise_symbol(value)


def _model_name(value: Any) -> Any:
    """A registered model name, or a message listing them."""
    if isinstance(value, str) and value not in MODEL_NAMES:
        raise ValueError(f"unknown model `{value}` (valid models: {', '.join(MODEL_NAMES)})")
    return value


def family_of(model: str) -> str:
    """The family of a registered model name (``risk`` for the risk models, else ``price``)."""
    return "risk" if model in RISK_MODEL_NAMES else "price"


def _price_model_name(value: Any) -> Any:
    """A price model name; a risk model is refused with where to ask for it instead."""
    if isinstance(value, str) and value in RISK_MODEL_NAMES:
        raise ValueError(
            f"`{value}` is a risk model: it forecasts the daily range and volatility, not "
            "prices; ask `btc-predictor risk` or GET /api/v1/risk for its forecast "
            f"(price models: {', '.join(PRICE_MODEL_NAMES)})"
        )
    if isinstance(value, str) and value not in PRICE_MODEL_NAMES:
        raise ValueError(f"unknown model `{value}` (valid models: {', '.join(PRICE_MODEL_NAMES)})")
    return value


def _risk_model_name(value: Any) -> Any:
    """A risk model name; a price model is refused with where to ask for it instead."""
    if isinstance(value, str) and value in PRICE_MODEL_NAMES:
        raise ValueError(
            f"`{value}` is a price model: it forecasts closes, not the daily range and "
            "volatility; ask `btc-predictor predict` or GET /api/v1/forecast for its forecast "
            f"(risk models: {', '.join(RISK_MODEL_NAMES)})"
        )
    if isinstance(value, str) and value not in RISK_MODEL_NAMES:
        raise ValueError(
            f"unknown risk model `{value}` (valid risk models: {', '.join(RISK_MODEL_NAMES)})"
        )
    return value


def _whole(value: Any) -> Any:
    """JSON's ``5.0`` is the integer 5 (JSON Schema agrees); ``true`` and ``5.5`` are not."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _day_text(value: Any) -> Any:
    """Only ISO text (or a date) is a day: lax parsing would read ``0`` as 1970-01-01."""
    if isinstance(value, date):
        return value
    if isinstance(value, str) and len(value) == 10:
        with contextlib.suppress(ValueError):
            return date.fromisoformat(value)
    raise ValueError(f"`{value}` is not a day (use YYYY-MM-DD)")


Asset = Annotated[
    str, Field(pattern=ASSET_PATTERN, description="BASE-QUOTE"), BeforeValidator(_symbol)
]
Day = Annotated[date, BeforeValidator(_day_text)]
ModelName = Annotated[ModelKind, BeforeValidator(_model_name)]
PriceModelName = Annotated[PriceModelKind, BeforeValidator(_price_model_name)]
RiskModelName = Annotated[RiskModelKind, BeforeValidator(_risk_model_name)]
# Field first, then the validator: the schema keeps its bounds, and the validator runs first.
_whole_number = BeforeValidator(_whole)
Seed = Annotated[
    int, Field(ge=0, le=MAX_SEED, description="random seed (reproducible)"), _whole_number
]
Level = Annotated[int, Field(ge=50, le=99, description="interval level in percent"), _whole_number]
# The schema's outer bound; BTCP_MAX_HORIZON (default 30) is checked by the services.
Horizon = Annotated[
    int, Field(ge=1, le=365, description="days ahead (1..BTCP_MAX_HORIZON)"), _whole_number
]
Epochs = Annotated[int, Field(ge=1, le=10_000, description="cap on training epochs"), _whole_number]
VersionId = Annotated[int, Field(ge=1, le=MAX_VERSION_ID, description="model version id")]
Days = Annotated[int, Field(ge=1, le=20_000), _whole_number]
RefitEvery = Annotated[
    int, Field(ge=1, le=3650, description="refit the model every K days"), _whole_number
]


# An aware timestamp written as ``isoformat()`` (``+00:00``, as the API always has), not ``Z``.
Instant = Annotated[datetime, PlainSerializer(lambda v: v.isoformat(), return_type=str)]


class Shape(BaseModel):
    """A request shape: immutable, strict scalars, unknown fields refused."""

    model_config = ConfigDict(frozen=True, strict=True, extra="forbid")


class Query(BaseModel):
    """A query-string shape: values arrive as text, unknown parameters are ignored."""

    model_config = ConfigDict(frozen=True, extra="ignore")


def first_problem(exc: ValidationError) -> tuple[str, str]:
    """The first problem of a failed validation as (field path, message)."""
    first = exc.errors(include_url=False)[0]
    where = ".".join(str(part) for part in first["loc"])
    if first["type"] == "extra_forbidden":
        return where, "is not accepted"
    return where, str(first["msg"]).removeprefix("Value error, ")
