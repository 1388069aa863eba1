"""Forecast accuracy as the M4 competition scored it.

Point forecasts: RMSE, MAE, sMAPE (in percent), MASE (the mean absolute error over
the in-sample mean absolute seasonal-naive error, seasonal period ``m``) and OWA
(sMAPE and MASE each relative to Naive2's, averaged). Intervals: MSIS (the mean
scaled interval score of Gneiting and Raftery, scaled as MASE is) and coverage.

Every function takes one series (``y``: [h]) or many of the same horizon
([N, h]) and returns one number per series; :func:`m4_scores` averages over
series as the competition's R evaluation did (per series over the horizon, then
over the series). Nothing here is jitted: this is host-side scoring with NumPy.
"""

from __future__ import annotations

import numpy as np

# The interval level M4 scored: 95%, so alpha = 0.05 in MSIS's penalty 2 / alpha.
M4_ALPHA = 0.05


def _pair(fn: str, y, forecast) -> tuple[np.ndarray, np.ndarray]:
    """(y, forecast) as float64 arrays of one shape, [h] or [N, h], finite."""
    y = np.asarray(y, np.float64)
    forecast = np.asarray(forecast, np.float64)
    if y.ndim not in (1, 2) or y.shape[-1] == 0:
        raise ValueError(
            f"`{fn}`: `y` must be [h] or [N, h] with h >= 1, got shape {y.shape}"
        )
    if forecast.shape != y.shape:
        raise ValueError(
            f"`{fn}`: `forecast` must have the shape of `y` {y.shape}, got "
            f"{forecast.shape}"
        )
    for name, values in (("y", y), ("forecast", forecast)):
        if not np.isfinite(values).all():
            where = tuple(int(i) for i in np.argwhere(~np.isfinite(values))[0])
            raise ValueError(f"`{fn}`: `{name}` must be finite, got NaN/inf at {where}")
    return y, forecast


def rmse(y, forecast) -> np.ndarray:
    """Root mean squared error over the horizon, per series."""
    y, forecast = _pair("rmse", y, forecast)
    return np.sqrt(np.mean((y - forecast) ** 2, axis=-1))


def mae(y, forecast) -> np.ndarray:
    """Mean absolute error over the horizon, per series."""
    y, forecast = _pair("mae", y, forecast)
    return np.mean(np.abs(y - forecast), axis=-1)


def smape(y, forecast) -> np.ndarray:
    """M4's symmetric MAPE in percent: mean of ``200 |y - f| / (|y| + |f|)``.

    A step where both ``y`` and ``f`` are 0 counts as 0 (no error).
    """
    y, forecast = _pair("smape", y, forecast)
    denominator = np.abs(y) + np.abs(forecast)
    error = 200 * np.abs(y - forecast)
    terms = np.divide(
        error, denominator, out=np.zeros_like(error), where=denominator > 0
    )
    return np.mean(terms, axis=-1)


def seasonal_scale(insample, m: int) -> np.ndarray:
    """The mean absolute seasonal difference ``|x[t] - x[t - m]|`` of each in-sample
    series (MASE's and MSIS's denominator), NaNs (the padding of shorter series
    in an [N, T] array) left out.

    Raises:
        ValueError: if a series has no pair of values ``m`` apart, or its scale
            is 0 (a constant seasonal pattern: the scaled errors are undefined).
    """
    fn = "seasonal_scale"
    if isinstance(m, bool) or not isinstance(m, (int, np.integer)) or m < 1:
        raise ValueError(f"`{fn}`: `m` must be a positive integer, got {m!r}")
    x = np.asarray(insample, np.float64)
    if x.ndim not in (1, 2):
        raise ValueError(f"`{fn}`: `insample` must be [T] or [N, T], got {x.shape}")
    rows = np.atleast_2d(x)
    diffs = np.abs(rows[:, m:] - rows[:, :-m]) if rows.shape[1] > m else None
    scales = []
    for i in range(rows.shape[0]):
        valid = diffs[i][~np.isnan(diffs[i])] if diffs is not None else np.empty(0)
        if valid.size == 0:
            raise ValueError(
                f"`{fn}`: series {i} needs two values {m} steps apart (m={m}), "
                f"got {int(np.sum(~np.isnan(rows[i])))} values"
            )
        scale = float(np.mean(valid))
        if scale == 0:
            raise ValueError(
                f"`{fn}`: series {i} repeats itself every {m} steps exactly: its "
                "seasonal-naive error is 0, so scaled errors are undefined"
            )
        scales.append(scale)
    scales = np.asarray(scales)
    return scales if x.ndim == 2 else scales[0]


