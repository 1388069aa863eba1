"""A global, probabilistic recurrent forecaster of many series.

    model = Forecaster(h=24, input_size=96, n_models=5).fit(df)
    model.predict()                 # unique_id, ds, forecast, lo-80, hi-80, ...
    model.cross_validation(df, n_windows=3)
    model.save("model.ckpt"); Forecaster.load("model.ckpt").predict()

One network (or ``n_models``, trained side by side and averaged) learns from the
windows of every series. Each window is normalised by its own level (the mean of
its last ``level_steps`` values) and its series' scale (the mean absolute
one-step change of its training span), so that series of any size, trend or
level share one model; calendar features of the dates and the user's covariates
go in beside the values. The head forecasts all ``h`` steps at once, as
quantiles that cannot cross, trained with the pinball loss; the last ``h``
steps of every series are held out to stop the training early and to widen the
intervals until they cover what they claim (``calibration.py``).
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from .._scalars import positive_int
from ..optimizers import make_optimizer
from . import training
from .backtest import backtest, cross_validation
from .calibration import corrections
from .config import ForecastConfig
from .features import calendar_count
from .network import Network, NetworkParams
from .panel import Panel, sliced, tail_panel, to_panel
from .predicting import forecast_frame
from .quantiles import quantile_levels
from .tables import Standardiser, feature_table
from .windows import make_windows, naive_scale


class Fitted(NamedTuple):
    """What fitting learned: enough to forecast from the end of every series."""

    network: Network
    params: NetworkParams  # stacked: a leading axis of n_models
    scale: np.ndarray  # [S] each series' scale
    standard: Standardiser  # covariates' per-series mean and deviation
    correction: np.ndarray  # [len(levels), h] conformal widening (normalised)
    tails: Panel  # each series' last input_size steps (what predict reads)
    start: list  # each series' first date (the training span)
    season: int
    level_steps: int
    history: list[float]  # the ensemble's validation loss by epoch
    validation_windows: int


class Forecaster:
    """A global recurrent forecaster of many series, with quantile intervals.

    Args:
        h: steps forecast, all at once (a direct multi-step head).
        input_size: past steps each window reads.
        cell: ``"lstm"``, ``"gru"``, ``"elman"`` or ``"feedforward"``.
        hidden_sizes: the encoder's hidden units per layer.
        levels: interval levels in percent; ``predict`` gives ``lo-L``/``hi-L``.
        n_models: networks trained side by side from independent seeds (one
            compiled program) and averaged.
        level_steps: a window's level is the mean of its last ``level_steps``
            values (default: one season when it fits in the window, else 1).
        val_size: the last steps of each series held out from training (default
            ``h``: one window per series); every window ending in them validates
            (early stopping, the intervals' calibration): on one or few series,
            a longer span gives both more windows to go by.
        step_size: window steps read per recurrent step (24 reads hourly data a
            day at a time: a shorter recurrence).
        season_length: default from the frequency (24 hourly, 7 daily, ...).
        futr_exog: covariate columns known in the future (``predict`` needs
            their values for the forecast steps in ``futr_df``).
        hist_exog: covariate columns known up to the forecast origin only.
        calendar: add the calendar features of the dates.
        head_size: the head's hidden units.
        epochs, steps_per_epoch, batch_size, learning_rate, clip_norm: training
            (Adam); the validation loss is checked after every epoch.
        patience: stop after this many epochs without improvement.
        truncate: backpropagate through the last ``truncate`` recurrent steps.
        backward: ``"manual"`` (hand-written BPTT) or ``"autodiff"``.
        seed: of the initialisation and the order of the windows.
    """

    def __init__(self, h: int, input_size: int, cell: str = "lstm", **settings):
        self.config = ForecastConfig(h, input_size, cell, **settings)
        self.fitted: Fitted | None = None
        self.freq = None

    def __repr__(self) -> str:
        state = "fitted" if self.fitted is not None else "not fitted"
        return f"Forecaster({self.config}, {state})"

    def clone(self) -> Forecaster:
        """A forecaster of the same settings, not fitted."""
        return type(self)(**dataclasses.asdict(self.config))

    def fit(self, df, freq=None) -> Forecaster:
        """Trains on every series of ``df`` (long format: ``unique_id``, ``ds``,
        ``y`` and the covariates; or a Series with a DatetimeIndex)."""
        cfg = self.config
        panel = to_panel(df, freq, [*cfg.futr_exog, *cfg.hist_exog], "Forecaster.fit")
        _check_lengths(panel, cfg)
        self.freq = panel.freq
        self.fitted = _train(cfg, panel)
        return self

    def predict(self, h: int | None = None, df=None, futr_df=None) -> pd.DataFrame:
        """The next ``h`` steps (at most the ``h`` trained for) of every series,
        from the end of the data it was fitted on, or of ``df`` (the same series,
        later history) when given; ``futr_df`` holds the future covariates."""
        fitted = self._require_fitted("predict")
        h = self._horizon(h)
        if df is None:
            return forecast_frame(self, fitted, fitted.tails, h, futr_df)
        cfg = self.config
        covs = [*cfg.futr_exog, *cfg.hist_exog]
        return self.forecast_after(
            to_panel(df, self.freq, covs, "Forecaster.predict"), h, futr_df
        )

    def cross_validation(self, df, n_windows: int = 1, step_size=None, refit=True):
        """Rolling-origin forecasts of the last ``n_windows`` windows of each series.

        The ``k``-th cutoff leaves ``h + step_size * (n_windows - 1 - k)`` steps
        after it; the model is fitted on what precedes each cutoff (``refit``),
        or once, on what precedes the first, and then only fed the later history.
        Returns the forecasts with ``cutoff`` (the last date seen) and ``y``.
        """
        return cross_validation(self, df, n_windows, step_size, refit)

    def backtest(self, df, n_windows: int = 1, step_size=None) -> pd.DataFrame:
        """The windows of :meth:`cross_validation`, forecast by this fitted model
        (no training) from the history of ``df`` before each cutoff: a model fitted
        on a series' past, scored on what came later."""
        self._require_fitted("backtest")
        return backtest(self, df, n_windows, step_size)

    def save(self, path) -> None:
        """Writes the whole forecaster to one file, atomically."""
        from .saving import save

        save(self, self._require_fitted("save"), path)

    @classmethod
    def load(cls, path) -> Forecaster:
        """A forecaster written by :meth:`save`; it predicts bitwise alike."""
        from .saving import load

        return load(cls, path)

    def _require_fitted(self, what: str) -> Fitted:
        if self.fitted is None:
            raise ValueError(f"`Forecaster.{what}`: call `fit` first")
        return self.fitted

    def _horizon(self, h) -> int:
        if h is None:
            return self.config.h
        h = positive_int("Forecaster.predict", "h", h)
        if h > self.config.h:
            raise ValueError(
                f"`Forecaster.predict`: `h` ({h}) is larger than the horizon the "
                f"model was trained for ({self.config.h}); fit with h={h}"
            )
        return h

    def forecast_after(self, panel: Panel, h: int, futr_df, fn=None) -> pd.DataFrame:
        """The ``h`` steps after each series of ``panel`` (checked data of series
        the model was fitted on: later history); ``predict(df=...)``'s work
        (``fn``: the caller's name for the errors)."""
        fitted = self._require_fitted("predict")
        known = fitted.tails.ids
        unknown = [i for i in panel.ids if i not in known]
        if unknown:
            raise ValueError(
                f"`{fn or 'Forecaster.predict'}`: series {unknown[:5]} of `df` were "
                "not in the data the model was fitted on (their scales are unknown)"
            )
        tails = tail_panel(panel, self.config.input_size, known)
        return forecast_frame(self, fitted, tails, h, futr_df)


def _check_lengths(panel: Panel, cfg: ForecastConfig) -> None:
    held, h = cfg.held_out, cfg.h
    what = "h" if cfg.val_size is None else "val_size"
    for name, y in zip(panel.ids, panel.y, strict=True):
        if y.size < held + h + 1:
            raise ValueError(
                f"`Forecaster.fit`: series {name!r} has {y.size} values; fitting "
                f"needs at least {what} + h + 1 = {held + h + 1} ({what} held out "
                "to validate, then one input and h targets to train on)"
            )


def network_of(cfg: ForecastConfig, freq, season: int) -> Network:
    """The architecture for these settings and this frequency."""
    count = calendar_count(freq, season) if cfg.calendar else 0
    known = count + len(cfg.futr_exog)
    step_features = 1 + known + len(cfg.hist_exog)
    return Network(
        cfg.cell,
        cfg.step_size * step_features,
        known,
        cfg.hidden_sizes,
        cfg.hidden_sizes[-1],
        cfg.head_size,
        cfg.h,
        quantile_levels(cfg.levels),
        cfg.truncate,
        cfg.step_size,
    )


def _train(cfg: ForecastConfig, panel: Panel) -> Fitted:
    season = cfg.season(panel.freq)
    level_steps = cfg.levelled(season)
    held = cfg.held_out
    train_span = sliced(panel, slice(None, -held))  # without the held-out steps
    scale = np.array([naive_scale(y) for y in train_span.y])
    covs = [*cfg.futr_exog, *cfg.hist_exog]
    columns = [train_span.covariates[c] for c in covs]
    standard = Standardiser.fit(columns, len(panel.ids))
    network = network_of(cfg, panel.freq, season)
    table = feature_table(
        panel,
        cfg.input_size,
        cfg.h,
        season,
        cfg.futr_exog,
        cfg.hist_exog,
        standard,
        calendar_on=cfg.calendar,
    )
    train = make_windows(
        train_span.y,
        cfg.input_size,
        cfg.h,
        level_steps,
        scale,
        ids=panel.ids,
        fn="Forecaster.fit",
    )
    origins = [range(y.size - held, y.size - cfg.h + 1) for y in panel.y]
    val = make_windows(panel.y, cfg.input_size, cfg.h, level_steps, scale, origins)
    params, history, val_q = _optimise(cfg, network, train, val, table)
    correction = corrections(val_q, val.targets, cfg.levels)
    return Fitted(
        network,
        params,
        scale,
        standard,
        correction,
        tail_panel(panel, cfg.input_size),
        [ds[0] for ds in panel.ds],
        season,
        level_steps,
        history,
        val.inputs.shape[0],
    )


def _optimise(cfg, network, train, val, table):
    """Trains ``n_models`` networks with early stopping on the held-out windows;
    returns the best parameters, the validation history and the ensemble's
    normalised quantiles of the held-out windows."""
    dtype = jnp.float32
    optimizer, _ = make_optimizer("adam", cfg.learning_rate, cfg.clip_norm)
    keys = jax.random.split(jax.random.key(cfg.seed), cfg.n_models)
    # one network at a time, stacked: the values of jax.vmap(network.init), from
    # draws that share their programs (rnnbptt.draws) rather than batched ones
    inits = [network.init(key, dtype) for key in keys]
    params = jax.tree.map(lambda *leaves: jnp.stack(leaves), *inits)
    opt_state = jax.vmap(optimizer.init)(params)
    train_data = training.padded(train, table, dtype)
    val_data = training.padded(val, table, dtype)
    val_idx = jnp.arange(val.inputs.shape[0], dtype=jnp.int32)  # one batch
    rng = np.random.default_rng(cfg.seed)
    best, best_loss = params, np.full(cfg.n_models, np.inf)
    history, waited = [], 0
    for _ in range(cfg.epochs):
        order = _order(rng, train.inputs.shape[0], cfg)
        params, opt_state, _ = training.train_epoch(
            network, optimizer, cfg.backward, params, opt_state, train_data, order
        )
        loss = np.asarray(training.window_losses(network, params, val_data, val_idx))
        improved = loss < best_loss
        best = training.keep_best(best, params, jnp.asarray(improved))
        best_loss = np.where(improved, loss, best_loss)
        history.append(float(loss.mean()))
        waited = 0 if improved.any() else waited + 1
        if waited >= cfg.patience:
            break
    q = training.window_quantiles(network, best, val_data, val_idx)
    return best, history, np.asarray(q, np.float64).mean(axis=0)


def _order(rng, windows: int, cfg) -> jax.Array:
    """Each network's batches [n_models, steps_per_epoch, batch_size]: every
    window once before any twice, in its own order."""
    need = cfg.steps_per_epoch * cfg.batch_size
    rows = []
    for _ in range(cfg.n_models):
        draws = np.concatenate(
            [rng.permutation(windows) for _ in range(-(-need // windows))]
        )[:need]
        rows.append(draws.reshape(cfg.steps_per_epoch, cfg.batch_size))
    return jnp.asarray(np.stack(rows), jnp.int32)
