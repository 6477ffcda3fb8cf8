"""Ensemble forecaster: a convex combination of member forecasts, weighted out of sample.

Weights come only from data the ensemble is fitted on, and only from forecasts the members
made before seeing the days they forecast:

1. fit every member on the first ``weight_split`` share of the training closes;
2. forecast every later day of the training closes from each origin (rolling origin, no
   refits) and collect log errors per member and horizon;
3. weight ∝ 1 / (mean over horizons of the member's MSE relative to the members' mean
   MSE at that horizon) — inverse-MSE, one weight vector for all horizons;
4. refit every member on all training closes.

One weight vector rather than one per horizon: the held-out part holds ~15 independent
30-day moves, so per-horizon weights at long horizons would mostly fit noise and make the
forecast path jump between members. Normalizing each horizon's MSE first keeps the long
horizons (whose errors are largest) from deciding alone. Inverse-MSE rather than
constrained least squares: member forecasts are nearly collinear (all close to the last
close), where least-squares weights are unstable and tend to corner solutions.

The ONNX graph composes the members' own graphs (``onnx.compose.add_prefix``): each member
sees the trailing ``context_length`` closes it needs, its forecast is cut to the ensemble
horizon, scaled by its weight and summed — any member mix that exports the base.py graph
contract works, with no member-specific code.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, Self

import numpy as np
import numpy.typing as npt

from btc_predictor.errors import (
    ArtifactError,
    InvalidInputError,
    NoModelError,
    NotEnoughDataError,
)
from btc_predictor.forecasting.base import FloatArray, Forecaster, JSONValue, ProgressFn
from btc_predictor.forecasting.baselines import check_closes, check_horizon
from btc_predictor.forecasting.registry import create_model, get_model_class

Float32Array = npt.NDArray[np.float32]
DEFAULT_MEMBERS = ("lstm", "gru", "transformer")
_MIN_SCORED_ORIGINS = 5


def _forecast_windows(member: Forecaster, windows: FloatArray) -> FloatArray:
    """Forecasts ``[n, max_horizon]`` for windows ``[n, W]`` (member's last W columns)."""
    own = windows[:, windows.shape[1] - member.context_length :]
    return np.asarray(member.predict_batch(own), dtype=np.float64)


def holdout_mse(member: Forecaster, y: FloatArray, split: int, horizon: int) -> FloatArray:
    """MSE of log errors per horizon ``(horizon,)`` from origins ``split-1 .. len(y)-2``.

    ``member`` must be fitted on ``y[:split]`` only; each forecast uses closes up to its origin.
    """
    origins = np.arange(split - 1, len(y) - 1)
    width = member.context_length
    windows = np.stack([y[t - width + 1 : t + 1] for t in origins])  # [n, W]
    log_forecast = np.log(_forecast_windows(member, windows)[:, :horizon])  # [n, H]
    mse = np.full(horizon, np.nan)
    for h in range(1, horizon + 1):
        scored = origins + h < len(y)  # targets inside y only
        if scored.any():
            errors = log_forecast[scored, h - 1] - np.log(y[origins[scored] + h])
            mse[h - 1] = float(np.mean(errors**2))
    return mse


def inverse_mse_weights(mse: FloatArray) -> FloatArray:
    """Nonnegative weights summing to 1 from per-member, per-horizon MSE ``[M, H]``."""
    scored = mse[:, ~np.isnan(mse).any(axis=0)]  # horizons every member was scored on
    if scored.shape[1] == 0:
        raise NotEnoughDataError("no horizon could be scored to learn ensemble weights")
    floor = np.finfo(np.float64).tiny
    relative = np.maximum(scored, floor) / np.maximum(scored.mean(axis=0), floor)  # [M, H']
    inverse = 1.0 / relative.mean(axis=1)  # [M]
    return np.asarray(inverse / inverse.sum(), dtype=np.float64)


class EnsembleForecaster:
    """Inverse-MSE weighted average of member forecasters, weights learned out of sample.

    Args:
        members: member names from the registry, or unfitted forecaster instances; names
            must be distinct. Default: ``lstm``, ``gru``, ``transformer``.
        max_horizon: longest horizon; members created from names get it, instances must
            reach it.
        weight_split: share of the training closes the first-stage members are fitted on;
            the remaining days score them to learn the weights.
    """

    name: ClassVar[str] = "ensemble"
    is_baseline: ClassVar[bool] = False

    def __init__(
        self,
        members: Sequence[str | Forecaster] = DEFAULT_MEMBERS,
        *,
        max_horizon: int = 30,
        weight_split: float = 0.8,
    ) -> None:
        built = [
            create_model(m, max_horizon=max_horizon) if isinstance(m, str) else m for m in members
        ]
        names = [m.name for m in built]
        if not built or len(set(names)) != len(names) or any("." in n for n in names):
            raise InvalidInputError(f"ensemble members must be distinct names, got `{names}`")
        if any(m.max_horizon < max_horizon for m in built) or not 0 < weight_split < 1:
            raise InvalidInputError("members must reach max_horizon; weight_split in (0, 1)")
        self._members, self._max_horizon, self._weight_split = built, max_horizon, weight_split
        self._weights: FloatArray | None = None
        self._holdout_mse: FloatArray | None = None

    @property
    def context_length(self) -> int:
        """The longest member context: every member reads its own trailing closes."""
        return max(m.context_length for m in self._members)

    @property
    def max_horizon(self) -> int:
        """The longest horizon forecast."""
        return self._max_horizon

    @property
    def members(self) -> tuple[Forecaster, ...]:
        """The member forecasters, in weight order."""
        return tuple(self._members)

    @property
    def weights(self) -> FloatArray:
        """Member weights (nonnegative, summing to 1)."""
        if self._weights is None:
            raise NoModelError(f"{self.name} is not fitted; call fit() first")
        return self._weights.copy()

    def fit(
        self,
        y: FloatArray,
        *,
        seed: int = 0,
        epochs: int | None = None,
        progress: ProgressFn | None = None,
    ) -> Self:
        """Learn weights on a held-out tail of ``y``, then refit every member on all of ``y``."""
        y = check_closes(y, min_length=self.context_length + 2, what=f"{self.name} fit")
        split = int(len(y) * self._weight_split)
        if len(y) - split < _MIN_SCORED_ORIGINS or split < self.context_length:
            raise NotEnoughDataError(
                f"{self.name}: {len(y)} closes are too few to hold out ≥ "
                f"{_MIN_SCORED_ORIGINS} days for weights (split at {split})"
            )
        total, done = 2 * len(self._members), 0
        rows = []
        for member in self._members:
            member.fit(y[:split], seed=seed, epochs=epochs)
            rows.append(holdout_mse(member, y, split, self._max_horizon))
            done += 1
            if progress is not None:
                progress(done, total, None)
        mse = np.stack(rows)  # [M, H]
        for member in self._members:
            member.fit(y, seed=seed, epochs=epochs)
            done += 1
            if progress is not None:
                progress(done, total, None)
        self._weights, self._holdout_mse = inverse_mse_weights(mse), mse
        return self

    def predict(self, history: FloatArray, horizon: int) -> FloatArray:
        """Forecast closes for the next ``horizon`` days after ``history``; shape ``(horizon,)``."""
        check_horizon(horizon, self._max_horizon)
        window = check_closes(history, min_length=self.context_length, what="history")
        return self.predict_batch(window[None, -self.context_length :])[0, :horizon]

    def predict_batch(self, windows: FloatArray) -> FloatArray:
        """Forecast horizons 1..max_horizon for each row of ``windows`` ``[n, context_length]``."""
        weights = self.weights
        arr = np.asarray(windows, dtype=np.float64)
        if arr.ndim != 2 or arr.shape[1] != self.context_length:
            raise InvalidInputError(
                f"windows must be [n, {self.context_length}], got `{arr.shape}`"
            )
        parts = [_forecast_windows(m, arr)[:, : self._max_horizon] for m in self._members]
        return np.asarray(np.tensordot(weights, np.stack(parts), axes=1), dtype=np.float64)

    def config(self) -> dict[str, JSONValue]:
        """Hyperparameters, members' configs, weights and held-out MSE for meta.json."""
        return {
            "name": self.name,
            "hyper": {"max_horizon": self._max_horizon, "weight_split": self._weight_split},
            "members": [{"name": m.name, "config": m.config()} for m in self._members],
            "weights": None if self._weights is None else self._weights.tolist(),
            "holdout_mse": None if self._holdout_mse is None else _nan_to_none(self._holdout_mse),
        }

    def tensors(self) -> dict[str, Float32Array]:
        """Members' weights, keys prefixed ``<member name>.``."""
        return {f"{m.name}.{k}": v for m in self._members for k, v in m.tensors().items()}

    def to_onnx(self) -> bytes:
        """One graph: members' graphs on their trailing closes, weighted and summed."""
        graphs = [m.to_onnx() for m in self._members]
        contexts = [m.context_length for m in self._members]
        return _weighted_sum_graph(graphs, contexts, self.weights, self._max_horizon)

    @classmethod
    def from_artifacts(cls, config: dict[str, JSONValue], tensors: dict[str, Float32Array]) -> Self:
        """Rebuild a fitted ensemble (members through the registry) from its artifacts."""
        if config.get("name") != cls.name or config.get("weights") is None:
            raise ArtifactError("config is not a fitted ensemble")
        members: list[str | Forecaster] = []
        for entry in config["members"]:
            prefix = f"{entry['name']}."
            own = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
            members.append(get_model_class(entry["name"]).from_artifacts(entry["config"], own))
        model = cls(members, **config["hyper"])
        model._weights = np.asarray(config["weights"], dtype=np.float64)
        mse = config.get("holdout_mse")
        model._holdout_mse = None if mse is None else np.array(mse, dtype=np.float64)
        return model


def _nan_to_none(values: FloatArray) -> list[list[float | None]]:
    """A 2-D array as JSON-safe nested lists (NaN → null)."""
    return [[None if np.isnan(v) else float(v) for v in row] for row in values]


# --------------------------------------------------------------------------- ONNX composition
# onnx is imported inside these functions: serving needs only onnxruntime, never onnx.

_INT64_MAX = np.iinfo(np.int64).max


def _default_opset(model: Any) -> int:
    """The model's opset version for the default ("ai.onnx") domain."""
    return max(int(o.version) for o in model.opset_import if o.domain in ("", "ai.onnx"))


def _member_part(model: Any, prefix: str, context: int, weight: float, horizon: int) -> Any:
    """The prefixed member: fed its trailing ``context`` closes, cut to ``horizon``, weighted."""
    from onnx import compose

    _check_member_io(model)
    prefixed = compose.add_prefix(model, prefix)
    graph = prefixed.graph
    head, tail = _member_edges(prefix)
    graph.ClearField("input")
    graph.ClearField("output")
    graph.initializer.extend(_member_constants(prefix, context, weight, horizon))
    nodes = [*head, *graph.node, *tail]
    graph.ClearField("node")
    graph.node.extend(nodes)
    return prefixed


def _check_member_io(model: Any) -> None:
    """Raise ArtifactError unless the member graph maps ``closes`` → ``forecast`` (base.py)."""
    inputs, outputs = [v.name for v in model.graph.input], [v.name for v in model.graph.output]
    if inputs != ["closes"] or outputs != ["forecast"]:
        raise ArtifactError(
            f"member graph must map `closes` → `forecast`, got {inputs} → {outputs}"
        )


def _member_constants(prefix: str, context: int, weight: float, horizon: int) -> list[Any]:
    """The prefixed initializers of a member's edges: slice bounds, then its weight."""
    from onnx import numpy_helper

    constants = {
        "in_start": [-context],
        "in_end": [_INT64_MAX],
        "axis": [1],
        "out_start": [0],
        "out_end": [horizon],
    }
    extra = [
        numpy_helper.from_array(np.array(v, np.int64), prefix + k) for k, v in constants.items()
    ]
    extra.append(numpy_helper.from_array(np.array(weight, np.float64), prefix + "weight"))
    return extra


def _member_edges(p: str) -> tuple[list[Any], list[Any]]:
    """Nodes before a member (slice its context) and after it (cut to H, apply its weight)."""
    from onnx import helper

    head = [
        helper.make_node(
            "Slice", ["closes", p + "in_start", p + "in_end", p + "axis"], [p + "closes"]
        )
    ]  # [batch, W_m]: the member's own context
    tail = [
        helper.make_node(
            "Slice", [p + "forecast", p + "out_start", p + "out_end", p + "axis"], [p + "head"]
        ),  # [batch, H]
        helper.make_node("Mul", [p + "head", p + "weight"], [p + "weighted"]),  # [batch, H]
    ]
    return head, tail


def _weighted_sum_graph(
    graphs: list[bytes], contexts: list[int], weights: FloatArray, horizon: int
) -> bytes:
    """Compose member ONNX graphs into ``forecast = Σ w_m · member_m(closes[:, -W_m:])[:, :H]``."""
    import onnx
    from onnx import helper

    models = _on_common_opset([onnx.load_from_string(g) for g in graphs])
    parts = [
        _member_part(m, f"m{i}_", c, float(w), horizon)
        for i, (m, c, w) in enumerate(zip(models, contexts, weights, strict=True))
    ]
    model = helper.make_model(
        _sum_graph(parts, max(contexts), horizon),
        opset_imports=_opset_imports(models),
        functions=[f for p in parts for f in p.functions],
    )
    model.ir_version = max(int(m.ir_version) for m in models)
    onnx.checker.check_model(model)
    return bytes(model.SerializeToString())


def _on_common_opset(models: list[Any]) -> list[Any]:
    """The models, each converted to the highest default-domain opset among them."""
    from onnx import version_converter

    opset = max(_default_opset(m) for m in models)
    return [
        m if _default_opset(m) == opset else version_converter.convert_version(m, opset)
        for m in models
    ]


def _sum_graph(parts: list[Any], context: int, horizon: int) -> Any:
    """One graph of every member part plus ``forecast = Sum(m_i weighted)``."""
    from onnx import TensorProto, helper

    total = helper.make_node("Sum", [f"m{i}_weighted" for i in range(len(parts))], ["forecast"])
    return helper.make_graph(
        [n for p in parts for n in p.graph.node] + [total],
        "ensemble_forecaster",
        [helper.make_tensor_value_info("closes", TensorProto.DOUBLE, ["batch", context])],
        [helper.make_tensor_value_info("forecast", TensorProto.DOUBLE, ["batch", horizon])],
        initializer=[t for p in parts for t in p.graph.initializer],
        value_info=[v for p in parts for v in p.graph.value_info],
    )


def _opset_imports(models: list[Any]) -> list[Any]:
    """Every domain the members use, at the highest version any of them imports."""
    from onnx import helper

    domains: dict[str, int] = {}
    for m in models:
        for o in m.opset_import:
            domains[o.domain] = max(domains.get(o.domain, 0), int(o.version))
    return [helper.make_opsetid(d, v) for d, v in domains.items()]
