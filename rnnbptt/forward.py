"""The forward pass through time, shared by both gradient engines.

The input projection ``x_t W_ih + b`` of all T steps is one matrix product outside
the scan; the scan carries only the recurrence ``h_{t-1} W_hh``. With ``save=True``
it also returns what the hand-written BPTT needs (``Saved``), time-major.

Masking: where ``mask[b, t]`` is False the step is skipped: the carry passes
through unchanged and the output is zero, so the step contributes nothing to any
gradient. Any pattern of valid steps works; right padding is the common case.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from .cells import ACTIVATIONS, LSTM, LSTMCarry

Array = jax.Array


class Saved(NamedTuple):
    """Residuals of the forward pass, all time-major [T, B, ...].

    ``h``/``c`` are the carries after each step (equal to the previous carry at a
    masked step); ``gates`` are the LSTM's activated gates (i, f, g, o), each
    [T, B, H]. Fields a cell does not have are None.
    """

    h: Array | None
    c: Array | None = None
    gates: tuple[Array, Array, Array, Array] | None = None


def project_inputs(params, xs: Array) -> Array:
    """``x_t W_ih + b`` for all steps, one matrix product: [B, T, D] -> [T, B, G*H]."""
    return jnp.einsum("btd,dg->tbg", xs, params.w_ih) + params.b


def time_major_mask(mask: Array | None) -> Array | None:
    """[B, T] bool -> [T, B, 1], ready to broadcast against [T, B, H]."""
    return None if mask is None else mask.T[..., None]


def _keep(m_t: Array | None, new: Array, old: Array) -> Array:
    """The new carry at valid steps, the old one at masked steps."""
    return new if m_t is None else jnp.where(m_t, new, old)


def _elman_scan(cell, params, xw, h0, m):
    act = ACTIVATIONS[cell.activation]

    def step(h_prev, inputs):
        xw_t, m_t = inputs
        h = _keep(m_t, act(xw_t + h_prev @ params.w_hh), h_prev)
        return h, h

    h_final, h_seq = jax.lax.scan(step, h0, (xw, m))
    return h_final, Saved(h=h_seq)


def _lstm_scan(cell, params, xw, carry0, m, save):
    H = cell.hidden_size

    def step(carry, inputs):
        h_prev, c_prev = carry
        xw_t, m_t = inputs
        pre = xw_t + h_prev @ params.w_hh
        # i and f are one contiguous block: one sigmoid for both.
        i_f = jax.nn.sigmoid(pre[:, : 2 * H])
        i, f = i_f[:, :H], i_f[:, H:]
        g = jnp.tanh(pre[:, 2 * H : 3 * H])
        o = jax.nn.sigmoid(pre[:, 3 * H :])
        c = _keep(m_t, f * c_prev + i * g, c_prev)
        h = _keep(m_t, o * jnp.tanh(c), h_prev)
        out = (h, c, (i, f, g, o)) if save else (h, None, None)
        return LSTMCarry(h, c), out

    final, (h_seq, c_seq, gates) = jax.lax.scan(step, carry0, (xw, m))
    return final, Saved(h=h_seq, c=c_seq, gates=gates)


def forward(cell, params, xs: Array, carry0, mask: Array | None, *, save: bool):
    """Runs the cell over all steps.

    Args:
        cell: the cell description.
        params: the cell's parameters.
        xs: [B, T, D] inputs.
        carry0: the initial carry (``()`` for Feedforward).
        mask: [B, T] bool or None.
        save: also return the residuals the hand-written BPTT needs.

    Returns:
        ``(final_carry, hs, saved)``: ``hs`` is [B, T, H], zero at masked steps;
        ``saved`` is a ``Saved`` (time-major), or None unless ``save``.
    """
    xw = project_inputs(params, xs)
    m = time_major_mask(mask)
    if not cell.recurrent:
        # The zero-recurrence case: every step at once, no scan needed.
        final, saved = (), Saved(h=ACTIVATIONS[cell.activation](xw))
    elif isinstance(cell, LSTM):
        final, saved = _lstm_scan(cell, params, xw, carry0, m, save)
    else:
        final, saved = _elman_scan(cell, params, xw, carry0, m)
    h_seq = saved.h if m is None else jnp.where(m, saved.h, 0)
    return final, jnp.swapaxes(h_seq, 0, 1), (saved if save else None)
