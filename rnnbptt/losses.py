"""Losses over model outputs, each with an optional mask.

Every loss takes ``(predictions, targets, mask=None)`` and returns a scalar mean.
With a mask, the mean is over valid entries only: a padded step contributes
nothing (whatever its target holds, NaN or a padding label such as -1), and a
batch with no valid entry gives 0 (not NaN). The mean has the values' dtype;
the valid entries are counted in float32 at least (``count_dtype``: bfloat16
counts exactly only to 256). Shapes:

* many-to-many: predictions [B, T, K], mask [B, T];
* many-to-one: predictions [B, K], mask [B] (or None).

Regression targets have the shape of the predictions; ``softmax_cross_entropy``
takes integer labels with the predictions' shape minus the class axis.
``binary_cross_entropy`` takes logits (numerically stable, as
``optax.sigmoid_binary_cross_entropy``) and targets in [0, 1].

Refused, with a TypeError or ValueError naming the argument: shapes that would
need broadcasting, a mask that is not bool (a float or int mask is not a
weight), non-integer labels, and, where the values are concrete (outside
``jit``), a label outside [0, K) or a binary target outside [0, 1] at a valid
entry, as ``fit`` refuses them. Under ``jit`` the values cannot be read: such an
entry makes the loss NaN (never a wrong finite number; ``fit`` and the train
step then skip the update).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ._checks import as_array, as_float_array

Array = jax.Array


def _expand(mask: Array, ndim: int) -> Array:
    """``mask`` [B, (T)] with trailing unit axes, to broadcast against rank ``ndim``."""
    return jnp.reshape(mask, mask.shape + (1,) * (ndim - mask.ndim))


def _masked_mean(values: Array, mask: Array | None) -> Array:
    """Mean of ``values`` [B, (T), ...] over the entries where ``mask`` is True,
    in the values' dtype; the entries are counted in ``count_dtype`` (in
    bfloat16, 257 would round to 256)."""
    if mask is None:
        return jnp.mean(values)
    mask = jnp.broadcast_to(_expand(mask, values.ndim), values.shape)
    total = jnp.sum(mask, dtype=count_dtype(values.dtype))
    # where, not a product: whatever sits at a padded entry (even inf or NaN)
    # stays out of the mean
    mean = jnp.sum(jnp.where(mask, values, 0)) / jnp.maximum(total, 1)
    return mean.astype(values.dtype)


def count_dtype(dtype) -> jnp.dtype:
    """The dtype to count valid entries in for means of ``dtype``: float32 at
    least, which counts exactly to 2**24 (bfloat16 only to 256, float16 to
    2048); float64 stays float64."""
    return jnp.promote_types(dtype, jnp.float32)


def _prepare(fn: str, predictions, targets, mask, *, labels: bool = False):
    """``(predictions, targets, mask)`` as arrays, their shapes checked, and the
    targets 0 at masked entries: a padding value (NaN, an out-of-range label)
    then reaches neither the loss nor its gradient.

    Shapes must match exactly (no broadcasting): targets as the predictions
    (labels: the predictions minus the class axis), the mask as their leading
    axes [B] or [B, T] (or as 1-D predictions [B]).
    """
    predictions = as_float_array(fn, "predictions", predictions)
    targets = as_array(fn, "labels" if labels else "targets", targets)
    if labels and not jnp.issubdtype(targets.dtype, jnp.integer):
        raise TypeError(
            f"{fn}: labels must be integers (class indices), got dtype {targets.dtype}"
        )
    if mask is not None:
        mask = as_array(fn, "mask", mask, "None or a bool array")
        if mask.dtype != jnp.bool_:
            raise TypeError(
                f"{fn}: `mask` must have dtype bool (True marks a valid entry; a "
                f"mask is not a weight), got {mask.dtype}; use `mask.astype(bool)`"
            )
    expected = predictions.shape[:-1] if labels else predictions.shape
    if targets.shape != expected:
        what = "labels" if labels else "targets"
        raise ValueError(
            f"{fn}: {what} must have shape {expected} (the predictions' "
            f"{predictions.shape}{' minus the class axis' if labels else ''}), got "
            f"{targets.shape}"
        )
    leading = {predictions.shape[:-1]}
    if predictions.ndim == 1 and not labels:  # one value per sequence, no class axis
        leading.add(predictions.shape)
    if mask is None:
        return predictions, targets, mask
    if mask.shape not in leading:
        raise ValueError(
            f"{fn}: `mask` must have shape {predictions.shape[:-1]} (the predictions' "
            f"leading axes), got {mask.shape}"
        )
    keep = _expand(mask, targets.ndim)
    return predictions, jnp.where(keep, targets, jnp.zeros((), targets.dtype)), mask


def mean_squared_error(predictions, targets, mask=None) -> Array:
    """Mean of ``(predictions - targets)**2`` over valid entries."""
    predictions, targets, mask = _prepare(
        "mean_squared_error", predictions, targets, mask
    )
    return _masked_mean((predictions - targets) ** 2, mask)


def mean_absolute_error(predictions, targets, mask=None) -> Array:
    """Mean of ``|predictions - targets|`` over valid entries."""
    predictions, targets, mask = _prepare(
        "mean_absolute_error", predictions, targets, mask
    )
    return _masked_mean(jnp.abs(predictions - targets), mask)


def softmax_cross_entropy(logits, labels, mask=None) -> Array:
    """Mean of ``-log softmax(logits)[label]`` over valid entries.

    Args:
        logits: [..., K] unnormalised class scores.
        labels: [...] integers in [0, K) (any value at masked entries, e.g. a
            padding label of -1: it is never gathered).
        mask: the leading axes of ``labels``, bool.
    """
    fn = "softmax_cross_entropy"
    logits, labels, mask = _prepare(fn, logits, labels, mask, labels=True)
    in_range = (labels >= 0) & (labels < logits.shape[-1])
    _refuse_concrete(fn, ~in_range, labels, "label", f"in [0, {logits.shape[-1]})")
    values = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    return _masked_mean(jnp.where(in_range, values, jnp.nan), mask)


def binary_cross_entropy(logits, targets, mask=None) -> Array:
    """Mean binary cross-entropy of ``sigmoid(logits)`` against targets in [0, 1]."""
    fn = "binary_cross_entropy"
    logits, targets, mask = _prepare(fn, logits, targets, mask)
    in_range = (targets >= 0) & (targets <= 1)
    _refuse_concrete(fn, ~in_range, targets, "target", "in [0, 1]")
    values = optax.sigmoid_binary_cross_entropy(logits, targets)
    return _masked_mean(jnp.where(in_range, values, jnp.nan), mask)


def _refuse_concrete(fn: str, bad: Array, targets: Array, what: str, expected: str):
    """A ValueError at the first bad target where the values can be read (not
    under ``jit``; there the caller makes the loss NaN). Masked entries are 0 by
    now (``_prepare``), never bad."""
    if isinstance(bad, jax.core.Tracer):
        return
    bad = np.asarray(bad)
    if bad.any():
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(
            f"{fn}: the {what} at {where} is {np.asarray(targets)[where]}; {what}s "
            f"must be {expected} at every valid entry"
        )


LOSSES = {
    "mse": mean_squared_error,
    "mae": mean_absolute_error,
    "cross_entropy": softmax_cross_entropy,
    "binary_cross_entropy": binary_cross_entropy,
}
CLASSIFICATION = ("cross_entropy",)


def get_loss(name_or_fn, fn: str = "get_loss"):
    """A loss function from its name (``LOSSES``) or a callable, checked early."""
    if callable(name_or_fn):
        return name_or_fn
    if name_or_fn not in LOSSES:
        raise ValueError(
            f"{fn}: `loss` must be one of {sorted(LOSSES)} or a callable "
            f"loss(predictions, targets, mask), got {name_or_fn!r}"
        )
    return LOSSES[name_or_fn]
