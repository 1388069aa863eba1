"""Benchmark: one gradient through time, rnnbptt beside torch.nn and Flax.

Times one gradient evaluation in float32 (forward over the whole sequence, then
backward to every parameter; loss 0.5 * sum(hs**2) over all outputs, no input
gradient) for three sizes (T steps, B batch, D inputs, H hidden): small T=50
B=32 D=8 H=64, medium T=100 B=64 D=32 H=256, long T=1000 B=16 D=8 H=128. Side by
side in one process: rnnbptt's LSTM, GRU and Elman with each gradient engine,
``torch.nn.LSTM``, ``torch.nn.GRU`` and ``torch.nn.RNN`` (``--torch-threads``,
default every core, as XLA uses: 2 here), and Flax's ``nn.RNN`` with
``OptimizedLSTMCell``, ``GRUCell`` and ``SimpleCell`` (torch and flax are
optional: ``pip install -e '.[bench]'``; a missing one is skipped with a note).
When JAX runs on a GPU, torch runs on CUDA too (``--torch-device``) and TF32 is
off on both sides, so every column is float32 on the same hardware. Every
implementation is warmed up, then the repetitions are interleaved (one call of
each in turn) and the median is reported, with its ratio to the PyTorch cell of
the same kind, the achieved GFLOP/s of the matrix products (2*T*B*G*H*(2D + 3H)
multiply-adds x 2, G = 4 gates for the LSTM, 3 for the GRU, 1 for Elman; the
element-wise work is not counted) and the percentage of a float32 GEMM peak
measured in the same run (the best of XLA and, when present, torch). For rnnbptt
it also reports the compile time and the compiled program's scratch memory
(``memory_analysis().temp_size_in_bytes``).

Two more tables: checkpointing through time at T = 10000 (B=16 D=8 H=128, the
LSTM and Elman with both engines, ``recompute_every=100`` against storing every
step: time and the bytes of residuals the VJP keeps,
``rnnbptt.residual_bytes``), and the compile time of the medium gradient at T =
100, 1000 and 10000. summary.json checks the targets of the performance issue
and records the machine.

Command:  rnnbptt bench     (also: rnnbptt experiment benchmark, or
          python experiments/benchmark.py)
Expected: see the README's Performance section for the latest table and the
          machine it ran on, and experiments/PERFORMANCE.md for what was tried.
          About 3-3.5 minutes on 2 cores (190-196 s with the GRU, 2026-12-03).
Quick:    --quick times one tiny size with 3 repetitions, checkpointing at
          T = 200 and the compile time at the tiny size's T = 20 only, for the
          tests (about 15 s, mostly compiling).
"""

from __future__ import annotations

import functools
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

import rnnbptt
import rnnbptt.runs
from rnnbptt import draws
from rnnbptt.experiment import positive_int_option
from rnnbptt.models import KINDS

# cpu_line is imported for its tests in tests/test_experiment_benchmark.py
from rnnbptt.runs import cpu_line, gemm_peak, machine_line  # noqa: F401

# No --backward (both engines always run) and no --seed (fixed problems).
COMMON_OPTIONS = ()
SIZES = {
    "small": (50, 32, 8, 64),
    "medium": (100, 64, 32, 256),
    "long": (1000, 16, 8, 128),
}
FULL = {
    "sizes": ["small", "medium", "long"],
    "repeats": 15,
    "checkpoint": {"steps": 10_000, "batch": 16, "input": 8, "hidden": 128},
    "recompute_every": 100,
    "checkpoint_repeats": 5,
    "compile_steps": [100, 1000, 10_000],
    "compile_repeats": 3,
    "gemm": 2048,
}
TINY = (20, 4, 3, 8)
QUICK = {
    "sizes": ["tiny"],
    "repeats": 3,
    "checkpoint": {"steps": 200, "batch": 4, "input": 3, "hidden": 8},
    "recompute_every": 20,
    "checkpoint_repeats": 3,
    # one length, TINY's (its inputs are drawn with a sampler already compiled):
    # every cell and engine is still compiled and timed, once
    "compile_steps": [TINY[0]],
    "compile_repeats": 1,
    "gemm": 256,
}
GATES = {"lstm": 4, "gru": 3, "elman": 1}
CHECKPOINTED = ("lstm", "elman")  # the cells of the checkpointing and compile tables
TARGETS = {
    "lstm_vs_torch": 1.0,  # rnnbptt LSTM (default engine) / torch.nn.LSTM
    "gru_vs_torch": 1.0,  # rnnbptt GRU / torch.nn.GRU
    "elman_vs_torch": 0.5,  # rnnbptt Elman / torch.nn.RNN
    "gru_vs_flax": 1.0,  # rnnbptt GRU / Flax's GRUCell, at every size
    "lstm_speedup": 1.3,  # autodiff / manual, LSTM at long
    "gru_speedup": 1.3,  # autodiff / manual, GRU at long
    "elman_speedup": 1.5,  # autodiff / manual, Elman
    "checkpoint_residuals": 0.25,  # kept / full residual bytes at T = 10000
    "checkpoint_time": 1.5,  # checkpointed / full time
    "compile_seconds": 0.5,  # medium, per gradient
    "compile_flat": 1.5,  # slowest / fastest compile over T = 100 ... 10000
}


