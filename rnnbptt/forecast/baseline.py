"""The benchmark forecasts behind the Forecaster's interface.

    Baseline("naive2", h=48).fit(df).predict()   # unique_id, ds, forecast, lo-80, ...
    Baseline("ar", h=48, p=24).cross_validation(df, n_windows=3)

Each series is its own model (``baselines.py``'s functions on its values), so
fitting many series at once gives what fitting each alone gives. Intervals are
the usual normal ones of each method, from its one-step residuals (Hyndman and
Athanasopoulos, *Forecasting: Principles and Practice*, 5.5): naive
``sigma sqrt(k)`` at step ``k``; seasonal naive ``sigma sqrt(floor((k - 1) / m)
+ 1)``; Naive2 naive's on the seasonally adjusted series, seasonalised again;
AR(p) ``sigma sqrt(sum_{j<k} psi_j^2)`` with the MA(infinity) weights ``psi``.
The ensemble averages its members' forecasts and their interval bounds
(quantile averaging).
"""

from __future__ import annotations

import dataclasses
from statistics import NormalDist

import numpy as np
import pandas as pd

from .._scalars import boolean, positive_int
from . import baselines
from .backtest import backtest, cross_validation
from .features import season_length
from .panel import Panel, to_panel
from .predicting import quantile_frame
from .quantiles import quantile_levels

FN = "Baseline"
METHODS = ("naive", "seasonal_naive", "naive2", "ar", "ensemble")
ENSEMBLE = ("seasonal_naive", "naive2", "ar")


@dataclasses.dataclass(frozen=True)
class BaselineConfig:
    """A :class:`Baseline`'s settings (see its docstring)."""

    method: str
    h: int
    season_length: int | None = None
    p: int | None = None
    levels: tuple[float, ...] = (80, 95)
    futr_exog = ()  # baselines read no covariates
    hist_exog = ()

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(
                f"`{FN}`: `method` must be one of {list(METHODS)}, got {self.method!r}"
            )
        object.__setattr__(self, "h", positive_int(FN, "h", self.h))
        for name in ("season_length", "p"):
            if getattr(self, name) is not None:
                object.__setattr__(
                    self, name, positive_int(FN, name, getattr(self, name))
                )
        quantile_levels(self.levels)  # refuses bad levels
        object.__setattr__(self, "levels", tuple(float(v) for v in self.levels))


class Baseline:
    """A benchmark method, per series, with ``Forecaster``'s fit, predict and
    cross_validation.

    Args:
        method: ``"naive"``, ``"seasonal_naive"``, ``"naive2"`` (M4's), ``"ar"``
            (AR(p) by least squares) or ``"ensemble"`` (the mean of seasonal
            naive, Naive2 and AR).
        h: steps forecast.
        season_length: default from the frequency (24 hourly, 7 daily, ...).
        p: AR order (default: each series' own, of least AIC up to
            ``max(season_length, 10)`` and a third of its length).
        levels: interval levels in percent; ``predict`` gives ``lo-L``/``hi-L``.
    """

    def __init__(self, method: str, h: int, **settings):
        self.config = BaselineConfig(method, h, **settings)
        self.panel: Panel | None = None
        self.freq = None

    def __repr__(self) -> str:
        state = "fitted" if self.panel is not None else "not fitted"
        return f"Baseline({self.config}, {state})"

    def clone(self) -> Baseline:
        settings = dataclasses.asdict(self.config)
        return type(self)(settings.pop("method"), **settings)

    def fit(self, df, freq=None) -> Baseline:
        """Keeps every series of ``df`` (long format, or a Series with a
        DatetimeIndex): each forecast reads its own series' history."""
        panel = to_panel(df, freq, (), f"{FN}.fit")
        self._check_lengths(panel, f"{FN}.fit")
        self.panel, self.freq = panel, panel.freq
        return self

    def predict(self, h: int | None = None, df=None, futr_df=None) -> pd.DataFrame:
        """The next ``h`` steps (at most ``h`` of the settings) of every series
        after the data it was fitted on, or after ``df`` when given."""
        if self.panel is None:
            raise ValueError(f"`{FN}.predict`: call `fit` first")
        h = self.config.h if h is None else positive_int(FN, "h", h)
        if h > self.config.h:
            raise ValueError(f"`{FN}.predict`: `h` ({h}) > the settings' h")
        panel = (
            self.panel if df is None else to_panel(df, self.freq, (), f"{FN}.predict")
        )
        return self.forecast_after(panel, h, futr_df)

    def forecast_after(self, panel: Panel, h: int, futr_df, fn=None) -> pd.DataFrame:
        """The ``h`` steps after each series of ``panel`` (checked data; ``fn``:
        the caller's name for the errors)."""
        del futr_df  # no covariates
        season = self._check_lengths(panel, fn or f"{FN}.predict")
        levels = quantile_levels(self.config.levels)
        z = np.array([NormalDist().inv_cdf(q) for q in levels])  # [Q]
        values = np.stack([self._series(y, season, z) for y in panel.y])
        return quantile_frame(panel, values[:, :h], h, self.config.levels)

    def cross_validation(self, df, n_windows: int = 1, step_size=None, refit=True):
        """As :meth:`Forecaster.cross_validation`; refitted or not, each window's
        forecast reads the whole history before its cutoff (so one fit serves)."""
        boolean(f"{FN}.cross_validation", "refit", refit)
        return cross_validation(self, df, n_windows, step_size, refit=False)

    def backtest(self, df, n_windows: int = 1, step_size=None) -> pd.DataFrame:
        """As :meth:`Forecaster.backtest`."""
        if self.panel is None:
            raise ValueError(f"`{FN}.backtest`: call `fit` first")
        return backtest(self, df, n_windows, step_size)

    def _season(self, freq) -> int:
        return self.config.season_length or season_length(freq)

    def _check_lengths(self, panel: Panel, fn: str) -> int:
        """Refuses a series too short for the method; returns the season."""
        m = self._season(panel.freq)
        for name, y in zip(panel.ids, panel.y, strict=True):
            _check_length(self.config, m, name, y, fn)
        return m

    def _series(self, y: np.ndarray, m: int, z: np.ndarray) -> np.ndarray:
        """[h, Q] quantiles of one series' next h steps (``z``: the standard
        normal's quantiles at the levels)."""
        cfg = self.config
        methods = ENSEMBLE if cfg.method == "ensemble" else (cfg.method,)
        p = _order(cfg, y, m) if "ar" in methods else None
        parts = [_method(k, y, cfg.h, m, p) for k in methods]
        return np.mean([mean[:, None] + sd[:, None] * z for mean, sd in parts], 0)


