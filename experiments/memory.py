"""Long-range memory: the adding problem of Hochreiter and Schmidhuber (1997).

Each sequence has T steps of two inputs: a random value in [0, 1] and a marker
that is 1 at exactly two steps (one in the first tenth, one in the second half:
Hochreiter and Schmidhuber put the second in the first half) and 0 elsewhere. The
target, given only at the end, is the sum of the two marked values. Predicting
the mean (1.0) scores a mean squared error of 1/6 = 0.167. Remembering only the
second, later value (predicting it plus 0.5) scores 1/12 = 0.083 with a memory
of at most T/2 steps; to do better a network must carry the first marked value
across at least 0.9 T steps, which backpropagation through time can teach an
LSTM but hardly an Elman network, whose gradients vanish over that distance.

Command:  rnnbptt experiment memory            (or: python experiments/memory.py)
Expected: LSTM test MSE < 0.01 at every T; Elman stays at the trivial 0.167 for
          T >= 100. Obtained (seed 0, 20 epochs, manual BPTT): LSTM 1.6e-4,
          1.1e-4, 3.1e-4 at T = 50, 100, 200; Elman 0.089, 0.164, 0.167 (the
          Elman at T = 50 stopped early, after 12 epochs, near the 0.083 of
          remembering the second value only). 3.0 minutes on 2 CPU
          cores shared with other jobs (3.6 before the performance work); 4.9
          minutes on the slower host of 2026-11-30. (Before the weight gradients
          took a transposed copy of their operand, float32 rounding gave LSTM
          1.5e-4, 1.4e-4, 2.3e-4 and Elman 0.062, 0.165, 0.167.)
Quick:    --quick trains T = 10 for 5 epochs on 500 sequences (whole batches
          of 50: one compiled step each), seconds, for the tests.
"""

from __future__ import annotations

import jax
import numpy as np
import pandas as pd

import rnnbptt
from rnnbptt.experiment import positive_int_option

TRIVIAL_MSE = 1.0 / 6.0  # predicting the mean, 1.0, of a sum of two U(0, 1)
FULL = {"steps": [50, 100, 200], "train": 10_000, "epochs": 20, "hidden": 64}
# whole batches of 50 in every split (500 / 50 / 50), so that each of fit's jitted
# steps, and the test evaluation, compiles once per cell (epochs cost little)
QUICK = {"steps": [10], "train": 500, "epochs": 5, "hidden": 16}


def adding_problem(n: int, steps: int, rng: np.random.Generator):
    """(xs [n, steps, 2], ys [n, 1]): values and markers, the sum of marked values."""
    values = rng.uniform(0.0, 1.0, (n, steps))
    first = rng.integers(0, max(1, steps // 10), n)
    second = rng.integers(steps // 2, steps, n) if steps > 1 else first
    second = np.where(second == first, (first + 1) % steps, second)
    markers = np.zeros((n, steps))
    markers[np.arange(n), first] = 1.0
    markers[np.arange(n), second] = 1.0
    xs = np.stack([values, markers], axis=-1)
    ys = (values * markers).sum(axis=1, keepdims=True)
    return xs.astype(np.float32), ys.astype(np.float32)


def add_arguments(parser) -> None:
    parser.add_argument(
        "--steps", type=positive_int_option, nargs="+", help="sequence lengths T"
    )


def run(args, run) -> pd.DataFrame:
    size = QUICK if args.quick else FULL
    steps_list = args.steps or size["steps"]
    if any(t < 2 for t in steps_list):
        raise ValueError(f"--steps must all be >= 2, got {steps_list}")
    rng = np.random.default_rng(args.seed)
    rows, histories = [], []
    for steps in steps_list:
        train = adding_problem(size["train"], steps, rng)
        val = adding_problem(size["train"] // 10, steps, rng)
        test = adding_problem(size["train"] // 10, steps, rng)
        for kind in ("lstm", "elman"):
            model = rnnbptt.SequenceModel.build(
                kind, 2, [size["hidden"]], 1, head="many_to_one"
            )
            params = model.init(jax.random.key(args.seed), jax.numpy.float32)
            result = rnnbptt.fit(
                model,
                params,
                *train,
                validation=val,
                loss="mse",
                learning_rate=3e-3,
                epochs=size["epochs"],
                batch_size=50,
                clip_norm=1.0,
                patience=8,
                backward=args.backward,
                seed=args.seed,
                progress=not args.quick,
            )
            predict = rnnbptt.make_eval_step(model, "mse")
            test_mse = float(
                predict(result.params, *map(jax.numpy.asarray, test), None)[0]
            )
            rows.append(
                {
                    "steps": steps,
                    "cell": kind,
                    "test_mse": test_mse,
                    "trivial_mse": TRIVIAL_MSE,
                    "solved": test_mse < 0.01,
                    "epochs": len(result.history),
                    "seconds": result.history["seconds"].sum(),
                }
            )
            histories.append(result.history.assign(steps=steps, cell=kind))
    table = pd.DataFrame(rows)
    run.metrics(pd.concat(histories, ignore_index=True))
    run.summary({"results": rows})
    _plot(run, pd.concat(histories, ignore_index=True))
    return table


def _plot(run, history: pd.DataFrame) -> None:
    plt = rnnbptt.runs.pyplot()

    fig, ax = plt.subplots(figsize=(6, 4))
    for (steps, cell), part in history.groupby(["steps", "cell"]):
        ax.plot(part["epoch"], part["val_loss"], label=f"{cell}, T={steps}")
    ax.axhline(TRIVIAL_MSE, color="grey", linestyle="--", label="predict the mean")
    ax.axhline(0.01, color="black", linestyle=":", label="solved (MSE 0.01)")
    ax.set(
        yscale="log",
        xlabel="epoch",
        ylabel="validation MSE",
        title="Adding problem: LSTM vs Elman",
    )
    ax.legend(fontsize=8)
    run.figure(fig, "validation_mse.png")


if __name__ == "__main__":
    import sys

    from rnnbptt.experiment import main

    sys.exit(main(sys.modules[__name__]))
