"""Rolling-origin backtests: forecasts from several cutoffs beside what came."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .._scalars import boolean, positive_int
from .panel import DS, ID, Panel, Y, sliced, to_panel

FN = "Forecaster.cross_validation"


def cross_validation(forecaster, df, n_windows, step_size, refit) -> pd.DataFrame:
    """See :meth:`Forecaster.cross_validation`; ``forecaster`` is one of
    ``Forecaster`` or ``Baseline`` (``clone``, ``fit``, ``forecast_after``)."""
    h = forecaster.config.h
    n_windows = positive_int(FN, "n_windows", n_windows)
    step = h if step_size is None else positive_int(FN, "step_size", step_size)
    refit = boolean(FN, "refit", refit)
    frame, panel = _long(forecaster, df)
    position, size = _positions(frame)
    model, parts = None, []
    for k in range(n_windows):
        after = h + step * (n_windows - 1 - k)
        before = position < size - after
        if model is None or refit:
            model = forecaster.clone().fit(frame[before], freq=panel.freq)
        seen = _before_end(panel, after)
        future = frame[~before & (position < size - after + h)]
        forecast = model.forecast_after(seen, h, future)
        cutoff = pd.Series([d[-1] for d in seen.ds], index=seen.ids, name="cutoff")
        forecast = forecast.merge(cutoff, left_on=ID, right_index=True)
        parts.append(forecast.merge(future[[ID, DS, Y]], on=[ID, DS], how="left"))
    columns = [ID, DS, "cutoff"]
    out = pd.concat(parts, ignore_index=True)
    return out[columns + [c for c in out.columns if c not in columns]]


def _positions(df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Each row's position in its series, and its series' length."""
    groups = df.groupby(ID, sort=False)
    return groups.cumcount().to_numpy(), groups[ID].transform("size").to_numpy()


def _before_end(panel: Panel, steps: int) -> Panel:
    """Each series without its last ``steps`` values (series left empty are
    dropped: a cutoff before their start)."""
    index = [i for i, y in enumerate(panel.y) if y.size > steps]
    return sliced(panel, slice(None, -steps), index)


def _long(forecaster, df) -> tuple[pd.DataFrame, Panel]:
    """``df`` checked, in the long format, each series in time order; and its
    panel."""
    covariates = forecaster.config.futr_exog + forecaster.config.hist_exog
    panel = to_panel(df, forecaster.freq, covariates, FN)
    frames = []
    for i, name in enumerate(panel.ids):
        part = {ID: name, DS: panel.ds[i], Y: panel.y[i]}
        part.update({c: panel.covariates[c][i] for c in covariates})
        frames.append(pd.DataFrame(part))
    return pd.concat(frames, ignore_index=True), panel
