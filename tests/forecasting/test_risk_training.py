"""Risk training core: holdout metrics, residuals, day errors, final fit."""

from __future__ import annotations

import numpy as np
import pytest

from btc_predictor.errors import InvalidInputError
from btc_predictor.forecasting import registry
from btc_predictor.forecasting.promotion import PromotionEvidence, promotion_decision
from btc_predictor.forecasting.risk.intervals import range_residuals
from btc_predictor.forecasting.risk.training import risk_holdout_evaluate, train_risk_model
from btc_predictor.forecasting.training import split_index
from tests.forecasting.risk_data import synthetic_ohlc

H = 5
DATA = synthetic_ohlc(500, seed=4)


def factory(name: str):  # type: ignore[no-untyped-def]
    return lambda: registry.create_risk_model(name, max_horizon=H)


def test_holdout_reports_the_risk_metrics_on_test_days_only() -> None:
    result = risk_holdout_evaluate(factory("har"), DATA, max_horizon=H)
    split = split_index(len(DATA))
    assert result.split == split == 400
    assert set(result.metrics) == {"mase", "range_mae", "qlike", "dm_pvalue", "coverage"}
    first = result.horizons[0]
    assert first.targets[0] == split and first.targets[-1] == len(DATA) - 1
    np.testing.assert_array_equal(first.actual, DATA.range_pct()[first.targets])
    np.testing.assert_array_equal(first.naive, DATA.range_pct()[first.origins])
    # the GARCH-driven synthetic ranges are forecastable: har beats the naive range
    assert result.metrics["mase"] is not None and result.metrics["mase"] < 0.9
    assert 0.75 <= result.metrics["coverage"] <= 1.0  # type: ignore[operator]
    assert result.baseline["naive-range"]["range_mae"] == pytest.approx(
        float(np.mean(np.abs(first.naive - first.actual)))
    )


def test_residuals_per_horizon_are_log_range_errors() -> None:
    result = risk_holdout_evaluate(factory("ewma-vol"), DATA, max_horizon=H)
    assert [len(r) for r in result.residuals_per_horizon] == [100 - h + 1 for h in range(1, H + 1)]
    s = result.horizons[2]
    np.testing.assert_allclose(
        result.residuals_per_horizon[2], range_residuals(s.actual, s.forecast)
    )


def test_holdout_fit_sees_only_the_training_days() -> None:
    """Changing every test day's candles leaves the holdout's first forecast unchanged."""
    a = risk_holdout_evaluate(factory("har"), DATA, max_horizon=H)
    other = synthetic_ohlc(500, seed=9)
    split = split_index(len(DATA))
    mixed = type(DATA).from_arrays(
        np.r_[DATA.open[:split], other.open[split:] * DATA.close[split - 1] / other.open[split]],
        np.r_[DATA.high[:split], other.high[split:] * DATA.close[split - 1] / other.open[split]],
        np.r_[DATA.low[:split], other.low[split:] * DATA.close[split - 1] / other.open[split]],
        np.r_[DATA.close[:split], other.close[split:] * DATA.close[split - 1] / other.open[split]],
        DATA.day,
    )
    b = risk_holdout_evaluate(factory("har"), mixed, max_horizon=H)
    assert a.horizons[0].forecast[0] == b.horizons[0].forecast[0]
    assert a.horizons[0].forecast[1] != b.horizons[0].forecast[1]  # origin 400 is a test day


def test_day_errors_feed_the_price_promotion_rule() -> None:
    """Risk versions compare by range MASE on the same calendar days, as price versions do."""
    days = DATA.day
    har = risk_holdout_evaluate(factory("har"), DATA, max_horizon=H, days=days)
    naive = risk_holdout_evaluate(factory("naive-range"), DATA, max_horizon=H, days=days)
    assert har.day_errors.days[0] == days[400] and naive.metrics["mase"] == 1.0
    har_ev = PromotionEvidence("har", False, har.metrics["mase"], har.day_errors)
    naive_ev = PromotionEvidence("naive-range", False, 1.0, naive.day_errors)
    promoted, reason = promotion_decision(har_ev, naive_ev)
    assert promoted and "on the same 100 days" in reason
    assert f"{har.metrics['mase']:.4f} vs active 1.0000" in reason
    assert promotion_decision(naive_ev, har_ev)[0] is False
    baseline = PromotionEvidence("naive-range", True, 1.0, naive.day_errors)
    assert promotion_decision(baseline, None)[0] is False


def test_train_fits_the_served_model_on_everything() -> None:
    steps: list[tuple[int, int]] = []
    outcome = train_risk_model(
        factory("har"), DATA, max_horizon=H, progress=lambda d, t, _: steps.append((d, t))
    )
    assert steps == [(1, 2), (2, 2)]
    full = registry.create_risk_model("har", max_horizon=H).fit(DATA)
    np.testing.assert_array_equal(
        outcome.model.forecast(DATA, H).range_pct, full.forecast(DATA, H).range_pct
    )
    assert len(outcome.residuals_per_horizon) == H
    assert outcome.metrics == outcome.holdout.metrics


def test_horizon_beyond_the_model_is_refused() -> None:
    with pytest.raises(InvalidInputError, match=r"max_horizon must be in 1\.\.5"):
        risk_holdout_evaluate(factory("har"), DATA, max_horizon=6)


@pytest.mark.parametrize("name", ["har", "ewma-vol"])
def test_holdout_sigma_never_sees_past_its_origin_or_the_split(name: str) -> None:
    """σ̂ at origin t is the same whatever the candles after t (and, for t < split, after
    the split): the risk model is fitted on the holdout's training part only."""
    from btc_predictor.forecasting.risk.ohlc import OHLC
    from btc_predictor.forecasting.risk.training import holdout_sigma

    ohlc = synthetic_ohlc(600, seed=4)
    split, origins = split_index(600), np.arange(split_index(600) - 1, 599)
    base = holdout_sigma(factory(name)(), ohlc, split, origins)
    cut = 530
    noisy = OHLC(
        *(
            np.concatenate([c[: cut + 1], c[cut + 1 :] * 1.7])
            for c in (ohlc.open, ohlc.high, ohlc.low, ohlc.close)
        ),
        ohlc.day,
    )
    other = holdout_sigma(factory(name)(), noisy, split, origins)
    upto = origins <= cut
    assert np.array_equal(base[upto], other[upto]) and not np.array_equal(base, other)
    assert np.all(np.diff(base, axis=1) > 0)  # h-day variance adds the daily ones
