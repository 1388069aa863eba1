"""The compiled programs of a forecaster: one epoch, the validation loss, the quantiles.

Every program takes the ``n_models`` networks' parameters stacked along a leading
axis and maps over it (``jax.vmap``); the windows are shared, each network reads
them in its own order. Windows are gathered inside the program from
:class:`WindowData` (``tables.py``), so a batch is a gather, not a host copy.
The arrays' leading sizes are rounded up to powers of two (:func:`padded`), so
that another data set of the same architecture usually finds its programs
already compiled.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from .network import Network, NetworkParams


class WindowData(NamedTuple):
    """Windows as device arrays: values, where they are valid, what follows."""

    z: jax.Array  # [W, T] normalised inputs, 0 at padding
    mask: jax.Array  # [W, T] bool
    targets: jax.Array  # [W, h] normalised targets, NaN where unknown
    series: jax.Array  # [W] int32: the row of ``table`` each window reads
    origin: jax.Array  # [W] int32: the first forecast step, in its series
    table: jax.Array  # [S, T + L + h, F] features by step (tables.feature_table)


def _bucket(n: int) -> int:
    return 1 << max(0, int(n) - 1).bit_length()


def padded(windows, table: np.ndarray, dtype) -> WindowData:
    """Device arrays of ``windows`` (:class:`~rnnbptt.forecast.Windows`) and
    ``table``, their leading sizes rounded up to powers of two (the padding rows
    are never read: orders index the real windows only)."""

    def grow(x: np.ndarray, n: int, fill=0):
        out = np.full((n, *x.shape[1:]), fill, x.dtype)
        out[: x.shape[0]] = x
        return out

    count = _bucket(windows.inputs.shape[0])
    rows = _bucket(table.shape[1])
    table = np.concatenate(
        [table, np.zeros((table.shape[0], rows - table.shape[1], table.shape[2]))], 1
    )
    return WindowData(
        jnp.asarray(grow(windows.inputs, count), dtype),
        jnp.asarray(grow(windows.mask, count, False)),
        jnp.asarray(grow(windows.targets, count, np.nan), dtype),
        jnp.asarray(grow(windows.series, count), jnp.int32),
        jnp.asarray(grow(windows.origin, count), jnp.int32),
        jnp.asarray(grow(table, _bucket(table.shape[0])), dtype),
    )


def _gather(network: Network, data: WindowData, idx: jax.Array):
    """The batch of windows ``idx`` [B]: (past, mask, future, targets)."""
    steps, h = data.z.shape[1], network.h
    at = data.origin[idx][:, None] + jnp.arange(-steps, h) + steps  # table rows
    rows = data.table[data.series[idx][:, None], at]  # [B, T + h, F]
    past = jnp.concatenate([data.z[idx][..., None], rows[:, :steps]], axis=-1)
    mask = data.mask[idx]
    past = jnp.where(mask[..., None], past, 0)
    future = rows[:, steps:, : network.future_features]
    past, mask = _chunked(past, mask, network.step_size)
    return past, mask, future, data.targets[idx]


def _chunked(past, mask, size: int):
    """``size`` consecutive steps as one recurrent step: [B, T/size, size * P]."""
    if size == 1:
        return past, mask
    b, t, p = past.shape
    return (
        past.reshape(b, t // size, size * p),
        mask.reshape(b, t // size, size).any(axis=-1),
    )


@functools.partial(jax.jit, static_argnames=("network", "optimizer", "backward"))
def train_epoch(network, optimizer, backward, params, opt_state, data, order):
    """Every network's steps over its batches ``order`` [M, steps, B]; returns the
    new parameters, optimizer states and each network's mean training loss [M]."""

    def one(p, s, batches):
        def step(carry, idx):
            p, s = carry
            loss, grad = jax.value_and_grad(network.loss)(
                p, *_gather(network, data, idx), backward=backward
            )
            updates, s = optimizer.update(grad, s, p)
            return (optax.apply_updates(p, updates), s), loss

        (p, s), losses = jax.lax.scan(step, (p, s), batches)
        return p, s, losses.mean()

    return jax.vmap(one)(params, opt_state, order)


@functools.partial(jax.jit, static_argnames=("network",))
def window_losses(network, params, data, idx):
    """Each network's pinball loss [M] on the windows ``idx`` [B]."""
    batch = _gather(network, data, idx)
    return jax.vmap(lambda p: network.loss(p, *batch))(params)


@functools.partial(jax.jit, static_argnames=("network",))
def window_quantiles(network, params, data, idx):
    """Each network's normalised quantiles [M, B, h, Q] of the windows ``idx``."""
    past, mask, future, _ = _gather(network, data, idx)
    return jax.vmap(lambda p: network.quantiles_of(p, past, mask, future))(params)


@jax.jit
def keep_best(best: NetworkParams, params: NetworkParams, improved: jax.Array):
    """Per network (``improved`` [M] bool), the new parameters or the best so far."""

    def pick(b, p):
        return jnp.where(improved.reshape((-1,) + (1,) * (p.ndim - 1)), p, b)

    return jax.tree.map(pick, best, params)
