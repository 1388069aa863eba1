"""Gradient engines: hand-written BPTT vs autodiff vs finite differences, and cost.

For Elman (tanh), LSTM and Feedforward cells, in float32 and float64, on
right-padded sequences of T = 1, 10, 100 and 1000 steps (B = 16, D = 8, H = 64,
non-zero biases and initial carry), ``rnnbptt.compare_gradients`` differentiates
a random linear probe of the outputs and final carry three ways: the hand-written
BPTT (``backward="manual"``), JAX's autodiff, and float64 central differences
at 4 sampled coordinates per leaf. Each row reports the worst (max over gradient
leaves: params, xs, carry0) max-norm relative difference, ``max|a-b| / max|b|``. For
float32 it also times one jitted ``jax.grad`` of a mean-square loss with respect
to the parameters through ``rnnbptt.unroll(..., backward=engine)`` (compiled
first, then the median of interleaved repetitions) and reads the compiled
program's scratch memory (``temp_size_in_bytes`` of ``memory_analysis()``).
Both engines always run, so it takes no ``--backward``.

Command:  rnnbptt experiment gradients          (or: python experiments/gradients.py)
Expected: manual BPTT vs autodiff, worst over cells and T <= 1000: 2.2e-15 in
          float64 and 9.3e-7 in float32 (tolerances 1e-10 and 1e-5); both
          engines vs float64 finite differences: 2.2e-8 (float64, LSTM at T =
          1000; 1.4e-9 or less for T <= 10) and 5.3e-6 (float32). The errors grow
          slowly with T. (Before the weight gradients took a transposed copy of
          their operand: 1.8e-15, 7.9e-7 and 3.8e-8.) Speed in float32, autodiff
          time / manual time at T >= 10: 1.5-2.2 for Elman (1.46-1.81 on the
          slower host of 2026-11-30), 1.2-1.8 for the LSTM, 0.8-1.1 for Feedforward
          (a fraction of a millisecond per gradient: dispatch noise; at T = 1 all
          three are 0.04-0.09 ms); autodiff's compiled scratch memory is 1.3-1.4x
          the manual engine's for Elman, 1.5-1.7x for the LSTM and the same for
          Feedforward (LSTM, T = 1000: 1.5x). Measured: 45 s wall on 2 quiet CPU
          cores (1.5-2 minutes when other jobs share them).
Quick:    --quick runs T = 10 only with H = 8 in both dtypes, for the tests:
          about 15 s of CPU, nearly all of it compiling (each length compiles
          every engine, finite-difference and timing program anew).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

import rnnbptt
import rnnbptt.runs
from rnnbptt.experiment import positive_int_option

# Largest worst-leaf relative difference accepted, per dtype: between the two
# engines, and between an engine and float64 central differences.
ENGINE_TOL = {"float64": 1e-10, "float32": 1e-5}
FD_TOL = {"float64": 1e-6, "float32": 1e-3}
ENGINES = ("manual", "autodiff")
COMMON_OPTIONS = ("seed",)  # no --backward: both engines always run
DTYPES = {"float32": jnp.float32, "float64": jnp.float64}
FULL = {
    "steps": [1, 10, 100, 1000],
    "batch": 16,
    "input": 8,
    "hidden": 64,
    "dtypes": ["float64", "float32"],
    "fd_samples": 4,  # per leaf: float64 differences at T = 1000 dominate the time
    "repeats": 15,
}
QUICK = {
    "steps": [10],  # one length: every program compiles once per length
    "batch": 16,
    "input": 8,
    "hidden": 8,
    "dtypes": ["float64", "float32"],
    "fd_samples": 4,
    "repeats": 5,
}
ERROR_COLUMNS = ["manual_autodiff_rel", "manual_fd_rel", "autodiff_fd_rel"]
TIMING_COLUMNS = [
    "ms_manual",
    "ms_autodiff",
    "temp_bytes_manual",
    "temp_bytes_autodiff",
]
PLOT_FLOOR = 1e-18  # exact agreement (0.0) drawn here on the log scale


def make_cells(input_size: int, hidden_size: int) -> dict:
    return {
        "elman-tanh": rnnbptt.Elman(input_size, hidden_size),
        "lstm": rnnbptt.LSTM(input_size, hidden_size),
        "feedforward": rnnbptt.Feedforward(input_size, hidden_size),
    }


def make_problem(cell, init, rng, batch: int, steps: int, dtype):
    """(params, xs [B, T, D], carry0, mask [B, T]) with non-zero biases and carry.

    ``init`` is ``cell.init(key)`` in float64, cast to ``dtype``. Sequences are
    right-padded to random lengths in [1, T]; the first is full. The data come
    from numpy: drawing them with jax compiles small programs for every shape,
    which would add seconds to the quick mode.
    """
    init = jax.tree.map(np.asarray, init)
    init = init._replace(b=init.b + 0.3 * rng.normal(size=init.b.shape))
    params = jax.tree.map(lambda a: jnp.asarray(a, dtype), init)
    xs = jnp.asarray(rng.normal(size=(batch, steps, cell.input_size)), dtype)
    carry0 = jax.tree.map(
        lambda zeros: jnp.asarray(0.5 * rng.normal(size=zeros.shape), dtype),
        cell.initial_carry(batch, dtype),
    )
    lengths = rng.integers(1, steps + 1, batch)
    lengths[0] = steps
    mask = jnp.asarray(np.arange(steps)[None, :] < lengths[:, None])
    return params, xs, carry0, mask


def probe_loss(rng, hs_shape, carry0, dtype):
    """``loss(hs, final) -> scalar``: random linear probes of ``hs`` and the carry.

    The same kind of loss as ``compare_gradients``' default (every output and
    every part of the final carry gets a non-zero cotangent), drawn with numpy:
    a jax draw compiles a random-number program per shape, seconds each. The
    probes are rounded to ``dtype``, so the float64 finite differences see
    exactly the loss that the engines differentiate.
    """
    p_hs = rng.normal(size=hs_shape).astype(dtype)
    p_carry = [
        rng.normal(size=leaf.shape).astype(dtype) for leaf in jax.tree.leaves(carry0)
    ]

    def loss(hs, final):
        total = jnp.sum(jnp.asarray(p_hs, hs.dtype) * hs)
        for p, leaf in zip(p_carry, jax.tree.leaves(final), strict=True):
            total = total + jnp.sum(jnp.asarray(p, leaf.dtype) * leaf)
        return total

    return loss


def worst_differences(cell, problem, rng, key, fd_samples: int) -> dict:
    """Worst (max over gradient leaves) relative differences of the three ways."""
    params, xs, carry0, mask = problem
    table = rnnbptt.compare_gradients(
        cell,
        params,
        xs,
        carry0,
        mask=mask,
        loss=probe_loss(rng, (*xs.shape[:2], cell.hidden_size), carry0, xs.dtype),
        key=key,
        fd_samples=fd_samples,
    )
    return {column: float(table[column].max()) for column in ERROR_COLUMNS}


def compiled_gradient(cell, engine: str, params, xs, carry0, mask):
    """``jax.jit(jax.grad(loss))`` through ``unroll(backward=engine)``, compiled."""

    def loss(params, xs, carry0, mask):
        final, hs = rnnbptt.unroll(cell, params, xs, carry0, mask=mask, backward=engine)
        return jnp.mean(hs**2) + sum(jnp.mean(c**2) for c in jax.tree.leaves(final))

    return jax.jit(jax.grad(loss)).lower(params, xs, carry0, mask).compile()


def time_engines(cell, problem, repeats: int) -> dict:
    """Median milliseconds of one gradient per engine, and its scratch bytes."""
    compiled = {e: compiled_gradient(cell, e, *problem) for e in ENGINES}
    calls = {
        e: (lambda fn=fn: jax.block_until_ready(fn(*problem)))
        for e, fn in compiled.items()
    }
    seconds = rnnbptt.runs.interleaved_medians(calls, repeats)
    result = {}
    for engine in ENGINES:
        result[f"ms_{engine}"] = 1e3 * seconds[engine]
        result[f"temp_bytes_{engine}"] = rnnbptt.runs.scratch_bytes(compiled[engine])
    return result


def add_arguments(parser) -> None:
    parser.add_argument(
        "--steps", type=positive_int_option, nargs="+", help="sequence lengths T"
    )
    parser.add_argument(
        "--dtype", nargs="+", choices=sorted(DTYPES), help="dtypes to compare"
    )


def run(args, run) -> pd.DataFrame:
    # float64 inputs need x64 in the process; float32 data is created explicitly
    jax.config.update("jax_enable_x64", True)
    size = QUICK if args.quick else FULL
    steps_list = args.steps or size["steps"]
    dtypes = args.dtype or size["dtypes"]
    cells = make_cells(size["input"], size["hidden"])
    key = jax.random.key(args.seed)
    rows = []
    for c, (name, cell) in enumerate(cells.items()):
        init = cell.init(key, jnp.float64)
        for steps in steps_list:
            for dtype in dtypes:
                rng = np.random.default_rng([args.seed, c, steps])
                problem = make_problem(
                    cell, init, rng, size["batch"], steps, DTYPES[dtype]
                )
                row = {"cell": name, "dtype": dtype, "steps": steps}
                row |= worst_differences(cell, problem, rng, key, size["fd_samples"])
                timing = dict.fromkeys(TIMING_COLUMNS, float("nan"))
                if dtype == "float32":
                    timing = time_engines(cell, problem, size["repeats"])
                rows.append(row | timing)
    metrics = run.metrics(rows)
    metrics["engine_fd_rel"] = metrics[["manual_fd_rel", "autodiff_fd_rel"]].max(axis=1)
    metrics["autodiff/manual"] = metrics["ms_autodiff"] / metrics["ms_manual"]
    run.summary(_summary(metrics))
    _plot_errors(run, metrics)
    if metrics["ms_manual"].notna().any():  # float32 was run
        _plot_cost(run, metrics.dropna(subset=["ms_manual"]))
    return metrics[
        [
            "cell",
            "dtype",
            "steps",
            "manual_autodiff_rel",
            "engine_fd_rel",
            "ms_manual",
            "ms_autodiff",
            "autodiff/manual",
        ]
    ]


def _summary(metrics: pd.DataFrame) -> dict:
    worst = {}
    for dtype, part in metrics.groupby("dtype"):
        engines = float(part["manual_autodiff_rel"].max())
        fd = float(part["engine_fd_rel"].max())
        worst[dtype] = {
            "manual_autodiff_rel": engines,
            "engine_fd_rel": fd,
            "engine_tol": ENGINE_TOL[dtype],
            "fd_tol": FD_TOL[dtype],
            "ok": engines <= ENGINE_TOL[dtype] and fd <= FD_TOL[dtype],
        }
    timed = metrics.dropna(subset=["ms_manual"])
    ratios = {
        cell: {str(r.steps): float(r["autodiff/manual"]) for _, r in part.iterrows()}
        for cell, part in timed.groupby("cell")
    }
    memory = {
        cell: {
            str(r.steps): float(r.temp_bytes_autodiff / r.temp_bytes_manual)
            for _, r in part.iterrows()
        }
        for cell, part in timed.groupby("cell")
    }
    return {
        "worst": worst,
        "speed_ratio_autodiff_over_manual": ratios,
        "temp_bytes_ratio_autodiff_over_manual": memory,
        "machine": rnnbptt.runs.machine(),
    }


def _styles(metrics: pd.DataFrame):
    colors = dict(
        zip(sorted(metrics["cell"].unique()), ["C0", "C1", "C2"], strict=False)
    )
    return colors, {"float64": "-", "float32": "--", "manual": "-", "autodiff": ":"}


def _plot_errors(run, metrics: pd.DataFrame) -> None:
    plt = rnnbptt.runs.pyplot()

    colors, lines = _styles(metrics)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    panels = [
        ("manual_autodiff_rel", ENGINE_TOL, "manual BPTT vs autodiff"),
        ("engine_fd_rel", FD_TOL, "engines vs float64 finite differences (worst)"),
    ]
    for ax, (column, tol, title) in zip(axes, panels, strict=True):
        for (cell, dtype), part in metrics.groupby(["cell", "dtype"]):
            part = part.sort_values("steps")
            ax.plot(
                part["steps"],
                np.maximum(part[column], PLOT_FLOOR),
                lines[dtype],
                color=colors[cell],
                marker="o",
                label=f"{cell}, {dtype}",
            )
        for dtype, value in tol.items():
            ax.axhline(
                value,
                color="grey",
                linestyle=lines[dtype],
                linewidth=0.8,
                label=f"tolerance, {dtype}",
            )
        ax.set(xscale="log", yscale="log", xlabel="sequence length T", title=title)
    axes[0].set_ylabel("worst relative difference  max|a-b| / max|b|")
    axes[0].legend(fontsize=8)
    run.figure(fig, "errors.png")


def _plot_cost(run, timed: pd.DataFrame) -> None:
    plt = rnnbptt.runs.pyplot()

    colors, lines = _styles(timed)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for cell, part in timed.groupby("cell"):
        part = part.sort_values("steps")
        for engine in ENGINES:
            style = {"color": colors[cell], "marker": "o", "label": f"{cell}, {engine}"}
            axes[0].plot(part["steps"], part[f"ms_{engine}"], lines[engine], **style)
            axes[1].plot(
                part["steps"], part[f"temp_bytes_{engine}"], lines[engine], **style
            )
    axes[0].set(
        ylabel="ms per gradient (median)", title="time of one jitted grad, float32"
    )
    axes[1].set(ylabel="bytes", title="compiled scratch memory (temp_size)")
    for ax in axes:
        ax.set(xscale="log", yscale="log", xlabel="sequence length T")
    axes[0].legend(fontsize=8)
    run.figure(fig, "cost.png")


if __name__ == "__main__":
    import sys

    from rnnbptt.experiment import main

    sys.exit(main(sys.modules[__name__]))
