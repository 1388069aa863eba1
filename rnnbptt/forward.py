"""The forward pass through time, shared by both gradient engines.

Inside the scan, everything runs time-major ([T, B, ...]). Each recurrent step is
one matrix product ``[x_t, h_{t-1}] @ [W_ih; W_hh]``: the input projection rides
along with the recurrent one, so no [T, B, G*H] projection of all steps is ever
written to memory and read back (on XLA:CPU that round trip, not the arithmetic,
dominated; see experiments/PERFORMANCE.md). With ``save=True`` the pass also
returns what the hand-written BPTT needs (``Saved``).

The LSTM's gates come from one ``tanh`` over all 4H pre-activations: a sigmoid
is an affine function of a tanh, ``σ(x) = (1 + tanh(x/2)) / 2``, so with the
pre-activations scaled by ``GATE_SCALE`` (0.5 for i, f, o and 1 for g; powers of
two, so the scaling is exact) every gate is ``gate = a*t + b`` of the same
``t = tanh(scaled pre-activation)``. The hand-written backward uses the same
form: ``d gate / d pre = GATE_SLOPE * (1 - t²)``. The GRU's reset and update
gates come the same way from one ``tanh``; its candidate needs the reset gate
first, so it has a ``tanh`` of its own (``gru_weights``).

Masking: where ``mask[b, t]`` is False the step is skipped: the carry passes
through unchanged and the output is zero, so the step contributes nothing to any
gradient. Any pattern of valid steps works; right padding is the common case.
The entry points zero the inputs at masked steps first (``zero_masked_inputs``),
so the padding's values never matter, not even inf or NaN.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from .cells import ACTIVATIONS, GRU, LSTM, LSTMCarry, fused_bias

Array = jax.Array

# Per gate block (i, f, g, o): the scale inside the tanh, and the resulting
# derivative factor d gate / d pre = GATE_SLOPE * (1 - t**2).
GATE_SCALE = (0.5, 0.5, 1.0, 0.5)
GATE_SLOPE = (0.25, 0.25, 1.0, 0.25)


class Saved(NamedTuple):
    """Residuals of the forward pass, all time-major [T, B, ...].

    ``h``/``c`` are the carries after each step (equal to the previous carry at a
    masked step); ``t`` is the LSTM's ``tanh`` of the scaled pre-activations
    [T, B, 4H], from which ``lstm_gates`` gives (i, f, g, o), or the GRU's of its
    reset and update gates [T, B, 2H] (``gru_gates``); ``n`` is the GRU's
    candidate and ``u_n`` (``reset_after=True``) its recurrent part
    ``h_{t-1} W_hn + b_hn``, each [T, B, H]. Fields a cell does not have are
    None. For Feedforward, ``h`` is batch-major [B, T, H].
    """

    h: Array | None
    c: Array | None = None
    t: Array | None = None
    n: Array | None = None
    u_n: Array | None = None


def per_gate(values, hidden_size: int, dtype) -> Array:
    """A [4H] vector repeating one value per LSTM gate block (i, f, g, o)."""
    return jnp.repeat(jnp.asarray(values, dtype), hidden_size)


def lstm_gates(t: Array, hidden_size: int):
    """(i, f, g, o) from ``t = tanh(GATE_SCALE * pre)`` [..., 4H]."""
    H = hidden_size
    half = 0.5 * t[..., : 2 * H] + 0.5  # i and f: one contiguous block
    g, o = t[..., 2 * H : 3 * H], 0.5 * t[..., 3 * H :] + 0.5
    return half[..., :H], half[..., H:], g, o


def time_major_mask(mask: Array | None) -> Array | None:
    """[B, T] bool -> [T, B, 1], ready to broadcast against [T, B, H]."""
    return None if mask is None else mask.T[..., None]


def zero_masked_inputs(xs: Array, mask: Array | None) -> Array:
    """``xs`` [B, T, D] with zeros at masked steps, so that whatever the padding
    holds (even inf or NaN) never meets a weight: a masked step's discarded
    arithmetic stays finite and its zero cotangents stay zero."""
    return xs if mask is None else jnp.where(mask[..., None], xs, 0)


def keep_rows(valid: Array, new, old, row_axis: int = 0):
    """Per row of the batch (axis ``row_axis`` of every leaf): the pytree
    ``new`` where ``valid`` [B] is True, ``old`` elsewhere."""

    def pick(n, o):
        shape = [1] * n.ndim
        shape[row_axis] = -1
        return jnp.where(valid.reshape(shape), n, o)

    return jax.tree.map(pick, new, old)


def _keep(m_t: Array | None, new: Array, old: Array) -> Array:
    """The new carry at valid steps, the old one at masked steps."""
    return new if m_t is None else jnp.where(m_t, new, old)


def stacked_weights(params, scale=None):
    """``[W_ih; W_hh]`` [D+H, G*H] and ``b``, times ``scale`` [G*H] if given."""
    w = jnp.concatenate([params.w_ih, params.w_hh])
    b = fused_bias(params)
    if scale is None:
        return w, b
    return w * scale, b * scale


def _elman_scan(cell, params, xs_t, h0, m):
    act = ACTIVATIONS[cell.activation]
    w, b = stacked_weights(params)

    def step(h_prev, inputs):
        x_t, m_t = inputs
        h = _keep(m_t, act(jnp.concatenate([x_t, h_prev], 1) @ w + b), h_prev)
        return h, h

    h_final, h_seq = jax.lax.scan(step, h0, (xs_t, m))
    return h_final, Saved(h=h_seq)


def _lstm_scan(cell, params, xs_t, carry0, m, save):
    H = cell.hidden_size
    w, b = stacked_weights(params, per_gate(GATE_SCALE, H, xs_t.dtype))

    def step(carry, inputs):
        h_prev, c_prev = carry
        x_t, m_t = inputs
        t = jnp.tanh(jnp.concatenate([x_t, h_prev], 1) @ w + b)
        i, f, g, o = lstm_gates(t, H)
        c = _keep(m_t, f * c_prev + i * g, c_prev)
        h = _keep(m_t, o * jnp.tanh(c), h_prev)
        return LSTMCarry(h, c), ((h, c, t) if save else (h, None, None))

    final, (h_seq, c_seq, t_seq) = jax.lax.scan(step, carry0, (xs_t, m))
    return final, Saved(h=h_seq, c=c_seq, t=t_seq)


def gru_gates(t: Array, hidden_size: int):
    """(r, z) from ``t = tanh(pre / 2)`` [..., 2H] of the reset and update gates."""
    gates = 0.5 * t + 0.5
    return gates[..., :hidden_size], gates[..., hidden_size:]


def gru_weights(cell, params):
    """``(w, b)``: one product ``[x_t, h_{t-1}] @ w + b`` gives every part of a
    GRU step that does not wait for the reset gate.

    Its columns are the reset and update pre-activations halved (for
    ``gru_gates``; powers of two, so exact), then the candidate's input part
    ``a_n``, then (``reset_after=True``) its recurrent part ``u_n``; the zero
    blocks keep ``x`` out of ``u_n`` and ``h`` out of ``a_n``. With
    ``reset_after=False`` the recurrent candidate weights ``w_hh[:, 2H:]``
    multiply ``r * h`` in a product of their own.
    """
    H = cell.hidden_size
    D = params.w_ih.shape[0]
    zeros = lambda rows: jnp.zeros((rows, H), params.w_ih.dtype)  # noqa: E731
    w_x = [params.w_ih[:, : 2 * H] * 0.5, params.w_ih[:, 2 * H :]]
    w_h = [params.w_hh[:, : 2 * H] * 0.5, zeros(H)]
    b = [(params.b_ih[: 2 * H] + params.b_hh[: 2 * H]) * 0.5]
    if cell.reset_after:
        w_x.append(zeros(D))
        w_h.append(params.w_hh[:, 2 * H :])
        b += [params.b_ih[2 * H :], params.b_hh[2 * H :]]
    else:
        b.append(params.b_ih[2 * H :] + params.b_hh[2 * H :])
    w = jnp.concatenate([jnp.concatenate(w_x, 1), jnp.concatenate(w_h, 1)])
    return w, jnp.concatenate(b)


def _gru_scan(cell, params, xs_t, h0, m, save):
    H = cell.hidden_size
    w, b = gru_weights(cell, params)
    w_hn = params.w_hh[:, 2 * H :]

    def step(h_prev, inputs):
        x_t, m_t = inputs
        pre = jnp.concatenate([x_t, h_prev], 1) @ w + b
        t = jnp.tanh(pre[:, : 2 * H])
        r, z = gru_gates(t, H)
        if cell.reset_after:
            u_n = pre[:, 3 * H :]
            n = jnp.tanh(pre[:, 2 * H : 3 * H] + r * u_n)
        else:
            u_n = None
            n = jnp.tanh(pre[:, 2 * H :] + (r * h_prev) @ w_hn)
        h = _keep(m_t, (1 - z) * n + z * h_prev, h_prev)
        return h, ((h, t, n, u_n) if save else (h, None, None, None))

    h_final, (h_seq, t_seq, n_seq, u_seq) = jax.lax.scan(step, h0, (xs_t, m))
    return h_final, Saved(h=h_seq, t=t_seq, n=n_seq, u_n=u_seq)


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
        ``saved`` is a ``Saved``, or None unless ``save``.
    """
    if not cell.recurrent:
        # The zero-recurrence case: every step at once, one matrix product.
        B, T, D = xs.shape
        pre = (xs.reshape(B * T, D) @ params.w_ih + params.b).reshape(B, T, -1)
        h = ACTIVATIONS[cell.activation](pre)
        hs = h if mask is None else jnp.where(mask[..., None], h, 0)
        return (), hs, (Saved(h=h) if save else None)
    xs_t = jnp.swapaxes(xs, 0, 1)
    m = time_major_mask(mask)
    if isinstance(cell, LSTM):
        final, saved = _lstm_scan(cell, params, xs_t, carry0, m, save)
    elif isinstance(cell, GRU):
        final, saved = _gru_scan(cell, params, xs_t, carry0, m, save)
    else:
        final, saved = _elman_scan(cell, params, xs_t, carry0, m)
    h_seq = saved.h if m is None else jnp.where(m, saved.h, 0)
    return final, jnp.swapaxes(h_seq, 0, 1), (saved if save else None)
