"""Rolling-origin backtests: forecasts from several cutoffs beside what came."""

from __future__ import annotations

import pandas as pd

from .._scalars import boolean, positive_int
from .panel import DS, ID, Y, to_panel

FN = "Forecaster.cross_validation"


def cutoff_rows(df: pd.DataFrame, keep_before_end: int) -> pd.Series:
    """Rows of each series (``df`` in time order) that lie more than
    ``keep_before_end`` steps before its end."""
    position = df.groupby(ID, sort=False).cumcount()
    size = df.groupby(ID, sort=False)[ID].transform("size")
    return position < size - keep_before_end


def cross_validation(forecaster, df, n_windows, step_size, refit) -> pd.DataFrame:
    """See :meth:`Forecaster.cross_validation`."""
    h = forecaster.config.h
    n_windows = positive_int(FN, "n_windows", n_windows)
    step = h if step_size is None else positive_int(FN, "step_size", step_size)
    refit = boolean(FN, "refit", refit)
    frame, freq = _long(forecaster, df)
    model, parts = None, []
    for k in range(n_windows):
        after = h + step * (n_windows - 1 - k)
        before = cutoff_rows(frame, after)
        seen = frame[before]
        future = frame[~before & cutoff_rows(frame, after - h)]
        if model is None or refit:
            model = forecaster.clone().fit(seen, freq=freq)
            forecast = model.predict(futr_df=future)
        else:
            forecast = model.predict(df=seen, futr_df=future)
        cutoff = seen.groupby(ID, sort=False)[DS].last().rename("cutoff")
        forecast = forecast.merge(cutoff, left_on=ID, right_index=True)
        parts.append(forecast.merge(future[[ID, DS, Y]], on=[ID, DS], how="left"))
    columns = [ID, DS, "cutoff"]
    out = pd.concat(parts, ignore_index=True)
    return out[columns + [c for c in out.columns if c not in columns]]


def _long(forecaster, df) -> tuple[pd.DataFrame, object]:
    """``df`` checked, in the long format, each series in time order; and its
    frequency."""
    covariates = forecaster.config.futr_exog + forecaster.config.hist_exog
    panel = to_panel(df, forecaster.freq, covariates, FN)
    frames = []
    for i, name in enumerate(panel.ids):
        part = {ID: name, DS: panel.ds[i], Y: panel.y[i]}
        part.update({c: panel.covariates[c][i] for c in covariates})
        frames.append(pd.DataFrame(part))
    return pd.concat(frames, ignore_index=True), panel.freq
