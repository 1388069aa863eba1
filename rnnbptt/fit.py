"""``fit``: train a SequenceModel with optax, full or truncated BPTT, either engine.

One jitted train step per minibatch; seeded shuffling; validation each epoch;
early stopping with restoration of the best parameters; crash-safe checkpoints
after every epoch (resuming continues to exactly the result of an uninterrupted
run); training stops cleanly, keeping the last good parameters, when the loss or
the gradients become non-finite.
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
import time
import warnings
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax
import pandas as pd
from tqdm.auto import tqdm

from ._checks import DEFAULT_BACKWARD, check_backward, check_checkpoint_every
from ._scalars import finite_number, positive_int, real_number
from .checkpoint import load_checkpoint, save_checkpoint
from .data_checks import check_dataset
from .losses import get_loss
from .parallel import (
    check_divisible,
    check_processes_agree,
    global_batch,
    local_copy,
    replicate,
    resolve_mesh,
)
from .train import as_tbptt, make_eval_step, make_train_step

OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop", "adagrad", "nadam", "lion")
DEFAULT_LEARNING_RATE = 1e-3
_SCALAR_METRICS = ("loss", "grad_norm", "updates", "finite", "count")
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


def make_optimizer(optimizer, learning_rate, clip_norm) -> tuple[Any, Callable]:
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
        tx, schedule = optimizer, lambda _, state: _injected_learning_rate(state)
    elif isinstance(optimizer, str) and optimizer in OPTIMIZERS:
        if learning_rate is None:
            learning_rate = DEFAULT_LEARNING_RATE
        if not callable(learning_rate):  # else an optax schedule
            finite_number("fit", "learning_rate", learning_rate, above=0)
        tx = getattr(optax, optimizer)(learning_rate)
        if callable(learning_rate):
            schedule = lambda step, _: learning_rate(step)  # noqa: E731
        else:
            schedule = lambda *_: learning_rate  # noqa: E731
    else:
        raise ValueError(
            f"fit: `optimizer` must be one of {OPTIMIZERS} or an optax "
            f"GradientTransformation, got {optimizer!r}"
        )
    if clip_norm is not None:
        clip_norm = finite_number("fit", "clip_norm", clip_norm, above=0)
        tx = optax.chain(optax.clip_by_global_norm(clip_norm), tx)
    return tx, schedule


def _learning_rate_setting(optimizer, learning_rate):
    """The learning rate as a checkpoint records it (None: the optimizer's own)."""
    if callable(learning_rate):
        return "schedule"
    if learning_rate is None and isinstance(optimizer, str):
        return DEFAULT_LEARNING_RATE
    return None if learning_rate is None else real_number(learning_rate)


def _injected_learning_rate(opt_state) -> float:
    """The learning rate held by an ``optax.inject_hyperparams`` state, else NaN."""
    has_hyperparams = lambda node: hasattr(node, "hyperparams")  # noqa: E731
    for node in jax.tree.leaves(opt_state, is_leaf=has_hyperparams):
        if has_hyperparams(node) and "learning_rate" in node.hyperparams:
            return float(local_copy(node.hyperparams["learning_rate"]))
    return math.nan


def _check_early_stopping(patience, min_delta, validation) -> None:
    # min_delta also decides the best epoch, with or without patience
    finite_number("fit", "min_delta", min_delta, at_least=0)
    if patience is None:
        return
    positive_int("fit", "patience", patience)
    if validation is None:
        raise ValueError("fit: early stopping (`patience`) needs `validation` data")


def _describe(value) -> str:
    """A name for a loss or optimizer given as a string, function or object."""
    if isinstance(value, str):
        return value
    return getattr(value, "__name__", type(value).__name__)


def _resume(path, template, config):
    state, meta = load_checkpoint(path, template)
    stored = meta["config"]
    changed = [
        f"{k}: {stored.get(k)!r} -> {config[k]!r}"
        for k in sorted(config)
        if stored.get(k) != config[k]
        # an optax optimizer brings its own rate (older checkpoints stored the
        # unused default there)
        and not (k == "learning_rate" and config[k] is None)
    ]
    if changed:
        raise ValueError(
            f"fit: checkpoint {path} was written by a different run configuration "
            f"({'; '.join(changed)}); pass resume=False or another checkpoint path "
            "to start over"
        )
    return state, meta


def _evaluate(eval_fn, params, data, batch_size) -> float:
    """Mean loss over this process's validation data, then over all processes."""
    xs, ys, mask = data
    params = local_copy(params)
    total, count = 0.0, 0.0
    for start in range(0, xs.shape[0], batch_size):
        part = slice(start, start + batch_size)
        value, n = eval_fn(
            params, xs[part], ys[part], None if mask is None else mask[part]
        )
        total += float(value) * float(n)
        count += float(n)
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        total, count = multihost_utils.process_allgather(jnp.array([total, count])).sum(
            0
        )
    return float(total) / max(float(count), 1.0)


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
    checkpoint_every: int | None = None,
    data_parallel=None,
    patience: int | None = None,
    min_delta: float = 0.0,
    seed: int = 0,
    checkpoint: str | os.PathLike | None = None,
    resume: bool = False,
    progress: bool = True,
    on_epoch_end: Callable[[dict], None] | None = None,
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
        loss: one of ``rnnbptt.losses.LOSSES`` or ``loss(pred, target, mask)``.
        optimizer: a name in ``OPTIMIZERS`` (made with ``learning_rate``) or any
            optax ``GradientTransformation`` (which brings its own learning rate).
        learning_rate: for a named optimizer: a float or an optax schedule
            (reported in the history); None means 1e-3. Must be None with an
            optax transformation (the history shows its rate if it was made with
            ``optax.inject_hyperparams``, else NaN).
        epochs: passes over the training data.
        batch_size: sequences per minibatch (the last one may be smaller).
        shuffle: reshuffle the sequences each epoch (seeded, reproducible).
        clip_norm: clip gradients by this global norm before the optimizer.
        tbptt: truncated BPTT: ``k`` (chunks of k), ``(k1, k2)`` or ``TBPTT``;
            None is full BPTT.
        backward: ``"manual"`` (hand-written BPTT, the default) or
            ``"autodiff"``; both give the same numbers.
        checkpoint_every: checkpointing through time: keep the carry every k
            steps and recompute the rest in the backward pass (see ``unroll``);
            None stores every step. Same numbers, less memory.
        data_parallel: None (one device, the default), True (every device JAX
            sees) or a ``jax.sharding.Mesh`` with a ``"batch"`` axis: each
            minibatch is split across the devices, parameters and optimizer state
            replicated, gradients reduced by XLA (``rnnbptt.parallel``). Every
            minibatch, the last one included, must divide evenly across the
            devices (a ValueError before training says which does not). With
            several processes (``rnnbptt.distributed.initialize``), ``xs``, ``ys``,
            ``mask`` and ``validation`` are this process's own equal share of the
            data, ``batch_size`` is the global minibatch (an equal part from each
            process), and only process 0 writes the checkpoint (on a filesystem
            every process can read, to resume). Every process must pass the same
            settings and as many sequences: a ValueError in every process names
            what differs (rather than a hang in a collective).
        patience: stop after this many epochs (an int >= 1) without a validation
            improvement of more than ``min_delta``; needs ``validation``. A run
            resumed from the checkpoint of a run that stopped early stops again at
            once, with the same result.
        min_delta: the smallest decrease of validation loss that counts.
        seed: seeds shuffling and dropout.
        checkpoint: file written atomically after every epoch.
        resume: continue from ``checkpoint`` if it exists. The checkpoint records
            the run's settings and refuses different ones; a loss function or an
            optax transformation is recorded by name only, so two different
            ``optax.adam`` instances, say, cannot be told apart.
        progress: show a tqdm progress bar with the loss and speed.
        on_epoch_end: called with each epoch's history row (a dict).

    Returns:
        A ``FitResult``.

    Raises:
        ValueError, TypeError: for inconsistent data or settings, before training.
    """
    tbptt = as_tbptt("fit", tbptt)
    check_backward("fit", backward)
    mesh = resolve_mesh("fit", data_parallel)
    checkpoint_every = check_checkpoint_every("fit", checkpoint_every)
    get_loss(loss, "fit")
    epochs = positive_int("fit", "epochs", epochs)
    batch_size = positive_int("fit", "batch_size", batch_size)
    _check_early_stopping(patience, min_delta, validation)
    if resume and checkpoint is None:
        raise ValueError("fit: `resume=True` needs a `checkpoint` path")
    tx, schedule = make_optimizer(optimizer, learning_rate, clip_norm)
    dtype = jax.tree.leaves(params)[0].dtype
    train = check_dataset("fit", model, xs, ys, mask, loss, dtype)
    n = train[0].shape[0]
    processes = jax.process_count()
    will_resume = resume and checkpoint is not None and os.path.exists(checkpoint)
    if processes > 1:
        check_processes_agree(
            {
                "training sequences": (n, True),
                "epochs": (epochs, True),
                "batch_size": (batch_size, True),
                "validation given": (validation is not None, True),
                "patience": (-1 if patience is None else patience, True),
                "shuffle": (shuffle, True),
                "seed": (seed, False),
                "min_delta": (min_delta, False),
                "resuming from an existing checkpoint": (will_resume, True),
            }
        )
    if batch_size % processes:
        raise ValueError(
            f"fit: `batch_size` {batch_size} must be a multiple of the {processes} "
            "processes (each contributes an equal part of every minibatch)"
        )
    local_batch = batch_size // processes  # this process's part of a minibatch
    if local_batch > n:
        raise ValueError(
            f"fit: `batch_size` {batch_size} is larger than the training data "
            f"({n * processes} sequences)"
        )
    if mesh is not None:
        check_divisible("fit", "`batch_size`", batch_size, mesh)
        last = (n % local_batch) * processes
        if last:
            check_divisible(
                "fit",
                f"the last minibatch ({n * processes} sequences in minibatches of "
                f"{batch_size})",
                last,
                mesh,
            )
    if validation is not None:
        if not isinstance(validation, tuple) or len(validation) not in (2, 3):
            raise TypeError("fit: `validation` must be (xs, ys) or (xs, ys, mask)")
        validation = check_dataset(
            "fit (validation)",
            model,
            *validation[:2],
            validation[2] if len(validation) == 3 else None,
            loss,
            dtype,
            name="validation",
        )

    step_fn = make_train_step(
        model,
        loss,
        tx,
        backward=backward,
        checkpoint_every=checkpoint_every,
        tbptt=tbptt,
        data_parallel=mesh,
    )
    eval_fn = make_eval_step(model, loss)
    config = {  # what must not change between a checkpoint and its resumption
        "model": repr(model),
        "loss": _describe(loss),
        "optimizer": _describe(optimizer),
        "learning_rate": _learning_rate_setting(optimizer, learning_rate),
        "batch_size": batch_size,
        "tbptt": None if tbptt is None else [tbptt.k1, tbptt.k2],
        "clip_norm": clip_norm,
        "backward": backward,
        "seed": seed,
        "shuffle": shuffle,
        "train_size": n,
    }
    state = {
        "params": params,
        "opt_state": tx.init(params),
        "best_params": params,
        "key": jax.random.key(seed),  # shuffling and dropout keys derive from it
    }
    meta = {
        "epoch": 0,
        "updates": 0,
        "best_val": None,
        "best_epoch": None,
        "bad_epochs": 0,
        "history": [],
        "config": config,
    }
    if will_resume:
        state, meta = _resume(checkpoint, state, config)
        if processes > 1:
            check_processes_agree(
                {
                    f"epochs done according to {checkpoint}": (meta["epoch"], True),
                    "updates done": (meta["updates"], True),
                }
            )
    k_shuffle, k_dropout = jax.random.split(state["key"])

    xs_all, ys_all, mask_all = train
    n_batches = math.ceil(n / local_batch)
    main_process = jax.process_index() == 0
    stop_reason, message = "completed", f"trained {epochs} epochs"
    bar = tqdm(
        total=epochs * n_batches,
        initial=meta["epoch"] * n_batches,
        disable=not (progress and main_process),
        unit="step",
        desc="fit",
        mininterval=0.1 if sys.stderr.isatty() else 15.0,  # logs: a line per 15 s
    )
    params, opt_state = state["params"], state["opt_state"]
    if mesh is not None:
        params, opt_state = replicate(mesh, (params, opt_state))
    patience_spent = lambda: patience is not None and meta["bad_epochs"] >= patience  # noqa: E731
    for epoch in range(meta["epoch"], epochs):
        if patience_spent():  # e.g. resumed from a run that had stopped early
            break
        started = time.perf_counter()
        order = (
            jax.random.permutation(jax.random.fold_in(k_shuffle, epoch), n)
            if shuffle
            else jnp.arange(n)
        )
        loss_sum, count, norm_sum = 0.0, 0.0, 0.0
        for b in range(n_batches):
            idx = order[b * local_batch : (b + 1) * local_batch]
            batch = (
                xs_all[idx],
                ys_all[idx],
                None if mask_all is None else mask_all[idx],
            )
            if mesh is not None:
                batch = global_batch(mesh, batch)
            key = jax.random.fold_in(k_dropout, epoch * n_batches + b)
            params, opt_state, metrics = step_fn(params, opt_state, *batch, key)
            metrics = jax.device_get(
                local_copy({k: metrics[k] for k in _SCALAR_METRICS})
            )
            meta["updates"] += int(metrics["updates"])
            if not metrics["finite"]:
                stop_reason = "non_finite"
                message = (
                    f"fit: the loss or the gradients became non-finite at step "
                    f"{meta['updates'] + 1} (epoch {epoch + 1}, batch {b + 1}); "
                    "training stopped and the last good parameters are returned. "
                    "Likely fixes: "
                    "clip the gradients (clip_norm=1.0), lower the learning rate, or "
                    "check the data for extreme values."
                )
                break
            weight = float(metrics["count"])
            loss_sum += float(metrics["loss"]) * weight
            count += weight
            norm_sum += float(metrics["grad_norm"])
            bar.update()
            bar.set_postfix(loss=f"{loss_sum / max(count, 1):.4g}", refresh=False)
        if stop_reason == "non_finite":
            break
        val_loss = (
            float("nan")
            if validation is None
            else _evaluate(eval_fn, params, validation, batch_size)
        )
        row = {
            "epoch": epoch + 1,
            "train_loss": loss_sum / max(count, 1),
            "val_loss": val_loss,
            "grad_norm": norm_sum / n_batches,
            "learning_rate": float(schedule(max(meta["updates"] - 1, 0), opt_state)),
            "seconds": time.perf_counter() - started,
        }
        meta["history"].append(row)
        meta["epoch"] = epoch + 1
        if validation is not None:
            best = meta["best_val"]
            if best is None or val_loss < best - min_delta:
                meta["best_val"], meta["best_epoch"] = val_loss, epoch + 1
                meta["bad_epochs"] = 0
                state["best_params"] = params
            else:
                meta["bad_epochs"] += 1
        state["params"], state["opt_state"] = params, opt_state
        if checkpoint is not None and main_process:
            save_checkpoint(checkpoint, local_copy(state), meta)
        if on_epoch_end is not None:
            on_epoch_end(row)
    bar.close()
    if stop_reason != "non_finite" and patience_spent():
        stop_reason = "early_stopping"
        message = (
            f"fit: validation loss did not improve for {patience} epochs; "
            f"restored the parameters of epoch {meta['best_epoch']}"
        )
    if stop_reason == "non_finite":
        warnings.warn(message, RuntimeWarning, stacklevel=2)
        final = params
    else:
        final = state["best_params"] if validation is not None else params
    history = pd.DataFrame(meta["history"], columns=HISTORY_COLUMNS)
    return FitResult(
        final, history, opt_state, meta["best_epoch"], stop_reason, message
    )
