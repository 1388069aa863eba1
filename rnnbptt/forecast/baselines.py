"""Benchmark forecasts: M4's naive, seasonal naive and Naive2, and AR(p).

Naive2 is naive on data seasonally adjusted by classical multiplicative
decomposition, applied only where an autocorrelation test at the seasonal lag
finds seasonality: the M4 organisers' R code ("Benchmarks and Evaluation.R",
functions ``SeasonalityTest`` and ``naive2``), followed step by step, R's
``acf`` and ``decompose`` included. Each function takes one series (a 1-D array
of its observed values, oldest first) and the horizon ``h``, and returns [h].
"""

from __future__ import annotations

import math

import numpy as np

# The one-sided 90% critical value of the M4 seasonality test (R: tcrit).
SEASONALITY_TCRIT = 1.645


def _series(fn: str, x, h: int, min_length: int = 1) -> np.ndarray:
    if isinstance(h, bool) or not isinstance(h, (int, np.integer)) or h < 1:
        raise ValueError(f"`{fn}`: `h` must be a positive integer, got {h!r}")
    x = np.asarray(x, np.float64)
    if x.ndim != 1:
        raise ValueError(f"`{fn}`: `x` must be one series [T], got shape {x.shape}")
    if x.size < min_length:
        raise ValueError(
            f"`{fn}`: `x` needs at least {min_length} values, got {x.size}"
        )
    if not np.isfinite(x).all():
        i = int(np.flatnonzero(~np.isfinite(x))[0])
        raise ValueError(f"`{fn}`: `x` must be finite, got {x[i]} at index {i}")
    return x


def _period(fn: str, m) -> int:
    if isinstance(m, bool) or not isinstance(m, (int, np.integer)) or m < 1:
        raise ValueError(f"`{fn}`: `m` must be a positive integer, got {m!r}")
    return int(m)


def naive(x, h: int) -> np.ndarray:
    """The last value, ``h`` times."""
    x = _series("naive", x, h)
    return np.full(h, x[-1])


def seasonal_naive(x, h: int, m: int) -> np.ndarray:
    """The last season (``m`` values) repeated: step ``k`` is
    ``x[T - m + (k mod m)]``."""
    m = _period("seasonal_naive", m)
    x = _series("seasonal_naive", x, h, min_length=m)
    return x[-m:][np.arange(h) % m]


def acf(x, lags: int) -> np.ndarray:
    """R's ``acf``: autocorrelations at lags 1..``lags`` of the demeaned series,
    each sum of lagged products over the full sum of squares (the biased estimate)."""
    x = np.asarray(x, np.float64) - np.mean(x)
    denominator = np.sum(x * x)
    return np.array(
        [np.sum(x[: x.size - k] * x[k:]) / denominator for k in range(1, lags + 1)]
    )


def is_seasonal(x, m: int) -> bool:
    """M4's seasonality test: the lag-``m`` autocorrelation exceeds its 90% limit.

    ``|r_m| > 1.645 sqrt((1 + 2 sum_{k<m} r_k^2) / T)``. As in R, the series must
    have at least ``3 m`` values, and ``acf`` computes ``floor(10 log10 T)`` lags
    (at most ``T - 1``): where that is fewer than ``m``, R's ``r_m`` is NA and the
    series counts as not seasonal.
    """
    m = _period("is_seasonal", m)
    x = _series("is_seasonal", x, 1)
    if m == 1 or x.size < 3 * m:
        return False
    lags = min(math.floor(10 * math.log10(x.size)), x.size - 1)
    if lags < m or np.sum((x - x.mean()) ** 2) == 0:
        return False
    r = acf(x, lags)
    limit = (
        SEASONALITY_TCRIT
        / math.sqrt(x.size)
        * math.sqrt(1 + 2 * np.sum(r[: m - 1] ** 2))
    )
    return bool(abs(r[m - 1]) > limit)


def seasonal_indices(x, m: int) -> np.ndarray:
    """R's ``decompose(type="multiplicative")``'s seasonal figure, [m].

    The trend is the centred moving average over one period (for even ``m``,
    weights ``(1/2, 1, ..., 1, 1/2) / m`` over ``m + 1`` values); the figure at
    cycle position ``i`` is the mean of ``x / trend`` over the steps
    ``i, i + m, ...`` (counted from the first value) where the trend exists,
    normalised to mean 1. Step ``t`` of the series has index ``figure[t mod m]``.
    """
    m = _period("seasonal_indices", m)
    x = _series("seasonal_indices", x, 1, min_length=2 * m + 1)
    weights = np.r_[0.5, np.ones(m - 1), 0.5] / m if m % 2 == 0 else np.ones(m) / m
    half = weights.size // 2
    windows = np.lib.stride_tricks.sliding_window_view(x, weights.size)
    trend = np.full(x.size, np.nan)
    trend[half : x.size - half] = windows @ weights
    ratio = x / trend
    figure = np.array([np.nanmean(ratio[i::m]) for i in range(m)])
    return figure / np.mean(figure)


