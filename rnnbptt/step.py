"""One training step's parts: what it computes, its objective, a guarded update.

``StepConfig`` says what a step computes (model, loss, optimizer, gradient
engine, recomputation); it is hashable, so a compiled step is built once per
configuration (``rnnbptt.train``) and a second ``fit`` of the same model on the
same shapes compiles nothing. ``full_bptt_step`` is the step of full BPTT; the
truncated step is in ``rnnbptt.tbptt``. Both are plain functions of the
configuration and the arrays, jitted by ``rnnbptt.train``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import optax

from .data_checks import check_target_shape
from .losses import get_loss

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class StepConfig:
    """What one training step computes (validated by ``make_train_step``).

    Attributes:
        model: the ``SequenceModel``.
        loss: a name in ``rnnbptt.losses.LOSSES`` or ``loss(pred, target, mask)``.
        optimizer: an optax ``GradientTransformation`` (or anything with ``init``
            and ``update``).
        backward: the gradient engine, ``"manual"`` or ``"autodiff"``.
        recompute_every: checkpointing through time (see ``unroll``), or None.
        fn: the public function's name, for error messages.
    """

    model: Any
    loss: Any
    optimizer: Any
    backward: str
    recompute_every: int | None
    fn: str = "make_train_step"

    def apply(self, params, xs, mask, carry0, key):
        """``(outputs, final carries)`` of the model with this step's engine."""
        return self.model.apply(
            params,
            xs,
            mask,
            carry0=carry0,
            key=key,
            backward=self.backward,
            recompute_every=self.recompute_every,
            return_carry=True,
        )


def loss_mask(model, mask) -> Array | None:
    """The mask of a batch's loss: the steps' mask (many-to-many), or one entry
    per sequence (many-to-one), False for a row without a valid step.

    That is the rule for such a row wherever the values cannot be read (under
    ``jit``: ``make_train_step``, ``make_eval_step``): it has zero weight in the
    loss, its gradient and the valid count. Where they can, it is refused
    (``fit``, and ``SequenceModel.apply`` outside ``jit``).
    """
    if mask is None or model.per_step:
        return mask
    return jnp.any(mask, axis=1)


def objective(config: StepConfig, params, xs, ys, mask, key, carry0=None):
    """``(loss, final carries)``: the mean loss of one batch."""
    out, finals = config.apply(params, xs, mask, carry0, key)
    return get_loss(config.loss)(out, ys, loss_mask(config.model, mask)), finals


def all_finite(tree) -> Array:
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]
    return jnp.all(jnp.stack(leaves))


def apply_update(optimizer, params, opt_state, grads, ok):
    """One optimizer update, applied only if ``ok`` and the result is finite."""
    updates, new_state = optimizer.update(grads, opt_state, params)
    new_params = optax.apply_updates(params, updates)
    ok = ok & all_finite(new_params)
    keep = lambda new, old: jnp.where(ok, new, old)  # noqa: E731
    return (
        jax.tree.map(keep, new_params, params),
        jax.tree.map(keep, new_state, opt_state),
        ok,
    )


def check_batch_targets(config: StepConfig, xs, ys) -> None:
    """A named loss's targets against the batch (shapes only: trace time); a
    loss function of one's own takes whatever targets it was written for."""
    if not callable(config.loss):
        check_target_shape(
            config.fn, config.model, config.loss, ys, *xs.shape[:2], name="batch"
        )


def valid_count(model, xs, mask) -> Array:
    """How many outputs a batch's loss averages over (for weighting batch means):
    one per sequence, or one per valid step; read from the inputs, so that a
    loss of one's own may take targets of any form."""
    if mask is None:
        return jnp.asarray(xs.shape[0] * (xs.shape[1] if model.per_step else 1))
    return jnp.sum(loss_mask(model, mask))


def full_bptt_step(
    config: StepConfig, params, opt_state, xs, ys, mask, key, carry0=None
):
    """One update from the gradient of the whole batch's loss (full BPTT)."""
    check_batch_targets(config, xs, ys)
    grad_fn = jax.value_and_grad(objective, argnums=1, has_aux=True)
    (value, finals), grads = grad_fn(config, params, xs, ys, mask, key, carry0)
    norm = optax.tree.norm(grads)
    count = valid_count(config.model, xs, mask)
    # a batch of padding only has nothing to learn: no update, as under TBPTT
    ok = jnp.isfinite(value) & jnp.isfinite(norm) & (count > 0)
    params, opt_state, ok = apply_update(config.optimizer, params, opt_state, grads, ok)
    metrics = {
        "loss": value,
        "grad_norm": norm,
        "updates": ok.astype(jnp.int32),
        "finite": ok | (count == 0),
        "count": count,
        "carry": jax.lax.stop_gradient(finals),
    }
    return params, opt_state, metrics
