"""Jitted training steps: full BPTT and truncated BPTT(k1, k2), either engine.

``make_train_step`` builds one compiled step (``rnnbptt.step.full_bptt_step``
or ``rnnbptt.tbptt.tbptt_step``) and ``make_eval_step`` one evaluation, each
once per configuration: a second ``fit`` of the same model, loss and optimizer
on the same shapes compiles nothing.
"""

from __future__ import annotations

import functools
import types
from collections.abc import Callable

import jax

from ._checks import DEFAULT_BACKWARD, NOT_GIVEN, check_backward, check_recompute_every
from .losses import get_loss
from .parallel import batch_sharding, check_divisible, replicated, resolve_mesh
from .step import (
    StepConfig,
    check_batch_targets,
    full_bptt_step,
    objective,
    valid_count,
)
from .tbptt import TBPTT, as_tbptt, check_model, tbptt_step

# The metrics of a step that fit reads back (the carry stays on the device).
SCALAR_METRICS = ("loss", "grad_norm", "updates", "finite", "count")
_CACHE_SIZE = 64  # compiled configurations kept (models are small to hold)

__all__ = ["TBPTT", "clear_cache", "make_eval_step", "make_train_step"]


def step_config(
    fn: str, model, loss, optimizer, backward, recompute_every, tbptt, old_name
) -> tuple[StepConfig, TBPTT | None]:
    """The validated ``(StepConfig, TBPTT or None)`` of a train step."""
    check_backward(fn, backward)
    every = check_recompute_every(fn, recompute_every, old_name, stacklevel=4)
    tbptt = as_tbptt(fn, tbptt)
    if not (
        callable(getattr(optimizer, "init", None))
        and callable(getattr(optimizer, "update", None))
    ):
        raise TypeError(
            f"{fn}: `optimizer` must be an optax GradientTransformation (e.g. "
            f"optax.adam(1e-3)), got {type(optimizer).__name__}"
        )
    get_loss(loss, fn)
    if tbptt is not None:
        check_model(fn, model)
    return StepConfig(model, loss, optimizer, backward, every, fn), tbptt


_memos: list = []  # the lru caches of _cached, for clear_cache


def _cached(build: Callable) -> Callable:
    """``build`` memoised on its first argument, a ``StepConfig`` or a model,
    and the rest. A loss that is not a name or a plain function (a callable
    object, whose attributes may change between calls) builds afresh each time,
    and so does anything unhashable."""
    memo = functools.lru_cache(maxsize=_CACHE_SIZE)(build)
    _memos.append(memo)

    @functools.wraps(build)
    def cached(*args):
        loss = args[0].loss if isinstance(args[0], StepConfig) else args[1]
        if not isinstance(loss, str | types.FunctionType):
            return build(*args)
        try:
            hash(args)
        except TypeError:
            return build(*args)
        return memo(*args)

    return cached


def clear_cache() -> None:
    """Forgets every compiled train and eval step kept for reuse (and the
    programs and data they hold on to); the next ``fit`` compiles afresh."""
    for memo in _memos:
        memo.cache_clear()


def _step_fn(config: StepConfig, tbptt: TBPTT | None) -> Callable:
    if tbptt is None:
        return functools.partial(full_bptt_step, config)
    return functools.partial(tbptt_step, config, tbptt)


def _check_opt_state(config: StepConfig, params, opt_state) -> None:
    """``opt_state`` against ``optimizer.init(params)``: the same structure, shapes
    and dtypes (trace time only: a compiled step pays nothing)."""
    expected = jax.eval_shape(config.optimizer.init, params)
    spec = lambda tree: jax.tree.map(lambda a: (a.shape, a.dtype), tree)  # noqa: E731
    same = jax.tree.structure(opt_state) == jax.tree.structure(expected)
    if not same or spec(opt_state) != spec(expected):
        raise TypeError(
            f"{config.fn}: `opt_state` must be this step's `optimizer.init(params)` "
            f"({type(expected).__name__} of {len(jax.tree.leaves(expected))} arrays), "
            f"got {type(opt_state).__name__} of {len(jax.tree.leaves(opt_state))} "
            "arrays: the state of another optimizer, or of other parameters"
        )


