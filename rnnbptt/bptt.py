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
from .cells import GRU, LSTM, GRUParams, LSTMCarry, activation_derivative
from .forward import (
    GATE_SLOPE,
    Saved,
    forward,
    gru_gates,
    lstm_gates,
    per_gate,
    time_major_mask,
    zero_masked_inputs,
)

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
    H = cell.hidden_size
    w_hh_t = params.w_hh.T
    slope = per_gate(GATE_SLOPE, H, d_out.dtype)

    def back_step(d_carry, inputs):
        dh, dc = d_carry
        t, c_prev_t, c_t, d_out_t, m_t = inputs
        dh, dh_skip = _split_carry_grad(m_t, dh + d_out_t)  # h_t feeds out_t and h_t+1
        dc, dc_skip = _split_carry_grad(m_t, dc)
        i, f, g, o = lstm_gates(t, H)
        tanh_c = jnp.tanh(c_t)
        dc = dc + dh * o * (1 - tanh_c * tanh_c)  # h = o * tanh(c): into c ...
        # ... and into o; c = f * c_prev + i * g: into i, f and g. Then through the
        # gate non-linearities, all affine in t = tanh(scaled pre-activation).
        d_gates = jnp.concatenate([dc * g, dc * c_prev_t, dc * i, dh * tanh_c], 1)
        d_pre = d_gates * slope * (1 - t * t)
        dh_prev = d_pre @ w_hh_t + dh_skip  # backprop into h_{t-1}
        dc_prev = dc * f + dc_skip  # ... and into c_{t-1}
        return (dh_prev, dc_prev), d_pre

    inputs = (saved.t, c_prev, saved.c, d_out, m)
    return jax.lax.scan(back_step, d_last, inputs, reverse=True)


def _gru_back_scan(cell, params, saved: Saved, h_prev, d_out, dh_last, m):
    """Reverse scan for the GRU: returns (dh_0, (d_a, d_u)), the gradients of
    the input and recurrent pre-activations ``a = x W_ih + b_ih`` and ``u =
    h W_hh + b_hh`` [T, B, 3H] (d_u is None with ``reset_after=False``, where
    both biases add to the same pre-activations: d_u = d_a)."""
    H = cell.hidden_size
    w_hh_t = params.w_hh.T
    w_hn_t = w_hh_t[2 * H :]

    def back_step(dh, inputs):
        t, n, u_n, h_prev_t, d_out_t, m_t = inputs
        dh, dh_skip = _split_carry_grad(m_t, dh + d_out_t)  # h_t feeds out_t and h_t+1
        r, z = gru_gates(t, H)
        # h = (1 - z) * n + z * h_prev: into n, z and h_prev; then through tanh
        d_a_n = dh * (1 - z) * (1 - n * n)
        dz = dh * (h_prev_t - n)
        if cell.reset_after:  # n = tanh(a_n + r * u_n)
            d_rz = jnp.concatenate([d_a_n * u_n, dz], 1) * 0.25 * (1 - t * t)
            d_u = jnp.concatenate([d_rz, d_a_n * r], 1)
            dh_prev = d_u @ w_hh_t + dh * z + dh_skip  # backprop into h_{t-1}
        else:  # n = tanh(a_n + (r * h_prev) W_hn + b_hn)
            d_rh = d_a_n @ w_hn_t
            d_rz = jnp.concatenate([d_rh * h_prev_t, dz], 1) * 0.25 * (1 - t * t)
            d_u = None
            dh_prev = d_rz @ w_hh_t[: 2 * H] + d_rh * r + dh * z + dh_skip
        return dh_prev, (jnp.concatenate([d_rz, d_a_n], 1), d_u)

    inputs = (saved.t, saved.n, saved.u_n, h_prev, d_out, m)
    return jax.lax.scan(back_step, dh_last, inputs, reverse=True)


def _gru_backward(cell, params, xs, carry0, m, saved: Saved, d_out, d_final):
    """``backward`` for the GRU, from the time-major output cotangents."""
    H = cell.hidden_size
    xs_seq = jnp.swapaxes(xs, 0, 1)
    h_prev = _previous(saved.h, carry0)
    d_carry0, (d_a, d_u) = _gru_back_scan(
        cell, params, saved, h_prev, d_out, d_final, m
    )
    d_a = _rows(d_a)
    if cell.reset_after:
        d_u = _rows(d_u)
        w_hh = _columns(h_prev) @ d_u
    else:  # the candidate's recurrent weights multiply r * h_prev
        d_u = d_a
        r_h = gru_gates(saved.t, H)[0] * h_prev
        w_hh = jnp.concatenate(
            [_columns(h_prev) @ d_a[:, : 2 * H], _columns(r_h) @ d_a[:, 2 * H :]], 1
        )
    d_params = GRUParams(
        w_ih=_columns(xs_seq) @ d_a,
        w_hh=w_hh,
        b_ih=jnp.sum(d_a, axis=0),
        b_hh=jnp.sum(d_u, axis=0),
    )
    d_xs = (d_a @ params.w_ih.T).reshape(xs_seq.shape)
    return d_params, jnp.swapaxes(d_xs, 0, 1), d_carry0


