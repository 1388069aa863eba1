"""``FitConfig``: the settings of a ``fit``, validated once, before the first step.

Its ``record`` is what a checkpoint stores of the run and what resuming
compares: the settings and data that change the numbers (a different batch
size, seed, optimizer, validation set or patience would not continue the same
run), not the ones that only change how long or how visibly it runs (epochs,
progress, sync_every).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import warnings
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from ._checks import check_backward, check_recompute_every
from ._scalars import boolean, finite_number, int_seed, positive_int
from .checkpoint import check_writable
from .data_checks import check_dataset
from .losses import get_loss
from .optimizers import learning_rate_setting, make_optimizer, optimizer_setting
from .parallel import (
    check_processes_agree,
    local_copy,
    resolve_mesh,
    sum_over_processes,
)
from .tbptt import TBPTT, as_tbptt, check_model

# Minibatches between two reads of the metrics: few enough that the progress
# bar moves and a non-finite step wastes little, many enough that reading costs
# nothing beside the steps.
DEFAULT_SYNC_EVERY = 32


@dataclasses.dataclass(frozen=True)
class FitConfig:
    """The settings of ``fit`` (its keyword arguments), validated.

    Attributes:
        loss: one of ``rnnbptt.losses.LOSSES`` or ``loss(pred, target, mask)``.
        optimizer: a name in ``rnnbptt.optimizers.OPTIMIZERS`` (made with
            ``learning_rate``) or any optax ``GradientTransformation`` (which
            brings its own learning rate).
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
        recompute_every: checkpointing through time: keep the carry every k
            steps and recompute the rest in the backward pass (see ``unroll``);
            None stores every step. Same numbers, less memory; no file is
            written (``checkpoint`` is the file). Its former name
            ``checkpoint_every`` still works, with a ``DeprecationWarning``.
        mesh: from ``data_parallel``: None (one device, the default), True
            (every device JAX sees) or a ``jax.sharding.Mesh`` with a ``"batch"``
            axis: each minibatch is split across the devices, parameters and
            optimizer state replicated, gradients reduced by XLA
            (``rnnbptt.parallel``). Every minibatch, the last one included, must
            divide evenly across the devices (a ValueError before training says
            which does not). With several processes
            (``rnnbptt.distributed.initialize``), ``xs``, ``ys``, ``mask`` and
            ``validation`` are this process's own equal share of the data,
            ``batch_size`` is the global minibatch (an equal part from each
            process), and only process 0 writes the checkpoint (on a filesystem
            every process can read, to resume). Every process must pass the same
            settings and as many sequences: a ValueError in every process names
            what differs (rather than a hang in a collective).
        patience: stop after this many epochs (an int >= 1) without a validation
            improvement of more than ``min_delta``; needs ``validation``. A run
            resumed from the checkpoint of a run that stopped early stops again
            at once, with the same result.
        min_delta: the smallest decrease of validation loss that counts.
        seed: seeds shuffling and dropout.
        checkpoint: file written atomically after every epoch (its folder is
            made if missing; before training, a temporary file is made and
            deleted there to see that it can be). A write killed part-way leaves
            a temporary file beside it, which the next save removes.
        resume: continue from ``checkpoint`` if it exists. The checkpoint records
            the run's settings and data (``record``) and refuses different ones.
            An optax transformation or schedule is recorded as the calls that
            made it, with their arguments and a digest of their code
            (``rnnbptt.optimizers.describe``): ``optax.adam(0.05)`` built again
            resumes, ``optax.nadam(0.05)`` is refused, and so is a schedule
            ``lambda s: 0.2`` for ``lambda s: 0.1``. A loss function is
            recorded by name only.
        progress: show a tqdm progress bar with the loss and speed.
        on_epoch_end: called with each epoch's history row (a dict).
        sync_every: the host reads the steps' metrics (loss, finiteness) back
            every this many minibatches (32 by default; None: once an epoch).
            In between, steps are dispatched without waiting for each other, so
            the host's work overlaps the device's. Same numbers for any value;
            a smaller one moves the progress bar more often and wastes less
            work after a non-finite step (the steps dispatched after it are
            undone).
        has_validation: whether ``validation`` data was given.
    """

    loss: Any = "mse"
    optimizer: Any = "adam"
    learning_rate: Any = None
    epochs: int = 10
    batch_size: int = 32
    shuffle: bool = True
    clip_norm: float | None = None
    tbptt: TBPTT | None = None
    backward: str = "manual"
    recompute_every: int | None = None
    mesh: Any = None
    patience: int | None = None
    min_delta: float = 0.0
    seed: int = 0
    checkpoint: str | None = None
    resume: bool = False
    progress: bool = True
    on_epoch_end: Callable | None = None
    sync_every: int | None = DEFAULT_SYNC_EVERY
    has_validation: bool = False
    optimizer_pair: tuple = ()  # (optax transformation, history's rate of a step)

    @classmethod
    def create(cls, arguments: dict) -> FitConfig:
        """Validates ``fit``'s keyword ``arguments`` (its ``locals()``)."""
        a = arguments
        tbptt = as_tbptt("fit", a["tbptt"])
        if tbptt is not None:  # the model's part, as make_train_step says it
            check_model("make_train_step", a["model"])
        check_backward("fit", a["backward"])
        mesh = resolve_mesh("fit", a["data_parallel"])
        every = check_recompute_every(
            "fit", a["recompute_every"], a["checkpoint_every"], stacklevel=4
        )
        get_loss(a["loss"], "fit")
        epochs = positive_int("fit", "epochs", a["epochs"])
        batch_size = positive_int("fit", "batch_size", a["batch_size"])
        # min_delta also decides the best epoch, with or without patience
        min_delta = finite_number("fit", "min_delta", a["min_delta"], at_least=0)
        patience = _patience(a["patience"], a["validation"])
        checkpoint = _checkpoint_path(a["checkpoint"], a["resume"])
        pair = make_optimizer(a["optimizer"], a["learning_rate"], a["clip_norm"])
        clip = a["clip_norm"]  # valid: make_optimizer checked it
        sync = a["sync_every"]
        return cls(
            loss=a["loss"],
            optimizer=a["optimizer"],
            learning_rate=a["learning_rate"],
            epochs=epochs,
            batch_size=batch_size,
            shuffle=boolean("fit", "shuffle", a["shuffle"]),
            clip_norm=None if clip is None else float(clip),
            tbptt=tbptt,
            backward=a["backward"],
            recompute_every=every,
            mesh=mesh,
            patience=patience,
            min_delta=min_delta,
            seed=int_seed("fit", "seed", a["seed"]),
            checkpoint=checkpoint,
            resume=boolean("fit", "resume", a["resume"]),
            progress=boolean("fit", "progress", a["progress"]),
            on_epoch_end=_callable_or_none("on_epoch_end", a["on_epoch_end"]),
            sync_every=None
            if sync is None
            else positive_int("fit", "sync_every", sync),
            has_validation=a["validation"] is not None,
            optimizer_pair=pair,
        )

    def record(self, model, train: tuple, validation: tuple | None) -> dict:
        """What a checkpoint records of the run, and a resumption compares:
        the settings, and the data (``(xs, ys, mask)`` as checked) by digest."""
        return {
            "model": repr(model),
            "loss": _describe(self.loss),
            "optimizer": optimizer_setting(self.optimizer),
            "learning_rate": learning_rate_setting(self.optimizer, self.learning_rate),
            "batch_size": self.batch_size,
            "tbptt": None if self.tbptt is None else [self.tbptt.k1, self.tbptt.k2],
            "clip_norm": self.clip_norm,
            "backward": self.backward,
            "seed": self.seed,
            "shuffle": self.shuffle,
            "train_size": train[0].shape[0],
            "train_data": data_digest(train),
            "validation_data": None if validation is None else data_digest(validation),
            "patience": self.patience,
            "min_delta": self.min_delta,
        }

    def check_resumable(self, stored: dict, record: dict) -> None:
        """Refuses a checkpoint ``stored`` by a run of another configuration.

        What an older checkpoint did not record (an optax optimizer or schedule
        by its type only; no data digests) is not compared, with a warning."""
        unrecorded = [k for k in sorted(record) if self._unrecorded(k, stored)]
        changed = [
            f"{k}: {stored[k]!r} -> {record[k]!r}"
            for k in sorted(record)
            if k not in unrecorded
            and stored[k] != record[k]
            # an optax optimizer brings its own rate (older checkpoints stored
            # the unused default there)
            and not (k == "learning_rate" and record[k] is None)
        ]
        if changed:
            raise ValueError(
                f"fit: checkpoint {self.checkpoint} was written by a different run "
                f"configuration ({'; '.join(changed)}); pass resume=False or another "
                "checkpoint path to start over"
            )
        if unrecorded:
            warnings.warn(
                f"fit: checkpoint {self.checkpoint} was written by an older rnnbptt "
                f"that did not record {', '.join(unrecorded)}; resuming without "
                "comparing them with this run's",
                UserWarning,
                stacklevel=5,  # fit's caller
            )

    def _unrecorded(self, key: str, stored: dict) -> bool:
        if key not in stored:
            return True
        if key == "optimizer" and not isinstance(self.optimizer, str):
            return stored[key] in _OPTAX_TYPES
        return key == "learning_rate" and stored[key] == "schedule"

    def will_resume(self) -> bool:
        return self.resume and os.path.exists(self.checkpoint)

    def validation_data(self, model, validation, dtype):
        """``validation`` as checked ``(xs, ys, mask)`` arrays, or None."""
        if validation is None:
            return None
        if not isinstance(validation, tuple) or len(validation) not in (2, 3):
            raise TypeError("fit: `validation` must be (xs, ys) or (xs, ys, mask)")
        mask = validation[2] if len(validation) == 3 else None
        return check_dataset(
            "fit (validation)",
            model,
            *validation[:2],
            mask,
            self.loss,
            dtype,
            name="validation",
        )


