"""Cell descriptions: Elman, LSTM, GRU and Feedforward (the zero-recurrence Elman).

A cell is an immutable, hashable description (sizes and activation); its parameters
are a plain NamedTuple created by ``cell.init(key)``. Cells are usable as static
arguments of ``jax.jit``. The fused affine map of every cell is

    pre_t = x_t W_ih + h_{t-1} W_hh + b        x_t: [B, D], h: [B, H], pre: [B, G*H]

with G = 1 for Elman/Feedforward and G = 4 for the LSTM, whose gate blocks are
ordered input, forget, candidate (g), output as in PyTorch. The GRU (G = 3:
reset, update, candidate, as in PyTorch) keeps the input and recurrent products
apart, because its reset gate multiplies the recurrent part of the candidate
(see ``GRU``).

Default initialisation (all cells), chosen for gradients that neither vanish nor
explode at the start of BPTT:

* ``w_ih``: uniform with variance ``gain**2 / D`` (LeCun uniform; gain 1 for tanh,
  sigmoid and identity, sqrt(2) for relu, as in He et al. 2015), so every
  pre-activation has unit variance for unit-variance inputs.
* ``w_hh``: each [H, H] gate block orthogonal (Saxe et al. 2014): all singular
  values are 1, so the linear part of the recurrence preserves the norm of the
  backpropagated error over time.
* ``b`` (the GRU's ``b_ih`` and ``b_hh``): zeros, except the LSTM forget-gate
  block, set to ``forget_bias`` (default 1.0, Gers et al. 2000; Jozefowicz et al.
  2015), which keeps the memory cell open early in training.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from . import draws
from ._scalars import finite_number, positive_int, prng_key, real_number

Array = jax.Array

# Activations the hand-written BPTT differentiates. Each maps a name to the
# function; its derivative is written by hand in ``activation_derivative``.
ACTIVATIONS = {
    "tanh": jnp.tanh,
    "relu": jax.nn.relu,
    "sigmoid": jax.nn.sigmoid,
    "identity": lambda z: z,
}
_INPUT_GAIN = {"tanh": 1.0, "relu": math.sqrt(2.0), "sigmoid": 1.0, "identity": 1.0}
# Names users reach for that have a zero (or undefined) derivative everywhere.
_NOT_DIFFERENTIABLE = {"step", "heaviside", "sign", "binary", "threshold", "hardlim"}


def activation_derivative(name: str, y: Array) -> Array:
    """d act(z) / dz written in terms of the output ``y = act(z)``.

    Expressing the derivative through the output means BPTT stores only the
    activations of the forward pass, never the pre-activations.
    """
    if name == "tanh":
        return 1 - y * y
    if name == "relu":
        # relu'(0) := 0, the same convention as jax.nn.relu's autodiff.
        return (y > 0).astype(y.dtype)
    if name == "sigmoid":
        return y * (1 - y)
    if name == "identity":
        return jnp.ones_like(y)
    raise ValueError(f"activation_derivative: unknown activation {name!r}")


class ElmanParams(NamedTuple):
    w_ih: Array  # [D, H]
    w_hh: Array  # [H, H]
    b: Array  # [H]


class FeedforwardParams(NamedTuple):
    w_ih: Array  # [D, H]
    b: Array  # [H]


class LSTMParams(NamedTuple):
    w_ih: Array  # [D, 4H]  gate blocks: input, forget, candidate (g), output
    w_hh: Array  # [H, 4H]
    b: Array  # [4H]


class GRUParams(NamedTuple):
    w_ih: Array  # [D, 3H]  gate blocks: reset (r), update (z), candidate (n)
    w_hh: Array  # [H, 3H]
    b_ih: Array  # [3H]
    b_hh: Array  # [3H]


class TwoBiasParams(NamedTuple):
    """An Elman or LSTM cell's parameters with PyTorch's two biases
    (``two_biases=True``): the pre-activations add ``b_ih + b_hh``."""

    w_ih: Array  # [D, G*H]
    w_hh: Array  # [H, G*H]
    b_ih: Array  # [G*H]
    b_hh: Array  # [G*H]


def fused_bias(params) -> Array:
    """The one bias the pre-activations add: ``b``, or ``b_ih + b_hh``."""
    return params.b if hasattr(params, "b") else params.b_ih + params.b_hh


def _two_biases(cell, params):
    """``params`` as ``TwoBiasParams`` (``b`` in ``b_ih``, zero ``b_hh``) if the
    cell keeps two biases."""
    if not cell.two_biases:
        return params
    return TwoBiasParams(params.w_ih, params.w_hh, params.b, jnp.zeros_like(params.b))


def _set_flag(cell, name: str) -> None:
    """Checks the cell's boolean field ``name`` (NumPy's booleans too, not the
    ints 0 and 1) and stores it as a plain bool."""
    value = getattr(cell, name)
    if not isinstance(value, bool | np.bool_):
        raise TypeError(
            f"{type(cell).__name__}: `{name}` must be True or False, got {value!r}"
        )
    object.__setattr__(cell, name, bool(value))


class LSTMCarry(NamedTuple):
    h: Array  # [B, H]
    c: Array  # [B, H]


def _check_activation(cls_name: str, activation: Any) -> None:
    name = (
        activation
        if isinstance(activation, str)
        else getattr(activation, "__name__", None)
    )
    if isinstance(name, str) and name.lower() in _NOT_DIFFERENTIABLE:
        raise ValueError(
            f"{cls_name}: activation {name!r} is not differentiable (its derivative is "
            "zero almost everywhere), and backpropagation needs a differentiable "
            f"activation; use one of {sorted(ACTIVATIONS)}"
        )
    if not isinstance(activation, str):
        raise TypeError(
            f"{cls_name}: `activation` must be a name, one of {sorted(ACTIVATIONS)}, "
            f"got {type(activation).__name__} {activation!r} (the hand-written BPTT "
            "needs the derivative of the activation, so it is chosen by name)"
        )
    if activation not in ACTIVATIONS:
        raise ValueError(
            f"{cls_name}: unknown `activation` {activation!r}; expected one of "
            f"{sorted(ACTIVATIONS)}"
        )


def _default_dtype(dtype: Any) -> jnp.dtype:
    if dtype is None:
        return jnp.dtype(jax.dtypes.canonicalize_dtype(jnp.float64))
    dtype = jnp.dtype(dtype)
    if not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(f"`dtype` must be a floating dtype, got {dtype}")
    return dtype


def lecun_uniform(key: Array, shape: tuple[int, int], gain: float, dtype) -> Array:
    limit = gain * math.sqrt(3.0 / shape[0])
    work = jnp.promote_types(dtype, jnp.float32)  # as in _orthogonal_blocks
    return draws.uniform(key, shape, work, -limit, limit).astype(dtype)


def _orthogonal_blocks(key: Array, hidden: int, blocks: int, dtype) -> Array:
    """[H, blocks*H]: each [H, H] block an independent orthogonal matrix.

    Drawn in at least float32 (LAPACK has no bfloat16 or float16 QR), then
    rounded to ``dtype``: low-precision parameters are float32's, rounded."""
    work = jnp.promote_types(dtype, jnp.float32)
    keys = jax.random.split(key, blocks)
    squares = [draws.orthogonal(k, hidden, work) for k in keys]
    return jnp.concatenate(squares, axis=1).astype(dtype)


