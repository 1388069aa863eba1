"""Conformal widening of quantile intervals (conformalised quantile regression).

The pinball loss trains quantiles that are right on average over the training
windows; they are often too narrow on new ones. On held-out windows, for each
interval level ``a`` and forecast step, the score of a window is how far its
target lies outside the interval, ``max(lo - y, y - hi)`` (negative inside).
The interval widened on both sides by the ``ceil((n + 1) a) / n`` empirical
quantile of the ``n`` scores covers a new exchangeable window with probability at
least ``a`` (Romano, Patterson and Candes, 2019). With fewer than
``1 / (1 - a) - 1`` windows that quantile does not exist and the level keeps its
raw quantiles (``corrections`` is 0 there and :func:`calibrated` says so).
"""

from __future__ import annotations

import math

import numpy as np


def corrections(quantiles: np.ndarray, targets: np.ndarray, levels) -> np.ndarray:
    """[len(levels), h] how much to widen each interval, per forecast step.

    Args:
        quantiles: [n, h, Q] held-out windows' quantiles, the intervals' bounds
            paired from the outside in (``quantile_levels`` order).
        targets: [n, h] what came (NaN where absent).
        levels: interval levels in percent, in the order ``quantile_levels``
            pairs them (widest first).
    """
    count = quantiles.shape[-1]
    out = np.zeros((len(levels), quantiles.shape[1]))
    for j, level in enumerate(sorted(levels, reverse=True)):
        lo, hi = quantiles[..., j], quantiles[..., count - 1 - j]
        scores = np.maximum(lo - targets, targets - hi)
        for step in range(quantiles.shape[1]):
            s = scores[:, step][~np.isnan(scores[:, step])]
            rank = math.ceil((s.size + 1) * level / 100)
            if rank <= s.size:
                out[j, step] = np.sort(s)[rank - 1]
    return out


def calibrated(windows: int, level: float) -> bool:
    """Whether ``windows`` held-out windows can calibrate a ``level`` % interval."""
    return math.ceil((windows + 1) * level / 100) <= windows


def widen(quantiles: np.ndarray, correction: np.ndarray) -> np.ndarray:
    """``quantiles`` [..., h, Q] with interval j widened by ``correction[j]`` [h]
    on both sides, kept ordered: no bound crosses the median or a narrower
    interval's bound."""
    q = np.array(quantiles, dtype=np.float64)
    count, mid = q.shape[-1], q.shape[-1] // 2
    for j in range(correction.shape[0]):
        q[..., j] -= correction[j]
        q[..., count - 1 - j] += correction[j]
    # outwards from the median, each bound at least as far out as the one inside
    for j in range(mid - 1, -1, -1):
        q[..., j] = np.minimum(q[..., j], q[..., j + 1])
        q[..., count - 1 - j] = np.maximum(q[..., count - 1 - j], q[..., count - 2 - j])
    return q
