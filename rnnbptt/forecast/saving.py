"""One file per forecaster: its settings, scalers, parameters and training span.

Written with :func:`rnnbptt.save_checkpoint` (atomic: a failed save leaves any
earlier file as it was). The networks' parameters are the checkpoint's arrays;
everything else, float64 numbers included, is its JSON metadata (``json``
writes a float64 as the shortest text that reads back to the same number, so
the round trip is exact). A loaded forecaster predicts bitwise like the saved
one.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata

import jax
import numpy as np
import pandas as pd
from pandas.tseries.frequencies import to_offset

from ..checkpoint import (
    CheckpointError,
    load_checkpoint,
    peek_metadata,
    save_checkpoint,
)
from .config import ForecastConfig
from .panel import DS, Panel
from .tables import Standardiser

FORMAT, FORMAT_VERSION = "rnnbptt.Forecaster", 1


def _version() -> str:
    try:
        return importlib.metadata.version("rnnbptt")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _json_id(name):
    if isinstance(name, str | int) and not isinstance(name, bool):
        return name
    if isinstance(name, np.integer):
        return int(name)
    raise TypeError(
        f"`Forecaster.save`: series ids must be strings or integers to be saved, "
        f"got {type(name).__name__} {name!r}"
    )


def _json_date(date):
    return date.isoformat() if isinstance(date, pd.Timestamp) else int(date)


def save(forecaster, fitted, path) -> None:
    tails = fitted.tails
    series = []
    for i, name in enumerate(tails.ids):
        series.append(
            {
                "id": _json_id(name),
                "start": _json_date(fitted.start[i]),
                "end": _json_date(tails.ds[i][-1]),
                "y": tails.y[i].tolist(),
                "covariates": {k: v[i].tolist() for k, v in tails.covariates.items()},
                "scale": float(fitted.scale[i]),
                "mean": fitted.standard.mean[i].tolist(),
                "std": fitted.standard.std[i].tolist(),
            }
        )
    freq = tails.freq if tails.freq == 1 else tails.freq.freqstr
    metadata = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "rnnbptt": _version(),
        "config": dataclasses.asdict(forecaster.config),
        "freq": freq,
        "season": fitted.season,
        "level_steps": fitted.level_steps,
        "history": fitted.history,
        "validation_windows": fitted.validation_windows,
        "correction": fitted.correction.tolist(),
        "series": series,
    }
    save_checkpoint(path, {"params": fitted.params}, metadata)


def load(cls, path):
    from .forecaster import Fitted, network_of

    meta = peek_metadata(path)
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a Forecaster's file (use load_checkpoint)")
    if meta.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: a Forecaster file of format version "
            f"{meta.get('format_version')} (written by rnnbptt {meta.get('rnnbptt')}); "
            f"this version reads version {FORMAT_VERSION}"
        )
    config = ForecastConfig(**meta["config"])
    freq = 1 if meta["freq"] == 1 else to_offset(meta["freq"])
    network = network_of(config, freq, meta["season"])
    keys = jax.random.split(jax.random.key(0), config.n_models)
    template = jax.eval_shape(lambda: jax.vmap(network.init)(keys))
    tree, _ = load_checkpoint(path, {"params": template})
    series = meta["series"]
    forecaster = cls(**dataclasses.asdict(config))
    forecaster.freq = freq
    forecaster.fitted = Fitted(
        network,
        tree["params"],
        np.array([s["scale"] for s in series]),
        Standardiser(
            np.array([s["mean"] for s in series]).reshape(len(series), -1),
            np.array([s["std"] for s in series]).reshape(len(series), -1),
        ),
        np.array(meta["correction"]).reshape(len(config.levels), config.h),
        _tails(series, freq, config),
        [_date(s["start"], freq) for s in series],
        meta["season"],
        meta["level_steps"],
        meta["history"],
        meta["validation_windows"],
    )
    return forecaster


def _date(value, freq):
    return value if freq == 1 else pd.Timestamp(value)


def _tails(series, freq, config) -> Panel:
    ds = []
    for s in series:
        n = len(s["y"])
        if freq == 1:
            ds.append(pd.Index(np.arange(s["end"] - n + 1, s["end"] + 1), name=DS))
        else:
            end = pd.Timestamp(s["end"])
            ds.append(pd.date_range(end=end, periods=n, freq=freq).rename(DS))
    names = [*config.futr_exog, *config.hist_exog]
    return Panel(
        [s["id"] for s in series],
        [np.array(s["y"], np.float64) for s in series],
        ds,
        freq,
        {k: [np.array(s["covariates"][k], np.float64) for s in series] for k in names},
    )