@_cached
def _compiled_step(config: StepConfig, tbptt: TBPTT | None, mesh) -> Callable:
    step = _step_fn(config, tbptt)

    def train_step(params, opt_state, xs, ys, mask, key, carry0=None):
        _check_opt_state(config, params, opt_state)
        return step(params, opt_state, xs, ys, mask, key, carry0)

    if mesh is None:
        return jax.jit(train_step)
    data, same = batch_sharding(mesh), replicated(mesh)
    # (params, opt_state, xs, ys, mask, key, carry0)
    jitted = jax.jit(
        train_step, in_shardings=(same, same, data, data, data, same, data)
    )

    def sharded_step(params, opt_state, xs, ys, mask, key, carry0=None):
        check_divisible("make_train_step", "a batch", xs.shape[0], mesh)
        return jitted(params, opt_state, xs, ys, mask, key, carry0)

    def lower(params, opt_state, xs, ys, mask, key, carry0=None):
        """The compiled program's ``jax.stages.Lowered``, as a jitted step has."""
        return jitted.lower(params, opt_state, xs, ys, mask, key, carry0)

    sharded_step.lower = lower
    return sharded_step


def make_train_step(
    model,
    loss,
    optimizer,
    *,
    backward=DEFAULT_BACKWARD,
    recompute_every=None,
    tbptt=None,
    data_parallel=None,
    checkpoint_every=NOT_GIVEN,
) -> Callable:
    """A jitted ``step(params, opt_state, xs, ys, mask, key, carry0=None)``.

    Returns ``(params, opt_state, metrics)``; ``metrics`` holds ``loss`` (mean over
    the batch's valid targets), ``grad_norm`` (global norm before any clipping,
    averaged over chunks), ``updates`` (optimizer updates applied), ``finite``
    (False if the loss, the gradients or the new parameters were not finite: the
    offending update is then not applied, nor any after it), ``count`` (the
    valid targets the loss averages over) and ``carry``, every layer's state at
    the end of the batch.

    Stateful streams: pass ``metrics["carry"]`` as the next batch's ``carry0`` to
    continue the same sequences (the gradient stops at the batch boundary); pass
    None, or ``model.reset_carry``, to start streams afresh. ``key`` seeds dropout
    (None: no dropout). ``backward`` and ``recompute_every`` choose the gradient
    engine and checkpointing through time (see ``unroll``); neither changes the
    result. ``tbptt``: None (full BPTT), ``k``, ``(k1, k2)`` or a ``TBPTT``.
    ``checkpoint_every`` is ``recompute_every``'s former name (deprecated).

    ``data_parallel`` (None, True or a ``Mesh`` with a ``"batch"`` axis; see
    ``rnnbptt.parallel``) splits each batch across devices with the parameters
    and optimizer state replicated; the batch must divide evenly across the
    ``"batch"`` axis (a ValueError says so otherwise). With several processes,
    pass global arrays (``rnnbptt.parallel.global_batch``).

    The same arguments give the same compiled step: building it again (a second
    ``fit``) compiles nothing new. As with ``jax.jit``, a loss function is traced
    once, so one that reads a global that later changes keeps the first value;
    a loss given as a callable object is traced afresh for each step built.
    ``clear_cache()`` forgets the kept steps. ``step.lower(...)`` (same
    arguments) gives the compiled program, as for any jitted function.
    """
    fn = "make_train_step"
    mesh = resolve_mesh(fn, data_parallel)
    config, tbptt = step_config(
        fn, model, loss, optimizer, backward, recompute_every, tbptt, checkpoint_every
    )
    return _compiled_step(config, tbptt, mesh)


def take_rows(tree, rows):
    """The rows ``rows`` (indices or a slice) of every array in ``tree``."""
    return jax.tree.map(lambda a: a[rows], tree)


@_cached
def _compiled_eval(model, loss) -> Callable:
    config = StepConfig(model, loss, None, DEFAULT_BACKWARD, None, "make_eval_step")

    @jax.jit
    def evaluate(params, xs, ys, mask):
        check_batch_targets(config, xs, ys)
        value, _ = objective(config, params, xs, ys, mask, None)
        return value, valid_count(model, xs, mask)

    return evaluate


def make_eval_step(model, loss) -> Callable:
    """A jitted ``evaluate(params, xs, ys, mask) -> (mean loss, valid count)``."""
    get_loss(loss, "make_eval_step")
    return _compiled_eval(model, loss)
