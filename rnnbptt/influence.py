"""One step's Jacobian products, written by hand from the cell equations, for
the online gradient engines (``online.py``).

Every parameter enters a step only through *linear units*: ``v = z @ W`` for a
parameter ``W`` [Din, n] and its left operand ``z`` [B, Din] (the input ``x``,
the previous state ``h``, GRU ``reset_after=False``'s ``r * h``, or ones for a
bias). The new state is a non-linear function of the units and of the old state,
``s_t = Φ(v, s_{t-1})``. So the immediate influence of a parameter entry is
``ds_t / dW[i, k] = (dΦ / dv_k) z_i``, and a cell is described by:

- ``step(cell, params, carry, x) -> (new_carry, local)``: the step, keeping what
  its Jacobian products need (``local``);
- ``links(cell, params, local)``: which parameter columns feed which units, with
  which operand (``Link``);
- ``tangent(cell, params, local, d_carry, d_v, recurrent=True)``: forward mode,
  ``d s_t`` from tangents of the old state and of the units (with ``recurrent``,
  the old state's tangent also reaches the units through the weights);
- ``cotangent(cell, params, local, c_new)``: reverse mode, the units' cotangent
  ``(dΦ/dv)^T c``.

States are flat, [..., B, S] (S = H, or 2H for the LSTM's ``[h | c]``, as
``rbp.flat``); tangents may carry any leading axes of directions. Units are laid
out in blocks of H, each unit ``u`` belonging to hidden unit ``u % H``: in one
step a unit of Elman, the LSTM and GRU ``reset_after=True`` reaches only its own
hidden unit (its ``h``, and ``c`` for the LSTM), which SnAp-1 relies on.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from .cells import ACTIVATIONS, GRU, LSTM, activation_derivative, fused_bias

Array = jax.Array


class Link(NamedTuple):
    """Columns ``cols`` of parameter ``leaf`` feed the units ``units`` through
    the left operand ``operand`` [B, Din] (None for a bias: ones)."""

    leaf: str
    cols: slice
    units: slice
    operand: Array | None


def state_size(cell) -> int:
    """S: the flat state's width."""
    return 2 * cell.hidden_size if isinstance(cell, LSTM) else cell.hidden_size


def unit_count(cell) -> int:
    """U: the number of linear units."""
    H = cell.hidden_size
    return 6 * H if isinstance(cell, GRU) else cell.gates * H


def local_units(cell) -> bool:
    """Whether every unit reaches only its own hidden unit in one step."""
    return not (isinstance(cell, GRU) and not cell.reset_after)


def recurrent_weights(cell, params) -> list[tuple[slice, Array]]:
    """``(units, w)``: the units ``units`` receive ``h_{t-1} @ w``; GRU
    ``reset_after=False``'s ``(r * h) @ W_hn`` is in its ``tangent``."""
    H = cell.hidden_size
    if not isinstance(cell, GRU):
        return [(slice(0, cell.gates * H), params.w_hh)]
    if cell.reset_after:
        return [(slice(3 * H, 6 * H), params.w_hh)]
    return [(slice(3 * H, 5 * H), params.w_hh[:, : 2 * H])]


def _bias_links(params, units: slice) -> list[Link]:
    names = ("b",) if hasattr(params, "b") else ("b_ih", "b_hh")
    return [Link(name, slice(None), units, None) for name in names]


def links(cell, params, local) -> list[Link]:
    """Where each parameter enters the step (module docstring)."""
    H, x, h = cell.hidden_size, local["x"], local["h_prev"]
    if not isinstance(cell, GRU):
        units = slice(0, cell.gates * H)
        return [
            Link("w_ih", slice(None), units, x),
            Link("w_hh", slice(None), units, h),
            *_bias_links(params, units),
        ]
    a, everything = slice(0, 3 * H), slice(None)
    if cell.reset_after:
        u = slice(3 * H, 6 * H)
        return [
            Link("w_ih", everything, a, x),
            Link("b_ih", everything, a, None),
            Link("w_hh", everything, u, h),
            Link("b_hh", everything, u, None),
        ]
    rz, n, u_rz, u_n = slice(0, 2 * H), slice(2 * H, 3 * H), *_gru_before_units(H)
    return [
        Link("w_ih", everything, a, x),
        Link("b_ih", everything, a, None),
        Link("w_hh", rz, u_rz, h),
        Link("w_hh", n, u_n, local["r"] * h),
        Link("b_hh", rz, u_rz, None),
        Link("b_hh", n, u_n, None),
    ]


def _gru_before_units(H: int) -> tuple[slice, slice]:
    """GRU ``reset_after=False``: ``h W_h[r,z]`` then ``(r h) W_hn``."""
    return slice(3 * H, 5 * H), slice(5 * H, 6 * H)


