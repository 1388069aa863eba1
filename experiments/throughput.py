"""Training throughput: seconds an epoch of rnnbptt.fit beside PyTorch and Keras.

The problem of issue 13, the time a user waits for training: an LSTM with H=64
hidden units read many-to-one (one output, Dense(1), from the last step), T=52
steps of D=1 input, N=2048 sequences of random float32 inputs and targets drawn
from ``--seed``, minibatches of 32 (64 steps an epoch) shuffled every epoch,
Adam (learning rate 1e-3) on the mean squared error. Timed in one process:

* ``rnnbptt.fit, first call``: the first ``fit`` of the process, nothing of it
  compiled yet; its first epoch includes the compilation;
* ``rnnbptt.fit, again``: ``fit`` with the same model, shapes and settings
  (fresh parameters from the same initialisation): it compiles nothing;
* ``make_train_step loop``: a bare loop over ``rnnbptt.make_train_step`` as a
  user writes it (``jax.random.permutation``, rows sliced, the step called, the
  loss read once an epoch);
* ``torch loop``: ``torch.nn.LSTM`` + ``nn.Linear``, ``torch.optim.Adam``,
  ``randperm`` and ``zero_grad``/``backward``/``step`` per batch, on every core
  (``torch.set_num_threads(os.cpu_count())``, as XLA uses; ``--torch-threads``);
* ``keras (jax)``: Keras 3 on its JAX backend, ``Sequential(LSTM(64),
  Dense(1))``, ``fit(batch_size=32, shuffle=True)``, epochs timed by a callback.

torch and keras are optional (``pip install -e '.[bench]'``); a missing one is
skipped with a note. ``--backward`` is the engine of ``fit`` and of the bare
loop. Warm-up is part of what the first-epoch column measures, so each first
call is the first of its kind in the process: the cold ``fit`` runs before
anything else, as a program one compiles can serve another (a ``fit`` after
Keras' compiled 7 programs, not 10; one after the bare loop, 2), then ``--rounds``
rounds of torch, keras, ``fit`` and the bare loop in turn, each a fresh model
trained ``--epochs`` epochs. A row's ``s_per_epoch`` is the median over rounds
of the median of epochs 2..E (the cold row: its one call's); ``first_epoch_s``
and ``compilations`` (XLA programs compiled in the call, by
``rnnbptt.count_compilations``; none for torch) are those of its first call;
``vs_torch`` is ``s_per_epoch`` over the torch loop's. summary.json grades the
issue's targets: ``fit`` again / torch per epoch <= 1, a second ``fit``
compiles 0 programs, ``fit``'s first epoch / Keras' first epoch <= 1 (the speed
ones only on the issue's sizes, not ``--quick``), and records the machine.

Command:  rnnbptt experiment throughput   (or: python experiments/throughput.py)
Expected: found with seed 0, --backward manual, 5 epochs, 3 rounds, on an Intel
          Xeon (family 6, model 167, stepping 1, 2600 MHz, AVX-512), 2 cores;
          jax 0.10.2, torch 2.13.0+cpu (2 threads), keras 3.15.1 (jax); float32
          GEMM peak: XLA 151, torch 164 GFLOP/s. The machine was shared (load
          average 3.4-4.0 on its 2 cores: other people's tests), so these are
          not quiet figures:
            implementation           s/epoch  first epoch  compiled (s)  vs torch
            rnnbptt.fit, first call    0.244     1.97      10 (1.59)      1.24
            torch loop                 0.197    36.7 (*)    -             1
            keras (jax)                0.223     0.79      16 (0.99)      1.13
            rnnbptt.fit, again         0.232     0.22       0             1.18
            make_train_step loop       0.285     1.15      12 (0.85)      1.45
          Targets: fit again / torch per epoch 1.18 (not met, +0.18); a second
          fit compiled 0 programs (met); fit's first epoch / Keras' 2.49 (not
          met, +1.49). (*) torch's threads stall while other processes share
          the cores: epochs of 5-43 s in two of the three rounds instead of
          0.2 s (its first epoch was one); the median over rounds keeps them
          out of s/epoch. A run minutes before, on the same load: fit again /
          torch 0.999, fit's first epoch 2.90 s against Keras' 0.81 s. The
          order hardly matters: in fresh processes, Keras first or fit first,
          fit's first epoch took 1.4-1.6 s and Keras' 0.76-0.95 s.
          About 3 minutes here, 170 s of it torch's stalls (about 25 s without).
Quick:    --quick: N=96, T=9, H=7, 2 epochs, 1 round, for the tests (seconds).
"""

