"""Handwritten digits: static backpropagation through the same code as BPTT.

The 8x8 optical digits shipped with scikit-learn (``data/digits.csv.gz``: 1797
images, pixel counts 0..16 scaled to [0, 1], ten classes), split stratified by
label into train/validation/test (60/20/20, drawn from ``--seed``). Three
many-to-one classifiers, each trained with ``rnnbptt.fit`` (cross-entropy, Adam,
early stopping on the validation loss, the best epoch's parameters restored):

* ``feedforward``: the whole image as ONE step (xs [N, 1, 64]) through a
  Feedforward (zero-recurrence) layer: a plain multilayer perceptron, trained by
  the very unroll and hand-written BPTT code the recurrent models use, where
  "through time" is a single step (static backpropagation);
* ``elman`` and ``lstm``: the image read row by row, an 8-step sequence of 8
  pixels (xs [N, 8, 8]), classified from the last hidden state.

The summary also shows the library's point on a batch of 64 test images: the
gradient of the cross-entropy through ``model.apply(..., backward="manual")``
(hand-written BPTT) equals the one through ``backward="autodiff"`` (JAX AD), as
the max relative difference over all parameter leaves (max|manual - autodiff| /
max|autodiff| per leaf), in float32 and in float64 (scoped ``jax.enable_x64``).

Outputs: ``metrics.csv`` (fit's history of every model: losses, gradient norm,
seconds per epoch), ``summary.json`` (accuracies, parameter counts, epochs,
training seconds, the confusion matrix, the engine agreement),
``confusion_matrix.png`` (test set, of the model with the best validation
accuracy) and ``validation_curves.png`` (validation and training cross-entropy
per epoch: fit's history holds losses, not accuracies).

Command:  rnnbptt experiment ocr               (or: python experiments/ocr.py)
Expected (found, full run, seed 0; train/validation/test
          split 1078/360/359 images): test accuracy
          feedforward (relu, 128 hidden, 9610 parameters) 0.981 (0.981 and 0.975
          at seeds 1 and 2; 0.967 with --activation tanh), Elman (64 hidden, 5322
          parameters) 0.989, LSTM (64 hidden, 19338 parameters) 0.975; early
          stopping after 27 to 38 epochs, 4.5 to 5 seconds of training each.
          Manual vs autodiff gradients: feedforward bitwise equal in float32 (0)
          and 2e-16 in float64; Elman and LSTM 7.7e-7 and 5.8e-7 in float32,
          8e-16 and 6e-16 in float64. 19 seconds on 2 quiet CPU cores (73 s
          before the performance work, with other jobs sharing the cores).
Quick:    --quick trains 8 epochs on 256 images, validates on 64, tests on 128,
          with 32 hidden units, and compares the engines on the feedforward model
          only (seconds; test accuracies 0.81 to 0.91), for the tests.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

import rnnbptt
import rnnbptt.data
from rnnbptt.experiment import positive_int_option

CLASSES = 10
SPLIT = (0.6, 0.2, 0.2)  # train, validation, test fractions of every class
ENGINE_TOL = {"float32": 1e-5, "float64": 1e-10}  # max relative difference
GRAD_BATCH = 64  # test images in the engine comparison
MODELS = ("feedforward", "elman", "lstm")  # the default run
CHOICES = (*MODELS, "gru")
FULL = {
    "subset": None,  # all of the split
    "hidden": {"feedforward": 128, "elman": 64, "lstm": 64, "gru": 64},
    "epochs": 100,
    "patience": 10,
    "batch": 32,
    "learning_rate": 3e-3,
    "compare_engines": CHOICES,
}
QUICK = {
    # the first (train, validation, test) images of each part: whole batches only,
    # so that each of fit's jitted steps compiles once
    "subset": (256, 64, 128),
    "hidden": {"feedforward": 32, "elman": 32, "lstm": 32, "gru": 32},
    "epochs": 8,
    "patience": None,
    "batch": 32,
    "learning_rate": 1e-2,
    "compare_engines": ("feedforward",),  # the point; each costs seconds to compile
}


def stratified_split(labels: np.ndarray, fractions, rng: np.random.Generator):
    """Index arrays (train, validation, test), each class split by ``fractions``."""
    parts = [[] for _ in fractions]
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        cuts = np.round(np.cumsum(fractions)[:-1] * len(idx)).astype(int)
        for part, chunk in zip(parts, np.split(idx, cuts), strict=True):
            part.append(chunk)
    return tuple(rng.permutation(np.concatenate(p)) for p in parts)


def as_input(kind: str, images: np.ndarray) -> np.ndarray:
    """[N, 8, 8] images -> [N, 1, 64] (one step) or [N, 8, 8] (rows as steps)."""
    if kind == "feedforward":
        return images.reshape(len(images), 1, -1)
    return images


def param_count(params) -> int:
    return sum(int(np.size(leaf)) for leaf in jax.tree.leaves(params))


def max_relative_difference(a, b) -> float:
    """max over leaves of max|a - b| / max|b| (0 where both are exactly 0)."""
    worst = 0.0
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
        err, scale = np.max(np.abs(x - y)), np.max(np.abs(y))
        worst = max(worst, err / scale if scale > 0 else (0.0 if err == 0 else np.inf))
    return float(worst)


def engine_difference(model, params, xs, labels, dtype) -> float:
    """Manual BPTT vs autodiff: max relative difference of the loss gradients."""
    params = jax.tree.map(lambda v: jnp.asarray(v, dtype), params)
    xs, labels = jnp.asarray(xs, dtype), jnp.asarray(labels)

    def loss(p, backward):
        logits = model.apply(p, xs, backward=backward)
        return rnnbptt.losses.softmax_cross_entropy(logits, labels)

    @jax.jit  # both gradients in one program: one compilation
    def gradients(p):
        return jax.grad(loss)(p, "manual"), jax.grad(loss)(p, "autodiff")

    return max_relative_difference(*gradients(params))


def engine_differences(model, params, xs, labels) -> dict:
    """``engine_rel_diff_<dtype>`` for float32 and float64 (scoped ``enable_x64``)."""
    found = {}
    for dtype in ENGINE_TOL:
        with jax.enable_x64(dtype == "float64"):
            found[f"engine_rel_diff_{dtype}"] = engine_difference(
                model, params, xs, labels, jnp.dtype(dtype)
            )
    return found


def predict(model, params, xs: np.ndarray) -> np.ndarray:
    logits = jax.jit(model.apply)(params, jnp.asarray(xs))
    return np.asarray(jnp.argmax(logits, axis=-1))


def confusion(labels: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """[10, 10] counts: row = true digit, column = predicted digit."""
    matrix = np.zeros((CLASSES, CLASSES), np.int64)
    np.add.at(matrix, (labels, predicted), 1)
    return matrix


def add_arguments(parser) -> None:
    parser.add_argument(
        "--models",
        nargs="+",
        choices=CHOICES,
        default=list(MODELS),
        help="models to train",
    )
    parser.add_argument(
        "--activation",
        choices=["tanh", "relu"],
        default="relu",
        help="of the feedforward hidden layer",
    )
    parser.add_argument(
        "--hidden", type=positive_int_option, help="hidden units of every model"
    )
    parser.add_argument(
        "--epochs", type=positive_int_option, help="at most this many epochs"
    )
    parser.add_argument("--data", help="digits CSV (default: data/digits.csv.gz)")


def run(args, run) -> pd.DataFrame:
    size = QUICK if args.quick else FULL
    hidden = {k: args.hidden or h for k, h in size["hidden"].items()}
    epochs = args.epochs or size["epochs"]
    path = rnnbptt.data.data_path("digits.csv.gz") if args.data is None else args.data
    images, labels = rnnbptt.data.load_digits(path)
    images = images.astype(np.float32)
    parts = stratified_split(labels, SPLIT, np.random.default_rng(args.seed))
    if size["subset"] is not None:
        parts = tuple(p[:n] for p, n in zip(parts, size["subset"], strict=True))
    train, val, test = parts
    if min(len(train), len(val), len(test)) < CLASSES:
        raise ValueError(
            f"{path}: {len(labels)} images are too few for a {SPLIT} split"
        )
    grad_batch = test[:GRAD_BATCH]

    rows, histories, predictions = [], [], {}
    for kind in dict.fromkeys(args.models):  # in order, once each
        model = rnnbptt.SequenceModel.build(
            kind,
            64 if kind == "feedforward" else 8,
            [hidden[kind]],
            CLASSES,
            head="many_to_one",
            activation=args.activation if kind == "feedforward" else None,
        )
        xs = as_input(kind, images)
        started = time.perf_counter()
        result = rnnbptt.fit(
            model,
            model.init(jax.random.key(args.seed), jnp.float32),
            xs[train],
            labels[train],
            validation=(xs[val], labels[val]),
            loss="cross_entropy",
            learning_rate=size["learning_rate"],
            epochs=epochs,
            batch_size=min(size["batch"], len(train)),
            clip_norm=1.0,
            patience=size["patience"],
            backward=args.backward,
            seed=args.seed,
            progress=not args.quick,
        )
        seconds = time.perf_counter() - started
        # validation and test in one call: one compilation
        predicted = predict(model, result.params, xs[np.concatenate([val, test])])
        predictions[kind] = predicted[len(val) :]
        row = {
            "model": kind,
            "hidden": hidden[kind],
            "params": param_count(result.params),
            "test_accuracy": float(np.mean(predictions[kind] == labels[test])),
            "val_accuracy": float(np.mean(predicted[: len(val)] == labels[val])),
            "epochs": len(result.history),
            "best_epoch": result.best_epoch,
            "seconds": seconds,
        }
        if kind in size["compare_engines"]:
            row.update(
                engine_differences(
                    model, result.params, xs[grad_batch], labels[grad_batch]
                )
            )
        rows.append(row)
        histories.append(result.history.assign(model=kind))

    table = pd.DataFrame(rows)
    best = table.loc[table["val_accuracy"].idxmax(), "model"]  # chosen on validation
    matrix = confusion(labels[test], predictions[best])
    history = pd.concat(histories, ignore_index=True)
    run.metrics(history)
    compared = [r for r in rows if "engine_rel_diff_float32" in r]
    run.summary(
        {
            "split": {"train": len(train), "validation": len(val), "test": len(test)},
            "results": rows,
            "best_model": best,
            "confusion_matrix": matrix.tolist(),
            "engine_agreement": {
                "what": "max relative difference of manual BPTT and autodiff "
                "gradients of the cross-entropy on a batch of test images",
                "batch": len(grad_batch),
                "tolerance": ENGINE_TOL,
                **{
                    r["model"]: {d: r[f"engine_rel_diff_{d}"] for d in ENGINE_TOL}
                    for r in compared
                },
                "ok": all(
                    r[f"engine_rel_diff_{d}"] <= tol
                    for r in compared
                    for d, tol in ENGINE_TOL.items()
                ),
            },
        }
    )
    _plot_curves(run, history)
    _plot_confusion(run, matrix, best, table.set_index("model").test_accuracy[best])
    return table


def _pyplot():
    plt = rnnbptt.runs.pyplot()

    return plt


def _plot_curves(run, history: pd.DataFrame) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for i, (kind, part) in enumerate(history.groupby("model", sort=False)):
        color = f"C{i}"
        ax.plot(part["epoch"], part["val_loss"], color=color, label=f"{kind} (val)")
        ax.plot(
            part["epoch"],
            part["train_loss"],
            color=color,
            linestyle="--",
            alpha=0.6,
            label=f"{kind} (train)",
        )
        best = part.loc[part["val_loss"].idxmin()]
        ax.plot(best["epoch"], best["val_loss"], "o", color=color)  # restored
    ax.set(
        yscale="log",
        xlabel="epoch",
        ylabel="cross-entropy",
        title="8x8 digits: validation (solid, o = best) and training (dashed) loss",
    )
    ax.legend(fontsize=8)
    run.figure(fig, "validation_curves.png")


def _plot_confusion(run, matrix: np.ndarray, name: str, accuracy: float) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 4.5))
    ax.imshow(matrix, cmap="Blues")
    for (i, j), count in np.ndenumerate(matrix):
        if count:
            light = count > matrix.max() / 2
            color = "white" if light else "black"
            ax.text(j, i, count, ha="center", va="center", fontsize=8, color=color)
    ax.set(
        xticks=range(CLASSES),
        yticks=range(CLASSES),
        xlabel="predicted digit",
        ylabel="true digit",
        title=f"{name}: test accuracy {accuracy:.3f}",
    )
    run.figure(fig, "confusion_matrix.png")


if __name__ == "__main__":
    import sys

    from rnnbptt.experiment import main

    sys.exit(main(sys.modules[__name__]))