# How rnnbptt 0.1 recorded an optax optimizer: by its type only (and a
# schedule as "schedule").
_OPTAX_TYPES = ("GradientTransformation", "GradientTransformationExtraArgs")


def initial_params_dtype(params) -> np.dtype:
    """The dtype of ``params``, once each leaf is known to be a finite floating
    array (a TypeError or ValueError naming the leaf otherwise)."""
    leaves = jax.tree_util.tree_flatten_with_path(local_copy(params))[0]
    if not leaves:
        raise TypeError(
            "fit: `params` must be the model's parameters (e.g. "
            f"model.init(jax.random.key(0))), got {type(params).__name__} {params!r}"
        )
    for key_path, leaf in leaves:
        name, arr = "params" + jax.tree_util.keystr(key_path), np.asarray(leaf)
        if not jax.numpy.issubdtype(arr.dtype, jax.numpy.floating):
            raise TypeError(
                f"fit: `{name}` must be a floating array (as model.init makes), got "
                f"{type(leaf).__name__} of dtype {arr.dtype}"
            )
        bad = ~np.isfinite(arr)
        if bad.any():
            where = tuple(int(i) for i in np.argwhere(bad)[0])
            raise ValueError(
                f"fit: `{name}` holds {arr[where]} at index {where}; initial "
                "parameters must be finite (training from them is meaningless, and "
                "they could not be returned as the last good parameters)"
            )
    return np.asarray(leaves[0][1]).dtype


