"""Unrolling a cell through time, differentiable by either gradient engine.

``backward="autodiff"`` lets JAX's reverse-mode AD differentiate the scan;
``backward="manual"`` routes ``jax.grad``/``jax.vjp`` through the hand-written BPTT
(``rnnbptt.bptt``) with ``jax.custom_vjp``. Both engines share one forward pass, so
switching engines changes how gradients are computed and nothing else.
"""

from __future__ import annotations

import functools

import jax

from ._checks import check_backward, check_unroll_args
from .bptt import backward as manual_backward
from .forward import forward


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


@functools.partial(jax.jit, static_argnums=(0, 1))
def _unroll(cell, backward, params, xs, carry0, mask):
    if backward == "manual":
        return _unroll_manual(cell, params, xs, carry0, mask)
    final, hs, _ = forward(cell, params, xs, carry0, mask, save=False)
    return final, hs


def unroll(cell, params, xs, carry0=None, *, mask=None, backward="autodiff"):
    """Runs ``cell`` over the sequences ``xs`` with one ``jax.lax.scan``.

    Args:
        cell: an ``Elman``, ``LSTM`` or ``Feedforward``.
        params: the cell's parameters (``cell.init``).
        xs: [B, T, D] inputs, batch-major.
        carry0: initial carry (``h`` [B, H] for Elman, ``LSTMCarry(h, c)`` for
            LSTM, ``()`` for Feedforward), or None for zeros.
        mask: [B, T] bool, True at valid steps. A masked step leaves the carry
            unchanged, outputs zeros and contributes nothing to any gradient.
        backward: the gradient engine used when this call is differentiated:
            ``"autodiff"`` (JAX reverse-mode AD) or ``"manual"`` (hand-written BPTT).
            The manual engine is a ``jax.custom_vjp``: it serves ``jax.grad`` and
            ``jax.vjp`` (and reverse-over-reverse); forward mode (``jax.jvp``)
            needs ``"autodiff"``.

    Returns:
        ``(final_carry, hs)`` with ``hs`` [B, T, H].

    Raises:
        TypeError, ValueError: for inputs of the wrong structure, shape or dtype,
            or an unknown ``backward``.

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
    params, xs, carry0, mask = check_unroll_args(
        "unroll", cell, params, xs, carry0, mask
    )
    return _unroll(cell, backward, params, xs, carry0, mask)
