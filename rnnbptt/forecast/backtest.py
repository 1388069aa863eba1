"""Rolling-origin backtests: forecasts from several cutoffs beside what came."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .._scalars import boolean, positive_int
from .panel import DS, ID, Panel, Y, sliced, to_panel


def cross_validation(forecaster, df, n_windows, step_size, refit) -> pd.DataFrame:
    """See :meth:`Forecaster.cross_validation`; ``forecaster`` is a ``Forecaster``
    or a ``Baseline`` (``clone``, ``fit``, ``forecast_after``)."""
    fn = f"{type(forecaster).__name__}.cross_validation"
    refit = boolean(fn, "refit", refit)
    frame, panel, afters = _prepared(forecaster, df, n_windows, step_size, fn)
    position, size = _positions(frame)
    model, parts = None, []
    for after in afters:
        if model is None or refit:
            seen = frame[position < size - after]
            model = forecaster.clone().fit(seen, freq=panel.freq)
        parts.append(_window(model, frame, panel, (position, size), after, fn))
    return _joined(parts)


def backtest(model, df, n_windows, step_size) -> pd.DataFrame:
    """See :meth:`Forecaster.backtest`: ``cross_validation``'s windows, forecast
    by the fitted ``model`` from the history before each cutoff."""
    fn = f"{type(model).__name__}.backtest"
    frame, panel, afters = _prepared(model, df, n_windows, step_size, fn)
    where = _positions(frame)
    return _joined([_window(model, frame, panel, where, after, fn) for after in afters])


def _prepared(forecaster, df, n_windows, step_size, fn):
    """``df`` checked, as a frame in time order and a panel; and the steps each
    cutoff leaves after it, the earliest cutoff first."""
    h = forecaster.config.h
    n_windows = positive_int(fn, "n_windows", n_windows)
    step = h if step_size is None else positive_int(fn, "step_size", step_size)
    frame, panel = _long(forecaster, df, fn)
    return frame, panel, [h + step * (n_windows - 1 - k) for k in range(n_windows)]


def _window(model, frame, panel, where, after: int, fn: str) -> pd.DataFrame:
    """The forecasts from the cutoff ``after`` steps before each series' end,
    with ``cutoff`` and the values that came (``y``)."""
    h = model.config.h
    position, size = where
    seen = _before_end(panel, after)
    if not seen.ids:
        raise ValueError(
            f"`{fn}`: a cutoff {after} steps before the end is before the start "
            f"of every series (the longest has {max(size)} steps); use fewer "
            "`n_windows` or a smaller `step_size`"
        )
    future = frame[(position >= size - after) & (position < size - after + h)]
    forecast = model.forecast_after(seen, h, future, fn)
    cutoff = pd.Series([d[-1] for d in seen.ds], index=seen.ids, name="cutoff")
    forecast = forecast.merge(cutoff, left_on=ID, right_index=True)
    return forecast.merge(future[[ID, DS, Y]], on=[ID, DS], how="left")


def _joined(parts: list[pd.DataFrame]) -> pd.DataFrame:
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


def _long(forecaster, df, fn: str) -> tuple[pd.DataFrame, Panel]:
    """``df`` checked, in the long format, each series in time order; and its
    panel."""
    covariates = forecaster.config.futr_exog + forecaster.config.hist_exog
    panel = to_panel(df, forecaster.freq, covariates, fn)
    frames = []
    for i, name in enumerate(panel.ids):
        part = {ID: name, DS: panel.ds[i], Y: panel.y[i]}
        part.update({c: panel.covariates[c][i] for c in covariates})
        frames.append(pd.DataFrame(part))
    return pd.concat(frames, ignore_index=True), panel
