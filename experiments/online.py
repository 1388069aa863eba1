"""Online learning without backpropagation through time: RTRL, UORO, SnAp-1.

The Add task of vanilla-rtrl (Schall; after Pitis 2016): a stream of random
bits ``x_t``, and at every step a label drawn with probability ``p_t = 0.5 +
0.5 x_{t-3} - 0.25 x_{t-8}`` (lags ``--lags``). A predictor that remembers
nothing scores the entropy 0.662 nats, one that remembers the first lag 0.519,
one that remembers both 0.454. An Elman network (tanh, H = 32, default init,
softmax readout of two classes) learns on 8 streams of 40,000 steps, Adam 1e-3,
one update per step for the online engines (``rnnbptt.make_online_step``, each
gradient carried forward without truncation) and for TBPTT(1, k) (each step's
loss backpropagated k steps: k = 4, between the two lags, and k = 12, past both),
and one update per 100 steps for BPTT over segments of 100 (the state carried
across segments); and, as a reference, the readout alone trained on the state
of the recurrent layer as initialised (no gradient through time at all). Each is
scored on a fresh test stream (8 x 5000 steps).

Also, on 8 sequences of 20 steps (float64): each engine's gradient against
BPTT's (RTRL exact; UORO's mean over n samples; SnAp-1's cosine similarity),
and the memory of each engine's state per stream (``online.influence_bytes``;
BPTT's and TBPTT's residuals per step times the steps they keep) with the
median time of one step (float32, 8 streams, compiled, interleaved).

Command:  rnnbptt experiment online
Expected: RTRL near the both-lags floor, TBPTT shorter than the second lag above it.
          Obtained (seed 0, AMD EPYC family 25 model 1 at 2445 MHz, numpy GEMM
          185 GFLOP/s, 2 cores): test loss RTRL 0.457, TBPTT(1, 12) 0.458,
          BPTT over 100-step segments 0.473, TBPTT(1, 4) 0.493 (not the
          one-lag 0.519: the readout learns from what the state holds of
          x_{t-8} without a gradient through time; the readout alone on the
          init's state scores 0.500), SnAp-1 0.506, UORO 0.508.
          Gradients against BPTT (float64): RTRL 8e-16; SnAp-1 cosine 0.74
          (Elman), 0.93 (LSTM, GRU); UORO's mean of 1, 10, 100, 1000 samples
          6.4-7.6, 3.6-5.0, 0.74-1.4, 0.26-0.55 relative. Per stream: RTRL 143
          kB, UORO 4.6 kB, SnAp-1 4.5 kB, TBPTT 0.7 / 1.8 kB, BPTT 13.7 kB;
          per step 362, 70, 39, 35 / 80 and 8 us. 1.5 minutes.
Quick:    --quick: H = 8, 2 streams of 400 steps, the gradient table for Elman
          with n up to 100, for the tests.
"""

from __future__ import annotations

import functools
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pandas as pd

import rnnbptt
import rnnbptt.runs
from rnnbptt import online
from rnnbptt.experiment import positive_int_option

COMMON_OPTIONS = ("seed",)  # every engine runs, so no --backward
FLOORS = {"nothing": 0.662, "first lag": 0.519, "both lags": 0.454}
FULL = {
    "hidden": 32,
    "streams": 8,
    "steps": 40_000,
    "test_steps": 5000,
    "segment": 100,
    "truncations": [4, 12],
    "samples": [1, 10, 100, 1000],
    "repeats": 20,
    "cells": ["elman", "lstm", "gru"],
}
QUICK = {
    "hidden": 8,
    "streams": 2,
    "steps": 400,
    "test_steps": 200,
    "segment": 100,
    "truncations": [4, 12],
    "samples": [1, 100],
    "repeats": 3,
    "cells": ["elman"],
}
LEARNING_RATE = 1e-3


def add_arguments(parser) -> None:
    parser.add_argument("--steps", type=positive_int_option, help="steps per stream")
    parser.add_argument(
        "--lags", type=positive_int_option, nargs=2, default=[3, 8], help="t1 t2"
    )


