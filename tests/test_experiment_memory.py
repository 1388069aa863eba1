"""The adding-problem experiment, quick mode."""

import json

import numpy as np
import pandas as pd

from rnnbptt import cli


def test_memory_quick(tmp_path, capsys):
    assert cli.main(["experiment", "memory", "--quick", "--out", str(tmp_path)]) == 0
    out = tmp_path / "memory"
    for name in ("config.json", "metrics.csv", "summary.json", "validation_mse.png"):
        assert (out / name).stat().st_size > 0
    results = json.loads((out / "summary.json").read_text())["results"]
    assert {r["cell"] for r in results} == {"lstm", "elman"}
    for r in results:
        # a trained network does at least as well as predicting the mean
        assert 0 < r["test_mse"] < 1.1 * r["trivial_mse"]
    history = pd.read_csv(out / "metrics.csv")
    assert np.isfinite(history["val_loss"]).all()
    assert "test_mse" in capsys.readouterr().out


def test_adding_problem_targets_are_the_marked_sums():
    from rnnbptt.experiments import memory

    xs, ys = memory.adding_problem(500, 40, np.random.default_rng(0))
    assert xs.shape == (500, 40, 2) and ys.shape == (500, 1)
    assert (xs[..., 1].sum(axis=1) == 2).all()  # exactly two markers
    first = xs[..., 1].argmax(axis=1)
    assert (first < 4).all()  # the first marker in the first tenth
    np.testing.assert_allclose(ys[:, 0], (xs[..., 0] * xs[..., 1]).sum(1), rtol=1e-6)
    np.testing.assert_allclose(np.mean((ys - 1.0) ** 2), 1 / 6, atol=0.03)
