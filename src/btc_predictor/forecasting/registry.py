"""Model name → class, resolved lazily so that importing the registry never imports torch.

The API process looks models up by name but serves ONNX only; the torch-backed classes are
imported the first time someone asks for their class (training, backtests, tests).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal, cast

from btc_predictor.errors import ModelNotFoundError
from btc_predictor.forecasting.base import Forecaster

if TYPE_CHECKING:
    from btc_predictor.forecasting.risk.base import RiskForecaster

_PACKAGE = "btc_predictor.forecasting"

# name -> "module:Class"; the order is the order users see in listings.
MODELS: Mapping[str, str] = MappingProxyType(
    {
        "naive": f"{_PACKAGE}.baselines:NaiveForecaster",
        "drift": f"{_PACKAGE}.baselines:DriftForecaster",
        "seed-lstm": f"{_PACKAGE}.networks.recipe:SeedLSTMForecaster",
        "lstm": f"{_PACKAGE}.networks.returns:LSTMForecaster",
        "gru": f"{_PACKAGE}.networks.returns:GRUForecaster",
        "transformer": f"{_PACKAGE}.networks.returns:TransformerForecaster",
        "ensemble": f"{_PACKAGE}.ensemble:EnsembleForecaster",
    }
)


def model_names() -> list[str]:
    """Every registered model name, in listing order."""
    return list(MODELS)


def get_model_class(name: str) -> type[Forecaster]:
    """The class registered as ``name``; unknown names raise ModelNotFoundError."""
    target = MODELS.get(name)
    if target is None:
        valid = ", ".join(MODELS)
        raise ModelNotFoundError(f"unknown model `{name}`; valid models: {valid}")
    module_name, _, class_name = target.partition(":")
    module = importlib.import_module(module_name)
    return cast(type[Forecaster], getattr(module, class_name))


def create_model(name: str, *, max_horizon: int = 30, **overrides: Any) -> Forecaster:
    """A new, unfitted model ``name`` with ``max_horizon`` and hyperparameter overrides."""
    factory = cast(Callable[..., Forecaster], get_model_class(name))
    return factory(max_horizon=max_horizon, **overrides)


# --- Risk models (the second family, DESIGN §6 "Risk") ------------------------------------

Family = Literal["price", "risk"]
FAMILIES: tuple[Family, ...] = ("price", "risk")

# name -> "module:Class", listing order; numpy-only modules (``garch`` imports ``arch`` in fit).
RISK_MODELS: Mapping[str, str] = MappingProxyType(
    {
        "naive-range": f"{_PACKAGE}.risk.naive:NaiveRange",
        "ewma-vol": f"{_PACKAGE}.risk.ewma:EwmaVol",
        "har": f"{_PACKAGE}.risk.har:HarRange",
        "garch": f"{_PACKAGE}.risk.garch:Garch",
    }
)


def risk_model_names() -> list[str]:
    """Every registered risk model name, in listing order."""
    return list(RISK_MODELS)


def model_family(name: str) -> Family:
    """``price`` or ``risk`` for a registered name; unknown names raise ModelNotFoundError."""
    if name in MODELS:
        return "price"
    if name in RISK_MODELS:
        return "risk"
    raise ModelNotFoundError(
        f"unknown model `{name}`; price models: {', '.join(MODELS)}; "
        f"risk models: {', '.join(RISK_MODELS)}"
    )


def get_risk_model_class(name: str) -> type[RiskForecaster]:
    """The risk model class registered as ``name``; other names raise ModelNotFoundError."""
    target = RISK_MODELS.get(name)
    if target is None:
        raise ModelNotFoundError(
            f"unknown risk model `{name}`; valid risk models: {', '.join(RISK_MODELS)}"
        )
    module_name, _, class_name = target.partition(":")
    module = importlib.import_module(module_name)
    return cast("type[RiskForecaster]", getattr(module, class_name))


def create_risk_model(name: str, *, max_horizon: int = 30, **overrides: Any) -> RiskForecaster:
    """A new, unfitted risk model ``name`` with ``max_horizon`` and hyperparameter overrides."""
    factory = cast("Callable[..., RiskForecaster]", get_risk_model_class(name))
    return factory(max_horizon=max_horizon, **overrides)