def _batch_size(cls_name: str, batch_size: Any) -> int:
    return positive_int(f"{cls_name}.initial_carry", "batch_size", batch_size)


def _set_sizes(cell, *names: str) -> None:
    """Checks the cell's size fields and stores them as plain ints."""
    for name in names:
        value = positive_int(type(cell).__name__, name, getattr(cell, name))
        object.__setattr__(cell, name, value)


@dataclasses.dataclass(frozen=True)
class Elman:
    """Elman (simple) recurrent cell: ``h_t = act(x_t W_ih + h_{t-1} W_hh + b)``.

    Args:
        input_size: D, features per step.
        hidden_size: H, units in the hidden state.
        activation: ``"tanh"`` (default), ``"relu"``, ``"sigmoid"`` or ``"identity"``.
        two_biases: keep PyTorch's two bias vectors (``TwoBiasParams``, ``b_ih``
            and ``b_hh``) instead of their sum ``b``, so that a ``torch.nn.RNN``
            comes back bitwise (``rnnbptt.interop``); the same function.
    """

    input_size: int
    hidden_size: int
    activation: str = "tanh"
    two_biases: bool = False

    gates = 1
    recurrent = True

    def __post_init__(self):
        _set_sizes(self, "input_size", "hidden_size")
        _check_activation(type(self).__name__, self.activation)
        _set_flag(self, "two_biases")

    def init(self, key: Array, dtype=None) -> ElmanParams | TwoBiasParams:
        """Parameters as described in the module docstring (orthogonal ``w_hh``)."""
        dtype = _default_dtype(dtype)
        key = prng_key(f"{type(self).__name__}.init", "key", key)
        k_ih, k_hh = jax.random.split(key)
        D, H = self.input_size, self.hidden_size
        params = ElmanParams(
            w_ih=lecun_uniform(k_ih, (D, H), _INPUT_GAIN[self.activation], dtype),
            w_hh=_orthogonal_blocks(k_hh, H, 1, dtype),
            b=jnp.zeros((H,), dtype),
        )
        return _two_biases(self, params)

    def initial_carry(self, batch_size: int, dtype=None) -> Array:
        """Zero hidden state ``h`` of shape [batch_size, H]."""
        batch_size = _batch_size(type(self).__name__, batch_size)
        return jnp.zeros((batch_size, self.hidden_size), _default_dtype(dtype))

    def step(self, params, carry, x: Array):
        """One step, from raw input ``x: [B, D]``; returns ``(carry, h)``."""
        pre = x @ params.w_ih + carry @ params.w_hh + fused_bias(params)
        h = ACTIVATIONS[self.activation](pre)
        return h, h