def data_digest(arrays: tuple) -> str:
    """Dtypes, shapes and a SHA-256 of the bytes of checked ``(xs, ys, mask)``;
    with several processes, of every process's share, in process order."""
    digest = hashlib.sha256()
    shown = []
    for arr in arrays:
        arr = None if arr is None else np.ascontiguousarray(local_copy(arr))
        text = "none" if arr is None else f"{arr.dtype}{list(arr.shape)}"
        digest.update(text.encode())
        if arr is not None:
            digest.update(arr.reshape(-1).view(np.uint8))
        shown.append(text)
    if jax.process_count() > 1:  # shares differ in size: no shapes then
        from jax.experimental import multihost_utils

        mine = np.frombuffer(digest.digest(), np.uint8)
        every = np.asarray(multihost_utils.process_allgather(mine))
        digest = hashlib.sha256(every.tobytes())
        shown = [f"{jax.process_count()} processes' shares"]
    return f"{', '.join(shown)}, sha256 {digest.hexdigest()[:16]}"


def check_processes_agree_on(config: FitConfig, n: int) -> None:
    """Every process of a multi-process run passed the same settings."""
    patience = -1 if config.patience is None else config.patience
    check_processes_agree(
        {
            "training sequences": (n, True),
            "epochs": (config.epochs, True),
            "batch_size": (config.batch_size, True),
            "validation given": (config.has_validation, True),
            "patience": (patience, True),
            "shuffle": (config.shuffle, True),
            "seed": (config.seed, False),
            "min_delta": (config.min_delta, False),
            "checkpoint given": (config.checkpoint is not None, True),
            "resuming from an existing checkpoint": (config.will_resume(), True),
            "sync_every": (config.sync_every or 0, True),
        }
    )
    if config.checkpoint is not None:  # written by process 0 alone
        problem = None
        if jax.process_index() == 0:
            problem = checkpoint_problem(config.checkpoint)
        writable = sum_over_processes(np.array([problem is None], np.int32))
        if writable[0] != jax.process_count():
            raise ValueError(
                problem
                or f"fit: process 0 cannot write `checkpoint` "
                f"{config.checkpoint!r} (its error says why)"
            )


