"""Recurrent backpropagation: run forward until the state settles, then backpropagate.

``rnnbptt.settle`` runs a cell on a fixed input until its state stops changing
and differentiates the settled state by one of six engines (``rnnbptt.settling``).
Three questions:

1. Agreement (float64; Elman, LSTM, GRU and Hopfield cells, B = 4, D = 8,
   H = 16, every parameter of the default init halved so that the update
   contracts): each engine's gradient of a random probe of the state against
   BPTT through every step taken, as the forward pass runs more steps
   (``max_steps`` 1 to 200, stopping at ``tol`` 1e-14), and at the settled
   state against ``backward_steps`` (the truncation of TBPTT, the terms of
   Neumann-RBP, the iterations of CG-RBP). Worst relative difference
   ``max|a-b| / max|b|`` over the leaves of ``params`` and ``x``.
2. Liao et al.'s (2018) Hopfield associative memory (their
   ``config/hopfield.yaml``) on the shipped 8x8 digits (``data/digits.csv.gz``,
   not MNIST): the first image of each digit 0-9, binarised (count > 0),
   stored by a ``Hopfield`` network of 64 clamped inputs and a state of 128
   hidden plus 64 output units (the last 64), sigmoid units; at most 50
   forward updates (``tol`` 1e-6), truncation 20, Adam 1e-3, 2000 updates of
   the full batch of ten (they take 10,000 of one image), loss the mean L1
   distance of the output units from the image. Recall is scored on ten
   corruptions of each image (50% of its on-pixels turned off, drawn with the
   seed), the L1 distance of the binarised output (>= 0.5) from the clean image;
   "copy the input" scores the corruption itself. Run twice: from the default
   init, where the network settles, and from its recurrent weights times 8
   (``--gains``), where it does not settle within 50 updates, the case in which
   plain RBP's fixed-point assumption fails. Also the engine's gradient at the
   BPTT-trained weights against BPTT's, the residual memory
   (``rnnbptt.settle_residual_bytes``) and the median time of one update.
3. Memory against forward steps (50 to 5000) for the Hopfield network: the
   residual bytes the backward keeps, and the scratch memory XLA reserves for the
   compiled gradient (``temp_size_in_bytes``).

Command:  rnnbptt experiment recurrent_backprop
Expected: agreement at the settled state (float64, 200 forward steps): RBP and
          the implicit solve against BPTT at most 9.6e-10 (the LSTM, whose state
          still moves by 2.7e-11 at 200 steps; 5.8e-13 or less for the others);
          CG-RBP with 20 iterations the same, except the LSTM's 32-dimensional
          state (1.4e-2; 4.6e-13 with 40); Neumann-RBP against TBPTT with as many
          steps at most 2.0e-13 for every K.
          Obtained (seed 0, AMD EPYC family 25 model 1 at 2445 MHz, numpy GEMM
          185 GFLOP/s, 2 cores; the README has the whole table): from the
          default init every training row settles (8-16 updates on average)
          and the five methods train alike (train L1 0.081, corrupted-test
          L1 0.095; copying the input 0.25; gradients within 2e-6 of BPTT's),
          1.12-2.18 ms per update for TBPTT and BPTT, 0.60-0.65 for RBP and
          Neumann-RBP, 1.35 for CG-RBP (training calls settle with
          rate_steps=0: no spectral estimate); residual memory 384 kB (BPTT), 154 kB
          (TBPTT), 7.7 kB (the RBP family). Recurrent weights x 8 / x 16 (the
          state does not settle): corrupted-test L1 BPTT 0.059 / 0.143, TBPTT
          0.046 / 0.102, RBP 0.063 / 0.182, CG-RBP 0.057 / 0.105, Neumann-RBP
          0.054 / 0.110; RBP's gradient at the x 16 init is 21.5 times BPTT's
          size off. Memory from 50 to 5000 forward steps: BPTT's residuals 384
          kB to 38.4 MB (compiled scratch 2.0 to 167 MB), TBPTT's and the RBP
          family's constant (scratch 1.07 MB and 0.37-0.40 MB). 6 minutes.
Quick:    --quick, for the tests: the LSTM alone at 200 forward steps and 3
          backward steps; H = 8 hidden units, 20 updates, the default init
          only; memory at 50 and 500 steps.
"""