def add_task(rng, streams: int, steps: int, lags=(3, 8)):
    """``(xs [streams, steps, 2] float32 one-hot bits, labels [streams, steps]
    int32)``, the labels Bernoulli(0.5 + 0.5 x_{t-t1} - 0.25 x_{t-t2})."""
    t1, t2 = lags
    bits = rng.integers(0, 2, (streams, steps + t2))
    p = 0.5 + 0.5 * bits[:, t2 - t1 : steps + t2 - t1] - 0.25 * bits[:, :steps]
    labels = (rng.random((streams, steps)) < p).astype(np.int32)
    x = bits[:, t2:]
    return np.stack([x, 1 - x], axis=-1).astype(np.float32), labels


def floors(lags) -> dict:
    """Expected cross-entropy of the best predictor knowing nothing, the first
    lag, or both (exact, from the label probabilities)."""

    def entropy(p):
        p = np.asarray(p, float)
        with np.errstate(divide="ignore", invalid="ignore"):
            h = -(p * np.log(p) + (1 - p) * np.log(1 - p))
        return float(np.mean(np.nan_to_num(h)))

    both = [0.5 + 0.5 * a - 0.25 * b for a in (0, 1) for b in (0, 1)]
    first = [np.mean([0.5 + 0.5 * a - 0.25 * b for b in (0, 1)]) for a in (0, 1)]
    return {
        "nothing": entropy([np.mean(both)]),
        "first lag": entropy(first),
        "both lags": entropy(both),
    }


def run(args, run) -> pd.DataFrame:
    jax.config.update("jax_enable_x64", True)  # the float64 gradient table
    size = dict(QUICK if args.quick else FULL)
    size["steps"] = args.steps or size["steps"]
    if args.lags[0] >= args.lags[1]:
        raise ValueError(f"--lags must be t1 < t2, got {args.lags}")
    if size["steps"] % size["segment"]:
        raise ValueError(f"--steps must be a multiple of {size['segment']}")
    table, curves = learning_table(size, tuple(args.lags), args.seed)
    gradients = gradient_table(size, args.seed)
    costs = cost_table(size, args.seed)
    table = table.merge(costs, on="method")
    for name, frame in [
        ("add_task.csv", table),
        ("gradients.csv", gradients),
        ("costs.csv", costs),
    ]:
        frame.to_csv(run.path(name), index=False)
    run.metrics(curves)
    run.summary(
        {
            "machine": rnnbptt.runs.machine_line({"optax": optax.__version__}),
            "floors": floors(args.lags),
            "add_task": table.to_dict("records"),
            "gradients": gradients.to_dict("records"),
            "costs": costs.to_dict("records"),
        }
    )
    _plot(run, curves, floors(args.lags))
    return table


def _model(size):
    return rnnbptt.SequenceModel.build("elman", 2, [size["hidden"]], 2)


def _train_online(model, params, engine, xs, ys, seed):
    optimizer = optax.adam(LEARNING_RATE)
    step = rnnbptt.make_online_step(model, "cross_entropy", optimizer, engine=engine)
    state = step.init(params, xs.shape[0], key=jax.random.key(seed))
    params, _, _, metrics = step.run(params, optimizer.init(params), state, xs, ys)
    return params, np.asarray(metrics["loss"])


FROZEN = "frozen"  # a method that trains the readout only


def _truncated(model, params, how):
    """``(train step, optimizer)`` of a TBPTT ``(k1, k2)``, None (full BPTT
    of each call) or ``(FROZEN, (k1, k2))``: the recurrent layer left as
    initialised, so only the readout learns, from what the state holds."""
    optimizer = optax.adam(LEARNING_RATE)
    if how is not None and how[0] == FROZEN:
        parts = params._replace(
            layers=jax.tree.map(lambda _: "layer", params.layers),
            readout=jax.tree.map(lambda _: "readout", params.readout),
        )
        optimizer = optax.multi_transform(
            {"layer": optax.set_to_zero(), "readout": optimizer}, parts
        )
        how = how[1]
    step = rnnbptt.make_train_step(model, "cross_entropy", optimizer, tbptt=how)
    return step, optimizer