@dataclasses.dataclass(frozen=True)
class Feedforward(Elman):
    """A dense layer ``h_t = act(x_t W_ih + b)``: Elman with ``W_hh`` fixed at zero.

    It runs through the same ``unroll`` and ``bptt`` code as Elman; the carry is
    empty. A static network (one input, one output) is simply T = 1.
    """

    recurrent = False

    def __post_init__(self):
        super().__post_init__()
        if self.two_biases:
            raise ValueError("Feedforward: `two_biases` is for recurrent cells")

    def init(self, key: Array, dtype=None) -> FeedforwardParams:
        p = Elman.init(self, key, dtype)
        return FeedforwardParams(w_ih=p.w_ih, b=p.b)

    def initial_carry(self, batch_size: int, dtype=None) -> tuple:
        """The empty carry ``()``: nothing flows from one step to the next."""
        _batch_size(type(self).__name__, batch_size)
        return ()

    def step(self, params, carry, x: Array):
        h = ACTIVATIONS[self.activation](x @ params.w_ih + params.b)
        return (), h


def symmetric(w: Array) -> Array:
    """``(w + w.T) / 2`` with a zero diagonal: the weights of a Hopfield network
    (no unit feeds itself). A linear projection, its own adjoint, so the
    gradient with respect to ``w`` is ``symmetric`` of the gradient with respect
    to the result."""
    return jnp.fill_diagonal((w + w.T) / 2, 0, inplace=False)