def add_arguments(parser) -> None:
    parser.add_argument(
        "--sizes", nargs="+", choices=sorted(SIZES), help="default: all three"
    )
    parser.add_argument(
        "--repeats", type=positive_int_option, help="timed calls per implementation"
    )
    parser.add_argument(
        "--torch-threads",
        type=positive_int_option,
        help="threads for torch on the CPU (default: every core, as XLA uses)",
    )
    parser.add_argument(
        "--torch-device",
        choices=["auto", "cpu", "cuda"],
        default="auto",
        help="where torch.nn runs; auto: cuda when JAX runs on a GPU, else cpu",
    )


def gradient_flops(steps, batch, inputs, hidden, gates) -> float:
    """Floating-point operations of the matrix products of one gradient."""
    return 2.0 * steps * batch * gates * hidden * (2 * inputs + 3 * hidden)


def loss_of(hs):
    return 0.5 * jnp.sum(hs * hs)


def _ready(fn, *args):
    return lambda: jax.block_until_ready(fn(*args))


def rnnbptt_gradient(kind, size, backward, recompute_every=None):
    """(call, compile seconds, scratch bytes) of one rnnbptt gradient."""
    T, B, D, H = size
    cell = KINDS[kind](D, H)
    params = cell.init(jax.random.key(0), jnp.float32)
    xs = draws.normal(jax.random.key(1), (B, T, D), jnp.float32)

    def loss(params, xs):
        _, hs = rnnbptt.unroll(
            cell, params, xs, backward=backward, recompute_every=recompute_every
        )
        return loss_of(hs)

    jax.block_until_ready((params, xs))  # time the compilation, not making xs
    started = time.perf_counter()
    compiled = jax.jit(jax.grad(loss)).lower(params, xs).compile()
    seconds = time.perf_counter() - started
    scratch = rnnbptt.runs.scratch_bytes(compiled)
    return _ready(compiled, params, xs), seconds, scratch


def flax_gradient(kind, size):
    import flax.linen as nn

    T, B, D, H = size
    cell = {"lstm": nn.OptimizedLSTMCell, "gru": nn.GRUCell, "elman": nn.SimpleCell}[
        kind
    ](H)
    model = nn.RNN(cell)
    xs = jax.random.normal(jax.random.key(1), (B, T, D), jnp.float32)
    params = model.init(jax.random.key(0), xs)
    grad = jax.jit(jax.grad(lambda p, x: loss_of(model.apply(p, x))))
    return _ready(grad, params, xs)


def _torch_ready(device: str):
    """A function that waits for torch's queued work on ``device``."""
    import torch

    return torch.cuda.synchronize if device == "cuda" else (lambda: None)


def torch_gradient(kind, size, device="cpu"):
    import torch

    T, B, D, H = size
    torch.manual_seed(0)
    cell = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "elman": torch.nn.RNN}[kind]
    module = cell(D, H, batch_first=True).to(device)
    xs = torch.randn(B, T, D, device=device)
    ready = _torch_ready(device)

    def call():
        for p in module.parameters():
            p.grad = None
        hs, _ = module(xs)
        (0.5 * (hs * hs).sum()).backward()
        ready()

    return call