def _train_truncated(model, params, how, xs, ys, segment):
    """Segments of ``segment`` steps, the state carried across them."""
    step, optimizer = _truncated(model, params, how)
    opt_state, carry, losses = optimizer.init(params), None, []
    for start in range(0, xs.shape[1], segment):
        part = slice(start, start + segment)
        params, opt_state, metrics = step(
            params, opt_state, xs[:, part], ys[:, part], None, None, carry
        )
        carry = metrics["carry"]
        losses.append(np.full(segment, float(metrics["loss"])))
    return params, np.concatenate(losses)


def learning_table(size, lags, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    xs, ys = add_task(rng, size["streams"], size["steps"], lags)
    test_xs, test_ys = add_task(rng, size["streams"], size["test_steps"], lags)
    model = _model(size)
    init = model.init(jax.random.key(seed), jnp.float32)
    xs, ys = jnp.asarray(xs), jnp.asarray(ys)
    rows, curves = [], []
    for name, how in methods(size).items():
        started = time.perf_counter()
        if isinstance(how, str):
            params, losses = _train_online(model, init, how, xs, ys, seed)
        else:
            params, losses = _train_truncated(model, init, how, xs, ys, size["segment"])
        seconds = time.perf_counter() - started
        out = model.apply(params, test_xs)
        test = float(rnnbptt.losses.softmax_cross_entropy(out, jnp.asarray(test_ys)))
        window = size["segment"]
        smooth = losses.reshape(-1, window).mean(1)
        curves += [
            {"method": name, "step": (i + 1) * window, "loss": float(v)}
            for i, v in enumerate(smooth)
        ]
        last = max(1, len(smooth) // 10)
        rows.append(
            {
                "method": name,
                "train_loss_last_tenth": float(smooth[-last:].mean()),
                "test_loss": test,
                "seconds": seconds,
            }
        )
    return pd.DataFrame(rows), pd.DataFrame(curves)


GRADIENT_CELLS = {"elman": rnnbptt.Elman, "lstm": rnnbptt.LSTM, "gru": rnnbptt.GRU}


def gradient_table(size, seed: int) -> pd.DataFrame:
    """Each engine's gradient of one random probe against BPTT's (float64)."""
    rows = []
    for c, name in enumerate(size["cells"]):
        cell = GRADIENT_CELLS[name](2, size["hidden"])
        keys = jax.random.split(jax.random.key(seed + c), 4)
        params = cell.init(keys[0], jnp.float64)
        xs = jax.random.bernoulli(keys[1], 0.5, (8, 20, 2)).astype(jnp.float64)
        d_hs = jax.random.normal(keys[2], (8, 20, size["hidden"]), jnp.float64)
        want = _flat(rnnbptt.bptt(cell, params, xs, None, d_hs)[0])

        def engine(name, key=None, cell=cell, params=params, xs=xs, d_hs=d_hs):
            return _flat(
                rnnbptt.online_gradient(cell, params, xs, d_hs, engine=name, key=key)
            )

        rows.append({"cell": name, "engine": "rtrl", "rel": _rel(engine("rtrl"), want)})
        snap = engine("snap1")
        rows.append(
            {
                "cell": name,
                "engine": "snap1",
                "rel": _rel(snap, want),
                "cosine": float(
                    snap @ want / jnp.linalg.norm(snap) / jnp.linalg.norm(want)
                ),
            }
        )
        for n in size["samples"]:
            mean = rnnbptt.online_gradient(
                cell, params, xs, d_hs, engine="uoro", key=keys[3], samples=n
            )
            rows.append(
                {
                    "cell": name,
                    "engine": "uoro",
                    "samples": n,
                    "rel": _rel(_flat(mean), want),
                }
            )
    return pd.DataFrame(rows)


def _flat(tree) -> jax.Array:
    return jnp.concatenate([a.ravel() for a in jax.tree.leaves(tree)])


def _rel(a, b) -> float:
    return float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(b)))


