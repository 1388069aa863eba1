"""``fit``: train a SequenceModel with optax, full or truncated BPTT, either engine.

The loop at a glance (``fit``): settings validated once into a ``FitConfig``;
data checked; the loop's state, a ``FitState``, started or resumed from a
checkpoint; then per epoch: ``train_epoch`` (several minibatches per compiled
call), ``validate``, ``early_stopping``, ``save`` (a crash-safe checkpoint,
from which resuming continues to exactly the result of an uninterrupted run)
and the report. Seeded shuffling; early stopping restores the best parameters;
training stops cleanly, keeping the last good parameters, when the loss or the
gradients become non-finite.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import sys
import time
import warnings
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import pandas as pd
from tqdm.auto import tqdm

from ._checks import DEFAULT_BACKWARD, NOT_GIVEN
from .checkpoint import load_checkpoint, save_checkpoint
from .compilation import CompileAhead
from .data_checks import check_dataset
from .fit_config import (
    DEFAULT_SYNC_EVERY,
    FitConfig,
    check_processes_agree_on,
    initial_params_dtype,
)
from .optimizers import (  # noqa: F401  (rnnbptt.fit_module had them)
    DEFAULT_LEARNING_RATE,
    OPTIMIZERS,
    make_optimizer,
)
from .parallel import (
    Placement,
    check_processes_agree,
    local_copy,
    plan_placement,
    sum_over_processes,
)
from .train import (
    SCALAR_METRICS,
    make_eval_step,
    make_train_step,
    take_rows,
)

HISTORY_COLUMNS = [
    "epoch",
    "train_loss",
    "val_loss",
    "grad_norm",
    "learning_rate",
    "seconds",
]


@dataclasses.dataclass
class FitResult:
    """What ``fit`` returns.

    Attributes:
        params: the trained parameters: the best epoch's (lowest validation loss)
            when validation data was given, else the last; after a non-finite
            step, the last good parameters.
        history: one row per epoch: epoch, train_loss, val_loss, grad_norm,
            learning_rate (the rate of the epoch's last update), seconds.
        opt_state: the optimizer state after the last epoch.
        best_epoch: the epoch with the lowest validation loss, whose parameters
            were restored (None without validation data; after a non-finite stop
            nothing is restored and ``params`` are the last good ones).
        stop_reason: ``"completed"``, ``"early_stopping"`` or ``"non_finite"``.
        message: a sentence on why training stopped.
    """

    params: Any
    history: pd.DataFrame
    opt_state: Any
    best_epoch: int | None
    stop_reason: str
    message: str


class FitState(NamedTuple):
    """The state of the loop: everything a checkpoint holds to resume exactly."""

    params: Any
    opt_state: Any
    best_params: Any
    key: Any  # shuffling and dropout keys derive from it
    epoch: int = 0  # epochs done
    updates: int = 0  # optimizer updates applied
    best_val: float | None = None
    best_epoch: int | None = None
    bad_epochs: int = 0  # epochs since the best one
    history: tuple = ()  # one dict per epoch (HISTORY_COLUMNS)

    def arrays(self) -> dict:
        """The array part, as a checkpoint stores it."""
        return {
            "params": self.params,
            "opt_state": self.opt_state,
            "best_params": self.best_params,
            "key": self.key,
        }

    def metadata(self, record: dict) -> dict:
        """The rest, with the run's recorded configuration."""
        names = ("epoch", "updates", "best_val", "best_epoch", "bad_epochs")
        meta = {name: getattr(self, name) for name in names}
        return {**meta, "history": list(self.history), "config": record}

    @classmethod
    def restore(cls, arrays: dict, meta: dict) -> FitState:
        names = ("epoch", "updates", "best_val", "best_epoch", "bad_epochs")
        scalars = {name: meta[name] for name in names}
        return cls(**arrays, **scalars, history=tuple(meta["history"]))


class Run(NamedTuple):
    """What stays fixed while the loop runs: the compiled programs and the data."""

    config: FitConfig
    place: Placement
    record: dict | None  # what a checkpoint records (None: no checkpoint)
    train: tuple  # (xs, ys, mask) of this process
    validation: tuple | None
    step: Callable  # rnnbptt.train.make_train_step's
    eval_fn: Callable
    schedule: Callable
    n_batches: int
    bar: Any
    ahead: CompileAhead  # the loop's programs, compiled in the background

    @property
    def n(self) -> int:
        return self.train[0].shape[0]


class Epoch(NamedTuple):
    """What one epoch of training returns."""

    state: FitState
    loss: float  # mean over the valid targets
    grad_norm: float  # mean over the minibatches
    failure: str | None  # why training stopped mid-epoch (non-finite)


def fit(
    model,
    params,
    xs,
    ys,
    *,
    mask=None,
    validation=None,
    loss="mse",
    optimizer="adam",
    learning_rate=None,
    epochs: int = 10,
    batch_size: int = 32,
    shuffle: bool = True,
    clip_norm: float | None = None,
    tbptt=None,
    backward: str = DEFAULT_BACKWARD,
    recompute_every: int | None = None,
    data_parallel=None,
    patience: int | None = None,
    min_delta: float = 0.0,
    seed: int = 0,
    checkpoint=None,
    resume: bool = False,
    progress: bool = True,
    on_epoch_end: Callable[[dict], None] | None = None,
    sync_every: int | None = DEFAULT_SYNC_EVERY,
    checkpoint_every=NOT_GIVEN,
) -> FitResult:
    """Trains ``model`` from ``params`` on ``(xs, ys)``.

    Args:
        model: a ``SequenceModel``.
        params: initial parameters (``model.init``).
        xs: [N, T, D] inputs.
        ys: targets: [N, T, K] (or [N, T] integer labels for ``cross_entropy``)
            for many-to-many models, [N, K] (or [N]) for many-to-one.
        mask: [N, T] bool, True at valid steps (right padding); None: all valid.
        validation: ``(xs, ys)`` or ``(xs, ys, mask)``, evaluated each epoch.
        **settings: the other keywords are the attributes of ``FitConfig``
            (``data_parallel`` is its ``mesh``), documented there.

    Returns:
        A ``FitResult``.

    Raises:
        ValueError, TypeError: for inconsistent data or settings, before training.
    """
    config = FitConfig.create(locals())
    dtype = initial_params_dtype(params)
    train = check_dataset("fit", model, xs, ys, mask, config.loss, dtype)
    if jax.process_count() > 1:
        check_processes_agree_on(config, train[0].shape[0])
    place = plan_placement("fit", config.mesh, config.batch_size, train[0].shape[0])
    validation = config.validation_data(model, validation, dtype)
    record = config.record(model, train, validation) if config.checkpoint else None
    state = start(config, record, params, place)
    run = prepare(config, model, place, train, validation, state, record)
    stop = "completed", completed_message(config, state)
    try:
        for epoch in range(state.epoch, config.epochs):
            if patience_spent(config, state):  # e.g. resumed from an early stop
                break
            started = time.perf_counter()
            result = train_epoch(run, state, epoch)
            state = result.state
            if result.failure is not None:
                stop = "non_finite", result.failure
                break
            val_loss = validate(run, state.params)
            state, row = report(run, state, result, val_loss, started)
            state = early_stopping(run, state, val_loss)
            save(run, state)
            if config.on_epoch_end is not None:
                config.on_epoch_end(row)
    finally:
        run.bar.close()
        run.ahead.close()
    return finish(run, state, *stop)


def start(config: FitConfig, record, params, place: Placement) -> FitState:
    """A fresh state, or the checkpoint's when resuming one of this run (its
    ``record``), with the parameters and optimizer state where the train step
    takes them."""
    tx = config.optimizer_pair[0]
    state = FitState(params, tx.init(params), params, jax.random.key(config.seed))
    if config.will_resume():
        state = _resumed(config, record, state)
    params, opt_state = place.state((state.params, state.opt_state))
    return state._replace(params=params, opt_state=opt_state)


def _resumed(config: FitConfig, record: dict, state: FitState) -> FitState:
    arrays, meta = load_checkpoint(config.checkpoint, state.arrays())
    config.check_resumable(meta["config"], record)
    state = FitState.restore(arrays, meta)
    if jax.process_count() > 1:
        check_processes_agree(
            {
                f"epochs done according to {config.checkpoint}": (state.epoch, True),
                "updates done": (state.updates, True),
            }
        )
    return state


def completed_message(config: FitConfig, state: FitState) -> str:
    """Why a run that trains to its last epoch stopped, from its first state."""
    done, epochs = state.epoch, config.epochs
    if done >= epochs:  # resumed
        return (
            f"fit: checkpoint {config.checkpoint} holds {_epochs(done)} already, "
            f"epochs={epochs} asks for no more: nothing was trained"
        )
    if done:
        return f"trained {_epochs(epochs)} (resumed from the checkpoint after {done})"
    return f"trained {_epochs(epochs)}"


def _epochs(n: int) -> str:
    return f"{n} epoch" if n == 1 else f"{n} epochs"


def prepare(config: FitConfig, model, place, train, validation, state, record) -> Run:
    """The compiled programs, the progress bar and the fixed data of the loop."""
    tx, schedule = config.optimizer_pair
    engine = dict(
        backward=config.backward,
        recompute_every=config.recompute_every,
        tbptt=config.tbptt,
    )
    step = make_train_step(model, config.loss, tx, data_parallel=place.mesh, **engine)
    n_batches = math.ceil(train[0].shape[0] / place.local_batch)
    bar = tqdm(
        total=config.epochs * n_batches,
        initial=state.epoch * n_batches,
        disable=not (config.progress and place.main_process),
        unit="step",
        desc="fit",
        mininterval=0.1 if sys.stderr.isatty() else 15.0,  # logs: a line per 15 s
    )
    eval_fn = make_eval_step(model, config.loss)
    jobs = (
        {}
        if place.mesh is not None or state.epoch >= config.epochs
        else (
            _programs(
                step, eval_fn, state, train, validation, place.local_batch, config
            )
        )
    )
    return Run(
        config,
        place,
        record,
        train,
        validation,
        step,
        eval_fn,
        schedule,
        n_batches,
        bar,
        CompileAhead(jobs),
    )


def _programs(step, eval_fn, state, train, validation, batch, config) -> dict:
    """What the first epoch compiles, in the order it needs it: the step for a
    full and for the last minibatch, the evaluation for its batch sizes."""
    key = jax.eval_shape(lambda k: jax.random.fold_in(k, 0), state.key)
    jobs = {}
    for rows in _batch_sizes(train[0].shape[0], batch):
        jobs["train", rows] = (
            step,
            (state.params, state.opt_state, *_shapes(train, rows), key),
        )
    if validation is not None:
        for rows in _batch_sizes(validation[0].shape[0], config.batch_size):
            jobs["eval", rows] = (eval_fn, (state.params, *_shapes(validation, rows)))
    return jobs


def _batch_sizes(n: int, batch: int) -> list[int]:
    """The sizes of ``n`` rows in batches of ``batch``: full, then the last."""
    sizes = [min(batch, n)]
    return [*sizes, n % batch] if n > batch and n % batch else sizes


def _shapes(arrays: tuple, rows: int) -> list:
    """``rows`` rows of each array, as shapes (None stays None)."""
    return [
        None if a is None else jax.ShapeDtypeStruct((rows, *a.shape[1:]), a.dtype)
        for a in arrays
    ]


def train_epoch(run: Run, state: FitState, epoch: int) -> Epoch:
    """One pass over the training data; stops at the first non-finite step.

    The steps are dispatched without waiting for each other; their metrics are
    read back every ``sync_every`` steps. A non-finite step is found there: the
    state is then taken back to the start of those steps and they are run again
    up to the failing one, so that the result is the one of a loop that had
    stopped at once.
    """
    k_shuffle, k_dropout = jax.random.split(state.key)
    order = (
        jax.random.permutation(jax.random.fold_in(k_shuffle, epoch), run.n)
        if run.config.shuffle
        else jnp.arange(run.n)
    )
    step = lambda p, o, b: _step(run, p, o, order, k_dropout, epoch, b)  # noqa: E731
    params, opt_state, updates = state.params, state.opt_state, state.updates
    loss_sum, count, norm_sum = 0.0, 0.0, 0.0
    per_read = run.config.sync_every or run.n_batches  # None: once an epoch
    for first in range(0, run.n_batches, per_read):
        started_from, pending = (params, opt_state), []
        for b in range(first, min(first + per_read, run.n_batches)):
            params, opt_state, metrics = step(params, opt_state, b)
            pending.append({k: metrics[k] for k in SCALAR_METRICS})
        for i, metrics in enumerate(jax.device_get(local_copy(pending))):
            updates += int(metrics["updates"])
            if not metrics["finite"]:
                # again up to the failing step: under TBPTT its chunks before
                # the non-finite one were applied, as in a loop that stopped
                params, opt_state = started_from
                for b in range(first, first + i + 1):
                    params, opt_state, _ = step(params, opt_state, b)
                state = state._replace(
                    params=params, opt_state=opt_state, updates=updates
                )
                message = _non_finite_message(updates, epoch, first + i)
                return Epoch(state, math.nan, math.nan, message)
            weight = float(metrics["count"])
            loss_sum += float(metrics["loss"]) * weight
            count += weight
            norm_sum += float(metrics["grad_norm"])
            run.bar.update()
        run.bar.set_postfix(loss=f"{loss_sum / max(count, 1):.4g}", refresh=False)
    state = state._replace(params=params, opt_state=opt_state, updates=updates)
    return Epoch(state, loss_sum / max(count, 1), norm_sum / run.n_batches, None)


def _step(run: Run, params, opt_state, order, key, epoch: int, b: int):
    """Minibatch ``b`` of the epoch: the train step on its rows of ``order``."""
    size = run.place.local_batch
    rows = min(size, run.n - b * size)  # the last minibatch may be smaller
    batch, step_key = _minibatch(
        run.train, order, key, epoch * run.n_batches + b, b * size, rows
    )
    run.ahead.wait(("train", rows))
    return run.step(params, opt_state, *run.place.batch(batch), step_key)


@functools.partial(jax.jit, static_argnums=5)
def _minibatch(data, order, key, step, start, rows: int):
    """``data``'s rows ``order[start:start + rows]`` and the step's dropout key
    (one compiled call instead of a slice, three gathers and a ``fold_in``)."""
    chosen = jax.lax.dynamic_slice_in_dim(order, start, rows)
    return take_rows(data, chosen), jax.random.fold_in(key, step)


def _non_finite_message(updates: int, epoch: int, batch: int) -> str:
    return (
        f"fit: the loss or the gradients became non-finite at step {updates + 1} "
        f"(epoch {epoch + 1}, batch {batch + 1}); training stopped and the last "
        "good parameters are returned. Likely fixes: clip the gradients "
        "(clip_norm=1.0), lower the learning rate, or check the data for extreme "
        "values."
    )


def validate(run: Run, params) -> float:
    """Mean loss over the validation data of every process (NaN without any)."""
    if run.validation is None:
        return float("nan")
    xs, ys, mask = run.validation
    params = local_copy(params)
    size = run.config.batch_size
    parts = []
    for start in range(0, xs.shape[0], size):
        run.ahead.wait(("eval", min(size, xs.shape[0] - start)))
        rows = slice(start, start + size)
        parts.append(run.eval_fn(params, *take_rows((xs, ys, mask), rows)))
    total, count = 0.0, 0.0
    for value, n in jax.device_get(parts):
        total += float(value) * float(n)
        count += float(n)
    if run.place.processes > 1:
        total, count = sum_over_processes(jnp.array([total, count]))
    return float(total) / max(float(count), 1.0)


def report(run: Run, state: FitState, result: Epoch, val_loss, started):
    """The epoch's history row, and the state with it."""
    rate = run.schedule(max(state.updates - 1, 0), state.opt_state)
    row = {
        "epoch": state.epoch + 1,
        "train_loss": result.loss,
        "val_loss": val_loss,
        "grad_norm": result.grad_norm,
        "learning_rate": float(rate),
        "seconds": time.perf_counter() - started,
    }
    return state._replace(epoch=state.epoch + 1, history=(*state.history, row)), row


def early_stopping(run: Run, state: FitState, val_loss: float) -> FitState:
    """Keeps the best epoch's parameters; counts the epochs since."""
    if run.validation is None:
        return state
    best = state.best_val
    if best is None or val_loss < best - run.config.min_delta:
        return state._replace(
            best_val=val_loss,
            best_epoch=state.epoch,
            bad_epochs=0,
            best_params=state.params,
        )
    return state._replace(bad_epochs=state.bad_epochs + 1)


def patience_spent(config: FitConfig, state: FitState) -> bool:
    return config.patience is not None and state.bad_epochs >= config.patience


def save(run: Run, state: FitState) -> None:
    """The epoch's checkpoint (process 0 writes it), when one is asked for."""
    if run.config.checkpoint is not None and run.place.main_process:
        arrays = local_copy(state.arrays())
        save_checkpoint(run.config.checkpoint, arrays, state.metadata(run.record))


def finish(run: Run, state: FitState, reason: str, message: str) -> FitResult:
    """The result: the best parameters (with validation data), else the last."""
    if reason != "non_finite" and patience_spent(run.config, state):
        reason = "early_stopping"
        message = (
            f"fit: validation loss did not improve for {run.config.patience} "
            f"epochs; restored the parameters of epoch {state.best_epoch}"
        )
    if reason == "non_finite":
        warnings.warn(message, RuntimeWarning, stacklevel=3)
        final = state.params
    else:
        final = state.best_params if run.validation is not None else state.params
    history = pd.DataFrame(list(state.history), columns=HISTORY_COLUMNS)
    return FitResult(final, history, state.opt_state, state.best_epoch, reason, message)
