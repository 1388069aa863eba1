"""Sequence models: stacked cells, optional bidirectional layers, a dense readout.

    h^1 = cell_1(x),  h^l = cell_l(dropout(h^{l-1})),  y_t = h^L_t W + b

``head="many_to_many"`` gives an output at every step ([B, T, K]: forecasting,
tagging); ``head="many_to_one"`` one per sequence ([B, K]: classification), read
at the last *valid* step under a mask. Feedforward cells with T = 1 give a plain
multilayer perceptron through the same model.

Parameters are plain NamedTuples, so optax, ``jax.tree`` and checkpoints handle
them directly. ``backward=`` chooses the gradient engine of every recurrent layer;
the readout and dropout are plain JAX and need no special treatment.
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ._checks import (
    DEFAULT_BACKWARD,
    NOT_GIVEN,
    as_float_array,
    check_backward,
    check_mask,
    check_recompute_every,
    check_shape,
)
from ._scalars import boolean, positive_int, prng_key, real_number
from .cells import GRU, LSTM, Elman, Feedforward, lecun_uniform
from .data_checks import check_mask_pattern
from .unroll import unroll

Array = jax.Array
HEADS = ("many_to_many", "many_to_one", None)
KINDS = {"elman": Elman, "lstm": LSTM, "gru": GRU, "feedforward": Feedforward}


class DenseParams(NamedTuple):
    w: Array  # [H, K]
    b: Array  # [K]


class BidirectionalParams(NamedTuple):
    forward: Any  # the forward-in-time cell's params
    backward: Any  # the backward-in-time cell's params


class ModelParams(NamedTuple):
    layers: tuple  # one entry per layer: cell params, or BidirectionalParams
    readout: DenseParams | None  # None for head=None


def _reverse_index(mask: Array | None, steps: int, batch: int) -> Array:
    """[B, T] time index that reverses the order of each row's valid steps.

    The j-th of a row's n valid steps reads its (n-1-j)-th, and padded steps
    read themselves, so any mask pattern works: with right padding, step
    t < n maps to n - 1 - t and the padding stays where it is.
    """
    t = jnp.arange(steps)[None, :]
    if mask is None:
        return jnp.broadcast_to(steps - 1 - t, (batch, steps))
    count = jnp.sum(mask, axis=1, keepdims=True)
    rank = jnp.cumsum(mask, axis=1) - 1  # j, at a valid step
    valid_first = jnp.argsort(~mask, axis=1, stable=True)  # valid steps, in order
    partner = jnp.take_along_axis(valid_first, jnp.maximum(count - 1 - rank, 0), 1)
    return jnp.where(mask, partner, t)


def _along_time(xs: Array, index: Array) -> Array:
    return jnp.take_along_axis(xs, index[..., None], axis=1)


def last_valid(hs: Array, mask: Array | None) -> Array:
    """[B, T, H] -> [B, H]: each row at its last step where ``mask`` is True."""
    steps = hs.shape[1]
    if mask is None:
        return hs[:, -1]
    last = steps - 1 - jnp.argmax(mask[:, ::-1], axis=1)
    return _along_time(hs, last[:, None])[:, 0]


def first_valid(hs: Array, mask: Array | None) -> Array:
    """[B, T, H] -> [B, H]: each row at its first step where ``mask`` is True."""
    if mask is None:
        return hs[:, 0]
    return _along_time(hs, jnp.argmax(mask, axis=1)[:, None])[:, 0]


def _check_applies(kind: str, **options) -> None:
    """``SequenceModel.build``'s cell options, refused where they do not apply."""
    applies = {
        "activation": ("elman", "feedforward"),
        "forget_bias": ("lstm",),
        "reset_after": ("gru",),
    }
    for name, value in options.items():
        if value is not None and kind not in applies[name]:
            kinds = " and ".join(applies[name])
            raise ValueError(
                f"SequenceModel.build: `{name}` applies to {kinds} layers, not "
                f"{kind!r} (got {name}={value!r}); leave it out"
            )


