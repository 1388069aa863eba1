"""Weights to and from PyTorch and Keras, exactly.

``from_torch(module)`` turns a ``torch.nn.RNN``, ``LSTM`` or ``GRU`` (any
``num_layers``, ``bidirectional``, ``bias`` and ``batch_first``) into
``(model, params)``: a ``SequenceModel`` without a readout (``head=None``) whose
``model.apply(params, xs)`` is torch's ``output`` for batch-major ``xs`` [B, T,
D] (with ``batch_first=False``, torch's [T, B, D] is ``xs.swapaxes(0, 1)``).
``to_torch(model, params)`` builds the torch module back::

    model, params = rnnbptt.interop.from_torch(torch_lstm)
    ...                                   # train, evaluate, save with rnnbptt
    torch_lstm = rnnbptt.interop.to_torch(model, params)

The mapping: ``w_ih = weight_ih_l{k}.T`` and ``w_hh = weight_hh_l{k}.T`` (the
gate blocks in torch's order: i, f, g, o for the LSTM; r, z, n for the GRU),
the ``_reverse`` tensors for the backward direction. The cells keep torch's two
biases (the GRU always; Elman and LSTM cells with ``two_biases=True``, as
``from_torch`` makes them), so the parameters come back bitwise either way; a
cell with one bias ``b`` goes to torch as ``bias_ih = b``, ``bias_hh = 0``.
Torch is optional (``pip install 'rnnbptt[torch]'``) and imported only here.

Keras 3: ``from_keras(layer)`` and ``to_keras(model, params)`` for one
``SimpleRNN``, ``LSTM`` or ``GRU`` layer (either ``reset_after``), and, without
Keras installed, ``from_keras_weights(cell, weights)`` and
``to_keras_weights(cell, params)`` for the ``get_weights()`` lists themselves
(Keras orders the GRU's gate blocks z, r, h; the mapping reorders them).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ._checks import check_params, params_type
from .cells import (
    ACTIVATIONS,
    GRU,
    LSTM,
    Elman,
    GRUParams,
    TwoBiasParams,
    fused_bias,
)
from .models import BidirectionalParams, ModelParams, SequenceModel, directions

# rnnbptt cell -> its torch module and its Keras layer
_TORCH_NAMES = {Elman: "RNN", LSTM: "LSTM", GRU: "GRU"}
_KERAS_NAMES = {Elman: "SimpleRNN", LSTM: "LSTM", GRU: "GRU"}


def _torch(fn: str):
    try:
        import torch
    except ImportError as error:
        raise ImportError(
            f"{fn} needs PyTorch, an optional dependency: pip install "
            "'rnnbptt[torch]' (or pip install torch)"
        ) from error
    return torch


def _kind(fn: str, torch, module) -> str:
    for name in _TORCH_NAMES.values():
        if type(module) is getattr(torch.nn, name):
            return name
    raise TypeError(
        f"{fn}: `module` must be a torch.nn.RNN, torch.nn.LSTM or torch.nn.GRU, "
        f"got {type(module).__module__}.{type(module).__name__}"
    )


def _check_supported(fn: str, module) -> None:
    if getattr(module, "proj_size", 0):
        raise ValueError(
            f"{fn}: an LSTM with proj_size={module.proj_size} (projected hidden "
            "states) is not supported: rnnbptt's LSTM has no projection"
        )
    if module.dropout and module.training and module.num_layers > 1:
        raise ValueError(
            f"{fn}: the module applies dropout={module.dropout} between its layers "
            "in training mode, with torch's random masks, which cannot be carried "
            "over; call module.eval() first (the model then keeps the rate as its "
            "`dropout`, active only where `apply` gets a key)"
        )


def _cell(kind: str, module, input_size: int):
    H = module.hidden_size
    if kind == "RNN":
        return Elman(input_size, H, activation=module.nonlinearity, two_biases=True)
    if kind == "LSTM":
        return LSTM(input_size, H, two_biases=True)
    return GRU(input_size, H)


# torch dtypes NumPy has no type for, and the JAX dtype they become (exactly,
# through float32)
_LOW_PRECISION = {"bfloat16": jnp.bfloat16}


def _array(tensor) -> jnp.ndarray:
    tensor = tensor.detach().cpu()
    name = str(tensor.dtype).removeprefix("torch.")
    if name in _LOW_PRECISION:
        return jnp.asarray(tensor.float().numpy()).astype(_LOW_PRECISION[name])
    return jnp.asarray(tensor.numpy())


def _check_dtype(fn: str, module) -> None:
    """A float64 module needs JAX's float64 (off by default), or it would be
    rounded to float32 without a word."""
    dtype = next(module.parameters()).dtype
    if str(dtype) == "torch.float64" and not jax.config.jax_enable_x64:
        raise ValueError(
            f"{fn}: the module is float64 but JAX computes in float32 unless "
            "jax.config.update('jax_enable_x64', True) is set first; set it, or "
            "convert the module with module.float()"
        )
    if not dtype.is_floating_point:
        raise TypeError(f"{fn}: the module's parameters must be floating, got {dtype}")


def _layer_params(kind: str, module, suffix: str):
    """One direction of one layer: the cell's params from torch's tensors."""
    w_ih = _array(getattr(module, f"weight_ih{suffix}")).T
    w_hh = _array(getattr(module, f"weight_hh{suffix}")).T
    G = w_ih.shape[1]
    if module.bias:
        b_ih = _array(getattr(module, f"bias_ih{suffix}"))
        b_hh = _array(getattr(module, f"bias_hh{suffix}"))
    else:
        b_ih = b_hh = jnp.zeros((G,), w_ih.dtype)
    if kind == "GRU":
        return GRUParams(w_ih, w_hh, b_ih, b_hh)
    return TwoBiasParams(w_ih, w_hh, b_ih, b_hh)


def from_torch(module) -> tuple[SequenceModel, ModelParams]:
    """``(model, params)`` computing what the torch ``module`` computes.

    Args:
        module: a ``torch.nn.RNN`` (tanh or relu), ``LSTM`` (no ``proj_size``) or
            ``GRU``; in eval mode if it has dropout between layers.

    Returns:
        A ``SequenceModel`` with ``head=None`` (its outputs are torch's
        ``output``) and its ``ModelParams``, in the module's dtype.
    """
    fn = "rnnbptt.interop.from_torch"
    torch = _torch(fn)
    kind = _kind(fn, torch, module)
    _check_supported(fn, module)
    _check_dtype(fn, module)
    width = 2 if module.bidirectional else 1
    cells, layers = [], []
    for k in range(module.num_layers):
        d = module.input_size if k == 0 else width * module.hidden_size
        forward = _layer_params(kind, module, f"_l{k}")
        if module.bidirectional:
            backward = _layer_params(kind, module, f"_l{k}_reverse")
            layers.append(BidirectionalParams(forward, backward))
        else:
            layers.append(forward)
        cells.append(_cell(kind, module, d))
    model = SequenceModel(
        tuple(cells),
        None,
        head=None,
        bidirectional=bool(module.bidirectional),
        dropout=float(module.dropout) if module.num_layers > 1 else 0.0,
    )
    return model, ModelParams(tuple(layers), None)


def _torch_kind(fn: str, model) -> tuple[str, dict]:
    """The torch module name and constructor options of ``model``'s layers."""
    if not isinstance(model, SequenceModel):
        raise TypeError(
            f"{fn}: `model` must be a SequenceModel, got {type(model).__name__}"
        )
    if model.head is not None:
        raise ValueError(
            f"{fn}: torch's recurrent modules have no readout, and this model has "
            f"head={model.head!r}; convert its layers (SequenceModel(model.cells, "
            "None, head=None, bidirectional=...) with params._replace(readout=None)) "
            "and copy params.readout into a torch.nn.Linear (weight = w.T, bias = b)"
        )
    first = model.cells[0]
    if type(first) not in _TORCH_NAMES:  # Feedforward too
        raise ValueError(
            f"{fn}: torch has no recurrent module for {type(first).__name__} layers"
        )
    for cell in model.cells:
        same = type(cell) is type(first) and cell.hidden_size == first.hidden_size
        options = ("activation", "reset_after")
        if not same or any(
            getattr(cell, o, None) != getattr(first, o, None) for o in options
        ):
            raise ValueError(
                f"{fn}: a torch module's layers are all one kind and size; this "
                f"model has {list(model.cells)}"
            )
    if isinstance(first, Elman) and first.activation not in ("tanh", "relu"):
        raise ValueError(
            f"{fn}: torch.nn.RNN computes tanh or relu, not {first.activation!r}"
        )
    if isinstance(first, GRU) and not first.reset_after:
        raise ValueError(
            f"{fn}: torch.nn.GRU applies the reset gate after the recurrent "
            "product (reset_after=True); this GRU has reset_after=False"
        )
    kind = _TORCH_NAMES[type(first)]
    options = {"nonlinearity": first.activation} if kind == "RNN" else {}
    return kind, options


