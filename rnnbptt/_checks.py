"""Input validation at the public boundary, from static shapes and dtypes only.

Every check runs at trace time (it reads ``.shape`` and ``.dtype``, never values),
so it works on concrete arrays and on tracers inside a user's ``jax.jit``.
"""

from __future__ import annotations

import warnings
from typing import Any

import jax
import jax.numpy as jnp

from ._scalars import positive_int
from .cells import (
    GRU,
    LSTM,
    Elman,
    ElmanParams,
    Feedforward,
    FeedforwardParams,
    GRUParams,
    Hopfield,
    LSTMCarry,
    LSTMParams,
    TwoBiasParams,
)

BACKWARDS = ("autodiff", "manual")
# The hand-written BPTT is the faster engine for every cell and size measured
# (PERFORMANCE.md), so it is the default; "autodiff" is needed for forward mode.
DEFAULT_BACKWARD = "manual"


def check_cell(fn: str, cell: Any) -> None:
    if not isinstance(cell, Elman | LSTM | GRU):
        raise TypeError(
            f"{fn}: `cell` must be an rnnbptt cell (Elman, LSTM, GRU or Feedforward), "
            f"got {type(cell).__name__}"
        )
    if isinstance(cell, Hopfield):
        raise TypeError(
            f"{fn}: a Hopfield cell runs until its state settles, with rnnbptt.settle "
            "(its recurrent weights are symmetric(w_hh), which the time-unrolled "
            "engines do not apply)"
        )


def check_backward(fn: str, backward: Any) -> None:
    if backward not in BACKWARDS:
        raise ValueError(
            f"{fn}: `backward` must be one of {BACKWARDS}, got {backward!r}"
        )


# Marks a keyword that was not passed (None is a value of ``recompute_every``).
NOT_GIVEN: Any = type("NotGiven", (), {"__repr__": lambda self: "NOT_GIVEN"})()


def check_recompute_every(
    fn: str, every: Any, old: Any = NOT_GIVEN, *, stacklevel: int = 3
) -> int | None:
    """None (store every step) or a positive int: keep a carry every k steps.

    ``old`` is the value of the keyword's former name ``checkpoint_every``, when
    given: it still works for one release, with a ``DeprecationWarning`` (the
    name read like "save a checkpoint file", which ``fit(checkpoint=...)`` does).
    """
    name = "recompute_every"
    if old is not NOT_GIVEN:
        if every is not None:
            raise TypeError(
                f"{fn}: pass `recompute_every` only (`checkpoint_every` is its "
                f"former name), got both: {every!r} and {old!r}"
            )
        warnings.warn(
            f"{fn}: `checkpoint_every` is renamed `recompute_every` (it recomputes "
            "the forward pass through time in the backward pass; it writes no "
            "file); the old name will be removed in rnnbptt 0.3",
            DeprecationWarning,
            stacklevel=stacklevel,
        )
        every, name = old, "checkpoint_every"
    if every is None:
        return None
    return positive_int(fn, name, every)


def params_type(cell) -> type:
    if isinstance(cell, Feedforward):
        return FeedforwardParams
    if isinstance(cell, GRU):
        return GRUParams
    if cell.two_biases:
        return TwoBiasParams
    return LSTMParams if isinstance(cell, LSTM) else ElmanParams


def expected_param_shapes(cell) -> dict[str, tuple[int, ...]]:
    D, H, GH = cell.input_size, cell.hidden_size, cell.gates * cell.hidden_size
    shapes = {"w_ih": (D, GH), "w_hh": (H, GH), "b": (GH,)}
    if isinstance(cell, GRU) or getattr(cell, "two_biases", False):
        del shapes["b"]
        shapes.update(b_ih=(GH,), b_hh=(GH,))
    if not cell.recurrent:
        del shapes["w_hh"]
    return shapes


def as_array(fn: str, name: str, value: Any, what: str = "an array") -> jax.Array:
    """``value`` as a JAX array (tracers pass through); a TypeError naming
    ``name`` for what is not one (None, a string, a ragged list, a dict)."""
    if value is None or isinstance(value, str | bytes | dict):
        arr = None
    else:
        try:
            arr = jnp.asarray(value)
        except (TypeError, ValueError):
            arr = None
    if arr is None:
        got = type(value).__name__
        if value is None or isinstance(value, str | bytes):
            got = f"{got} {value!r}"
        raise TypeError(f"{fn}: `{name}` must be {what}, got {got}")
    return arr


def as_float_array(fn: str, name: str, value: Any) -> jax.Array:
    arr = as_array(fn, name, value)
    if not jnp.issubdtype(arr.dtype, jnp.floating):
        raise TypeError(
            f"{fn}: `{name}` must have a floating dtype (float32, float64 or "
            f"bfloat16), got {arr.dtype}; convert it, e.g. `{name}.astype(float)`"
        )
    return arr


