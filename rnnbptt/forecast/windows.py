"""Windows of many series for a global model, each normalised by its own level.

A window is ``input_size`` past values and the ``h`` that follow. Its values go
into the network as ``(x - level) / scale``: ``level`` the mean of the window's
last ``level_steps`` inputs (so a trend or a level shift leaves the network's
inputs alike), ``scale`` a per-series constant fitted on the training span only
(the mean absolute one-step change, as MASE's naive scale; 1 for a constant
series). The forecast goes back as ``level + scale * z``. A series shorter than
``input_size + h`` gives windows whose first steps are padding, masked out
(the recurrence skips them); one shorter than ``h + 1`` cannot be windowed.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class Windows(NamedTuple):
    """Normalised windows of many series, with what turns them back."""

    inputs: np.ndarray  # [N, input_size] float64, (x - level) / scale, 0 at padding
    mask: np.ndarray  # [N, input_size] bool, False at the padding before a start
    targets: np.ndarray  # [N, h] float64, (y - level) / scale (NaN where absent)
    level: np.ndarray  # [N] float64
    scale: np.ndarray  # [N] float64
    series: np.ndarray  # [N] int: which series each window comes from
    origin: np.ndarray  # [N] int: the index in its series of the first target step

    def denormalise(self, z: np.ndarray) -> np.ndarray:
        """Normalised forecasts [N, h, ...] back in the series' units."""
        shape = (-1,) + (1,) * (np.ndim(z) - 1)
        return self.level.reshape(shape) + self.scale.reshape(shape) * z


def naive_scale(y: np.ndarray) -> float:
    """The mean absolute one-step change of ``y`` (1.0 where it is 0 or undefined)."""
    change = np.mean(np.abs(np.diff(y))) if y.size > 1 else 0.0
    return float(change) if change > 0 else 1.0


def make_windows(
    series: list[np.ndarray],
    input_size: int,
    h: int,
    level_steps: int,
    scales: np.ndarray,
    origins: list[range] | None = None,
    ids=None,
    fn: str = "make_windows",
) -> Windows:
    """Windows of each series at each origin (the first forecast step's index).

    Args:
        series: each [T_i] float64, oldest first.
        input_size: past values a window holds (left-padded where the series
            starts later).
        h: the steps forecast.
        level_steps: the last inputs whose mean is the window's level
            (at most ``input_size``).
        scales: [len(series)] each series' scale (:func:`naive_scale` of its
            training span).
        origins: per series, the origins to cut; default every origin whose
            ``h`` targets all lie in the series, from the first with one input.
        ids: the series' names, for the errors.

    Raises:
        ValueError: naming the series, if one has fewer than ``h + 1`` values.
    """
    ids = list(range(len(series))) if ids is None else list(ids)
    if not 1 <= level_steps <= input_size:
        raise ValueError(
            f"`{fn}`: `level_steps` must be in 1..input_size={input_size}, got "
            f"{level_steps}"
        )
    parts = []
    for i, y in enumerate(series):
        if origins is None and y.size < h + 1:
            raise ValueError(
                f"`{fn}`: series {ids[i]!r} has {y.size} values; a window needs "
                f"at least h + 1 = {h + 1} (one input and h targets)"
            )
        cut = np.asarray(range(1, y.size - h + 1) if origins is None else origins[i])
        if cut.size and (cut.min() < 1 or cut.max() > y.size):
            raise ValueError(
                f"`{fn}`: origins of series {ids[i]!r} must be in 1..{y.size} (at "
                f"least one input, at most the step after its end), got "
                f"{cut.min()}..{cut.max()}"
            )
        parts.append((i, y, cut.astype(int)))
    return _cut(parts, input_size, h, level_steps, np.asarray(scales, np.float64))


def _cut(parts, input_size: int, h: int, level_steps: int, scales) -> Windows:
    inputs, targets, series, origin = [], [], [], []
    for i, y, cut in parts:
        padded = np.concatenate([np.full(input_size, np.nan), y, np.full(h, np.nan)])
        # padded[k] is y[k - input_size]: the window at origin o is
        # y[o - input_size : o] then y[o : o + h]
        rows = np.lib.stride_tricks.sliding_window_view(padded, input_size + h)
        picked = rows[cut]
        inputs.append(picked[:, :input_size])
        targets.append(picked[:, input_size:])
        series.append(np.full(cut.size, i))
        origin.append(cut)
    x = np.concatenate(inputs) if inputs else np.empty((0, input_size))
    y = np.concatenate(targets) if targets else np.empty((0, h))
    series = np.concatenate(series) if series else np.empty(0, int)
    mask = ~np.isnan(x)
    level = _level(np.where(mask, x, 0.0), mask, level_steps)
    scale = scales[series]
    z = (x - level[:, None]) / scale[:, None]
    return Windows(
        np.where(mask, z, 0.0),
        mask,
        (y - level[:, None]) / scale[:, None],
        level,
        scale,
        series,
        np.concatenate(origin) if origin else np.empty(0, int),
    )


def _level(x: np.ndarray, mask: np.ndarray, level_steps: int) -> np.ndarray:
    """The mean of each row's last ``level_steps`` valid inputs (at least one: an
    origin has one input, and the padding is on the left)."""
    recent = mask[:, -level_steps:]
    total = np.where(recent, x[:, -level_steps:], 0.0).sum(axis=1)
    return total / np.maximum(recent.sum(axis=1), 1)