def _torch_tensors(params, suffix: str) -> dict[str, np.ndarray]:
    """torch's tensors of one direction of one layer."""
    w_ih, w_hh = np.asarray(params.w_ih), np.asarray(params.w_hh)
    if hasattr(params, "b_hh"):  # the GRU, and cells with two_biases
        b_ih, b_hh = np.asarray(params.b_ih), np.asarray(params.b_hh)
    else:
        b_ih = np.asarray(params.b)
        b_hh = np.zeros_like(b_ih)
    return {
        f"weight_ih{suffix}": w_ih.T,
        f"weight_hh{suffix}": w_hh.T,
        f"bias_ih{suffix}": b_ih,
        f"bias_hh{suffix}": b_hh,
    }


def _drop_zero_biases(fn: str, tensors: dict) -> None:
    for name in [name for name in tensors if name.startswith("bias")]:
        if np.any(tensors.pop(name)):
            raise ValueError(
                f"{fn}: bias=False makes a module without biases, but this model's "
                f"{name.replace('_ih', '').replace('_hh', '')} is not zero"
            )


def _check_layers(fn: str, model, params) -> jnp.dtype:
    """Every layer's params against its cell; returns their common dtype."""
    if not isinstance(params, ModelParams) or len(params.layers) != len(model.cells):
        raise TypeError(
            f"{fn}: `params` must be the ModelParams of this model "
            f"({len(model.cells)} layers), got {type(params).__name__}"
        )
    model._check_readout(params.readout)
    dtypes = set()
    for k, (cell, layer) in enumerate(zip(model.cells, params.layers, strict=True)):
        for p in directions(fn, model, k, layer):
            dtypes.add(check_params(fn, cell, p)[1])
    if len(dtypes) > 1:
        raise TypeError(
            f"{fn}: the parameters must share one dtype, got "
            f"{sorted(str(d) for d in dtypes)}"
        )
    return jnp.dtype(dtypes.pop())


