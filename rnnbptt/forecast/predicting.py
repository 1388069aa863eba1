"""From a fitted forecaster to a DataFrame of dated forecasts with intervals."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pandas as pd

from . import training
from .calibration import widen
from .panel import DS, ID, Panel
from .quantiles import quantile_levels
from .tables import Standardiser, feature_table
from .windows import make_windows

FN = "Forecaster.predict"


def forecast_frame(forecaster, fitted, tails: Panel, h: int, futr_df) -> pd.DataFrame:
    """``unique_id, ds, forecast, lo-L, hi-L...`` for the ``h`` steps after each
    series of ``tails`` (ids known to ``fitted``)."""
    cfg = forecaster.config
    where = {name: i for i, name in enumerate(fitted.tails.ids)}
    rows = [where[name] for name in tails.ids]
    windows = _windows(cfg, fitted, tails, rows)
    q = normalised_quantiles(forecaster, fitted, tails, rows, windows, futr_df)
    values = windows.denormalise(widen(q, fitted.correction)[:, :h])  # [S, h, Q]
    return quantile_frame(tails, values, h, cfg.levels)


def normalised_quantiles(forecaster, fitted, tails, rows, windows, futr_df):
    """The ensemble's normalised quantiles [S, h_trained, Q] of ``windows`` (one
    at each tail's end)."""
    cfg = forecaster.config
    future = _future_covariates(cfg, tails, futr_df)
    standard = Standardiser(fitted.standard.mean[rows], fitted.standard.std[rows])
    table = feature_table(
        tails,
        cfg.input_size,
        cfg.h,
        fitted.season,
        cfg.futr_exog,
        cfg.hist_exog,
        standard,
        future,
        calendar_on=cfg.calendar,
    )
    data = training.padded(windows, table, jnp.float32)
    idx = jnp.arange(len(rows), dtype=jnp.int32)
    q = training.window_quantiles(fitted.network, fitted.params, data, idx)
    return np.asarray(q, np.float64).mean(axis=0)


def _windows(cfg, fitted, tails: Panel, rows):
    origins = [range(y.size, y.size + 1) for y in tails.y]
    return make_windows(
        tails.y,
        cfg.input_size,
        cfg.h,
        fitted.level_steps,
        fitted.scale[rows],
        origins,
        tails.ids,
        FN,
    )


def _future_covariates(cfg, tails: Panel, futr_df):
    """Per series, ``name -> [h]`` values of the future covariates, checked."""
    if not cfg.futr_exog:
        return None
    if futr_df is None:
        raise ValueError(
            f"`{FN}`: the model has future covariates {list(cfg.futr_exog)}: "
            "pass `futr_df` with their values for the forecast steps (columns "
            f"{ID!r}, {DS!r} and those)"
        )
    missing = [c for c in (ID, DS, *cfg.futr_exog) if c not in futr_df.columns]
    if missing:
        raise ValueError(f"`{FN}`: `futr_df` lacks the columns {missing}")
    indexed = futr_df.set_index([ID, DS])
    out = []
    for i, name in enumerate(tails.ids):
        dates = tails.future(i, cfg.h)
        wanted = pd.MultiIndex.from_arrays([[name] * len(dates), dates])
        absent = ~wanted.isin(indexed.index)
        if absent.any():
            raise ValueError(
                f"`{FN}`: `futr_df` has no row for series {name!r} at "
                f"{DS}={dates[int(np.flatnonzero(absent)[0])]} (it needs all "
                f"{cfg.h} steps after the series' end)"
            )
        picked = indexed.loc[wanted]
        values = {}
        for column in cfg.futr_exog:
            x = pd.to_numeric(picked[column], errors="coerce").to_numpy(np.float64)
            if not np.isfinite(x).all():
                k = int(np.flatnonzero(~np.isfinite(x))[0])
                raise ValueError(
                    f"`{FN}`: `futr_df` column {column!r} must be finite; series "
                    f"{name!r} has {picked[column].iloc[k]!r} at {DS}={dates[k]}"
                )
            values[column] = x
        out.append(values)
    return out


def quantile_frame(tails: Panel, values: np.ndarray, h: int, levels) -> pd.DataFrame:
    """``unique_id, ds, forecast, lo-L, hi-L...`` of quantiles ``values`` [S, h,
    Q] (``quantile_levels(levels)``) for the ``h`` steps after each series."""
    quantiles = quantile_levels(levels)
    count, mid = len(quantiles), len(quantiles) // 2
    ids = np.repeat(np.asarray(tails.ids, dtype=object), h)
    ds = [tails.future(i, h) for i in range(len(tails.ids))]
    frame = {ID: ids, DS: np.concatenate([np.asarray(d) for d in ds])}
    frame["forecast"] = values[..., mid].reshape(-1)
    for level in levels:
        tail = round((100 - level) / 200, 12)
        j = quantiles.index(tail)
        name = f"{level:g}"
        frame[f"lo-{name}"] = values[..., j].reshape(-1)
        frame[f"hi-{name}"] = values[..., count - 1 - j].reshape(-1)
    return pd.DataFrame(frame)