def torch_device_for(choice: str) -> str:
    """``--torch-device``: auto picks cuda when JAX runs on a GPU and torch sees
    one, so both frameworks time the same hardware."""
    if choice != "auto":
        return choice
    try:
        import torch
    except ImportError:
        return "cpu"
    on_gpu = jax.default_backend() == "gpu" and torch.cuda.is_available()
    return "cuda" if on_gpu else "cpu"


def full_float32(torch_device: str) -> None:
    """float32 means float32 on a GPU too: no TF32 in JAX's matrix products (its
    GPU default) nor in torch's cuBLAS and cuDNN calls. A no-op on the CPU."""
    if jax.default_backend() == "gpu":
        jax.config.update("jax_default_matmul_precision", "highest")
    if torch_device == "cuda":
        import torch

        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False


def optional_frameworks(torch_threads: int, torch_device="cpu"):
    """({"torch": version, "flax": version} for those importable, notes)."""
    found, notes = {}, []
    try:
        import torch

        torch.set_num_threads(torch_threads)
        where = "cuda" if torch_device == "cuda" else f"{torch_threads} threads"
        found["torch"] = f"{torch.__version__} ({where})"
    except ImportError:
        notes.append(
            "torch not installed: no torch.nn rows (pip install -e '.[bench]')"
        )
    try:
        import flax

        found["flax"] = flax.__version__
    except ImportError:
        notes.append("flax not installed: no Flax rows (pip install -e '.[bench]')")
    return found, notes


def time_sizes(sizes, repeats, frameworks, peak, torch_device) -> pd.DataFrame:
    rows = []
    for name in sizes:
        size = TINY if name == "tiny" else SIZES[name]
        calls, extra = {}, {}
        for kind in GATES:
            for backward in ("manual", "autodiff"):
                impl = (kind, f"rnnbptt {backward}")
                calls[impl], seconds, scratch = rnnbptt_gradient(kind, size, backward)
                extra[impl] = {"compile_s": seconds, "scratch_mb": scratch / 1e6}
            if "torch" in frameworks:
                calls[(kind, "torch.nn")] = torch_gradient(kind, size, torch_device)
            if "flax" in frameworks:
                calls[(kind, "flax nn.RNN")] = flax_gradient(kind, size)
        times = rnnbptt.runs.interleaved_medians(calls, repeats)
        T, B, D, H = size
        for (kind, impl), seconds in times.items():
            flops = gradient_flops(T, B, D, H, GATES[kind])
            anchor = times.get((kind, "torch.nn"))
            rows.append(
                {
                    "size": name,
                    "T": T,
                    "B": B,
                    "D": D,
                    "H": H,
                    "cell": kind,
                    "implementation": impl,
                    "ms": 1e3 * seconds,
                    "vs_torch": seconds / anchor if anchor else np.nan,
                    "gflops": flops / seconds / 1e9,
                    "pct_peak": 100 * flops / seconds / 1e9 / peak,
                    **extra.get(
                        (kind, impl), {"compile_s": np.nan, "scratch_mb": np.nan}
                    ),
                }
            )
    return pd.DataFrame(rows)


def time_checkpointing(spec, every, repeats) -> pd.DataFrame:
    size = (spec["steps"], spec["batch"], spec["input"], spec["hidden"])
    T, B, D, H = size
    rows = []
    for kind in CHECKPOINTED:
        cell = KINDS[kind](D, H)
        params = jax.eval_shape(lambda c=cell: c.init(jax.random.key(0), jnp.float32))
        xs = jax.ShapeDtypeStruct((B, T, D), jnp.float32)
        calls, info = {}, {}
        for backward in ("manual", "autodiff"):
            for k in (None, every):
                calls[backward, k], _, scratch = rnnbptt_gradient(
                    kind, size, backward, k
                )
                residuals = rnnbptt.residual_bytes(
                    cell, params, xs, backward=backward, recompute_every=k
                )
                info[backward, k] = (residuals, scratch)
        times = rnnbptt.runs.interleaved_medians(calls, repeats)
        for backward in ("manual", "autodiff"):
            full, kept = (backward, None), (backward, every)
            rows.append(
                {
                    "T": T,
                    "B": B,
                    "D": D,
                    "H": H,
                    "cell": kind,
                    "engine": backward,
                    "recompute_every": every,
                    "ms_full": 1e3 * times[full],
                    "ms_checkpointed": 1e3 * times[kept],
                    "time_ratio": times[kept] / times[full],
                    "residual_mb_full": info[full][0] / 1e6,
                    "residual_mb_checkpointed": info[kept][0] / 1e6,
                    "residual_ratio": info[kept][0] / info[full][0],
                    "scratch_mb_full": info[full][1] / 1e6,
                    "scratch_mb_checkpointed": info[kept][1] / 1e6,
                }
            )
    return pd.DataFrame(rows)