def _previous(seq: Array, first: Array) -> Array:
    """[T, B, H] carries after each step -> carries before each step."""
    return jnp.concatenate([first[None], seq[:-1]], axis=0)


def _rows(a: Array) -> Array:
    """[N, M, K] -> [N*M, K]: the weight gradients are plain 2-D GEMMs over rows
    (XLA:CPU runs a product contracting two axes at a fraction of the speed)."""
    return a.reshape(-1, a.shape[-1])


def _columns(a: Array) -> Array:
    """[N, M, K] -> [K, N*M], written out as its own transposed copy. XLA would
    otherwise fold the transposition into the weight-gradient product, which
    XLA:CPU then runs with Eigen's transposed-operand kernel instead of
    YNNPACK's: 163 against 196 GFLOP/s for [256, 6400] @ [6400, 1024]. For the
    previous carries the transposition joins the copy that shifts them by a step."""
    return jax.lax.optimization_barrier(_rows(a).T)


def backward(cell, params, xs, carry0, mask, saved: Saved, d_hs, d_final):
    """The VJP of ``forward`` given its residuals: ``(d_params, d_xs, d_carry0)``.

    Args:
        cell, params, xs, carry0, mask: the inputs of the forward pass.
        saved: the residuals from ``forward(..., save=True)``.
        d_hs: [B, T, H] cotangent of the outputs.
        d_final: cotangent of the final carry (same structure as the carry).
    """
    if not cell.recurrent:  # batch-major, no scan: out = m ? act(x W + b) : 0
        d_out = d_hs if mask is None else jnp.where(mask[..., None], d_hs, 0)
        d_pre = d_out * activation_derivative(cell.activation, saved.h)
        d_carry0, xs_seq = (), xs
    else:
        m = time_major_mask(mask)
        d_out = jnp.swapaxes(d_hs, 0, 1)
        if m is not None:
            d_out = jnp.where(m, d_out, 0)  # out_t = m ? h_t : 0
        if isinstance(cell, GRU):
            return _gru_backward(cell, params, xs, carry0, m, saved, d_out, d_final)
        if isinstance(cell, LSTM):
            c_prev = _previous(saved.c, carry0.c)
            d_last = tuple(d_final)
            d_carry0, d_pre = _lstm_back_scan(
                cell, params, saved, c_prev, d_out, d_last, m
            )
            d_carry0 = LSTMCarry(*d_carry0)
        else:
            d_carry0, d_pre = _elman_back_scan(cell, params, saved, d_out, d_final, m)
        xs_seq = jnp.swapaxes(xs, 0, 1)  # time-major, like d_pre

    # Weight gradients: one GEMM each over all T*B rows.
    d_rows = _rows(d_pre)
    grads = {"w_ih": _columns(xs_seq) @ d_rows, "b": jnp.sum(d_rows, axis=0)}
    if cell.recurrent:
        h_prev = _previous(saved.h, carry0[0] if isinstance(cell, LSTM) else carry0)
        grads["w_hh"] = _columns(h_prev) @ d_rows
    if cell.recurrent and cell.two_biases:  # b_ih + b_hh: the same gradient each
        grads["b_ih"] = grads["b_hh"] = grads.pop("b")
    d_params = type(params)(**grads)
    d_xs = (d_rows @ params.w_ih.T).reshape(xs_seq.shape)
    if cell.recurrent:
        d_xs = jnp.swapaxes(d_xs, 0, 1)
    return d_params, d_xs, d_carry0


@functools.partial(jax.jit, static_argnums=0)
def _bptt(cell, params, xs, carry0, mask, d_hs, d_final):
    xs = zero_masked_inputs(xs, mask)
    final, _, saved = forward(cell, params, xs, carry0, mask, save=True)
    if d_final is None:
        d_final = jax.tree.map(jnp.zeros_like, final)
    return backward(cell, params, xs, carry0, mask, saved, d_hs, d_final)


def bptt(cell, params, xs, carry0, d_hs, d_final_carry=None, *, mask=None):
    """Hand-written backpropagation through time: the VJP of ``unroll``.

    Runs the forward pass, then the backward pass written out from the cell
    equations, and returns the cotangent of every input of ``unroll``.

    Args:
        cell: an ``Elman``, ``LSTM``, ``GRU`` or ``Feedforward``.
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
