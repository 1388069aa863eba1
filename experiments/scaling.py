"""Scaling: data-parallel training throughput against the number of devices.

Times ``rnnbptt.make_train_step(..., data_parallel=...)`` on a one-layer LSTM
``SequenceModel`` (float32, mean-square loss, plain SGD) with a fixed global
batch split evenly across 1, 2, 4 and 8 devices. Each device count runs in its
own child process, because JAX fixes its devices when it starts: on a CPU-only
machine the child gets ``JAX_PLATFORMS=cpu`` and
``XLA_FLAGS=--xla_force_host_platform_device_count=N`` (N virtual CPU devices);
when the parent's ``jax.devices()`` reports an accelerator, the children use
the first N real devices instead, for the counts from 1 to the number present
that divide the global batch. Each child compiles the step, warms it up, then
times ``repeats`` chained steps (each to ``block_until_ready``) and reports the
median. It also saves the loss and parameters after one step from the same
initial parameters; the parent compares them with the 1-device child's
(``max_rel_diff``: the largest ``max|a - b| / max|b|`` over the loss and the
parameter arrays; ``update_rel_diff``: the same for the update, parameters after
minus before, which is far more sensitive). Rows: devices, median ms per step,
sequences per second, speedup over 1 device and efficiency (speedup / devices).
Options: ``--devices N [N ...]`` (each must divide the batch; 1 is always
added as the baseline), ``--batch`` (global batch) and ``--repeats``.

Virtual CPU devices share the machine's physical cores, so on a CPU the
"speedup" measures the overhead of partitioning the batch and reducing the
gradients, not real scaling; only real accelerators show real scaling.

Command:  rnnbptt experiment scaling      (or: python experiments/scaling.py)
Expected: LSTM H=128, T=100, D=8, global batch 64, float32, on 2 quiet CPU
          cores (jax 0.10.2), virtual devices 1 / 2 / 4 / 8: 38-39 / 47-50 /
          76-81 / 131-154 ms per step, speedup 1 / 0.78-0.80 / 0.48-0.50 /
          0.25-0.29 (two runs). Slower, not faster: every device still runs all
          T = 100 sequential steps on its shard and all of them share the same
          2 cores, so the extra devices add only overhead here. Every
          multi-device step equals the 1-device one: loss and parameters within
          2.3e-7 relative, the update itself within 7.3e-5 (relative to the
          largest entry of each array: float32 sums in another order).
          22-25 s (about a minute when other jobs share the cores).
Quick:    --quick: 1 and 2 devices, H=8, T=10, D = 3 inputs and 3 outputs,
          batch 8, for the tests (7-8 s, mostly starting JAX and compiling in
          the two children).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

import rnnbptt
import rnnbptt.runs
from rnnbptt.experiment import positive_int_option

FULL = {
    "devices": [1, 2, 4, 8],
    "hidden": 128,
    "steps": 100,
    "input": 8,
    "output": 1,
    "batch": 64,
    "warmup": 2,
    "repeats": 20,
}
QUICK = {
    "devices": [1, 2],
    "hidden": 8,
    "steps": 10,
    "input": 3,
    "output": 3,  # = input: xs and ys share one compiled sampler in each child
    "batch": 8,
    "warmup": 1,
    "repeats": 3,
}
LEARNING_RATE = 0.1
DEVICE_FLAG = "--xla_force_host_platform_device_count"
CHILD_TIMEOUT_S = 600
# The child's program: ``worker(SPEC_JSON)`` of this experiment, imported by its
# installed name (also when the parent runs as ``python experiments/scaling.py``).
WORKER_CODE = """
import sys
from rnnbptt.experiments.scaling import worker
worker(sys.argv[1])
"""
VIRTUAL_NOTE = (
    "Virtual CPU devices (XLA_FLAGS={flag}=N) share the same {cores} physical "
    "cores, so the speedup here measures the overhead of splitting the batch and "
    "reducing the gradients across devices, not real scaling."
)
REAL_NOTE = "Real {platform} devices: the speedup is real data-parallel scaling."


def add_arguments(parser) -> None:
    parser.add_argument(
        "--devices",
        type=int,
        nargs="+",
        help="device counts to time (default: 1 2 4 8; quick: 1 2; on an "
        "accelerator: every count up to the devices present that divides the batch)",
    )
    parser.add_argument(
        "--batch", type=positive_int_option, help="global batch (sequences per step)"
    )
    parser.add_argument(
        "--repeats", type=positive_int_option, help="timed steps per device count"
    )


# --- the child: one device count --------------------------------------------


def _problem(spec: dict, seed: int):
    """(model, initial params, xs, ys): float32, drawn from ``seed``."""
    model = rnnbptt.SequenceModel.build(
        "lstm", spec["input"], (spec["hidden"],), spec["output"]
    )
    k_p, k_x, k_y = jax.random.split(jax.random.key(seed), 3)
    params = model.init(k_p, jnp.float32)
    shape = (spec["batch"], spec["steps"])
    xs = jax.random.normal(k_x, (*shape, spec["input"]), jnp.float32)
    ys = jax.random.normal(k_y, (*shape, spec["output"]), jnp.float32)
    return model, params, xs, ys


def _parallel(devices: int):
    """``True`` (every device) when JAX sees exactly ``devices``, else a mesh of
    the first ``devices`` of them."""
    from jax.sharding import Mesh

    present = jax.devices()
    if len(present) < devices:
        raise ValueError(f"--devices: {devices} asked for, JAX sees {len(present)}")
    if len(present) == devices:
        return True
    return Mesh(np.asarray(present[:devices]), ("batch",))


def _save_first_step(path: str, params, first, loss) -> None:
    """Saves the parameters after one step, the update and the loss (``.npz``)."""
    after = [np.asarray(x) for x in jax.tree.leaves(first)]
    before = [np.asarray(x) for x in jax.tree.leaves(params)]
    updates = [a - b for a, b in zip(after, before, strict=True)]
    np.savez(path, *after, *updates, loss=np.asarray(loss))


def _time_steps(step, state, batch, warmup: int, repeats: int) -> list[float]:
    """Seconds of each of ``repeats`` chained steps, after ``warmup`` untimed."""
    seconds = []
    for i in range(warmup + repeats):
        started = time.perf_counter()
        state = jax.block_until_ready(step(*state, *batch, None, None)[:2])
        if i >= warmup:
            seconds.append(time.perf_counter() - started)
    return seconds


def worker(spec_json: str) -> None:
    """Runs in the child: one step saved to ``spec["result"]`` for the parent to
    compare, then the timing, printed as one JSON line."""
    import optax

    from rnnbptt.parallel import global_batch, replicate, resolve_mesh

    spec = json.loads(spec_json)
    model, params, xs, ys = _problem(spec, spec["seed"])
    optimizer = optax.sgd(LEARNING_RATE)
    parallel = _parallel(spec["devices"])
    mesh = resolve_mesh("scaling", parallel)
    step = rnnbptt.make_train_step(
        model, "mse", optimizer, backward=spec["backward"], data_parallel=parallel
    )
    params = replicate(mesh, params)
    xs, ys = global_batch(mesh, (xs, ys))
    first, opt_state, metrics = step(
        params, replicate(mesh, optimizer.init(params)), xs, ys, None, None
    )
    _save_first_step(spec["result"], params, first, metrics["loss"])
    seconds = _time_steps(
        step, (first, opt_state), (xs, ys), spec["warmup"], spec["repeats"]
    )
    report = {
        "devices_used": len(jax.tree.leaves(first)[0].sharding.device_set),
        "batch_shards": len(xs.sharding.device_set),
        "platform": jax.devices()[0].platform,
        "seconds": seconds,
    }
    print(json.dumps(report))


# --- the parent: one child per device count ---------------------------------


def _child_env(devices: int, virtual: bool) -> dict:
    """The environment of the child for ``devices``: virtual CPU devices when
    ``virtual``, else the parent's own (the real accelerators)."""
    env = dict(os.environ)
    env["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"  # the parent holds memory too
    if virtual:
        kept = [f for f in env.get("XLA_FLAGS", "").split() if DEVICE_FLAG not in f]
        env["XLA_FLAGS"] = " ".join([*kept, f"{DEVICE_FLAG}={devices}"])
        env["JAX_PLATFORMS"] = "cpu"
    return env


def run_child(spec: dict, virtual: bool) -> dict:
    """Runs ``worker`` in a fresh interpreter for ``spec["devices"]``."""
    result = subprocess.run(
        [sys.executable, "-c", WORKER_CODE, json.dumps(spec)],
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT_S,
        env=_child_env(spec["devices"], virtual),
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"scaling: the child for {spec['devices']} devices failed "
            f"(exit {result.returncode}):\n{result.stderr[-3000:]}"
        )
    return json.loads(result.stdout.strip().splitlines()[-1])


def max_rel(arrays, reference) -> float:
    """max|a - b| / max|b| over pairs of arrays (b all zero: max|a - b|)."""
    worst = 0.0
    for a, b in zip(arrays, reference, strict=True):
        a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
        scale = float(np.max(np.abs(b), initial=0.0)) or 1.0
        worst = max(worst, float(np.max(np.abs(a - b), initial=0.0)) / scale)
    return worst


def _load(path: Path) -> tuple[list, list]:
    """(loss and parameters after one step, updates) saved by ``worker``."""
    with np.load(path) as saved:
        arrays = [saved[f"arr_{i}"] for i in range(len(saved.files) - 1)]
        half = len(arrays) // 2
        return [saved["loss"], *arrays[:half]], arrays[half:]


def options(args, size: dict) -> dict:
    """``size`` with ``--batch`` and ``--repeats`` applied, checked."""
    size = dict(size)
    for name in ("batch", "repeats"):
        value = getattr(args, name)
        if value is not None:  # a positive int: the parser checked
            size[name] = value
    return size


def device_counts(args, size: dict, present: list) -> tuple[list[int], bool]:
    """(device counts to time, whether they are virtual CPU devices)."""
    virtual = present[0].platform == "cpu"
    batch = size["batch"]
    if args.devices:
        counts = args.devices
    elif virtual:
        counts = size["devices"]
    else:
        counts = [n for n in range(1, len(present) + 1) if batch % n == 0]
    counts = sorted(set(counts))
    for n in counts:
        if n < 1:
            raise ValueError(f"--devices: counts must be >= 1, got {n}")
        if batch % n:
            raise ValueError(
                f"--devices: {n} does not divide the global batch of {batch} "
                f"sequences (--batch); use counts that divide it"
            )
        if not virtual and n > len(present):
            raise ValueError(
                f"--devices: {n} asked for, but only {len(present)} "
                f"{present[0].platform} devices are present"
            )
    if counts[0] != 1:
        counts = [1, *counts]  # the baseline every speedup is measured against
    return counts, virtual


def scaling_table(args, size: dict, counts: list[int], virtual: bool):
    """One row per device count, compared with the 1-device child."""
    spec = {
        **{k: size[k] for k in ("hidden", "steps", "input", "output", "batch")},
        **{k: size[k] for k in ("warmup", "repeats")},
        "seed": args.seed,
        "backward": args.backward,
    }
    rows, results = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for n in counts:
            path = Path(tmp) / f"devices{n}.npz"
            report = run_child({**spec, "devices": n, "result": str(path)}, virtual)
            results[n] = _load(path)
            seconds = float(np.median(report["seconds"]))
            rows.append(
                {
                    "devices": n,
                    "devices_used": report["devices_used"],
                    "batch_shards": report["batch_shards"],
                    "platform": report["platform"],
                    "batch": spec["batch"],
                    "per_device_batch": spec["batch"] // n,
                    "ms_per_step": 1e3 * seconds,
                    "ms_min": 1e3 * min(report["seconds"]),
                    "sequences_per_s": spec["batch"] / seconds,
                    "max_rel_diff": max_rel(results[n][0], results[1][0]),
                    "update_rel_diff": max_rel(results[n][1], results[1][1]),
                }
            )
    table = pd.DataFrame(rows)
    base = table.loc[table["devices"] == 1, "sequences_per_s"].iloc[0]
    table["speedup"] = table["sequences_per_s"] / base
    table["efficiency"] = table["speedup"] / table["devices"]
    return table, spec


def run(args, run) -> pd.DataFrame:
    size = options(args, QUICK if args.quick else FULL)
    present = jax.devices()
    counts, virtual = device_counts(args, size, present)
    table, spec = scaling_table(args, size, counts, virtual)
    metrics = run.metrics(table)
    cores = os.cpu_count()
    note = (
        VIRTUAL_NOTE.format(flag=DEVICE_FLAG, cores=cores)
        if virtual
        else REAL_NOTE.format(platform=present[0].platform)
    )
    run.summary(
        {
            "machine": rnnbptt.runs.machine(),
            "virtual_cpu_devices": virtual,
            "note": note,
            "model": {k: spec[k] for k in ("hidden", "steps", "input", "output")},
            "global_batch": spec["batch"],
            "repeats": spec["repeats"],
            "devices": counts,
            "ms_per_step": dict(zip(counts, table["ms_per_step"], strict=True)),
            "speedup": dict(zip(counts, table["speedup"], strict=True)),
            "efficiency": dict(zip(counts, table["efficiency"], strict=True)),
            "worst_max_rel_diff": float(table["max_rel_diff"].max()),
            "worst_update_rel_diff": float(table["update_rel_diff"].max()),
        }
    )
    _plot(run, table, virtual)
    print(note)
    return metrics[
        [
            "devices",
            "per_device_batch",
            "ms_per_step",
            "sequences_per_s",
            "speedup",
            "efficiency",
            "max_rel_diff",
            "update_rel_diff",
        ]
    ]


def _plot(run, table: pd.DataFrame, virtual: bool) -> None:
    plt = rnnbptt.runs.pyplot()
    fig, (ax, ax_ms) = plt.subplots(1, 2, figsize=(9, 3.6))
    n = table["devices"]
    base = table["sequences_per_s"].iloc[0]
    ax.plot(n, table["sequences_per_s"], "o-", label="measured")
    ax.plot(n, base * n, "k--", label="ideal (linear)")
    kind = "virtual CPU devices" if virtual else f"{table['platform'].iloc[0]} devices"
    ax.set(
        xscale="log",
        yscale="log",
        xlabel=f"devices ({kind})",
        ylabel="sequences / s",
        title="throughput",
    )
    ax_ms.plot(n, table["ms_per_step"], "o-")
    ax_ms.set(
        xscale="log",
        xlabel=f"devices ({kind})",
        ylabel="ms per step (median)",
        title=f"global batch {table['batch'].iloc[0]}",
    )
    for axis in (ax, ax_ms):
        axis.set_xticks(list(n), [str(v) for v in n])
        axis.minorticks_off()
    ax.legend()
    fig.tight_layout()
    run.figure(fig, "scaling.png")


if __name__ == "__main__":
    from rnnbptt.experiment import main

    sys.exit(main(sys.modules[__name__]))