def check_shape(fn: str, name: str, arr: jax.Array, expected: tuple) -> None:
    if arr.shape != tuple(expected):
        raise ValueError(
            f"{fn}: `{name}` must have shape {tuple(expected)}, got {arr.shape}"
        )


def _check_dtype(fn: str, name: str, arr: jax.Array, dtype, source: str) -> None:
    if arr.dtype != dtype:
        raise TypeError(
            f"{fn}: `{name}` has dtype {arr.dtype} but {source} has dtype {dtype}; "
            "all of params, xs and the carry must share one dtype (cast explicitly)"
        )


def check_params(fn: str, cell, params: Any) -> tuple[Any, jnp.dtype]:
    """Returns params as arrays and their common floating dtype."""
    ptype = params_type(cell)
    if not isinstance(params, ptype):
        raise TypeError(
            f"{fn}: `params` must be {ptype.__name__} (as returned by "
            f"{type(cell).__name__}.init), got {type(params).__name__}"
        )
    leaves = {}
    for field, shape in expected_param_shapes(cell).items():
        arr = as_float_array(fn, f"params.{field}", getattr(params, field))
        check_shape(fn, f"params.{field}", arr, shape)
        leaves[field] = arr
    dtype = leaves["w_ih"].dtype
    for field, arr in leaves.items():
        _check_dtype(fn, f"params.{field}", arr, dtype, "params.w_ih")
    return ptype(**leaves), dtype


def check_xs(fn: str, cell, xs: Any, dtype) -> jax.Array:
    xs = as_float_array(fn, "xs", xs)
    if xs.ndim != 3:
        raise ValueError(
            f"{fn}: `xs` must have rank 3, [B, T, D] (batch, time, features), got "
            f"shape {xs.shape}; for one sequence use xs[None], for one step xs[:, None]"
        )
    B, T, D = xs.shape
    if cell.input_size != D:
        raise ValueError(
            f"{fn}: `xs` last axis must be the cell's input_size {cell.input_size}, "
            f"got shape {xs.shape}"
        )
    if B < 1 or T < 1:
        raise ValueError(
            f"{fn}: `xs` needs at least one sequence and one step, got shape {xs.shape}"
        )
    _check_dtype(fn, "xs", xs, dtype, "params")
    return xs


def check_carry(fn: str, name: str, cell, carry: Any, batch: int, dtype) -> Any:
    """Returns the carry in the cell's own structure; None means zeros."""
    if carry is None:
        return cell.initial_carry(batch, dtype)
    H = cell.hidden_size
    if not cell.recurrent:
        if not (isinstance(carry, tuple) and len(carry) == 0):
            raise TypeError(
                f"{fn}: `{name}` of a Feedforward cell must be () or None (it has "
                f"no state), got {type(carry).__name__}"
            )
        return ()
    if isinstance(cell, LSTM):
        if not isinstance(carry, tuple) or len(carry) != 2:
            raise TypeError(
                f"{fn}: `{name}` of an LSTM must be a pair LSTMCarry(h, c), got "
                f"{type(carry).__name__}"
                + (f" of length {len(carry)}" if isinstance(carry, tuple) else "")
            )
        parts = []
        for part, value in zip(("h", "c"), carry, strict=True):
            arr = as_float_array(fn, f"{name}.{part}", value)
            check_shape(fn, f"{name}.{part}", arr, (batch, H))
            _check_dtype(fn, f"{name}.{part}", arr, dtype, "params")
            parts.append(arr)
        return LSTMCarry(*parts)
    if isinstance(carry, tuple):
        raise TypeError(
            f"{fn}: `{name}` of the {type(cell).__name__} cell must be one array "
            "h [B, H], got a tuple"
        )
    arr = as_float_array(fn, name, carry)
    check_shape(fn, name, arr, (batch, H))
    _check_dtype(fn, name, arr, dtype, "params")
    return arr


def check_mask(fn: str, mask: Any, batch: int, steps: int) -> jax.Array | None:
    if mask is None:
        return None
    mask = as_array(fn, "mask", mask, "None or a bool array [B, T]")
    if mask.dtype != jnp.bool_:
        raise TypeError(
            f"{fn}: `mask` must have dtype bool (True marks a valid step), got "
            f"{mask.dtype}; use `mask.astype(bool)`"
        )
    check_shape(fn, "mask", mask, (batch, steps))
    return mask


def check_unroll_args(fn: str, cell, params, xs, carry0, mask):
    """Validates the inputs shared by unroll and bptt; returns them normalised."""
    check_cell(fn, cell)
    params, dtype = check_params(fn, cell, params)
    xs = check_xs(fn, cell, xs, dtype)
    B, T, _ = xs.shape
    carry0 = check_carry(fn, "carry0", cell, carry0, B, dtype)
    mask = check_mask(fn, mask, B, T)
    return params, xs, carry0, mask