def to_torch(model, params, *, batch_first: bool = True, bias: bool = True) -> Any:
    """The torch module (``RNN``, ``LSTM`` or ``GRU``) of ``model`` with ``params``.

    Args:
        model: a ``SequenceModel`` with ``head=None`` whose layers are all one
            kind and hidden size (as from ``from_torch``).
        params: its ``ModelParams``, in one floating dtype.
        batch_first: the module's ``batch_first`` (rnnbptt is batch-major).
        bias: the module's ``bias``; False needs every bias of ``params`` zero.

    Returns:
        The module, in eval mode, in the parameters' dtype.
    """
    fn = "rnnbptt.interop.to_torch"
    torch = _torch(fn)
    kind, options = _torch_kind(fn, model)
    dtype = getattr(torch, _check_layers(fn, model, params).name)
    first = model.cells[0]
    module = getattr(torch.nn, kind)(
        first.input_size,
        first.hidden_size,
        num_layers=len(model.cells),
        bidirectional=model.bidirectional,
        batch_first=batch_first,
        dropout=model.dropout if len(model.cells) > 1 else 0.0,
        bias=bias,
        dtype=dtype,
        **options,
    )
    tensors = {}
    for k, layer in enumerate(params.layers):
        parts = directions(fn, model, k, layer)  # torch's suffix for each:
        for suffix, p in zip(("", "_reverse")[: len(parts)], parts, strict=True):
            tensors |= _torch_tensors(p, f"_l{k}{suffix}")
    if not bias:
        _drop_zero_biases(fn, tensors)
    # through float32 for the dtypes NumPy lacks (bfloat16): exact
    wide = lambda a: a if a.dtype == np.float64 else np.asarray(a, np.float32)  # noqa: E731
    state = {name: torch.tensor(wide(a)).to(dtype) for name, a in tensors.items()}
    module.load_state_dict(state, strict=True)
    return module.eval()


# --- Keras 3 ------------------------------------------------------------------

# Keras' names of rnnbptt's activations, where they differ
_FROM_KERAS = {"linear": "identity"}
_TO_KERAS = {"identity": "linear"}
# Keras orders the GRU's gate blocks (z, r, h), torch and rnnbptt (r, z, n);
# the LSTM's are (i, f, c, o) in all three.