def directions(fn: str, model, k: int, layer) -> tuple:
    """Layer ``k``'s params per direction: ``(layer,)``, or ``(forward,
    backward)`` of a bidirectional model (a TypeError for anything but
    ``BidirectionalParams`` there)."""
    if not model.bidirectional:
        return (layer,)
    if not isinstance(layer, BidirectionalParams):
        raise TypeError(
            f"{fn}: `params.layers[{k}]` of a bidirectional model must be "
            f"BidirectionalParams(forward, backward), got {type(layer).__name__}"
        )
    return tuple(layer)


def _check_one_dtype(params) -> None:
    """Every parameter in one floating dtype (the dtype of the computation)."""
    leaves = jax.tree_util.tree_leaves_with_path(params)
    dtype = leaves[0][1].dtype
    for path, leaf in leaves:
        if leaf.dtype != dtype:
            raise TypeError(
                f"SequenceModel.apply: parameters must share one dtype, but "
                f"`params{jax.tree_util.keystr(path)}` is {leaf.dtype} and "
                f"`params{jax.tree_util.keystr(leaves[0][0])}` is {dtype} (cast "
                "them all, e.g. jax.tree.map(lambda a: a.astype(dtype), params))"
            )


def _dropout(key: Array, rate: float, x: Array) -> Array:
    keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
    return jnp.where(keep, x / (1.0 - rate), 0).astype(x.dtype)


