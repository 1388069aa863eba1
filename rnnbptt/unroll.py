"""Unrolling a cell through time, differentiable by either gradient engine.

``backward="manual"`` (the default) routes ``jax.grad``/``jax.vjp`` through the
hand-written BPTT (``rnnbptt.bptt``) with ``jax.custom_vjp``; ``"autodiff"`` lets
JAX's reverse-mode AD differentiate the scan. Both engines share one forward pass,
so switching engines changes how gradients are computed and nothing else.

Checkpointing through time (``recompute_every=k``): the forward pass keeps only
the carry at the start of every k-step chunk; the backward pass reruns each
chunk's forward from its kept carry, newest chunk first, and backpropagates
through it. Stored residuals shrink from T steps to T/k carries plus one chunk,
for about one extra forward pass of time. A sequence whose length is not a
multiple of k is padded at the end with masked steps, which change nothing.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from ._checks import (
    DEFAULT_BACKWARD,
    NOT_GIVEN,
    check_backward,
    check_recompute_every,
    check_unroll_args,
)
from .bptt import backward as manual_backward
from .forward import forward, zero_masked_inputs


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _unroll_manual(cell, params, xs, carry0, mask):
    final, hs, _ = forward(cell, params, xs, carry0, mask, save=False)
    return final, hs


def _unroll_manual_fwd(cell, params, xs, carry0, mask):
    final, hs, saved = forward(cell, params, xs, carry0, mask, save=True)
    return (final, hs), (params, xs, carry0, mask, saved)


def _unroll_manual_bwd(cell, residuals, cotangents):
    params, xs, carry0, mask, saved = residuals
    d_final, d_hs = cotangents
    grads = manual_backward(cell, params, xs, carry0, mask, saved, d_hs, d_final)
    return (*grads, None)  # the mask is not differentiable


_unroll_manual.defvjp(_unroll_manual_fwd, _unroll_manual_bwd)


# --- checkpointing through time ---------------------------------------------


def _split_time(a, k: int):
    """[B, T, ...] -> [n, B, k, ...] chunks of k steps, zero-padded at the end."""
    B, T = a.shape[:2]
    n = -(-T // k)
    a = jnp.pad(a, ((0, 0), (0, n * k - T)) + ((0, 0),) * (a.ndim - 2))
    return jnp.moveaxis(a.reshape(B, n, k, *a.shape[2:]), 1, 0)


def _join_time(chunks, steps: int):
    """[n, B, k, ...] -> [B, steps, ...]: the inverse of ``_split_time``."""
    n, B, k = chunks.shape[:3]
    return jnp.moveaxis(chunks, 0, 1).reshape(B, n * k, *chunks.shape[3:])[:, :steps]


def _chunked(xs, mask, k: int):
    """Time chunks of xs and mask; padding steps (if any) are masked out."""
    B, T = xs.shape[:2]
    if mask is None and T % k:
        mask = jnp.ones((B, T), bool)  # _split_time pads it with False
    return _split_time(xs, k), (None if mask is None else _split_time(mask, k))


def _chunk_forward(cell, params, carry, inputs):
    xs, mask = inputs
    final, hs, _ = forward(cell, params, xs, carry, mask, save=False)
    return final, (hs, carry)  # the carry each chunk starts from


def _checkpointed_autodiff(cell, params, xs, carry0, mask, k):
    step = jax.checkpoint(
        lambda carry, inputs: _chunk_forward(cell, params, carry, inputs)
    )
    final, (hs, _) = jax.lax.scan(step, carry0, _chunked(xs, mask, k))
    return final, _join_time(hs, xs.shape[1])


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 5))
def _checkpointed_manual(cell, params, xs, carry0, mask, k):
    return _checkpointed_manual_fwd(cell, params, xs, carry0, mask, k)[0]


def _checkpointed_manual_fwd(cell, params, xs, carry0, mask, k):
    step = functools.partial(_chunk_forward, cell, params)
    final, (hs, starts) = jax.lax.scan(step, carry0, _chunked(xs, mask, k))
    return (final, _join_time(hs, xs.shape[1])), (params, xs, mask, starts)


def _checkpointed_manual_bwd(cell, k, residuals, cotangents):
    params, xs, mask, starts = residuals
    d_final, d_hs = cotangents

    def back_chunk(acc, inputs):
        d_carry, d_params = acc
        x, m, start, d_h = inputs
        _, _, saved = forward(cell, params, x, start, m, save=True)  # recompute
        dp, dx, d_start = manual_backward(
            cell, params, x, start, m, saved, d_h, d_carry
        )
        return (d_start, jax.tree.map(jnp.add, d_params, dp)), dx

    inputs = (*_chunked(xs, mask, k), starts, _split_time(d_hs, k))
    zeros = jax.tree.map(jnp.zeros_like, params)
    (d_carry0, d_params), d_xs = jax.lax.scan(
        back_chunk, (d_final, zeros), inputs, reverse=True
    )
    return d_params, _join_time(d_xs, xs.shape[1]), d_carry0, None


_checkpointed_manual.defvjp(_checkpointed_manual_fwd, _checkpointed_manual_bwd)


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _unroll(cell, backward, recompute_every, params, xs, carry0, mask):
    xs = zero_masked_inputs(xs, mask)
    k = recompute_every
    if k is not None and k < xs.shape[1]:
        if backward == "manual":
            return _checkpointed_manual(cell, params, xs, carry0, mask, k)
        return _checkpointed_autodiff(cell, params, xs, carry0, mask, k)
    if backward == "manual":
        return _unroll_manual(cell, params, xs, carry0, mask)
    final, hs, _ = forward(cell, params, xs, carry0, mask, save=False)
    return final, hs


def unroll(
    cell,
    params,
    xs,
    carry0=None,
    *,
    mask=None,
    backward=DEFAULT_BACKWARD,
    recompute_every=None,
    checkpoint_every=NOT_GIVEN,
):
    """Runs ``cell`` over the sequences ``xs`` with one ``jax.lax.scan``.

    Args:
        cell: an ``Elman``, ``LSTM``, ``GRU`` or ``Feedforward``.
        params: the cell's parameters (``cell.init``).
        xs: [B, T, D] inputs, batch-major.
        carry0: initial carry (``h`` [B, H] for Elman and GRU, ``LSTMCarry(h, c)`` for
            LSTM, ``()`` for Feedforward), or None for zeros.
        mask: [B, T] bool, True at valid steps. A masked step leaves the carry
            unchanged, outputs zeros and contributes nothing to any gradient.
        backward: the gradient engine used when this call is differentiated:
            ``"manual"`` (hand-written BPTT, the default: faster and lighter) or
            ``"autodiff"`` (JAX reverse-mode AD). The manual engine is a
            ``jax.custom_vjp``: it serves ``jax.grad`` and ``jax.vjp`` (and
            reverse-over-reverse); forward mode (``jax.jvp``) needs ``"autodiff"``.
        recompute_every: None stores every step for the backward pass; an int k
            keeps only the carry every k steps and recomputes the rest during the
            backward pass (checkpointing through time, or rematerialisation:
            about T/k + k steps of memory instead of T, for one more forward
            pass). Same results. It writes no file.
        checkpoint_every: the former name of ``recompute_every``; still taken,
            with a ``DeprecationWarning``, until rnnbptt 0.3.

    Returns:
        ``(final_carry, hs)`` with ``hs`` [B, T, H].

    Raises:
        TypeError, ValueError: for inputs of the wrong structure, shape or dtype,
            an unknown ``backward`` or a ``recompute_every`` that is not a
            positive int.

    Example:
        >>> import jax, rnnbptt
        >>> cell = rnnbptt.LSTM(input_size=3, hidden_size=5)
        >>> params = cell.init(jax.random.key(0))
        >>> xs = jax.random.normal(jax.random.key(1), (2, 7, 3))
        >>> (h, c), hs = rnnbptt.unroll(cell, params, xs)
        >>> hs.shape, h.shape
        ((2, 7, 5), (2, 5))
    """
    check_backward("unroll", backward)
    every = check_recompute_every("unroll", recompute_every, checkpoint_every)
    params, xs, carry0, mask = check_unroll_args(
        "unroll", cell, params, xs, carry0, mask
    )
    return _unroll(cell, backward, every, params, xs, carry0, mask)
