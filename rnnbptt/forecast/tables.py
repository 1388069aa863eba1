"""Each series' features by step, and how windows read them.

A window at origin ``o`` (the first step forecast) of input size ``T`` reads the
features of steps ``o - T .. o - 1`` (the past) and ``o .. o + h - 1`` (the
future). The features of a series are held as one table of rows
``-T .. L + h - 1`` (``L`` its length; rows before the start and after the known
end are zeros, masked or unknown), so that any window is one gather, inside the
compiled program, instead of a copy per window.

Columns: the calendar (known in the future), then the future covariates
(``futr_exog``, known in the future: given for the forecast steps at predict
time), then the past covariates (``hist_exog``, known only up to the origin).
Covariates are standardised per series with the mean and deviation of its
training span.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .features import calendar, calendar_count


class Standardiser(NamedTuple):
    """Per series and covariate: ``(x - mean) / std`` (std 1 for a constant)."""

    mean: np.ndarray  # [S, K]
    std: np.ndarray  # [S, K]

    @classmethod
    def fit(cls, columns: list[list[np.ndarray]], count: int) -> Standardiser:
        """``columns[k][s]`` is covariate k of series s (of ``count``) on its
        training span."""
        mean = np.zeros((count, len(columns)))
        std = np.ones((count, len(columns)))
        for k, column in enumerate(columns):
            for s, x in enumerate(column):
                mean[s, k] = x.mean()
                spread = x.std()
                std[s, k] = spread if spread > 0 else 1.0
        return cls(mean, std)


def feature_table(
    panel,
    input_size: int,
    h: int,
    season: int,
    futr,
    hist,
    standard,
    future=None,
    calendar_on: bool = True,
) -> np.ndarray:
    """[S, input_size + max L + h, F] the features of every series' steps.

    Args:
        panel: the series (:class:`~rnnbptt.forecast.Panel`).
        futr, hist: names of the future and past covariates.
        standard: their :class:`Standardiser`, columns ``futr`` then ``hist``.
        future: per series, a dict ``name -> [h]`` of the future covariates for
            the ``h`` steps after its end (None: zeros, for training tables).
        calendar_on: whether the calendar's columns come first (else none).
    """
    lengths = [y.size for y in panel.y]
    rows = input_size + max(lengths) + h
    count = calendar_count(panel.freq, season) if calendar_on else 0
    table = np.zeros((len(lengths), rows, count + len(futr) + len(hist)))
    for s, length in enumerate(lengths):
        dates = panel.ds[s].append(panel.future(s, h))
        block = table[s, input_size : input_size + length + h]
        if count:
            block[:, :count] = calendar(dates, panel.freq, season)
        for k, name in enumerate([*futr, *hist]):
            mean, std = standard.mean[s, k], standard.std[s, k]
            z = np.zeros(length + h)  # unknown future: 0, the series' mean
            z[:length] = (panel.covariates[name][s] - mean) / std
            if future is not None and k < len(futr):
                z[length:] = (future[s][name] - mean) / std
            block[:, count + k] = z
    return table
