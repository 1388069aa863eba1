"""Quantile outputs that cannot cross, and the pinball loss that trains them.

A forecaster with interval levels (80, 95) predicts the quantiles
(0.025, 0.1, 0.5, 0.9, 0.975) of each step. The network's raw outputs are not
the quantiles themselves: :func:`monotone_quantiles` takes the middle one as the
median and builds the others outwards by adding (above) or subtracting (below)
softplus increments, so no quantile is below the one before it whatever the
parameters: no crossing, by construction (in exact arithmetic each is strictly
above; in floating point a tiny increment can round away, never below).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ..losses import _masked_mean


def quantile_levels(levels) -> tuple[float, ...]:
    """The quantiles of central intervals at ``levels`` percent, and the median.

    Example:
        >>> quantile_levels((80, 95))
        (0.025, 0.1, 0.5, 0.9, 0.975)
    """
    fn = "quantile_levels"
    levels = tuple(levels)
    for level in levels:
        if isinstance(level, bool) or not isinstance(level, (int, float, np.number)):
            raise TypeError(f"`{fn}`: a level must be a number, got {level!r}")
        if not 0 < level < 100:
            raise ValueError(f"`{fn}`: levels must be in (0, 100) percent, got {level}")
    if len(set(levels)) != len(levels):
        raise ValueError(f"`{fn}`: levels must be distinct, got {levels}")
    tails = [round((100 - float(level)) / 200, 12) for level in levels]
    return tuple(sorted([*tails, 0.5, *(round(1 - t, 12) for t in tails)]))


def monotone_quantiles(raw: jax.Array) -> jax.Array:
    """Non-crossing quantiles [..., Q] from unconstrained outputs [..., Q] (Q odd).

    ``q[mid] = raw[mid]``; ``q[mid + k] = q[mid + k - 1] + softplus(raw[mid + k])``
    and ``q[mid - k] = q[mid - k + 1] - softplus(raw[mid - k])``.
    """
    count = raw.shape[-1]
    if count % 2 != 1:
        raise ValueError(
            f"`monotone_quantiles`: the last axis must hold an odd number of "
            f"quantiles (the median in the middle), got {count}"
        )
    mid = count // 2
    median = raw[..., mid : mid + 1]
    up = median + jnp.cumsum(jax.nn.softplus(raw[..., mid + 1 :]), axis=-1)
    down = median - jnp.cumsum(jax.nn.softplus(raw[..., :mid][..., ::-1]), axis=-1)
    return jnp.concatenate([down[..., ::-1], median, up], axis=-1)


def pinball_loss(quantiles: jax.Array, targets: jax.Array, levels, mask=None):
    """The mean pinball (quantile) loss of predicted ``quantiles`` [..., Q] at the
    quantile ``levels`` (Q numbers in (0, 1)) against ``targets`` [...].

    Per quantile ``tau`` and target ``y``: ``max(tau (y - q), (tau - 1) (y - q))``,
    minimised in expectation by the ``tau``-quantile of ``y``. With ``mask``
    (bool, the shape of ``targets``), padded entries count for nothing.
    """
    fn = "pinball_loss"
    levels = jnp.asarray(levels, quantiles.dtype)
    if levels.ndim != 1 or levels.shape[0] != quantiles.shape[-1]:
        raise ValueError(
            f"`{fn}`: `levels` must be {quantiles.shape[-1]} numbers, one per "
            f"quantile of the last axis, got shape {levels.shape}"
        )
    if targets.shape != quantiles.shape[:-1]:
        raise ValueError(
            f"`{fn}`: `targets` must have the shape of `quantiles` without its "
            f"last axis {quantiles.shape[:-1]}, got {targets.shape}"
        )
    if mask is not None and (mask.shape != targets.shape or mask.dtype != bool):
        raise ValueError(
            f"`{fn}`: `mask` must be bool of shape {targets.shape}, got "
            f"{mask.dtype} {mask.shape}"
        )
    error = targets[..., None] - quantiles
    loss = jnp.maximum(levels * error, (levels - 1) * error)
    return _masked_mean(jnp.mean(loss, axis=-1), mask)
