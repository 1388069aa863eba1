"""The optimizer ``fit`` trains with, and the learning rate its history reports.

A named optimizer (``"adam"``, ...) is made with its learning rate, an optax
transformation brings its own; gradient clipping is chained in front of either.
The same settings give the same transformation object, so that ``fit`` finds
its compiled train step again on a second call (``rnnbptt.train``).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import jax
import optax

from ._scalars import finite_number, real_number
from .parallel import local_copy

OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop", "adagrad", "nadam", "lion")
DEFAULT_LEARNING_RATE = 1e-3
# (step, opt_state) -> the learning rate of that step, for the history
Schedule = Callable[[int, Any], float]


def make_optimizer(optimizer, learning_rate, clip_norm) -> tuple[Any, Schedule]:
    """(optax transformation, ``(step, opt_state) ->`` learning rate for the history).

    A named optimizer is made with ``learning_rate`` (default 1e-3). An optax
    transformation brings its own, so ``learning_rate`` must then be None; the
    history reports it when the transformation exposes it
    (``optax.inject_hyperparams``) and NaN otherwise.
    """
    if isinstance(optimizer, optax.GradientTransformation):
        if learning_rate is not None:
            raise ValueError(
                "fit: `learning_rate` is for a named optimizer; an optax "
                "GradientTransformation has its own (leave learning_rate=None, or "
                "wrap the optimizer in optax.inject_hyperparams to see its rate in "
                f"the history), got learning_rate={learning_rate!r}"
            )
    elif isinstance(optimizer, str) and optimizer in OPTIMIZERS:
        if learning_rate is None:
            learning_rate = DEFAULT_LEARNING_RATE
        if not callable(learning_rate):  # else an optax schedule
            finite_number("fit", "learning_rate", learning_rate, above=0)
    else:
        raise ValueError(
            f"fit: `optimizer` must be one of {OPTIMIZERS} or an optax "
            f"GradientTransformation, got {optimizer!r}"
        )
    if clip_norm is not None:
        clip_norm = finite_number("fit", "clip_norm", clip_norm, above=0)
    try:
        return _made(optimizer, learning_rate, clip_norm)
    except TypeError:  # unhashable settings: made afresh
        return _made.__wrapped__(optimizer, learning_rate, clip_norm)


# typed: 0.1 and np.float64(0.1) are equal, but optax computes with each as given
@functools.lru_cache(maxsize=64, typed=True)
def _made(optimizer, learning_rate, clip_norm) -> tuple[Any, Schedule]:
    if isinstance(optimizer, str):
        tx = getattr(optax, optimizer)(learning_rate)
        if callable(learning_rate):
            schedule = lambda step, _: learning_rate(step)  # noqa: E731
        else:
            schedule = lambda *_: learning_rate  # noqa: E731
    else:
        tx, schedule = optimizer, lambda _, state: injected_learning_rate(state)
    if clip_norm is not None:
        tx = optax.chain(optax.clip_by_global_norm(clip_norm), tx)
    return tx, schedule


def learning_rate_setting(optimizer, learning_rate):
    """The learning rate as a checkpoint records it (None: the optimizer's own)."""
    if callable(learning_rate):
        return "schedule"
    if learning_rate is None and isinstance(optimizer, str):
        return DEFAULT_LEARNING_RATE
    return None if learning_rate is None else real_number(learning_rate)


def injected_learning_rate(opt_state) -> float:
    """The learning rate held by an ``optax.inject_hyperparams`` state, else NaN."""
    has_hyperparams = lambda node: hasattr(node, "hyperparams")  # noqa: E731
    for node in jax.tree.leaves(opt_state, is_leaf=has_hyperparams):
        if has_hyperparams(node) and "learning_rate" in node.hyperparams:
            return float(local_copy(node.hyperparams["learning_rate"]))
    return math.nan
