"""Forecasting: data sets of many series in the long format (``panel.py``), M4's
metrics (``metrics.py``) and benchmark forecasts (``baselines.py``): host-side
NumPy and pandas, the metrics checked against the competition's published scores."""

from .baselines import (
    acf,
    autoregressive,
    is_seasonal,
    naive,
    naive2,
    seasonal_indices,
    seasonal_naive,
)
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

__all__ = [
    "M4_ALPHA",
    "Panel",
    "acf",
    "autoregressive",
    "coverage",
    "is_seasonal",
    "m4_scores",
    "mae",
    "mase",
    "msis",
    "naive",
    "naive2",
    "owa",
    "rmse",
    "seasonal_indices",
    "seasonal_naive",
    "seasonal_scale",
    "smape",
    "to_panel",
]
