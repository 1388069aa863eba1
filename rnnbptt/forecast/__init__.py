"""Forecasting.

:class:`Forecaster` (``forecaster.py``) is a global recurrent model of many
series with quantile intervals: fit, predict, cross_validation, save and load.
It is built from ``network.py`` (encoder and quantile head), ``training.py``
(the compiled programs), ``tables.py`` and ``features.py`` (covariates and the
calendar), ``calibration.py`` (conformal widening), ``predicting.py``,
``backtest.py`` and ``saving.py``. Beneath it: data sets of many series in the
long format (``panel.py``), level-normalised windows (``windows.py``), quantile
outputs that cannot cross and the pinball loss (``quantiles.py``), M4's metrics
(``metrics.py``) and benchmark forecasts (``baselines.py``; :class:`Baseline`,
``baseline.py``, gives them the Forecaster's interface), the metrics checked
against the competition's published scores."""

from .baseline import Baseline, BaselineConfig
from .baselines import (
    acf,
    ar_aic,
    ar_order,
    autoregressive,
    is_seasonal,
    naive,
    naive2,
    seasonal_indices,
    seasonal_naive,
)
from .config import ForecastConfig
from .features import calendar, season_length
from .forecaster import Forecaster
from .metrics import (
    M4_ALPHA,
    coverage,
    m4_scores,
    mae,
    mase,
    msis,
    owa,
    rmse,
    seasonal_scale,
    smape,
)
from .panel import Panel, to_panel
from .quantiles import monotone_quantiles, pinball_loss, quantile_levels
from .windows import Windows, make_windows, naive_scale

__all__ = [
    "M4_ALPHA",
    "Baseline",
    "BaselineConfig",
    "ForecastConfig",
    "Forecaster",
    "Panel",
    "Windows",
    "acf",
    "ar_aic",
    "ar_order",
    "autoregressive",
    "calendar",
    "coverage",
    "is_seasonal",
    "m4_scores",
    "mae",
    "make_windows",
    "mase",
    "monotone_quantiles",
    "msis",
    "naive",
    "naive2",
    "naive_scale",
    "owa",
    "pinball_loss",
    "quantile_levels",
    "rmse",
    "season_length",
    "seasonal_indices",
    "seasonal_naive",
    "seasonal_scale",
    "smape",
    "to_panel",
]