from __future__ import annotations

import functools
import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pandas as pd

import rnnbptt
import rnnbptt.runs
from rnnbptt.experiment import positive_int_option

COMMON_OPTIONS = ("seed",)  # every engine runs, so no --backward
METHODS = {  # the names of Liao et al.'s table -> settle's engines
    "BPTT": "bptt",
    "TBPTT": "tbptt",
    "RBP": "rbp",
    "CG-RBP": "cg",
    "Neumann-RBP": "neumann",
}
PIXELS = 64
FULL = {
    "cells": ["elman", "lstm", "gru", "hopfield"],
    "hidden": 128,
    "updates": 2000,
    "log_every": 50,
    "corruptions": 10,
    "gains": [1.0, 8.0, 16.0],
    "agreement_steps": [2, 5, 10, 20, 50, 100, 200],
    "backward_steps": [1, 2, 5, 10, 20, 40],
    "memory_steps": [50, 100, 500, 1000, 5000],
    "repeats": 20,
}
QUICK = {
    "cells": ["lstm"],
    "hidden": 8,
    "updates": 20,
    "log_every": 10,
    "corruptions": 2,
    "gains": [1.0],
    "agreement_steps": [200],
    "backward_steps": [3],
    "memory_steps": [50, 500],
    "repeats": 3,
}
TASK = {"max_steps": 50, "tol": 1e-6, "backward_steps": 20, "learning_rate": 1e-3}


def add_arguments(parser) -> None:
    parser.add_argument("--updates", type=positive_int_option, help="Adam updates")
    parser.add_argument(
        "--gains",
        type=float,
        nargs="+",
        help="factors of the initial recurrent weights, one Hopfield run each",
    )


def run(args, run) -> pd.DataFrame:
    jax.config.update("jax_enable_x64", True)  # float64 agreement beside float32
    size = dict(QUICK if args.quick else FULL)
    size["updates"] = args.updates or size["updates"]
    size["gains"] = args.gains or size["gains"]
    if any(not np.isfinite(g) or g <= 0 for g in size["gains"]):
        raise ValueError(f"--gains must be finite and > 0, got {size['gains']}")
    steps_table, terms_table = agreement(size, args.seed)
    table, histories = hopfield_table(size, args.seed)
    memory = memory_table(size, args.seed)
    for name, frame in [
        ("agreement_steps.csv", steps_table),
        ("agreement_terms.csv", terms_table),
        ("hopfield.csv", table),
        ("memory.csv", memory),
    ]:
        frame.to_csv(run.path(name), index=False)
    run.metrics(histories)
    run.summary(
        {
            "machine": rnnbptt.runs.machine_line({"optax": optax.__version__}),
            "gemm_gflops": rnnbptt.runs.gemm_peak(1024, 5)["xla"],
            "hopfield": table.to_dict("records"),
            "memory": memory.to_dict("records"),
            "agreement_worst": _worst(steps_table, terms_table),
        }
    )
    _plot(run, steps_table, terms_table, histories, memory)
    return table


# 1. Agreement ----------------------------------------------------------------


AGREEMENT_CELLS = {
    "elman": rnnbptt.Elman(8, 16),
    "lstm": rnnbptt.LSTM(8, 16),
    "gru": rnnbptt.GRU(8, 16),
    "hopfield": rnnbptt.Hopfield(8, 16),
}


def _worst_rel(table: pd.DataFrame) -> pd.Series:
    """Per engine, the worst relative difference over the leaves of params and x
    (a fixed-point engine's carry0 gradient is zero by design)."""
    leaves = table.index.get_level_values("leaf")
    return table[~leaves.str.startswith("carry0")]["rel"].groupby(level="engine").max()


