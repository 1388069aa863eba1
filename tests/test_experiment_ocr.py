"""The handwritten-digits experiment, quick mode, and its data split."""

import importlib
import json

import numpy as np
import pandas as pd
import pytest

from rnnbptt import cli

# Quick mode reaches 0.81 to 0.91 test accuracy; chance is 0.1.
QUICK_MIN_ACCURACY = 0.5
QUICK_HIDDEN = 32
# Parameters of each quick model: (D*G*H [+ H*G*H] + G*H) + (H*10 + 10).
QUICK_PARAMS = {
    "feedforward": 64 * 32 + 32 + 32 * 10 + 10,
    "elman": 8 * 32 + 32 * 32 + 32 + 32 * 10 + 10,
    "lstm": 4 * (8 * 32 + 32 * 32 + 32) + 32 * 10 + 10,
}


@pytest.fixture(scope="module")
def ocr():
    return importlib.import_module("rnnbptt.experiments.ocr")


def test_ocr_quick(tmp_path, capsys, ocr):
    assert cli.main(["experiment", "ocr", "--quick", "--out", str(tmp_path)]) == 0
    out = tmp_path / "ocr"
    for name in (
        "config.json",
        "metrics.csv",
        "summary.json",
        "confusion_matrix.png",
        "validation_curves.png",
    ):
        assert (out / name).stat().st_size > 0
    summary = json.loads((out / "summary.json").read_text())
    results = {r["model"]: r for r in summary["results"]}
    assert set(results) == set(QUICK_PARAMS)
    for kind, r in results.items():
        assert QUICK_MIN_ACCURACY < r["test_accuracy"] <= 1.0, kind
        assert r["params"] == QUICK_PARAMS[kind]
        assert r["hidden"] == QUICK_HIDDEN
        assert 1 <= r["best_epoch"] <= r["epochs"] and r["seconds"] > 0

    # the Feedforward model: hand-written BPTT and autodiff give the same gradients
    agreement = summary["engine_agreement"]["feedforward"]
    assert 0 <= agreement["float32"] <= ocr.ENGINE_TOL["float32"]
    assert 0 <= agreement["float64"] <= ocr.ENGINE_TOL["float64"]
    assert summary["engine_agreement"]["ok"] is True

    # the confusion matrix is the best model's test predictions
    split = summary["split"]
    assert [split[k] for k in ("train", "validation", "test")] == list(
        ocr.QUICK["subset"]
    )
    matrix = np.array(summary["confusion_matrix"])
    assert matrix.shape == (10, 10) and matrix.sum() == split["test"]
    best = results[summary["best_model"]]
    assert best["val_accuracy"] == max(r["val_accuracy"] for r in results.values())
    assert np.trace(matrix) / matrix.sum() == pytest.approx(best["test_accuracy"])

    history = pd.read_csv(out / "metrics.csv")
    assert set(history["model"]) == set(QUICK_PARAMS)
    assert np.isfinite(history[["train_loss", "val_loss", "grad_norm"]]).all().all()
    for kind, part in history.groupby("model"):
        # training lowered the validation loss from chance level, log(10) = 2.3
        assert part["val_loss"].min() < 0.7 * np.log(10), kind
    assert "test_accuracy" in capsys.readouterr().out


def test_stratified_split_keeps_class_proportions(ocr):
    labels = np.repeat(np.arange(10), np.arange(20, 30))
    parts = ocr.stratified_split(labels, ocr.SPLIT, np.random.default_rng(0))
    together = np.concatenate(parts)
    assert np.array_equal(np.sort(together), np.arange(len(labels)))  # a partition
    for part, fraction in zip(parts, ocr.SPLIT, strict=True):
        counts = np.bincount(labels[part], minlength=10)
        assert np.all(np.abs(counts - fraction * np.bincount(labels)) <= 1)
    again = ocr.stratified_split(labels, ocr.SPLIT, np.random.default_rng(0))
    assert all(np.array_equal(a, b) for a, b in zip(parts, again, strict=True))


def test_ocr_as_input_shapes_one_step_or_rows(ocr):
    images = np.arange(2 * 64, dtype=np.float32).reshape(2, 8, 8)
    one_step = ocr.as_input("feedforward", images)
    assert one_step.shape == (2, 1, 64)
    np.testing.assert_array_equal(one_step[1, 0, 8:16], images[1, 1])  # row-major
    assert ocr.as_input("lstm", images).shape == (2, 8, 8)


@pytest.mark.parametrize(
    "argv",
    [["--hidden", "0"], ["--epochs", "-1"], ["--data", "no/such/digits.csv"]],
)
def test_ocr_bad_option_is_a_one_line_error(tmp_path, capsys, argv):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["experiment", "ocr", "--quick", "--out", str(tmp_path), *argv])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "error" in err
    assert not (tmp_path / "ocr").exists()


def test_ocr_malformed_data_is_a_one_line_error(tmp_path, capsys):
    bad = tmp_path / "digits.csv"
    bad.write_text("0,1,2\n3,4,5\n")  # 3 columns, not 64 pixels and a label
    with pytest.raises(SystemExit) as exit_info:
        cli.main(
            ["experiment", "ocr", "--quick", "--out", str(tmp_path), "--data", str(bad)]
        )
    assert exit_info.value.code == 2
    assert "65 columns" in capsys.readouterr().err