from __future__ import annotations

import functools
import os
import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pandas as pd

import rnnbptt
from rnnbptt.experiment import positive_int_option
from rnnbptt.runs import gemm_peak, machine_line

FULL = {
    "sequences": 2048,
    "steps": 52,
    "inputs": 1,
    "hidden": 64,
    "batch": 32,
    "learning_rate": 1e-3,
    "epochs": 5,
    "rounds": 3,
    "gemm": 2048,
}
# unusual sizes, so that no other test of the same process compiled them before
QUICK = {
    **FULL,
    "sequences": 96,
    "steps": 9,
    "hidden": 7,
    "epochs": 2,
    "rounds": 1,
    "gemm": 256,
}
TARGETS = {
    "fit_vs_torch": 1.0,  # rnnbptt.fit again / torch loop, seconds per epoch
    "second_fit_compilations": 0,  # programs compiled by a second fit
    "first_epoch_vs_keras": 1.0,  # fit's first epoch / Keras' first epoch
}
FIT_COLD, FIT_AGAIN = "rnnbptt.fit, first call", "rnnbptt.fit, again"
BARE, TORCH, KERAS = "make_train_step loop", "torch loop", "keras (jax)"


def add_arguments(parser) -> None:
    parser.add_argument(
        "--epochs",
        type=positive_int_option,
        help="epochs per call, at least 2 (default 5; --quick 2)",
    )
    parser.add_argument(
        "--rounds",
        type=positive_int_option,
        help="interleaved rounds of the timed calls (default 3; --quick 1)",
    )
    parser.add_argument(
        "--torch-threads",
        type=positive_int_option,
        help="threads for torch (default: every core, as XLA uses)",
    )


class Call(NamedTuple):
    """One timed call of an implementation."""

    epochs: list  # seconds of each epoch
    compilations: int  # XLA programs compiled during the call
    compile_s: float  # the seconds XLA spent compiling them


def counted(train) -> Call:
    """``train()``, which returns its epochs' seconds, and what it compiled."""
    with rnnbptt.count_compilations() as compiled:
        epochs = train()
    return Call(list(epochs), compiled.count, compiled.seconds)


def problem(size: dict, seed: int):
    """(model, params, xs [N, T, D], ys [N, 1]) float32, drawn from ``seed``."""
    rng = np.random.default_rng(seed)
    n, t, d = size["sequences"], size["steps"], size["inputs"]
    xs = rng.standard_normal((n, t, d)).astype(np.float32)
    ys = rng.standard_normal((n, 1)).astype(np.float32)
    model = rnnbptt.SequenceModel.build(
        "lstm", d, [size["hidden"]], 1, head="many_to_one"
    )
    params = model.init(jax.random.key(seed), jnp.float32)
    return model, params, xs, ys


def rnnbptt_fit(model, params, xs, ys, size, backward, seed) -> list[float]:
    result = rnnbptt.fit(
        model,
        params,
        xs,
        ys,
        loss="mse",
        optimizer="adam",
        learning_rate=size["learning_rate"],
        epochs=size["epochs"],
        batch_size=size["batch"],
        shuffle=True,
        backward=backward,
        seed=seed,
        progress=False,
    )
    return result.history["seconds"].tolist()


def bare_loop(model, params, xs, ys, size, backward, seed) -> list[float]:
    """The loop a user writes around ``make_train_step``."""
    tx = optax.adam(size["learning_rate"])
    step = rnnbptt.make_train_step(model, "mse", tx, backward=backward)
    opt_state = tx.init(params)
    xs, ys = jnp.asarray(xs), jnp.asarray(ys)
    n, batch = xs.shape[0], size["batch"]
    key, seconds = jax.random.key(seed), []
    for epoch in range(size["epochs"]):
        started = time.perf_counter()
        order = jax.random.permutation(jax.random.fold_in(key, epoch), n)
        for first in range(0, n, batch):
            rows = order[first : first + batch]
            params, opt_state, metrics = step(
                params, opt_state, xs[rows], ys[rows], None, None
            )
        jax.block_until_ready(metrics["loss"])
        seconds.append(time.perf_counter() - started)
    return seconds


