"""Hand-written backpropagation through time.

The backward pass is written out from the cell equations (derivatives of tanh,
sigmoid and relu by hand; no ``jax.grad``/``jax.vjp`` inside) as a reverse
``lax.scan``. Each reverse step mirrors a forward step line by line and emits the
gradient of the pre-activations ``d_pre_t`` [B, G*H]; after the scan the weight
gradients are one matrix product over all T*B rows each (one large GEMM beats T
small ones), and the input gradient is one more.

Masked steps: the forward step is ``carry_t = m ? cell(carry_{t-1}, x_t) :
carry_{t-1}`` and ``out_t = m ? h_t : 0``, so at a masked step the cell receives no
gradient and the carry gradient passes straight through.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from ._checks import check_carry, check_unroll_args
from .cells import LSTM, LSTMCarry, activation_derivative
from .forward import Saved, forward, time_major_mask

Array = jax.Array


def _split_carry_grad(m_t, dh_total):
    """(gradient into the cell's new state, gradient passing the masked step by)."""
    if m_t is None:
        return dh_total, 0
    return jnp.where(m_t, dh_total, 0), jnp.where(m_t, 0, dh_total)


def _elman_back_scan(cell, params, saved: Saved, d_out, dh_last, m):
    """Reverse scan for Elman: returns (dh_0, d_pre [T, B, H])."""
    w_hh_t = params.w_hh.T

    def back_step(dh, inputs):
        h_t, d_out_t, m_t = inputs
        dh, dh_skip = _split_carry_grad(m_t, dh + d_out_t)  # h_t feeds out_t and h_t+1
        d_pre = dh * activation_derivative(cell.activation, h_t)  # through act
        dh_prev = d_pre @ w_hh_t + dh_skip  # backprop into h_{t-1}
        return dh_prev, d_pre

    return jax.lax.scan(back_step, dh_last, (saved.h, d_out, m), reverse=True)


def _lstm_back_scan(cell, params, saved: Saved, c_prev, d_out, d_last, m):
    """Reverse scan for the LSTM: returns ((dh_0, dc_0), d_pre [T, B, 4H])."""
    w_hh_t = params.w_hh.T

    def back_step(d_carry, inputs):
        dh, dc = d_carry
        (i, f, g, o), c_prev_t, c_t, d_out_t, m_t = inputs
        dh, dh_skip = _split_carry_grad(m_t, dh + d_out_t)  # h_t feeds out_t and h_t+1
        dc, dc_skip = _split_carry_grad(m_t, dc)
        tanh_c = jnp.tanh(c_t)
        d_o = dh * tanh_c  # h = o * tanh(c): backprop into o
        dc = dc + dh * o * (1 - tanh_c * tanh_c)  # ... and into c, through tanh
        d_i = dc * g  # c = f * c_prev + i * g: backprop into i, g, f and c_prev
        d_g = dc * i
        d_f = dc * c_prev_t
        dc_prev = dc * f + dc_skip
        d_pre = jnp.concatenate(  # through the gate non-linearities
            [
                d_i * i * (1 - i),
                d_f * f * (1 - f),
                d_g * (1 - g * g),
                d_o * o * (1 - o),
            ],
            axis=-1,
        )
        dh_prev = d_pre @ w_hh_t + dh_skip  # backprop into h_{t-1}
        return (dh_prev, dc_prev), d_pre

    inputs = (saved.gates, c_prev, saved.c, d_out, m)
    return jax.lax.scan(back_step, d_last, inputs, reverse=True)


def _previous(seq: Array, first: Array) -> Array:
    """[T, B, H] carries after each step -> carries before each step."""
    return jnp.concatenate([first[None], seq[:-1]], axis=0)


def backward(cell, params, xs, carry0, mask, saved: Saved, d_hs, d_final):
    """The VJP of ``forward`` given its residuals: ``(d_params, d_xs, d_carry0)``.

    Args:
        cell, params, xs, carry0, mask: the inputs of the forward pass.
        saved: the residuals from ``forward(..., save=True)``.
        d_hs: [B, T, H] cotangent of the outputs.
        d_final: cotangent of the final carry (same structure as the carry).
    """
    m = time_major_mask(mask)
    d_out = jnp.swapaxes(d_hs, 0, 1)
    if m is not None:
        d_out = jnp.where(m, d_out, 0)  # out_t = m ? h_t : 0
    if not cell.recurrent:
        d_pre = d_out * activation_derivative(cell.activation, saved.h)
        d_carry0 = ()
    elif isinstance(cell, LSTM):
        c_prev = _previous(saved.c, carry0.c)
        d_last = tuple(d_final)
        d_carry0, d_pre = _lstm_back_scan(cell, params, saved, c_prev, d_out, d_last, m)
        d_carry0 = LSTMCarry(*d_carry0)
    else:
        d_carry0, d_pre = _elman_back_scan(cell, params, saved, d_out, d_final, m)

    # Weight gradients: one GEMM each over all T*B rows.
    grads = {
        "w_ih": jnp.einsum("btd,tbg->dg", xs, d_pre),
        "b": jnp.sum(d_pre, axis=(0, 1)),
    }
    if cell.recurrent:
        h_prev = _previous(saved.h, carry0[0] if isinstance(cell, LSTM) else carry0)
        grads["w_hh"] = jnp.einsum("tbh,tbg->hg", h_prev, d_pre)
    d_params = type(params)(**grads)
    d_xs = jnp.einsum("tbg,dg->btd", d_pre, params.w_ih)
    return d_params, d_xs, d_carry0


@functools.partial(jax.jit, static_argnums=0)
def _bptt(cell, params, xs, carry0, mask, d_hs, d_final):
    final, _, saved = forward(cell, params, xs, carry0, mask, save=True)
    if d_final is None:
        d_final = jax.tree.map(jnp.zeros_like, final)
    return backward(cell, params, xs, carry0, mask, saved, d_hs, d_final)


def bptt(cell, params, xs, carry0, d_hs, d_final_carry=None, *, mask=None):
    """Hand-written backpropagation through time: the VJP of ``unroll``.

    Runs the forward pass, then the backward pass written out from the cell
    equations, and returns the cotangent of every input of ``unroll``.

    Args:
        cell: an ``Elman``, ``LSTM`` or ``Feedforward``.
        params: the cell's parameters (``cell.init``).
        xs: [B, T, D] inputs.
        carry0: initial carry, or None for zeros.
        d_hs: [B, T, H] cotangent of the outputs ``hs``.
        d_final_carry: cotangent of the final carry, same structure as the carry;
            None means zero.
        mask: [B, T] bool, True at valid steps; None means all valid.

    Returns:
        ``(d_params, d_xs, d_carry0)``, with the types and shapes of ``params``,
        ``xs`` and ``carry0``.

    Raises:
        TypeError, ValueError: for inputs of the wrong structure, shape or dtype.
    """
    params, xs, carry0, mask = check_unroll_args("bptt", cell, params, xs, carry0, mask)
    B, T, _ = xs.shape
    dtype = xs.dtype
    d_hs = jnp.asarray(d_hs)
    expected = (B, T, cell.hidden_size)
    if d_hs.shape != expected or d_hs.dtype != dtype:
        raise ValueError(
            f"bptt: `d_hs` must be {dtype} with shape {expected} (like hs), got "
            f"{d_hs.dtype} {d_hs.shape}"
        )
    if d_final_carry is not None:
        d_final_carry = check_carry(
            "bptt", "d_final_carry", cell, d_final_carry, B, dtype
        )
    return _bptt(cell, params, xs, carry0, mask, d_hs, d_final_carry)
