"""Truncated BPTT(k1, k2): update every k1 steps, backpropagate k2 steps.

The general form of Williams and Peng (1990): the forward pass runs continuously
through the whole sequence, carrying the state; every k1 steps the loss on those
k1 outputs is backpropagated k2 steps into the past (k2 >= k1) and the
parameters are updated. k1 = k2 is the common chunked form (the carry is cut,
``stop_gradient``, at each chunk boundary); k1 = k2 = T is full BPTT.

How it runs: the sequence is padded on the left with k2 - k1 masked steps (they
leave the initial carry unchanged) and on the right up to a multiple of k1.
Chunk j then reads the window ``[j*k1, j*k1 + k2)`` of the padded sequence: its
first k1 steps carry the state forward to the next window's start, its last k1
outputs are chunk j's loss. One ``lax.scan`` over the chunks (``chunk_update``),
so the compiled program does not grow with the number of chunks.
"""

from __future__ import annotations

import dataclasses
import numbers
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from ._scalars import positive_int
from .losses import count_dtype, get_loss
from .step import StepConfig, apply_update, check_batch_targets, valid_count

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class TBPTT:
    """Truncated BPTT(k1, k2): update every ``k1`` steps, backpropagate ``k2`` steps.

    Args:
        k1: steps between parameter updates (the chunk of outputs in each loss).
        k2: steps the gradient flows back, ``k2 >= k1``; defaults to ``k1``.
    """

    k1: int
    k2: int | None = None

    def __post_init__(self):
        if self.k2 is None:
            object.__setattr__(self, "k2", self.k1)
        for name in ("k1", "k2"):
            object.__setattr__(
                self, name, positive_int("TBPTT", name, getattr(self, name))
            )
        if self.k2 < self.k1:
            raise ValueError(
                f"TBPTT: `k2` (steps backpropagated) must be >= `k1` (steps between "
                f"updates), got k1={self.k1}, k2={self.k2}"
            )

    def chunks(self, steps: int) -> int:
        return -(-steps // self.k1)


def as_tbptt(fn: str, tbptt) -> TBPTT | None:
    """None (full BPTT), ``k``, ``(k1, k2)`` or a ``TBPTT``, as a ``TBPTT``; an
    integer is any, Python's or NumPy's, as sizes are everywhere."""
    if tbptt is None or isinstance(tbptt, TBPTT):
        return tbptt
    if isinstance(tbptt, numbers.Integral) and not isinstance(tbptt, bool):
        return TBPTT(tbptt)
    if isinstance(tbptt, tuple) and len(tbptt) == 2:
        return TBPTT(*tbptt)
    raise TypeError(f"{fn}: `tbptt` must be None, k, (k1, k2) or TBPTT, got {tbptt!r}")


def check_model(fn: str, model) -> None:
    """Truncated BPTT needs a causal model with an output at every step."""
    if model.bidirectional:
        raise ValueError(
            f"{fn}: truncated BPTT needs a causal model; a bidirectional layer "
            "reads the future"
        )
    if model.head == "many_to_one":
        raise ValueError(
            f"{fn}: truncated BPTT needs an output at every step "
            "(head='many_to_many'); a many-to-one model has one loss per sequence"
        )


class Padded(NamedTuple):
    """A batch padded for the chunk windows (see the module docstring)."""

    xs: Array  # [B, k2 - k1 + n k1, D]
    mask: Array  # [B, k2 - k1 + n k1]
    ys: Array  # [B, n k1, ...]
    loss_mask: Array  # [B, n k1]


def pad(tbptt: TBPTT, xs, ys, mask) -> Padded:
    B, T, _ = xs.shape
    k1, k2 = tbptt.k1, tbptt.k2
    right = tbptt.chunks(T) * k1 - T
    valid = jnp.ones((B, T), bool) if mask is None else mask
    return Padded(
        jnp.pad(xs, ((0, 0), (k2 - k1, right), (0, 0))),
        jnp.pad(valid, ((0, 0), (k2 - k1, right))),
        jnp.pad(ys, ((0, 0), (0, right)) + ((0, 0),) * (ys.ndim - 2)),
        jnp.pad(valid, ((0, 0), (0, right))),
    )


def chunk_loss(config: StepConfig, tbptt: TBPTT, padded: Padded, params, carry, j, key):
    """Chunk j's loss, and (carry after k1 steps, carry at the window's end, count)."""
    k1, k2 = tbptt.k1, tbptt.k2
    time_slice = lambda a, size: jax.lax.dynamic_slice_in_dim(a, j * k1, size, 1)  # noqa: E731
    xw, mw = time_slice(padded.xs, k2), time_slice(padded.mask, k2)
    yc, mc = time_slice(padded.ys, k1), time_slice(padded.loss_mask, k1)
    out, carry_next = config.apply(params, xw[:, :k1], mw[:, :k1], carry, key)
    carry_end = carry_next  # the state at the window's end
    if k2 > k1:
        # a key of its own: with k2 = 2 k1 the shapes are the same, and one key
        # would draw the same dropout masks for both halves
        key_b = None if key is None else jax.random.fold_in(key, 1)
        out_b, carry_end = config.apply(
            params, xw[:, k1:], mw[:, k1:], carry_next, key_b
        )
        out = jnp.concatenate([out, out_b], axis=1)
    value = get_loss(config.loss)(out[:, -k1:], yc, mc)
    aux = jax.lax.stop_gradient((carry_next, carry_end))
    return value, (*aux, jnp.sum(mc))


class ChunkState(NamedTuple):
    """What the scan over chunks carries."""

    params: object
    opt_state: object
    carry: object  # the state at the next window's start
    ok: Array  # every update so far finite
    carry_end: object  # the state at the end of the last window


def chunk_update(config: StepConfig, tbptt: TBPTT, padded: Padded, key, state, j):
    """One chunk: its gradient, then the update (skipped once anything failed)."""
    chunk_key = None if key is None else jax.random.fold_in(key, j)
    grad_fn = jax.value_and_grad(chunk_loss, argnums=3, has_aux=True)
    (value, (carry_next, carry_end, count)), grads = grad_fn(
        config, tbptt, padded, state.params, state.carry, j, chunk_key
    )
    norm = optax.tree.norm(grads)
    chunk_ok = state.ok & jnp.isfinite(value) & jnp.isfinite(norm)
    has_targets = count > 0  # a chunk of padding only: nothing to learn
    params, opt_state, applied = apply_update(
        config.optimizer, state.params, state.opt_state, grads, chunk_ok & has_targets
    )
    ok = chunk_ok & (applied | ~has_targets)
    return ChunkState(params, opt_state, carry_next, ok, carry_end), (
        value,
        norm,
        count,
        applied,
    )


def weighted_loss(values: Array, counts: Array) -> Array:
    """The batch's loss from its chunks' mean losses ``values``, each weighted by
    its valid ``counts``, in the values' dtype. The counts are summed in
    ``count_dtype`` (in bfloat16, 257 would round to 256); a count the values'
    dtype holds exactly weighs its value in that dtype, as it always did."""
    low = counts.astype(values.dtype)
    weights = counts.astype(count_dtype(values.dtype))
    exact = low.astype(counts.dtype) == counts
    total = jnp.sum(jnp.where(exact, values * low, values * weights))
    mean = total.astype(values.dtype) / jnp.maximum(jnp.sum(weights), 1)
    return mean.astype(values.dtype)


def tbptt_step(
    config: StepConfig,
    tbptt: TBPTT,
    params,
    opt_state,
    xs,
    ys,
    mask,
    key,
    carry0=None,
):
    """One batch under TBPTT: an update per chunk, in one ``lax.scan``."""
    check_batch_targets(config, xs, ys)
    padded = pad(tbptt, xs, ys, mask)
    if carry0 is None:
        carry0 = config.model.initial_carry(xs.shape[0], xs.dtype)
    one_chunk = lambda state, j: chunk_update(config, tbptt, padded, key, state, j)  # noqa: E731
    state = ChunkState(params, opt_state, carry0, jnp.array(True), carry0)
    final, (values, norms, counts, applied) = jax.lax.scan(
        one_chunk, state, jnp.arange(tbptt.chunks(xs.shape[1]))
    )
    metrics = {
        "loss": weighted_loss(values, counts),
        "grad_norm": jnp.sum(norms * (counts > 0))
        / jnp.maximum(jnp.sum(counts > 0), 1),
        "updates": jnp.sum(applied.astype(jnp.int32)),
        "finite": final.ok,
        "count": valid_count(config.model, xs, mask),
        "carry": final.carry_end,
    }
    return final.params, final.opt_state, metrics