def torch_loop(xs, ys, size, seed) -> list[float]:
    import torch

    torch.manual_seed(seed)

    class Model(torch.nn.Module):
        def __init__(self, inputs: int, hidden: int):
            super().__init__()
            self.lstm = torch.nn.LSTM(inputs, hidden, batch_first=True)
            self.head = torch.nn.Linear(hidden, 1)

        def forward(self, x):
            hs, _ = self.lstm(x)
            return self.head(hs[:, -1])

    model = Model(size["inputs"], size["hidden"])
    optimizer = torch.optim.Adam(model.parameters(), lr=size["learning_rate"])
    mse = torch.nn.MSELoss()
    xs, ys = torch.from_numpy(xs), torch.from_numpy(ys)
    n, batch, seconds = xs.shape[0], size["batch"], []
    for _ in range(size["epochs"]):
        started = time.perf_counter()
        order = torch.randperm(n)
        for first in range(0, n, batch):
            rows = order[first : first + batch]
            optimizer.zero_grad()
            loss = mse(model(xs[rows]), ys[rows])
            loss.backward()
            optimizer.step()
        loss.item()
        seconds.append(time.perf_counter() - started)
    return seconds


def keras_fit(xs, ys, size, seed) -> list[float]:
    import keras

    keras.utils.set_random_seed(seed)
    seconds = []

    class EpochTimes(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.started = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            float((logs or {}).get("loss", np.nan))  # the epoch's result is in
            seconds.append(time.perf_counter() - self.started)

    model = keras.Sequential(
        [
            keras.Input((size["steps"], size["inputs"])),
            keras.layers.LSTM(size["hidden"]),
            keras.layers.Dense(1),
        ]
    )
    model.compile(optimizer=keras.optimizers.Adam(size["learning_rate"]), loss="mse")
    model.fit(
        xs,
        ys,
        batch_size=size["batch"],
        epochs=size["epochs"],
        shuffle=True,
        verbose=0,
        callbacks=[EpochTimes()],
    )
    return seconds


def optional_frameworks(threads: int) -> tuple[dict, list[str]]:
    """({"torch": version, "keras": version} for those that can run, notes)."""
    found, notes = {}, []
    try:
        import torch

        torch.set_num_threads(threads)
        found["torch"] = f"{torch.__version__} ({threads} threads)"
    except ImportError:
        notes.append("torch not installed: no torch loop (pip install -e '.[bench]')")
    os.environ.setdefault("KERAS_BACKEND", "jax")  # else keras wants tensorflow
    try:
        import keras
    except ImportError as error:  # not installed, or its backend is not
        notes.append(
            f"keras not importable ({error}): no Keras row (pip install -e '.[bench]')"
        )
    else:
        backend = keras.backend.backend()
        if backend == "jax":
            found["keras"] = f"{keras.__version__} (jax backend)"
        else:
            notes.append(
                f"keras runs on its {backend} backend (KERAS_BACKEND), not jax: "
                "no Keras row"
            )
    return found, notes


def later_epochs(call: Call) -> float:
    """Median seconds of epochs 2..E: an epoch once everything is compiled."""
    return float(np.median(call.epochs[1:]))


def time_all(size, backward, seed, frameworks) -> dict[str, list[Call]]:
    """Every call of each implementation, in the order they ran."""
    model, params, xs, ys = problem(size, seed)
    on_jax = (model, params, xs, ys, size, backward, seed)
    fit = functools.partial(rnnbptt_fit, *on_jax)
    calls = {}
    if "torch" in frameworks:
        calls[TORCH] = functools.partial(torch_loop, xs, ys, size, seed)
    if "keras" in frameworks:
        calls[KERAS] = functools.partial(keras_fit, xs, ys, size, seed)
    calls[FIT_AGAIN] = fit
    calls[BARE] = functools.partial(bare_loop, *on_jax)
    timings = {FIT_COLD: [counted(fit)]}  # first: nothing of fit compiled yet
    timings |= {name: [] for name in calls}
    for _ in range(size["rounds"]):
        for name, call in calls.items():
            timings[name].append(counted(call))
    return timings


def table(timings: dict[str, list[Call]]) -> pd.DataFrame:
    """One row per implementation (see the module's docstring for the columns)."""
    rows = []
    for name, calls in timings.items():
        first, xla = calls[0], name != TORCH
        rows.append(
            {
                "implementation": name,
                "s_per_epoch": float(np.median([later_epochs(c) for c in calls])),
                "first_epoch_s": first.epochs[0],
                "compilations": first.compilations if xla else np.nan,
                "compile_s": first.compile_s if xla else np.nan,
            }
        )
    frame = pd.DataFrame(rows)
    torch_rows = frame.loc[frame["implementation"] == TORCH, "s_per_epoch"]
    anchor = float(torch_rows.iloc[0]) if len(torch_rows) else np.nan
    frame["vs_torch"] = frame["s_per_epoch"] / anchor
    return frame


def targets(frame: pd.DataFrame, second_fit_compilations: int, graded: bool) -> dict:
    """The issue's targets as ratios: value, target, met (None where not graded:
    a missing framework, or sizes other than the issue's) and distance (value
    minus the limit: <= 0 where met)."""
    at = frame.set_index("implementation")

    def value(name, column):
        return float(at.loc[name, column]) if name in at.index else np.nan

    checks = {
        "fit again / torch loop, seconds per epoch": (
            value(FIT_AGAIN, "s_per_epoch") / value(TORCH, "s_per_epoch"),
            TARGETS["fit_vs_torch"],
            graded,
        ),
        "programs compiled by a second fit": (
            second_fit_compilations,
            TARGETS["second_fit_compilations"],
            True,  # at any size
        ),
        "fit first call / keras first fit, first epoch seconds": (
            value(FIT_COLD, "first_epoch_s") / value(KERAS, "first_epoch_s"),
            TARGETS["first_epoch_vs_keras"],
            graded,
        ),
    }
    out = {}
    for name, (measured, limit, grade) in checks.items():
        met = bool(measured <= limit) if grade and np.isfinite(measured) else None
        out[name] = {
            "value": measured,
            "target": f"<= {limit}",
            "met": met,
            "distance": measured - limit,
            "verdict": {True: "met", False: "not met", None: "not graded"}[met],
        }
    return out


def run(args, run) -> pd.DataFrame:
    size = dict(QUICK if args.quick else FULL)
    size["epochs"] = args.epochs or size["epochs"]
    size["rounds"] = args.rounds or size["rounds"]
    if size["epochs"] < 2:
        raise ValueError("--epochs must be at least 2 (the median is of epochs 2..E)")
    threads = args.torch_threads or os.cpu_count() or 1
    frameworks, notes = optional_frameworks(threads)
    for note in notes:
        print(f"note: {note}")
    load_before = os.getloadavg()
    timings = time_all(size, args.backward, args.seed, frameworks)
    frame = run.metrics(table(timings))
    again = [c.compilations for c in timings[FIT_AGAIN]]
    checks = targets(frame, again[0], graded=not args.quick)
    peaks = gemm_peak(size["gemm"], 3)
    machine = machine_line(frameworks)
    run.summary(
        {
            "machine": machine,
            "gemm_peak_gflops": peaks,
            "problem": size,
            "backward": args.backward,
            # other work on the machine: 1, 5 and 15-minute load averages
            "load_average": {"before": load_before, "after": os.getloadavg()},
            "notes": notes,
            "epoch_seconds": {
                name: [c.epochs for c in calls] for name, calls in timings.items()
            },
            "fit_again_compilations_per_round": again,
            "targets": checks,
        }
    )
    print(f"machine: {machine}")
    print(
        "float32 GEMM peak (GFLOP/s): "
        + ", ".join(f"{k} {v:.0f}" for k, v in peaks.items())
    )
    print("\ntargets:")
    for name, check in checks.items():
        print(
            f"  {name}: {check['value']:.3g} (target {check['target']}, distance "
            f"{check['distance']:+.3g}) {check['verdict']}"
        )
    print(f"\nseconds per epoch, median of epochs 2..{size['epochs']}:")
    return frame


if __name__ == "__main__":
    import sys

    from rnnbptt.experiment import main

    sys.exit(main(sys.modules[__name__]))