@dataclasses.dataclass(frozen=True)
class SequenceModel:
    """Stacked recurrent (or feedforward) layers and a dense readout.

    Args:
        cells: the layers' cells, first to last; layer l+1's ``input_size`` must be
            layer l's ``hidden_size`` (twice that when bidirectional).
        output_size: K, outputs per step (or per sequence); None with
            ``head=None``.
        head: ``"many_to_many"``, ``"many_to_one"``, or None: no readout, the
            outputs are the last layer's states [B, T, H] (2H when bidirectional),
            like ``torch.nn.LSTM``'s ``output`` (see ``rnnbptt.interop``).
        bidirectional: run every layer forwards and backwards in time and
            concatenate the two (the backward direction reads each sequence's
            valid steps in reverse, whatever the mask's pattern).
        dropout: rate of dropout between layers (active only when ``apply`` gets a
            ``key``).

    Example:
        >>> import jax, rnnbptt
        >>> model = rnnbptt.SequenceModel.build("lstm", 3, [16, 16], 1)
        >>> params = model.init(jax.random.key(0))
        >>> model.apply(params, jax.numpy.ones((2, 10, 3))).shape
        (2, 10, 1)
    """

    cells: tuple
    output_size: int | None
    head: str | None = "many_to_many"
    bidirectional: bool = False
    dropout: float = 0.0

    def __post_init__(self):
        cells = tuple(self.cells) if isinstance(self.cells, list | tuple) else None
        if not cells or not all(isinstance(c, Elman | LSTM | GRU) for c in cells):
            raise TypeError(
                "SequenceModel: `cells` must be a non-empty tuple of Elman, LSTM, GRU "
                f"or Feedforward cells, got {self.cells!r}"
            )
        object.__setattr__(self, "cells", cells)
        width = 2 if self.bidirectional else 1
        for i, (below, above) in enumerate(itertools.pairwise(cells)):
            if above.input_size != width * below.hidden_size:
                raise ValueError(
                    f"SequenceModel: layer {i + 1} has input_size {above.input_size} "
                    f"but layer {i} outputs {width * below.hidden_size} features"
                )
        if self.head not in HEADS:
            raise ValueError(
                f"SequenceModel: `head` must be one of {HEADS}, got {self.head!r}"
            )
        if self.head is None:
            if self.output_size is not None:
                raise ValueError(
                    "SequenceModel: a model without a readout (head=None) outputs "
                    "its last layer's states; `output_size` must be None, got "
                    f"{self.output_size!r}"
                )
        else:
            size = positive_int("SequenceModel", "output_size", self.output_size)
            object.__setattr__(self, "output_size", size)
        if not isinstance(self.bidirectional, bool | np.bool_):
            raise TypeError(
                "SequenceModel: `bidirectional` must be True or False, got "
                f"{self.bidirectional!r}"
            )
        object.__setattr__(self, "bidirectional", bool(self.bidirectional))
        rate = real_number(self.dropout)
        if rate is None or not 0.0 <= rate < 1.0:
            raise ValueError(
                f"SequenceModel: `dropout` must be a number in [0, 1), got "
                f"{self.dropout!r}"
            )
        if type(self.dropout) not in (int, float):  # NumPy scalars: a float
            object.__setattr__(self, "dropout", rate)

    @classmethod
    def build(
        cls,
        kind: str,
        input_size: int,
        hidden_sizes,
        output_size: int,
        *,
        activation: str | None = None,
        forget_bias: float | None = None,
        reset_after: bool | None = None,
        **kwargs,
    ) -> SequenceModel:
        """A model of ``len(hidden_sizes)`` layers of one kind of cell.

        Args:
            kind: ``"elman"``, ``"lstm"``, ``"gru"`` or ``"feedforward"``.
            input_size: D, features per step.
            hidden_sizes: hidden units per layer, e.g. ``[64, 64]``.
            output_size: K.
            activation: for Elman and Feedforward layers (default ``"tanh"``);
                refused for LSTM layers, whose gates have fixed activations.
            forget_bias: for LSTM layers (default 1.0); refused for the others.
            reset_after: for GRU layers (default True, PyTorch's convention; see
                ``GRU``); refused for the others.
            **kwargs: ``head``, ``bidirectional``, ``dropout``.
        """
        if kind not in KINDS:
            raise ValueError(
                f"SequenceModel.build: `kind` must be one of {sorted(KINDS)}, "
                f"got {kind!r}"
            )
        _check_applies(
            kind,
            activation=activation,
            forget_bias=forget_bias,
            reset_after=reset_after,
        )
        width = 2 if kwargs.get("bidirectional") else 1
        if isinstance(hidden_sizes, str) or not hasattr(hidden_sizes, "__iter__"):
            raise TypeError(
                "SequenceModel.build: `hidden_sizes` must be a list of ints, one per "
                f"layer (e.g. [64, 64]), got {hidden_sizes!r}"
            )
        sizes = list(hidden_sizes)
        if not sizes:
            raise ValueError("SequenceModel.build: `hidden_sizes` is empty")
        cells = []
        for i, hidden in enumerate(sizes):
            d = input_size if i == 0 else width * sizes[i - 1]
            if kind == "lstm":
                bias = 1.0 if forget_bias is None else forget_bias
                cells.append(LSTM(d, hidden, forget_bias=bias))
            elif kind == "gru":
                after = True if reset_after is None else reset_after
                cells.append(GRU(d, hidden, reset_after=after))
            else:
                act = "tanh" if activation is None else activation
                cells.append(KINDS[kind](d, hidden, activation=act))
        return cls(tuple(cells), output_size, **kwargs)

    @property
    def input_size(self) -> int:
        return self.cells[0].input_size

    @property
    def width(self) -> int:
        """Features the last layer outputs: H, or 2H when bidirectional."""
        return (2 if self.bidirectional else 1) * self.cells[-1].hidden_size

    @property
    def out_features(self) -> int:
        """K, outputs per step or sequence: ``output_size``, or the last layer's
        ``width`` for a model without a readout (``head=None``)."""
        return self.width if self.head is None else self.output_size

    @property
    def per_step(self) -> bool:
        """An output at every step (every head but many-to-one)."""
        return self.head != "many_to_one"

    def init(self, key: Array, dtype=None) -> ModelParams:
        """Each cell's own initialisation; LeCun-uniform readout, zero bias (no
        readout, None, for ``head=None``)."""
        key = prng_key("SequenceModel.init", "key", key)
        keys = jax.random.split(key, len(self.cells) + 1)
        layers = []
        for cell, k in zip(self.cells, keys[:-1], strict=True):
            if self.bidirectional:
                k_f, k_b = jax.random.split(k)
                layers.append(
                    BidirectionalParams(cell.init(k_f, dtype), cell.init(k_b, dtype))
                )
            else:
                layers.append(cell.init(k, dtype))
        if self.head is None:
            return ModelParams(tuple(layers), None)
        dtype = jax.tree.leaves(layers[0])[0].dtype
        w = lecun_uniform(keys[-1], (self.width, self.output_size), 1.0, dtype)
        return ModelParams(
            tuple(layers), DenseParams(w, jnp.zeros(self.output_size, dtype))
        )

    def initial_carry(self, batch_size: int, dtype=None) -> tuple:
        """Zero state of every layer: a tuple of the cells' carries."""
        return tuple(cell.initial_carry(batch_size, dtype) for cell in self.cells)

    def reset_carry(self, carry: tuple, reset) -> tuple:
        """Zeroes the state of the streams (batch rows) where ``reset`` [B] is True.

        ``reset`` is bool with one entry per stream: a length-1 ``reset`` is
        refused, not broadcast to every stream.
        """
        reset = jnp.asarray(reset)
        streams = {c.shape[0] for c in jax.tree.leaves(carry)}
        if reset.dtype != bool:
            raise TypeError(
                "SequenceModel.reset_carry: `reset` must be bool (True where a stream "
                f"starts afresh), got dtype {reset.dtype}"
            )
        if len(streams) != 1 or reset.shape != (*streams,):
            raise ValueError(
                "SequenceModel.reset_carry: `reset` must have shape (B,), one entry "
                f"per stream of `carry` (batch sizes {sorted(streams)}), got "
                f"{reset.shape}"
            )
        return jax.tree.map(
            lambda c: jnp.where(reset.reshape((-1,) + (1,) * (c.ndim - 1)), 0, c), carry
        )

    def apply(
        self,
        params: ModelParams,
        xs,
        mask=None,
        *,
        carry0=None,
        key: Array | None = None,
        backward: str = DEFAULT_BACKWARD,
        recompute_every: int | None = None,
        return_carry: bool = False,
        checkpoint_every=NOT_GIVEN,
    ):
        """Runs the model.

        Args:
            params: from ``init``.
            xs: [B, T, D] inputs.
            mask: [B, T] bool, True at valid steps (right padding is the usual
                pattern, but any works). A many-to-one model needs a valid step in
                every row: a row without one is refused here, and under ``jit``
                (where the mask's values are unknown) its output means nothing
                and the train and eval steps give it zero weight.
            carry0: initial state of every layer (``initial_carry``), to continue a
                stream from a previous call; None for zeros. Not for bidirectional
                models.
            key: PRNG key for dropout; None means no dropout (evaluation).
            backward: gradient engine of the recurrent layers, ``"manual"``
                (hand-written BPTT, the default) or ``"autodiff"``.
            recompute_every: checkpointing through time in every layer: keep
                the carry every k steps and recompute the rest in the backward
                pass (see ``unroll``); None stores every step.
            return_carry: also return every layer's final carry (stateful streams:
                feed it back as ``carry0``; reset by passing None).
            checkpoint_every: the former name of ``recompute_every`` (deprecated).

        Returns:
            Outputs [B, T, K] (many-to-many), [B, K] (many-to-one) or the last
            layer's states [B, T, width] (``head=None``, zero at masked steps);
            with ``return_carry``, ``(outputs, final_carries)``.
        """
        check_backward("SequenceModel.apply", backward)
        return_carry = boolean("SequenceModel.apply", "return_carry", return_carry)
        if key is not None:
            key = prng_key("SequenceModel.apply", "key", key)
        every = check_recompute_every(
            "SequenceModel.apply", recompute_every, checkpoint_every
        )
        run = dict(backward=backward, recompute_every=every)
        if not isinstance(params, ModelParams) or len(params.layers) != len(self.cells):
            raise TypeError(
                "SequenceModel.apply: `params` must be the ModelParams of this model "
                f"({len(self.cells)} layers, from model.init)"
            )
        xs = jnp.asarray(xs)
        if xs.ndim == 3:  # (other ranks: unroll's clear error below)
            mask = check_mask("SequenceModel.apply", mask, xs.shape[0], xs.shape[1])
            if mask is not None and not isinstance(mask, jax.core.Tracer):
                check_mask_pattern("SequenceModel.apply", self, np.asarray(mask))
        self._check_readout(params.readout)
        _check_one_dtype(params)
        if carry0 is not None and self.bidirectional:
            raise ValueError(
                "SequenceModel.apply: `carry0` (a stateful stream) is not defined for "
                "bidirectional models: the backward direction starts at the end"
            )
        if carry0 is None:
            carry0 = (None,) * len(self.cells)
        elif not isinstance(carry0, tuple) or len(carry0) != len(self.cells):
            raise TypeError(
                f"SequenceModel.apply: `carry0` must be a tuple of {len(self.cells)} "
                "carries (model.initial_carry), got "
                f"{type(carry0).__name__}"
            )
        h, finals = xs, []
        for i, (cell, p, c0) in enumerate(
            zip(self.cells, params.layers, carry0, strict=True)
        ):
            if i > 0 and self.dropout > 0 and key is not None:
                h = _dropout(jax.random.fold_in(key, i), self.dropout, h)
            if self.bidirectional:
                directions("SequenceModel.apply", self, i, p)  # the structure
                final, h = self._bidirectional(cell, p, h, mask, run)
            else:
                final, h = unroll(cell, p, h, c0, mask=mask, **run)
            finals.append(final)
        if self.head == "many_to_one":
            if self.bidirectional:
                H = self.cells[-1].hidden_size
                # the backward direction ends its pass at the first valid step
                h = jnp.concatenate(
                    [last_valid(h[..., :H], mask), first_valid(h[..., H:], mask)], -1
                )
            else:
                h = last_valid(h, mask)
        out = h if self.head is None else h @ params.readout.w + params.readout.b
        return (out, tuple(finals)) if return_carry else out

    def _check_readout(self, readout) -> None:
        """The readout's shapes (the layers' own are checked by ``unroll``)."""
        fn = "SequenceModel.apply"
        if self.head is None:
            if readout is not None:
                raise TypeError(
                    f"{fn}: a model without a readout (head=None) takes "
                    f"`params.readout` None, got {type(readout).__name__}"
                )
            return
        expected = DenseParams((self.width, self.output_size), (self.output_size,))
        if not isinstance(readout, DenseParams):
            raise TypeError(
                f"{fn}: `params.readout` must be DenseParams(w, b), got "
                f"{type(readout).__name__}"
            )
        for field, shape in zip(DenseParams._fields, expected, strict=True):
            name = f"params.readout.{field}"
            check_shape(
                fn, name, as_float_array(fn, name, getattr(readout, field)), shape
            )

    @staticmethod
    def _bidirectional(cell, p: BidirectionalParams, xs, mask, run):
        B, T, _ = xs.shape
        rev = _reverse_index(mask, T, B)
        f_final, hs_f = unroll(cell, p.forward, xs, mask=mask, **run)
        b_final, hs_b = unroll(cell, p.backward, _along_time(xs, rev), mask=mask, **run)
        hs = jnp.concatenate([hs_f, _along_time(hs_b, rev)], axis=-1)
        return (f_final, b_final), hs