@dataclasses.dataclass(frozen=True)
class Hopfield(Elman):
    """A continuous Hopfield network with clamped inputs, for ``rnnbptt.settle``.

    ``h_t = act(x W_ih + h_{t-1} symmetric(W_hh) + b)``: the state ``h`` holds
    every unit that is not an input (hidden and output units alike, in the order
    the user chooses); the inputs ``x`` are clamped and feed the state through
    ``W_ih`` (the weights from the state back to the inputs never act, so only
    this block is kept). The recurrent weights are symmetric with no
    self-connections, ``symmetric(W_hh)``, whatever ``W_hh`` holds, so that the
    network has an energy and settles (Hopfield 1984). Sigmoid units by default.

    ``init`` draws ``W_hh`` as ``symmetric`` of an orthogonal matrix (spectral
    norm near 1, up to about 1.25 once the diagonal is zeroed; with the
    sigmoid's slope at most 1/4 the update starts out a contraction).
    """

    activation: str = "sigmoid"

    def __post_init__(self):
        super().__post_init__()
        if self.two_biases:
            raise ValueError("Hopfield: `two_biases` is not supported")

    def init(self, key: Array, dtype=None) -> ElmanParams:
        params = Elman.init(self, key, dtype)
        return params._replace(w_hh=symmetric(params.w_hh))

    def step(self, params, carry, x: Array):
        return Elman.step(self, self.elman_params(params), carry, x)

    def elman_params(self, params) -> ElmanParams:
        """The parameters of the Elman cell this network runs as."""
        return params._replace(w_hh=symmetric(params.w_hh))


@dataclasses.dataclass(frozen=True)
class LSTM:
    """Long short-term memory cell (Hochreiter and Schmidhuber 1997, with forget gate).

    ``[i f g o] = [σ σ tanh σ](x_t W_ih + h_{t-1} W_hh + b)``,
    ``c_t = f*c_{t-1} + i*g``,  ``h_t = o*tanh(c_t)``.

    Parameters map ``torch.nn.LSTM`` exactly: ``w_ih = weight_ih_l0.T``,
    ``w_hh = weight_hh_l0.T``, ``b = bias_ih_l0 + bias_hh_l0``.

    Args:
        input_size: D, features per step.
        hidden_size: H, units in ``h`` and in the memory cell ``c``.
        forget_bias: initial value of the forget-gate block of ``b`` (default 1.0).
        two_biases: keep PyTorch's ``bias_ih`` and ``bias_hh`` apart
            (``TwoBiasParams``; the forget bias goes in ``b_ih``), so that a
            ``torch.nn.LSTM`` comes back bitwise (``rnnbptt.interop``).
    """

    input_size: int
    hidden_size: int
    forget_bias: float = 1.0
    two_biases: bool = False

    gates = 4
    recurrent = True

    def __post_init__(self):
        _set_sizes(self, "input_size", "hidden_size")
        if real_number(self.forget_bias) is None:
            raise TypeError(
                f"LSTM: `forget_bias` must be a float, got {self.forget_bias!r}"
            )
        bias = finite_number("LSTM", "forget_bias", self.forget_bias)
        if type(self.forget_bias) not in (int, float):  # NumPy scalars: a float
            object.__setattr__(self, "forget_bias", bias)
        _set_flag(self, "two_biases")

    def init(self, key: Array, dtype=None) -> LSTMParams | TwoBiasParams:
        """Parameters as described in the module docstring."""
        dtype = _default_dtype(dtype)
        key = prng_key("LSTM.init", "key", key)
        k_ih, k_hh = jax.random.split(key)
        D, H = self.input_size, self.hidden_size
        b = jnp.zeros((4 * H,), dtype).at[H : 2 * H].set(self.forget_bias)
        params = LSTMParams(
            w_ih=lecun_uniform(k_ih, (D, 4 * H), 1.0, dtype),
            w_hh=_orthogonal_blocks(k_hh, H, 4, dtype),
            b=b,
        )
        return _two_biases(self, params)

    def initial_carry(self, batch_size: int, dtype=None) -> LSTMCarry:
        """Zero state ``LSTMCarry(h, c)``, each [batch_size, H]."""
        batch_size = _batch_size("LSTM", batch_size)
        zeros = jnp.zeros((batch_size, self.hidden_size), _default_dtype(dtype))
        return LSTMCarry(zeros, zeros)

    def step(self, params, carry, x: Array):
        """One step, from raw input ``x: [B, D]``; returns ``(carry, h)``."""
        h, c = carry
        pre = x @ params.w_ih + h @ params.w_hh + fused_bias(params)
        i, f, g, o = jnp.split(pre, 4, axis=-1)
        c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
        h = jax.nn.sigmoid(o) * jnp.tanh(c)
        return LSTMCarry(h, c), h