def step(cell, params, carry, x: Array):
    """One step: ``(new_carry, local)``."""
    if isinstance(cell, LSTM):
        h_prev, c_prev = carry
        pre = x @ params.w_ih + h_prev @ params.w_hh + fused_bias(params)
        i, f, g, o = jnp.split(pre, 4, axis=-1)
        i, f, g, o = (
            jax.nn.sigmoid(i),
            jax.nn.sigmoid(f),
            jnp.tanh(g),
            jax.nn.sigmoid(o),
        )
        c = f * c_prev + i * g
        tanh_c = jnp.tanh(c)
        new = type(carry)(o * tanh_c, c)
        local = {"i": i, "f": f, "g": g, "o": o, "c_prev": c_prev, "tanh_c": tanh_c}
        return new, local | {"x": x, "h_prev": h_prev}
    if isinstance(cell, GRU):
        return _gru_step(cell, params, carry, x)
    pre = x @ params.w_ih + carry @ params.w_hh + fused_bias(params)
    h = ACTIVATIONS[cell.activation](pre)
    return h, {
        "slope": activation_derivative(cell.activation, h),
        "x": x,
        "h_prev": carry,
    }


def _gru_step(cell, params, h_prev, x: Array):
    r, z, n, u_n = cell.step_parts(params, h_prev, x)
    h = (1 - z) * n + z * h_prev
    return h, {"r": r, "z": z, "n": n, "u_n": u_n, "x": x, "h_prev": h_prev}


def tangent(cell, params, local, d_carry, d_v, recurrent: bool = True) -> Array:
    """Forward mode through one step: ``d s_t`` [..., B, S] from the old
    state's tangent ``d_carry`` [..., B, S] (or None: zero) and the units'
    ``d_v`` [..., B, U] (or None)."""
    H = cell.hidden_size
    like = d_carry if d_carry is not None else d_v
    shape = (*like.shape[:-1], unit_count(cell))
    d_v = jnp.zeros(shape, like.dtype) if d_v is None else d_v
    d_h = None if d_carry is None else d_carry[..., :H]
    if recurrent and d_h is not None:
        for units, w in recurrent_weights(cell, params):
            d_v = d_v.at[..., units].add(d_h @ w)
    if isinstance(cell, LSTM):
        d_c = None if d_carry is None else d_carry[..., H:]
        return _lstm_tangent(local, d_v, d_c)
    if isinstance(cell, GRU):
        return _gru_tangent(cell, params, local, d_v, d_h, recurrent)
    return local["slope"] * d_v


def _lstm_tangent(local, d_v, d_c_prev):
    d_i, d_f, d_g, d_o = jnp.split(d_v, 4, axis=-1)
    i, f, g, o, tanh_c = (local[k] for k in ("i", "f", "g", "o", "tanh_c"))
    d_c = local["c_prev"] * f * (1 - f) * d_f + g * i * (1 - i) * d_i
    d_c = d_c + i * (1 - g * g) * d_g
    if d_c_prev is not None:
        d_c = d_c + f * d_c_prev
    d_h = tanh_c * o * (1 - o) * d_o + o * (1 - tanh_c * tanh_c) * d_c
    return jnp.concatenate([d_h, d_c], axis=-1)


def _gru_tangent(cell, params, local, d_v, d_h_prev, recurrent):
    r, z, n, u_n, h_prev = (local[k] for k in ("r", "z", "n", "u_n", "h_prev"))
    da_r, da_z, da_n, du_r, du_z, du_n = jnp.split(d_v, 6, axis=-1)
    d_r = r * (1 - r) * (da_r + du_r)
    d_z = z * (1 - z) * (da_z + du_z)
    if cell.reset_after:
        d_pre_n = da_n + d_r * u_n + r * du_n
    else:  # u_n = (r * h) W_hn + b_hn: through r, and through h when recurrent
        d_rh = d_r * h_prev
        if recurrent and d_h_prev is not None:
            d_rh = d_rh + r * d_h_prev
        d_pre_n = da_n + du_n + d_rh @ params.w_hh[:, 2 * cell.hidden_size :]
    d_h = (h_prev - n) * d_z + (1 - z) * (1 - n * n) * d_pre_n
    return d_h if d_h_prev is None else d_h + z * d_h_prev


def cotangent(cell, params, local, c_new: Array) -> Array:
    """Reverse mode through one step, to the units: ``(dΦ/dv)^T c_new``, [B, U]
    from the new state's cotangent [B, S] (the old state held fixed)."""
    H = cell.hidden_size
    if isinstance(cell, LSTM):
        i, f, g, o, tanh_c = (local[k] for k in ("i", "f", "g", "o", "tanh_c"))
        c_h, c_c = c_new[..., :H], c_new[..., H:]
        c_c = c_c + c_h * o * (1 - tanh_c * tanh_c)
        return jnp.concatenate(
            [
                c_c * g * i * (1 - i),
                c_c * local["c_prev"] * f * (1 - f),
                c_c * i * (1 - g * g),
                c_h * tanh_c * o * (1 - o),
            ],
            axis=-1,
        )
    if isinstance(cell, GRU):
        r, z, n, u_n, h_prev = (local[k] for k in ("r", "z", "n", "u_n", "h_prev"))
        c_pre_n = c_new * (1 - z) * (1 - n * n)
        c_z = c_new * (h_prev - n) * z * (1 - z)
        if cell.reset_after:
            c_r, c_u_n = c_pre_n * u_n, c_pre_n * r
        else:
            c_r = (c_pre_n @ params.w_hh[:, 2 * H :].T) * h_prev
            c_u_n = c_pre_n
        c_r = c_r * r * (1 - r)
        return jnp.concatenate([c_r, c_z, c_pre_n, c_r, c_z, c_u_n], axis=-1)
    return local["slope"] * c_new