def methods(size) -> dict:
    """Name -> an online engine, a TBPTT ``(k1, k2)``, or None (BPTT over
    segments), in the order of the tables."""
    names = {"rtrl": "RTRL", "uoro": "UORO", "snap1": "SnAp-1"}
    chosen = {names[e]: e for e in online.ENGINES}
    chosen |= {f"TBPTT(1, {k})": (1, k) for k in size["truncations"]}
    chosen[f"BPTT ({size['segment']}-step segments)"] = None
    chosen["readout only (recurrence as initialised)"] = (FROZEN, (1, 1))
    return chosen


def cost_table(size, seed: int) -> pd.DataFrame:
    """Per stream: the bytes each method keeps (an online engine its influence
    state, the others the residuals of the steps they backpropagate; the
    gradient and the weights, shared by all streams, are not counted), and the
    median time of a step (8 streams, float32, compiled, interleaved)."""
    model = _model(size)
    cell, B, steps = model.cells[0], 8, size["segment"]
    params = model.init(jax.random.key(seed), jnp.float32)
    layer = params.layers[0]
    xs, ys = (jnp.asarray(a) for a in add_task(np.random.default_rng(seed), B, steps))
    optimizer = optax.adam(LEARNING_RATE)
    opt_state = optimizer.init(params)
    calls, kept = {}, {}
    for name, how in methods(size).items():
        if isinstance(how, str):
            step = rnnbptt.make_online_step(
                model, "cross_entropy", optimizer, engine=how
            )
            state = step.init(params, B, key=jax.random.key(seed))
            run = (step.run, params, opt_state, state, xs, ys)
            kept[name] = online.influence_bytes(cell, layer, 1, how)
        else:
            step, optimizer = _truncated(model, params, how)
            run = (step, params, optimizer.init(params), xs, ys, None, None)
            keep = _steps_kept(how, steps)
            kept[name] = _residuals_per_stream(cell, layer, keep)
        calls[name] = functools.partial(_blocking, *run)
    seconds = rnnbptt.runs.interleaved_medians(calls, size["repeats"])
    return pd.DataFrame(
        [
            {
                "method": name,
                "bytes_per_stream": kept[name],
                "us_per_step": 1e6 * seconds[name] / steps,
            }
            for name in calls
        ]
    )


def _steps_kept(how, segment: int) -> int:
    """The steps a truncated method backpropagates (the readout-only one: 1)."""
    if how is None:
        return segment
    return 1 if how[0] == FROZEN else how[1]


def _residuals_per_stream(cell, layer, steps: int) -> int:
    """What one more stream adds to the residuals of ``steps`` steps of BPTT
    (the weights' copies are shared by all streams)."""

    def kept(streams):
        shape = jax.ShapeDtypeStruct((streams, steps, 2), jnp.float32)
        return rnnbptt.residual_bytes(cell, layer, shape)

    return kept(2) - kept(1)


def _blocking(fn, *args):
    return jax.block_until_ready(fn(*args))


def _plot(run, curves: pd.DataFrame, floor: dict) -> None:
    plt = rnnbptt.runs.pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for method, part in curves.groupby("method", sort=False):
        ax.plot(part["step"], part["loss"], label=method, linewidth=1)
    for name, value in floor.items():
        ax.axhline(value, color="grey", linestyle=":", linewidth=0.8)
        ax.annotate(name, (0, value), fontsize=7, color="grey")
    ax.set(
        xlabel="step of the stream",
        ylabel="training cross-entropy (nats, mean of 100 steps)",
        title="Add task: online gradients against truncated and segment BPTT",
    )
    ax.legend(fontsize=7)
    run.figure(fig, "learning_curves.png")


if __name__ == "__main__":
    import sys

    from rnnbptt.experiment import main

    sys.exit(main(sys.modules[__name__]))
