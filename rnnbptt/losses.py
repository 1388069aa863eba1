"""Losses over model outputs, each with an optional mask.

Every loss takes ``(predictions, targets, mask=None)`` and returns a scalar mean.
With a mask, the mean is over valid entries only: a padded step contributes
nothing, and a batch with no valid entry gives 0 (not NaN). Shapes:

* many-to-many: predictions [B, T, K], mask [B, T];
* many-to-one: predictions [B, K], mask [B] (or None).

Regression targets have the shape of the predictions; ``softmax_cross_entropy``
takes integer labels with the predictions' shape minus the class axis.
``binary_cross_entropy`` takes logits (numerically stable, as
``optax.sigmoid_binary_cross_entropy``) and targets in [0, 1].
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

Array = jax.Array


def _masked_mean(values: Array, mask: Array | None) -> Array:
    """Mean of ``values`` [B, (T), ...] over the entries where ``mask`` is True."""
    if mask is None:
        return jnp.mean(values)
    mask = jnp.reshape(mask, mask.shape + (1,) * (values.ndim - mask.ndim))
    weights = jnp.broadcast_to(mask, values.shape).astype(values.dtype)
    total = jnp.sum(weights)
    return jnp.sum(values * weights) / jnp.maximum(total, 1)


def mean_squared_error(predictions, targets, mask=None) -> Array:
    """Mean of ``(predictions - targets)**2`` over valid entries."""
    return _masked_mean((predictions - targets) ** 2, mask)


def mean_absolute_error(predictions, targets, mask=None) -> Array:
    """Mean of ``|predictions - targets|`` over valid entries."""
    return _masked_mean(jnp.abs(predictions - targets), mask)


def softmax_cross_entropy(logits, labels, mask=None) -> Array:
    """Mean of ``-log softmax(logits)[label]`` over valid entries.

    Args:
        logits: [..., K] unnormalised class scores.
        labels: [...] integers in [0, K).
        mask: the leading axes of ``labels``, bool.
    """
    values = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    return _masked_mean(values, mask)


def binary_cross_entropy(logits, targets, mask=None) -> Array:
    """Mean binary cross-entropy of ``sigmoid(logits)`` against targets in [0, 1]."""
    return _masked_mean(optax.sigmoid_binary_cross_entropy(logits, targets), mask)


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