def _method(method: str, y, h: int, m: int, p: int):
    """(point forecast [h], standard deviation [h]) of one method."""
    steps = np.arange(1, h + 1)
    if method == "naive":
        return baselines.naive(y, h), _rms(np.diff(y)) * np.sqrt(steps)
    if method == "seasonal_naive":
        sd = _rms(y[m:] - y[:-m]) * np.sqrt((steps - 1) // m + 1)
        return baselines.seasonal_naive(y, h, m), sd
    if method == "naive2":
        mean = baselines.naive2(y, h, m)
        if not baselines.is_seasonal(y, m):
            return mean, _rms(np.diff(y)) * np.sqrt(steps)
        # naive's deviation on the adjusted series, seasonalised like the forecast
        index = baselines.seasonal_indices(y, m)[np.arange(y.size + h) % m]
        adjusted = y / index[: y.size]
        sd = _rms(np.diff(adjusted)) * np.sqrt(steps) * np.abs(index[y.size :])
        return mean, sd
    return _autoregressive(y, h, p)


def _order(cfg: BaselineConfig, y: np.ndarray, m: int) -> int:
    """The AR order: given, else the series' AIC choice (see :class:`Baseline`)."""
    if cfg.p is not None:
        return cfg.p
    return baselines.ar_order(y, max(1, min(max(m, 10), (y.size - 1) // 3)))


def _rms(e: np.ndarray) -> float:
    return float(np.sqrt(np.mean(e * e)))


def _autoregressive(y, h: int, p: int):
    """AR(p)'s forecast and its h-step deviations from the psi weights."""
    coef, residuals = baselines.ar_fit(y, p)
    mean = baselines.ar_forecast(y, coef, h)
    sigma = np.sqrt(residuals @ residuals / max(len(residuals) - p - 1, 1))
    psi = np.zeros(h)
    psi[0] = 1.0
    for j in range(1, h):
        psi[j] = sum(coef[i] * psi[j - i] for i in range(1, min(j, p) + 1))
    return mean, sigma * np.sqrt(np.cumsum(psi**2))


def _check_length(cfg: BaselineConfig, m: int, name, y, fn: str) -> None:
    p = cfg.p or 1  # the AIC's choice fits whatever length there is
    need = {"naive": 2, "seasonal_naive": m + 1, "naive2": 2, "ar": max(2 * p + 1, 4)}
    need = need.get(cfg.method, max(m + 1, 2 * p + 1))  # the ensemble: all three
    if y.size < need:
        raise ValueError(
            f"`{fn}`: series {name!r} has {y.size} values; {cfg.method} "
            f"(season {m}, p {cfg.p or 'by AIC'}) needs at least {need}"
        )
