"""Job parameters: what each job kind accepts (mirroring the CLI flags), checked and
normalised before a job exists, so bad input is refused at the door (HTTP 422)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Any

from btc_predictor.config import Settings
from btc_predictor.errors import InvalidInputError
from btc_predictor.forecasting.promotion import PROMOTION_MODES
from btc_predictor.forecasting.registry import MODELS
from btc_predictor.sources import check_source_spec
from btc_predictor.sources.base import parse_asset
from btc_predictor.storage.tables import JOB_KINDS

# Parameters each kind accepts (they mirror the CLI flags), with the rule checking each value.
PARAMS: dict[str, dict[str, str]] = {
    "ingest": {
        "asset": "asset",
        "source": "source",
        "since": "date",
        "force": "flag",
        "bootstrap": "flag",
        "then_train": "flag",
    },
    "train": {
        "asset": "asset",
        "model": "model",
        "start": "date",
        "seed": "count",
        "epochs": "positive",
        "promote": "promote",
    },
    "retrain": {
        "asset": "asset",
        "model": "model",
        "start": "date",
        "seed": "count",
        "epochs": "positive",
        "reason": "text",
        "trigger": "text",  # "schedule", "health" (degraded live forecasts) or absent: by hand
    },
    "backtest": {
        "asset": "asset",
        "model": "model",
        "days": "positive",
        "start": "date",
        "refit_every": "positive",
        "horizon": "positive",
        "level": "level",
        "seed": "count",
        "epochs": "positive",
    },
}


def check_kind(kind: str) -> str:
    """``kind`` if it is a job kind, else InvalidInputError."""
    if kind not in JOB_KINDS:
        raise InvalidInputError(f"unknown job kind `{kind}` (use one of: {', '.join(JOB_KINDS)})")
    return kind


def normalize_params(settings: Settings, kind: str, params: dict[str, Any]) -> dict[str, Any]:
    """Checked, JSON-ready params with the asset (first tracked) and model defaults filled in."""
    fields = PARAMS[check_kind(kind)]
    if kind == "ingest" and "path" in params:
        raise InvalidInputError(
            "ingest jobs read the configured sources only; `path` is not accepted "
            "(ingest a file on the server with `btc-predictor ingest --path FILE`)"
        )
    unknown = sorted(set(params) - set(fields))
    if unknown:
        names = ", ".join(f"`{key}`" for key in unknown)
        raise InvalidInputError(f"unknown {kind} parameter {names}; accepted: {', '.join(fields)}")
    clean = {k: _RULES[fields[k]](k, v) for k, v in params.items() if v is not None}
    if "asset" not in clean:
        if not settings.assets:
            raise InvalidInputError(f"{kind} needs an `asset` (no asset is tracked)")
        clean["asset"] = settings.assets[0]
    if "model" in fields:
        clean.setdefault("model", settings.default_model)
    return clean


def _text(key: str, value: Any) -> str:
    """A short string."""
    if not isinstance(value, str) or not 0 < len(value) <= 200:
        raise InvalidInputError(f"`{key}` must be a string of 1..200 characters, got `{value}`")
    return value


def _asset(key: str, value: Any) -> str:
    """A ``BASE-QUOTE`` symbol, upper case."""
    return parse_asset(_text(key, value)).symbol


def _model(key: str, value: Any) -> str:
    """A registered model name (checked without importing the model)."""
    name = _text(key, value)
    if name not in MODELS:
        raise InvalidInputError(f"unknown model `{name}`; valid models: {', '.join(MODELS)}")
    return name


def _source(key: str, value: Any) -> str:
    """An online source: jobs never read server files."""
    spec = check_source_spec(_text(key, value))
    if spec == "csv":
        raise InvalidInputError("ingest jobs cannot use the csv source (it reads a server file)")
    return spec


def _iso_date(key: str, value: Any) -> str:
    """A ``YYYY-MM-DD`` date."""
    try:
        return date.fromisoformat(_text(key, value)).isoformat()
    except ValueError:
        raise InvalidInputError(f"`{key}` must be a date YYYY-MM-DD, got `{value}`") from None


def _flag(key: str, value: Any) -> bool:
    """A JSON boolean."""
    if not isinstance(value, bool):
        raise InvalidInputError(f"`{key}` must be true or false, got `{value}`")
    return value


def _integer(key: str, value: Any, low: int, high: int | None = None) -> int:
    """An integer in ``low..high`` (booleans are not integers here)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise InvalidInputError(f"`{key}` must be an integer ≥ {low}, got `{value}`")
    if high is not None and value > high:
        raise InvalidInputError(f"`{key}` must be an integer in {low}..{high}, got `{value}`")
    return value


def _promote(key: str, value: Any) -> str:
    """A promotion mode."""
    if value not in PROMOTION_MODES:
        raise InvalidInputError(f"`{key}` must be one of {', '.join(PROMOTION_MODES)}")
    return str(value)


_RULES: dict[str, Callable[[str, Any], Any]] = {
    "text": _text,
    "asset": _asset,
    "model": _model,
    "source": _source,
    "date": _iso_date,
    "flag": _flag,
    "count": lambda key, value: _integer(key, value, 0),
    "positive": lambda key, value: _integer(key, value, 1),
    "level": lambda key, value: _integer(key, value, 50, 99),
    "promote": _promote,
}
