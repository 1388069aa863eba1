"""The recurrent-backpropagation experiment, quick mode, and its data."""

import json

import numpy as np
import pandas as pd

from rnnbptt import cli


def test_recurrent_backprop_quick(tmp_path):
    from rnnbptt.experiments import recurrent_backprop

    argv = ["experiment", "recurrent_backprop", "--quick", "--out", str(tmp_path)]
    assert cli.main(argv) == 0
    out = tmp_path / "recurrent_backprop"
    for name in ("summary.json", "metrics.csv", "agreement.png", "hopfield.png"):
        assert (out / name).stat().st_size > 0

    steps = pd.read_csv(out / "agreement_steps.csv").set_index("engine")
    assert steps.loc["implicit", "rel_vs_bptt"] < 1e-10  # settled: the same limit
    assert steps.loc["rbp", "rel_vs_bptt"] < 1e-8
    terms = pd.read_csv(out / "agreement_terms.csv").iloc[0]
    assert terms["neumann_vs_tbptt"] < 1e-12  # Liao et al.'s identity
    assert terms["tbptt"] > 1e-6  # three steps are a truncation

    table = pd.read_csv(out / "hopfield.csv").set_index("method")
    assert list(table.index) == list(recurrent_backprop.METHODS)
    one_step = table.loc["RBP", "residual_bytes"]
    assert table.loc["BPTT", "residual_bytes"] == 50 * one_step  # 50 updates
    assert table.loc["TBPTT", "residual_bytes"] == 20 * one_step  # truncation 20
    assert (table["test_settled"] == 1).all()
    for column in ("grad_vs_bptt_init", "grad_vs_bptt_trained"):
        assert (table[column] < 1e-4).all()  # settled, so all agree
    assert (table["ms_per_update"] > 0).all()
    history = pd.read_csv(out / "metrics.csv")
    for _, part in history.groupby("method"):
        assert part["loss"].iloc[-1] < part["loss"].iloc[0]

    memory = pd.read_csv(out / "memory.csv").pivot(
        index="forward_steps", columns="method"
    )
    residual, scratch = memory["residual_bytes"], memory["scratch_bytes"]
    assert residual.loc[500, "BPTT"] == 10 * residual.loc[50, "BPTT"]
    for method in ("RBP", "CG-RBP", "Neumann-RBP"):
        assert residual.loc[500, method] == residual.loc[50, method]
    assert scratch.loc[500, "Neumann-RBP"] == scratch.loc[50, "Neumann-RBP"]
    assert scratch.loc[500, "BPTT"] > scratch.loc[50, "BPTT"]
    summary = json.loads((out / "summary.json").read_text())
    assert "cores" in summary["machine"]


def test_corruption_turns_off_half_of_each_images_on_pixels():
    from rnnbptt.experiments import recurrent_backprop

    patterns = recurrent_backprop.digit_patterns()
    assert patterns.shape == (10, 64) and set(np.unique(patterns)) == {0.0, 1.0}
    corrupted = recurrent_backprop.corrupt(patterns, 0.5, 3, np.random.default_rng(0))
    clean = np.repeat(patterns, 3, axis=0)
    assert (corrupted <= clean).all()  # nothing turned on
    on = clean.sum(axis=1)
    np.testing.assert_array_equal(
        clean.sum(1) - corrupted.sum(1), (on * 0.5).astype(int)
    )
    assert not (corrupted[0] == corrupted[1]).all()  # the copies differ