def _swap_gru_blocks(w: np.ndarray, hidden: int) -> np.ndarray:
    """(z, r, n) <-> (r, z, n) along the last axis (its own inverse)."""
    H = hidden
    return np.concatenate([w[..., H : 2 * H], w[..., :H], w[..., 2 * H :]], -1)


def _keras_shapes(cell) -> list[tuple[int, ...]]:
    """Keras' ``get_weights()`` shapes of ``cell``: kernel, recurrent kernel, bias."""
    D, H, GH = cell.input_size, cell.hidden_size, cell.gates * cell.hidden_size
    bias = (2, GH) if isinstance(cell, GRU) and cell.reset_after else (GH,)
    return [(D, GH), (H, GH), bias]


def _check_keras_cell(fn: str, cell) -> None:
    if type(cell) not in _KERAS_NAMES:  # Feedforward too
        raise TypeError(
            f"{fn}: `cell` must be an Elman, LSTM or GRU, got {type(cell).__name__}"
        )


def from_keras_weights(cell, weights) -> Any:
    """The params of ``cell`` from a Keras ``SimpleRNN``, ``LSTM`` or ``GRU``
    layer's ``get_weights()``: ``[kernel, recurrent_kernel, bias]`` (without
    ``bias`` for ``use_bias=False``). A GRU's ``reset_after`` must be the
    layer's (its bias is [2, 3H] with reset_after=True, [3H] without)."""
    fn = "rnnbptt.interop.from_keras_weights"
    _check_keras_cell(fn, cell)
    shapes = _keras_shapes(cell)
    got = [np.shape(w) for w in weights] if isinstance(weights, list | tuple) else None
    if got is None or len(got) not in (2, 3) or got != shapes[: len(got)]:
        raise ValueError(
            f"{fn}: Keras stores {cell} as [kernel, recurrent_kernel, bias] of shapes "
            f"{shapes} (no bias with use_bias=False), got "
            + (f"shapes {got}" if got is not None else type(weights).__name__)
        )
    kernel, recurrent = (np.asarray(w) for w in weights[:2])
    if len(weights) == 3:
        bias = np.asarray(weights[2])
    else:
        bias = np.zeros(shapes[2], kernel.dtype)
    if not isinstance(cell, GRU):
        arrays = [kernel, recurrent, bias]
        if cell.two_biases:  # Keras' one bias in b_ih
            arrays.append(np.zeros_like(bias))
        params = params_type(cell)(*(jnp.asarray(a) for a in arrays))
    else:
        if cell.reset_after:
            b_ih, b_hh = bias
        else:  # one bias: both of rnnbptt's add to the same pre-activations
            b_ih, b_hh = bias, np.zeros_like(bias)
        swap = lambda w: jnp.asarray(_swap_gru_blocks(w, cell.hidden_size))  # noqa: E731
        params = GRUParams(swap(kernel), swap(recurrent), swap(b_ih), swap(b_hh))
    return check_params(fn, cell, params)[0]  # floating, one dtype


def to_keras_weights(cell, params) -> list[np.ndarray]:
    """``[kernel, recurrent_kernel, bias]`` for a Keras layer's ``set_weights``
    (``from_keras_weights`` inverted; bitwise, except that a GRU with
    ``reset_after=False`` has one Keras bias, ``b_ih + b_hh``)."""
    fn = "rnnbptt.interop.to_keras_weights"
    _check_keras_cell(fn, cell)
    params, _ = check_params(fn, cell, params)
    arrays = {k: np.asarray(v) for k, v in params._asdict().items()}
    if not isinstance(cell, GRU):
        return [arrays["w_ih"], arrays["w_hh"], np.asarray(fused_bias(params))]
    swap = lambda w: _swap_gru_blocks(w, cell.hidden_size)  # noqa: E731
    if cell.reset_after:
        bias = np.stack([swap(arrays["b_ih"]), swap(arrays["b_hh"])])
    else:
        bias = swap(arrays["b_ih"] + arrays["b_hh"])
    return [swap(arrays["w_ih"]), swap(arrays["w_hh"]), bias]