def naive2(x, h: int, m: int) -> np.ndarray:
    """M4's Naive2: the last seasonally adjusted value, seasonalised again.

    Where :func:`is_seasonal` finds seasonality, the series is divided by its
    multiplicative seasonal indices (:func:`seasonal_indices`), the last adjusted
    value is carried ``h`` steps, and each step multiplied by its own index;
    otherwise this is :func:`naive`.
    """
    m = _period("naive2", m)
    x = _series("naive2", x, h)
    if not is_seasonal(x, m):
        return naive(x, h)
    figure = seasonal_indices(x, m)
    cycle = np.arange(x.size + h) % m
    adjusted_last = x[-1] / figure[cycle[x.size - 1]]
    return adjusted_last * figure[cycle[x.size :]]


def autoregressive(x, h: int, p: int) -> np.ndarray:
    """AR(``p``) with an intercept, fitted by least squares, forecast recursively.

    ``x[t] = c + a_1 x[t-1] + ... + a_p x[t-p]`` over every ``t >= p``; each
    forecast step feeds the previous ones back as lags.

    Raises:
        ValueError: if ``p`` is not a positive integer, or the series has fewer
            than ``2 p + 1`` values (fewer equations than coefficients).
    """
    p = _period("autoregressive", p)
    x = _series("autoregressive", x, h, min_length=2 * p + 1)
    coef, _ = ar_fit(x, p)
    return ar_forecast(x, coef, h)


def ar_forecast(x: np.ndarray, coef: np.ndarray, h: int) -> np.ndarray:
    """The next ``h`` values of ``x`` by the AR coefficients ``coef`` ([c, a_1..a_p],
    :func:`ar_fit`'s), each step fed back as a lag of the next."""
    p = coef.size - 1
    history = list(x[-p:])
    out = np.empty(h)
    for k in range(h):
        out[k] = coef[0] + coef[1:] @ np.asarray(history[: -p - 1 : -1])
        history.append(out[k])
    return out


def ar_fit(x: np.ndarray, p: int) -> tuple[np.ndarray, np.ndarray]:
    """AR(``p``)'s least-squares ``(coefficients [c, a_1..a_p], residuals)``."""
    lags = np.lib.stride_tricks.sliding_window_view(x[:-1], p)[:, ::-1]  # x[t-1..t-p]
    design = np.column_stack([np.ones(len(lags)), lags])
    coef, *_ = np.linalg.lstsq(design, x[p:], rcond=None)
    return coef, x[p:] - design @ coef


def ar_order(x, max_p: int) -> int:
    """The AR order in ``1..max_p`` of least AIC (:func:`ar_aic`)."""
    return int(np.argmin(_aic("ar_order", x, max_p))) + 1


def ar_aic(x, max_p: int) -> np.ndarray:
    """[max_p] the AIC ``n log(RSS / n) + 2 (p + 1)`` of AR(1..max_p), every order
    fitted by least squares on the same steps (``t >= max_p``) so that they
    compare. One QR of the largest design serves every order: the first ``p + 1``
    columns of ``Q`` span order ``p``'s design, so its RSS is the full model's
    plus the squares of ``Q^T x`` beyond them. A design of (nearly) dependent
    columns (a long constant stretch, say) breaks that: then each order is
    fitted on its own."""
    return _aic("ar_aic", x, max_p)


def _aic(fn: str, x, max_p: int) -> np.ndarray:
    max_p = _period(fn, max_p)
    x = _series(fn, x, 1, min_length=2 * max_p + 1)
    n = x.size - max_p
    lags = np.lib.stride_tricks.sliding_window_view(x[:-1], max_p)[:, ::-1]
    q, r = np.linalg.qr(np.column_stack([np.ones(n), lags]))
    diagonal = np.abs(np.diag(r))
    target = x[max_p:]
    if (diagonal <= RANK_TOLERANCE * diagonal.max()).any():
        rss = np.array(
            [_rss(ar_fit(x[max_p - p :], p)[1]) for p in range(1, max_p + 1)]
        )
    else:
        along = q.T @ target  # [max_p + 1]
        rest = target - q @ along
        beyond = np.cumsum((along * along)[::-1])[::-1][2:]  # orders 1..max_p - 1
        rss = float(rest @ rest) + np.append(beyond, 0.0)
    rss = np.maximum(rss, np.finfo(np.float64).tiny)
    return n * np.log(rss / n) + 2 * (np.arange(1, max_p + 1) + 1)


RANK_TOLERANCE = 1e-7  # |R_jj| below this share of the largest: dependent columns


def _rss(residuals: np.ndarray) -> float:
    return float(residuals @ residuals)