def mase(y, forecast, insample, m: int) -> np.ndarray:
    """Mean absolute scaled error: ``mae / seasonal_scale(insample, m)``, per series."""
    return mae(y, forecast) / seasonal_scale(insample, m)


def msis(y, lo, hi, insample, m: int, alpha: float = M4_ALPHA) -> np.ndarray:
    """Mean scaled interval score of the ``1 - alpha`` interval ``[lo, hi]``.

    Per step ``(hi - lo) + (2 / alpha) (lo - y) [y < lo] + (2 / alpha) (y - hi)
    [y > hi]``, averaged over the horizon and divided by
    ``seasonal_scale(insample, m)``: a narrow interval that covers is best.
    """
    y, lo = _pair("msis", y, lo)
    _, hi = _pair("msis", y, hi)
    if not 0 < alpha < 1:
        raise ValueError(f"`msis`: `alpha` must be in (0, 1), got {alpha!r}")
    if (lo > hi).any():
        where = tuple(int(i) for i in np.argwhere(lo > hi)[0])
        raise ValueError(f"`msis`: `lo` must be <= `hi`, got lo > hi at {where}")
    penalty = (2 / alpha) * ((lo - y) * (y < lo) + (y - hi) * (y > hi))
    return np.mean(hi - lo + penalty, axis=-1) / seasonal_scale(insample, m)


def coverage(y, lo, hi) -> np.ndarray:
    """The share of steps with ``lo <= y <= hi``, per series."""
    y, lo = _pair("coverage", y, lo)
    _, hi = _pair("coverage", y, hi)
    return np.mean((lo <= y) & (y <= hi), axis=-1)


def owa(smape_value: float, mase_value: float, naive2_smape: float, naive2_mase: float):
    """M4's overall weighted average: ``(sMAPE / Naive2's + MASE / Naive2's) / 2``
    (of the averages over all series)."""
    return 0.5 * (smape_value / naive2_smape + mase_value / naive2_mase)


def m4_scores(y, forecast, insample, m: int, naive2=None, lo=None, hi=None) -> dict:
    """M4's table row of a method: sMAPE, MASE, OWA (with ``naive2``'s forecasts),
    MSIS and the coverage of the 95% interval (with ``lo`` and ``hi``).

    Args:
        y, forecast: [N, h] actual values and point forecasts.
        insample: [N, T] the training series (shorter ones padded with NaN).
        m: the seasonal period of MASE and MSIS (24 for hourly data).
        naive2: [N, h] Naive2's forecasts, for OWA.
        lo, hi: [N, h] the 95% interval, for MSIS and coverage.

    Returns:
        ``{"smape", "mase"}``, plus ``"owa"``, and ``"msis"``, ``"coverage"`` and
        ``"coverage_gap"`` (``|coverage - 0.95|``) where given: means over series.
    """
    scores = {
        "smape": float(np.mean(smape(y, forecast))),
        "mase": float(np.mean(mase(y, forecast, insample, m))),
    }
    if naive2 is not None:
        base_smape = float(np.mean(smape(y, naive2)))
        base_mase = float(np.mean(mase(y, naive2, insample, m)))
        scores["owa"] = owa(scores["smape"], scores["mase"], base_smape, base_mase)
    if (lo is None) != (hi is None):
        raise ValueError("`m4_scores`: give both `lo` and `hi`, or neither")
    if lo is not None:
        scores["msis"] = float(np.mean(msis(y, lo, hi, insample, m)))
        scores["coverage"] = float(np.mean(coverage(y, lo, hi)))
        scores["coverage_gap"] = abs(scores["coverage"] - (1 - M4_ALPHA))
    return scores