def _keras_cell(fn: str, layer):
    """The rnnbptt cell of a Keras recurrent layer, from its configuration."""
    kind = type(layer).__name__
    if kind not in _KERAS_NAMES.values() or not type(layer).__module__.startswith(
        "keras"
    ):
        raise TypeError(
            f"{fn}: `layer` must be a Keras SimpleRNN, LSTM or GRU layer, got "
            f"{type(layer).__module__}.{kind}"
        )
    config = layer.get_config()
    activation = _FROM_KERAS.get(config["activation"], config["activation"])
    activations = tuple(ACTIVATIONS) if kind == "SimpleRNN" else ("tanh",)
    if activation not in activations:
        raise ValueError(
            f"{fn}: rnnbptt's {kind} computes activation {' or '.join(activations)}, "
            f"this layer {config['activation']!r}"
        )
    if config.get("recurrent_dropout"):
        raise ValueError(
            f"{fn}: recurrent_dropout={config['recurrent_dropout']} drops parts of "
            "the state inside the recurrence, which rnnbptt's cells do not do"
        )
    if config.get("recurrent_activation", "sigmoid") != "sigmoid":
        raise ValueError(
            f"{fn}: rnnbptt's gates are sigmoids, this layer's recurrent_activation "
            f"is {config['recurrent_activation']!r}"
        )
    if config.get("go_backwards"):
        raise ValueError(f"{fn}: a layer with go_backwards=True is not supported")
    kernel = layer.get_weights()[0] if layer.built else None
    if kernel is None:
        raise ValueError(f"{fn}: the layer is not built yet (call it on an input)")
    D, H = kernel.shape[0], config["units"]
    if kind == "SimpleRNN":
        return Elman(D, H, activation=activation)
    if kind == "GRU":
        return GRU(D, H, reset_after=bool(config["reset_after"]))
    return LSTM(D, H)


def from_keras(layer) -> tuple[SequenceModel, ModelParams]:
    """``(model, params)`` of a built Keras 3 ``SimpleRNN``, ``LSTM`` or ``GRU``
    layer: a one-layer ``SequenceModel`` with ``head=None``, whose outputs are
    the layer's with ``return_sequences=True`` (at a masked step rnnbptt outputs
    zero, where Keras repeats the last state). ``dropout`` acts only in Keras'
    training and is not carried over; ``recurrent_dropout`` is refused."""
    fn = "rnnbptt.interop.from_keras"
    cell = _keras_cell(fn, layer)
    params = from_keras_weights(cell, layer.get_weights())
    model = SequenceModel((cell,), None, head=None)
    return model, ModelParams((params,), None)


def to_keras(model, params, *, use_bias: bool = True) -> Any:
    """The Keras 3 layer (``return_sequences=True``, built, with the weights, in
    the parameters' dtype) of a one-layer, one-direction ``model`` with
    ``head=None``; ``use_bias=False`` needs every bias of ``params`` zero."""
    fn = "rnnbptt.interop.to_keras"
    try:
        import keras
    except ImportError as error:
        raise ImportError(
            f"{fn} needs Keras 3, an optional dependency: pip install 'rnnbptt[keras]'"
        ) from error
    if (
        not isinstance(model, SequenceModel)
        or model.head is not None
        or model.bidirectional
        or len(model.cells) != 1
    ):
        raise ValueError(
            f"{fn}: `model` must be a SequenceModel of one layer, one direction and "
            "head=None (one Keras layer), got "
            + (
                repr(model)
                if isinstance(model, SequenceModel)
                else type(model).__name__
            )
        )
    dtype = _check_layers(fn, model, params)
    cell = model.cells[0]
    kind = _KERAS_NAMES.get(type(cell))
    if kind is None:
        raise ValueError(f"{fn}: Keras has no layer for {type(cell).__name__}")
    options = {}
    if kind == "SimpleRNN":
        options["activation"] = _TO_KERAS.get(cell.activation, cell.activation)
    if kind == "GRU":
        options["reset_after"] = cell.reset_after
    weights = to_keras_weights(cell, params.layers[0])
    if not use_bias and np.any(weights.pop()):  # (the bias dropped either way)
        raise ValueError(
            f"{fn}: use_bias=False makes a layer without a bias, but this "
            "model's biases are not zero"
        )
    layer = getattr(keras.layers, kind)(
        cell.hidden_size,
        return_sequences=True,
        use_bias=use_bias,
        dtype=dtype.name,
        **options,
    )
    layer.build((None, None, cell.input_size))
    layer.set_weights(weights)
    return layer