def _describe(value) -> str:
    """A name for a loss given as a string, function or object (an optimizer
    is described by ``optimizers.optimizer_setting``)."""
    if isinstance(value, str):
        return value
    return getattr(value, "__name__", type(value).__name__)


def _patience(patience, validation) -> int | None:
    if patience is None:
        return None
    positive_int("fit", "patience", patience)
    if validation is None:
        raise ValueError("fit: early stopping (`patience`) needs `validation` data")
    return patience


def _checkpoint_path(path, resume) -> str | None:
    """The checkpoint file, checked to be writable before training starts (by
    process 0, which writes it: see ``check_processes_agree_on``)."""
    if path is None:
        if resume:
            raise ValueError("fit: `resume=True` needs a `checkpoint` path")
        return None
    if not isinstance(path, str | os.PathLike):
        raise TypeError(
            f"fit: `checkpoint` must be a file path (str or os.PathLike), got "
            f"{type(path).__name__}"
        )
    path = os.fspath(path)
    problem = checkpoint_problem(path)
    if problem is not None and jax.process_count() == 1:
        raise ValueError(problem)
    return path


def checkpoint_problem(path: str) -> str | None:
    """Why ``path`` cannot be written here, or None. Its folder, where it
    exists, is tried: a temporary file is made there and deleted, as a save
    does (what permissions allow may still fail, e.g. on a read-only mount)."""
    if os.path.isdir(path):
        return f"fit: `checkpoint` {path!r} is a directory, not a file"
    if not os.path.basename(path):
        return f"fit: `checkpoint` {path!r} names a directory (a trailing separator)"
    folder = os.path.dirname(os.path.abspath(path))
    existing = folder
    while not os.path.exists(existing):  # save_checkpoint makes missing folders
        existing = os.path.dirname(existing)
    cannot = f"fit: `checkpoint` {path!r} cannot be written: {existing!r}"
    if not os.path.isdir(existing) or not os.access(existing, os.W_OK | os.X_OK):
        return f"{cannot} is not a writable folder"
    if existing == folder:
        try:
            check_writable(path)
        except OSError as err:
            return f"{cannot} refuses a new file ({err.strerror or err})"
    return None


def _callable_or_none(name: str, value):
    if value is not None and not callable(value):
        raise TypeError(
            f"fit: `{name}` must be a function of the epoch's row (a dict) or None, "
            f"got {type(value).__name__}"
        )
    return value