def compile_times(steps_list, quick, repeats) -> pd.DataFrame:
    """Median seconds from a fresh ``jax.jit`` to a compiled gradient (trace, lower
    and compile), over ``repeats`` fresh compilations."""
    _, B, D, H = TINY if quick else SIZES["medium"]
    rows = []
    for steps in steps_list:
        for kind in CHECKPOINTED:
            for backward in ("manual", "autodiff"):
                seconds = [
                    rnnbptt_gradient(kind, (steps, B, D, H), backward)[1]
                    for _ in range(repeats)
                ]
                rows.append(
                    {
                        "T": steps,
                        "B": B,
                        "D": D,
                        "H": H,
                        "cell": kind,
                        "engine": backward,
                        "compile_s": float(np.median(seconds)),
                    }
                )
    return pd.DataFrame(rows)


def targets(
    timing, checkpointing, compiling, *, sizes_named=True, torch_graded=True
) -> dict:
    """Each target of the performance issue: the measured value and whether it
    holds. Graded only where the run matches the issue: the checkpointing and
    compile targets at the sizes it names (``sizes_named``: not ``--quick``), the
    torch ratios where torch ran on JAX's hardware (``torch_graded``)."""

    def ms(size, kind, impl):
        row = timing[
            (timing["size"] == size)
            & (timing["cell"] == kind)
            & (timing["implementation"] == impl)
        ]
        return float(row["ms"].iloc[0]) if len(row) else np.nan

    checks = {}
    default = f"rnnbptt {rnnbptt.unroll.__kwdefaults__['backward']}"
    for size in dict.fromkeys(timing["size"]):
        graded = size in ("medium", "long")  # the sizes the targets name
        for kind in GATES:
            value = ms(size, kind, default) / ms(size, kind, "torch.nn")
            limit = TARGETS[f"{kind}_vs_torch"] if graded and torch_graded else None
            checks[f"{kind} {size}: {default} / torch.nn"] = (value, limit)
        value = ms(size, "gru", default) / ms(size, "gru", "flax nn.RNN")
        limit = TARGETS["gru_vs_flax"] if size in SIZES else None
        checks[f"gru {size}: {default} / flax nn.RNN"] = (value, limit)
        for kind in GATES:
            value = ms(size, kind, "rnnbptt autodiff") / ms(
                size, kind, "rnnbptt manual"
            )
            graded_here = graded if kind == "elman" else size == "long"
            limit = -TARGETS[f"{kind}_speedup"] if graded_here else None
            checks[f"{kind} {size}: autodiff / manual"] = (value, limit)
    for row in checkpointing.itertuples():
        where = f"{row.cell} {row.engine} T={row.T}"
        checks[f"{where}: checkpointed / full residuals"] = (
            row.residual_ratio,
            TARGETS["checkpoint_residuals"] if sizes_named else None,
        )
        checks[f"{where}: checkpointed / full time"] = (
            row.time_ratio,
            TARGETS["checkpoint_time"] if sizes_named else None,
        )
    shortest = compiling["T"].min()
    for (kind, engine), part in compiling.groupby(["cell", "engine"], sort=False):
        first = float(part.loc[part["T"] == shortest, "compile_s"].iloc[0])
        checks[f"{kind} {engine}: compile seconds at T={shortest}"] = (
            first,
            TARGETS["compile_seconds"] if sizes_named else None,
        )
        spread = float(part["compile_s"].max() / part["compile_s"].min())
        checks[f"{kind} {engine}: compile seconds, slowest / fastest T"] = (
            spread,
            TARGETS["compile_flat"] if sizes_named else None,
        )
    out = {}
    for name, (value, limit) in checks.items():
        if limit is None or not np.isfinite(value):
            out[name] = {"value": value, "target": limit, "met": None}
        elif limit < 0:  # a lower bound
            out[name] = {
                "value": value,
                "target": f">= {-limit}",
                "met": value >= -limit,
            }
        else:
            out[name] = {"value": value, "target": f"<= {limit}", "met": value <= limit}
    return out