@dataclasses.dataclass(frozen=True)
class GRU:
    """Gated recurrent unit (Cho et al. 2014), in either of its two conventions.

    With the input and recurrent parts ``a = x_t W_ih + b_ih`` and
    ``u = h_{t-1} W_hh + b_hh``, each split into (r, z, n) blocks of H::

        r = σ(a_r + u_r)                  reset gate
        z = σ(a_z + u_z)                  update gate
        n = tanh(a_n + r * u_n)           reset_after=True (default)
        n = tanh(a_n + (r * h_{t-1}) W_hn + b_hn)   reset_after=False
        h_t = (1 - z) * n + z * h_{t-1}

    ``reset_after=True`` is PyTorch's, Flax's and Keras' default: the parameters
    map ``torch.nn.GRU`` exactly, ``w_ih = weight_ih_l0.T``, ``w_hh =
    weight_hh_l0.T``, ``b_ih = bias_ih_l0``, ``b_hh = bias_hh_l0``.
    ``reset_after=False`` is Cho et al.'s original (Keras' ``reset_after=False``,
    ONNX's default): the reset gate acts before the recurrent product, and both
    biases simply add to the pre-activations (Keras' single bias is ``b_ih``,
    with ``b_hh`` zero). Either way ``z`` weighs the old state, as in PyTorch and
    Keras (Haiku's update gate means ``1 - z``).

    Args:
        input_size: D, features per step.
        hidden_size: H, units in ``h``.
        reset_after: where the reset gate acts (see above; default True).
    """

    input_size: int
    hidden_size: int
    reset_after: bool = True

    gates = 3
    recurrent = True

    def __post_init__(self):
        _set_sizes(self, "input_size", "hidden_size")
        _set_flag(self, "reset_after")

    def init(self, key: Array, dtype=None) -> GRUParams:
        """Parameters as described in the module docstring (LeCun-uniform
        ``w_ih``, each of the three [H, H] blocks of ``w_hh`` orthogonal, zero
        biases)."""
        dtype = _default_dtype(dtype)
        key = prng_key("GRU.init", "key", key)
        k_ih, k_hh = jax.random.split(key)
        D, H = self.input_size, self.hidden_size
        return GRUParams(
            w_ih=lecun_uniform(k_ih, (D, 3 * H), 1.0, dtype),
            w_hh=_orthogonal_blocks(k_hh, H, 3, dtype),
            b_ih=jnp.zeros((3 * H,), dtype),
            b_hh=jnp.zeros((3 * H,), dtype),
        )

    def initial_carry(self, batch_size: int, dtype=None) -> Array:
        """Zero hidden state ``h`` of shape [batch_size, H]."""
        batch_size = _batch_size("GRU", batch_size)
        return jnp.zeros((batch_size, self.hidden_size), _default_dtype(dtype))

    def step(self, params, carry, x: Array):
        """One step, from raw input ``x: [B, D]``; returns ``(carry, h)``."""
        _, z, n, _ = self.step_parts(params, carry, x)
        h = (1 - z) * n + z * carry
        return h, h

    def step_parts(self, params, carry, x: Array):
        """``(r, z, n, u_n)`` of one step: the gates, the candidate and its
        recurrent part ``u_n`` (``h W_hn + b_hn``, or ``(r h) W_hn + b_hn``)."""
        a_r, a_z, a_n = jnp.split(x @ params.w_ih + params.b_ih, 3, axis=-1)
        w_hr, w_hz, w_hn = jnp.split(params.w_hh, 3, axis=-1)
        b_hr, b_hz, b_hn = jnp.split(params.b_hh, 3)
        r = jax.nn.sigmoid(a_r + carry @ w_hr + b_hr)
        z = jax.nn.sigmoid(a_z + carry @ w_hz + b_hz)
        if self.reset_after:
            u_n = carry @ w_hn + b_hn
            n = jnp.tanh(a_n + r * u_n)
        else:
            u_n = (r * carry) @ w_hn + b_hn
            n = jnp.tanh(a_n + u_n)
        return r, z, n, u_n


Cell = Elman | Feedforward | LSTM | GRU | Hopfield