def agreement(size, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(error against forward steps, error against backward_steps), float64."""
    steps_rows, terms_rows = [], []
    for c, name in enumerate(size["cells"]):
        cell = AGREEMENT_CELLS[name]
        key = jax.random.key(seed + c)
        params = jax.tree.map(lambda a: 0.5 * a, cell.init(key, jnp.float64))
        x = jax.random.normal(jax.random.fold_in(key, 1), (4, 8), jnp.float64)
        probe_key = jax.random.fold_in(key, 2)
        for n in size["agreement_steps"]:
            with warnings.catch_warnings():  # unsettled at few steps: the point
                warnings.simplefilter("ignore", RuntimeWarning)
                table = rnnbptt.compare_settle(
                    cell, params, x, key=probe_key, tol=1e-14, max_steps=n
                )
            worst = _worst_rel(table)
            steps_rows += [
                {
                    "cell": name,
                    "max_steps": n,
                    "steps": max(table.attrs["steps"]),
                    "residual": table.attrs["residual"],
                    "engine": engine,
                    "rel_vs_bptt": worst[engine],
                }
                for engine in worst.index
                if engine != "bptt"
            ]
        for k in size["backward_steps"]:
            table = rnnbptt.compare_settle(
                cell,
                params,
                x,
                key=probe_key,
                engines=("bptt", "tbptt", "neumann", "cg"),
                tol=1e-14,
                max_steps=1000,
                backward_steps=k,
            )
            worst = _worst_rel(table)
            identity = rnnbptt.compare_settle(
                cell,
                params,
                x,
                key=probe_key,
                engines=("neumann",),
                reference="tbptt",
                tol=1e-14,
                max_steps=1000,
                backward_steps=k,
            )
            terms_rows.append(
                {
                    "cell": name,
                    "backward_steps": k,
                    "tbptt": worst["tbptt"],
                    "neumann": worst["neumann"],
                    "cg": worst["cg"],
                    "neumann_vs_tbptt": _worst_rel(identity)["neumann"],
                }
            )
    return pd.DataFrame(steps_rows), pd.DataFrame(terms_rows)


def _worst(steps_table, terms_table) -> dict:
    settled = steps_table[steps_table["max_steps"] == steps_table["max_steps"].max()]
    return {
        "at_most_steps_rel_vs_bptt": settled.groupby("engine")["rel_vs_bptt"]
        .max()
        .to_dict(),
        "neumann_vs_tbptt": float(terms_table["neumann_vs_tbptt"].max()),
    }


# 2. The Hopfield associative memory --------------------------------------------


def digit_patterns(path=None) -> np.ndarray:
    """[10, 64] float32: the first image of each digit 0-9, binarised (> 0)."""
    images, labels = rnnbptt.data.load_digits(path)
    first = [int(np.flatnonzero(labels == d)[0]) for d in range(10)]
    return (images[first].reshape(10, PIXELS) > 0).astype(np.float32)


def corrupt(patterns: np.ndarray, level: float, copies: int, rng) -> np.ndarray:
    """``copies`` corruptions of each pattern (rows in pattern order, repeated):
    ``int(level * on)`` of its ``on`` pixels, drawn by ``rng``, turned off."""
    out = np.repeat(patterns, copies, axis=0)
    for row in out:
        on = np.flatnonzero(row)
        row[rng.permutation(on)[: int(level * on.size)]] = 0
    return out


def _settled(cell, params, x, engine: str, max_steps: int = TASK["max_steps"]):
    return rnnbptt.settle(
        cell,
        params,
        x,
        tol=TASK["tol"],
        max_steps=max_steps,
        backward=engine,
        backward_steps=TASK["backward_steps"],
        unsettled="ignore",
        rate_steps=0,  # no spectral estimate: the engines' own cost is timed
    )


def _loss(cell, engine: str, max_steps: int = TASK["max_steps"]):
    """``loss(params, x) -> (L1 of the output units from x, SettleInfo)``."""

    def loss(params, x):
        h, info = _settled(cell, params, x, engine, max_steps)
        return jnp.mean(jnp.abs(h[:, -PIXELS:] - x)), info

    return loss


@functools.cache
def _gradient(cell, engine: str, max_steps: int = TASK["max_steps"]):
    """The jitted gradient of the training loss, ``(params, x) -> grads``; one
    per configuration, so that it compiles once."""
    return jax.jit(
        jax.grad(lambda params, x: _loss(cell, engine, max_steps)(params, x)[0])
    )


def _update(cell, engine: str, optimizer):
    """One Adam update of the full batch: (params, opt_state) -> the next,
    with the loss and the forward pass's SettleInfo."""
    grad = jax.value_and_grad(_loss(cell, engine), has_aux=True)

    def update(state, x):
        params, opt_state = state
        (loss, info), g = grad(params, x)
        change, opt_state = optimizer.update(g, opt_state, params)
        return (optax.apply_updates(params, change), opt_state), (loss, info)

    return update


def train(cell, params, engine: str, patterns, size) -> tuple:
    """``size["updates"]`` Adam updates, a history row every ``log_every``:
    (params, rows, a call that runs ``log_every`` more updates, compiled)."""
    optimizer = optax.adam(TASK["learning_rate"])
    update = _update(cell, engine, optimizer)
    every = size["log_every"]

    @functools.partial(jax.jit, static_argnums=2)
    def updates(state, x, length):
        return jax.lax.scan(lambda s, _: update(s, x), state, None, length=length)

    state, x, rows = (params, optimizer.init(params)), jnp.asarray(patterns), []
    first = state
    for start in range(0, size["updates"], every):
        length = min(every, size["updates"] - start)
        state, (loss, info) = updates(state, x, length)
        rows.append(
            {
                "update": start + length,
                "loss": float(loss[-1]),
                "steps": float(jnp.mean(info.steps)),
                "settled": float(jnp.mean(info.settled)),
                "finite": bool(jnp.all(jnp.isfinite(loss))),
            }
        )
    return state[0], rows, lambda: jax.block_until_ready(updates(first, x, every))


def recall(cell, params, x, clean) -> dict:
    """L1 distance of the binarised output units from ``clean``, and the share
    of rows that settled."""
    h, info = _settled(cell, params, jnp.asarray(x), "bptt")
    output = np.asarray(h[:, -PIXELS:]) >= 0.5
    return {
        "l1": float(np.mean(np.abs(output - clean))),
        "settled": float(np.mean(info.settled)),
    }


def gradient_errors(cell, params, patterns) -> dict:
    """Each method's gradient of the training loss at ``params`` against BPTT's:
    ``max|a - b| / max|b|`` over all weights."""
    x = jnp.asarray(patterns)

    def gradient(engine):
        g = _gradient(cell, engine)(params, x)
        return jnp.concatenate([a.ravel() for a in jax.tree.leaves(g)])

    want = gradient("bptt")
    scale = float(jnp.max(jnp.abs(want)))
    return {
        method: float(jnp.max(jnp.abs(gradient(engine) - want))) / scale
        for method, engine in METHODS.items()
    }


def hopfield_table(size, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(one row per gain and method, the training histories)."""
    patterns = digit_patterns()
    rng = np.random.default_rng(seed)
    corrupted = corrupt(patterns, 0.5, size["corruptions"], rng)
    clean = np.repeat(patterns, size["corruptions"], axis=0)
    copy_l1 = float(np.mean(np.abs(corrupted - clean)))
    cell = rnnbptt.Hopfield(PIXELS, size["hidden"] + PIXELS)
    rows, histories = [], []
    for gain in size["gains"]:
        init = cell.init(jax.random.key(seed), jnp.float32)
        init = init._replace(w_hh=gain * init.w_hh)
        trained, seconds, chunks = {}, {}, {}
        for method, engine in METHODS.items():
            started = time.perf_counter()
            trained[method], history, chunks[method] = train(
                cell, init, engine, patterns, size
            )
            seconds[method] = time.perf_counter() - started
            histories += [r | {"gain": gain, "method": method} for r in history]
        # ``log_every`` updates from the initial weights, interleaved, warmed up
        per_chunk = rnnbptt.runs.interleaved_medians(chunks, size["repeats"])
        at_init = gradient_errors(cell, init, patterns)
        at_trained = gradient_errors(cell, trained["BPTT"], patterns)
        for method, engine in METHODS.items():
            train_recall = recall(cell, trained[method], patterns, patterns)
            test_recall = recall(cell, trained[method], corrupted, clean)
            rows.append(
                {
                    "gain": gain,
                    "method": method,
                    "train_l1": train_recall["l1"],
                    "test_l1": test_recall["l1"],
                    "copy_input_l1": copy_l1,
                    "test_settled": test_recall["settled"],
                    "grad_vs_bptt_init": at_init[method],
                    "grad_vs_bptt_trained": at_trained[method],
                    "residual_bytes": rnnbptt.settle_residual_bytes(
                        cell,
                        init,
                        jnp.asarray(patterns),
                        max_steps=TASK["max_steps"],
                        backward=engine,
                        backward_steps=TASK["backward_steps"],
                    ),
                    "ms_per_update": 1e3 * per_chunk[method] / size["log_every"],
                    "train_seconds": seconds[method],
                }
            )
    return pd.DataFrame(rows), pd.DataFrame(histories)


# 3. Memory against forward steps -------------------------------------------------


def memory_table(size, seed: int) -> pd.DataFrame:
    """Residual bytes and compiled scratch bytes of one gradient, per method and
    number of forward steps (compiled, not run)."""
    cell = rnnbptt.Hopfield(PIXELS, size["hidden"] + PIXELS)
    params = cell.init(jax.random.key(seed), jnp.float32)
    x = jnp.asarray(digit_patterns())
    rows = []
    for n in size["memory_steps"]:
        for method, engine in METHODS.items():
            compiled = _gradient(cell, engine, n).lower(params, x).compile()
            rows.append(
                {
                    "forward_steps": n,
                    "method": method,
                    "residual_bytes": rnnbptt.settle_residual_bytes(
                        cell,
                        params,
                        x,
                        max_steps=n,
                        backward=engine,
                        backward_steps=TASK["backward_steps"],
                    ),
                    "scratch_bytes": rnnbptt.runs.scratch_bytes(compiled),
                }
            )
    return pd.DataFrame(rows)


def _plot(run, steps_table, terms_table, histories, memory) -> None:
    plt = rnnbptt.runs.pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for (cell, engine), part in steps_table.groupby(["cell", "engine"]):
        axes[0].plot(part["max_steps"], part["rel_vs_bptt"], label=f"{cell} {engine}")
    axes[0].set(
        xscale="log",
        yscale="log",
        xlabel="forward steps (max_steps)",
        ylabel="worst relative difference from BPTT",
        title="Engines against BPTT as the state settles (float64)",
    )
    for engine in ("tbptt", "neumann", "cg"):
        for cell, part in terms_table.groupby("cell"):
            axes[1].plot(part["backward_steps"], part[engine], label=f"{cell} {engine}")
    axes[1].set(
        xscale="log",
        yscale="log",
        xlabel="backward_steps",
        ylabel="worst relative difference from BPTT",
        title="At the settled state, against backward_steps",
    )
    for ax in axes:
        ax.legend(fontsize=5, ncol=2)
    run.figure(fig, "agreement.png")

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for (gain, method), part in histories.groupby(["gain", "method"]):
        axes[0].plot(part["update"], part["loss"], label=f"{method}, gain {gain:g}")
    axes[0].set(
        yscale="log",
        xlabel="Adam update",
        ylabel="training L1 (output units)",
        title="Hopfield memory of ten 8x8 digits",
    )
    for method, part in memory.groupby("method", sort=False):
        axes[1].plot(part["forward_steps"], part["residual_bytes"], "o-", label=method)
    axes[1].set(
        xscale="log",
        yscale="log",
        xlabel="forward steps",
        ylabel="residual bytes of one gradient",
        title="Memory against forward steps",
    )
    for ax in axes:
        ax.legend(fontsize=7)
    run.figure(fig, "hopfield.png")


if __name__ == "__main__":
    import sys

    from rnnbptt.experiment import main

    sys.exit(main(sys.modules[__name__]))