def run(args, run) -> pd.DataFrame:
    size = QUICK if args.quick else FULL
    torch_device = torch_device_for(args.torch_device)
    full_float32(torch_device)
    threads = args.torch_threads or os.cpu_count() or 1
    frameworks, notes = optional_frameworks(threads, torch_device)
    # the torch ratios compare like with like, or are not graded
    same_hardware = (jax.default_backend() == "gpu") == (torch_device == "cuda")
    if "torch" in frameworks and not same_hardware:
        notes.append(
            f"JAX runs on {jax.default_backend()} but torch.nn on {torch_device}: "
            "the torch ratios compare different hardware and are not graded"
        )
    for note in notes:
        print(f"note: {note}")
    repeats = args.repeats or size["repeats"]
    peaks = gemm_peak(size["gemm"], max(3, repeats // 3), torch_device)
    peak = max(peaks.values())
    timing = time_sizes(
        args.sizes or size["sizes"], repeats, frameworks, peak, torch_device
    )
    checkpointing = time_checkpointing(
        size["checkpoint"], size["recompute_every"], size["checkpoint_repeats"]
    )
    compiling = compile_times(
        size["compile_steps"], args.quick, size["compile_repeats"]
    )
    checkpointing.to_csv(run.path("checkpointing.csv"), index=False)
    compiling.to_csv(run.path("compile.csv"), index=False)
    metrics = run.metrics(timing)
    checks = targets(
        timing,
        checkpointing,
        compiling,
        sizes_named=not args.quick,
        torch_graded=same_hardware,
    )
    machine = machine_line(frameworks)
    run.summary(
        {
            "machine": machine,
            "gemm_peak_gflops": peaks,
            "notes": notes,
            "targets": checks,
        }
    )
    _plot(run, timing)
    show = functools.partial(
        pd.DataFrame.to_string, index=False, float_format="{:.3g}".format
    )
    print(f"machine: {machine}")
    print(
        "float32 GEMM peak (GFLOP/s): "
        + ", ".join(f"{k} {v:.0f}" for k, v in peaks.items())
    )
    print("\ncheckpointing through time:")
    print(show(checkpointing))
    print("\ncompile time of one gradient:")
    print(show(compiling))
    print("\ntargets:")
    for name, check in checks.items():
        verdict = {True: "met", False: "NOT MET", None: ""}[check["met"]]
        print(f"  {name}: {check['value']:.3g} (target {check['target']}) {verdict}")
    print("\none gradient, float32:")
    return metrics[
        [
            "size",
            "cell",
            "implementation",
            "ms",
            "vs_torch",
            "gflops",
            "pct_peak",
            "compile_s",
            "scratch_mb",
        ]
    ]


def _plot(run, timing: pd.DataFrame) -> None:
    plt = rnnbptt.runs.pyplot()
    sizes = list(dict.fromkeys(timing["size"]))
    fig, axes = plt.subplots(
        1, len(sizes), figsize=(4.5 * len(sizes), 3.6), squeeze=False
    )
    for ax, name in zip(axes[0], sizes, strict=True):
        part = timing[timing["size"] == name]
        labels = [
            f"{c} {i}"
            for c, i in zip(part["cell"], part["implementation"], strict=True)
        ]
        colors = [
            "C0" if "rnnbptt" in i else "C1" if "torch" in i else "C2"
            for i in part["implementation"]
        ]
        ax.barh(labels, part["ms"], color=colors)
        ax.invert_yaxis()
        T, B, D, H = part.iloc[0][["T", "B", "D", "H"]]
        ax.set(
            title=f"{name}: T={T} B={B} D={D} H={H}", xlabel="ms per gradient (median)"
        )
    fig.tight_layout()
    run.figure(fig, "benchmark.png")


if __name__ == "__main__":
    import sys

    from rnnbptt.experiment import main

    sys.exit(main(sys.modules[__name__]))
