"""The online-learning experiment, quick mode, and its task."""

import json

import numpy as np
import pandas as pd

from rnnbptt import cli


def test_add_task_labels_follow_the_two_lags_and_the_published_floors():
    from rnnbptt.experiments import online

    xs, labels = online.add_task(np.random.default_rng(0), 4, 20_000, (3, 8))
    assert xs.shape == (4, 20_000, 2) and (xs.sum(-1) == 1).all()
    bits = xs[..., 0]
    first, second = bits[:, 5:-3], bits[:, :-8]  # x_{t-3}, x_{t-8} for t >= 8
    later = labels[:, 8:]
    assert (later[(first == 1) & (second == 0)] == 1).all()  # p = 1
    quarter = later[(first == 0) & (second == 1)].mean()  # p = 0.25
    assert abs(quarter - 0.25) < 0.02
    floors = online.floors((3, 8))
    for name, published in online.FLOORS.items():  # vanilla-rtrl's numbers
        assert abs(floors[name] - published) < 1e-3


def test_online_quick(tmp_path):
    argv = ["experiment", "online", "--quick", "--out", str(tmp_path)]
    assert cli.main(argv) == 0
    out = tmp_path / "online"
    for name in ("summary.json", "metrics.csv", "learning_curves.png"):
        assert (out / name).stat().st_size > 0
    table = pd.read_csv(out / "add_task.csv")
    assert len(table) == 7 and np.isfinite(table["test_loss"]).all()
    assert (table["us_per_step"] > 0).all()
    assert (table["test_loss"] < 0.75).all()  # near or below knowing nothing
    gradients = pd.read_csv(out / "gradients.csv")
    assert gradients.query("engine == 'rtrl'")["rel"].max() < 1e-12
    uoro = gradients.query("engine == 'uoro'").set_index("samples")["rel"]
    assert uoro[100] < uoro[1]
    assert 0.5 < gradients.query("engine == 'snap1'")["cosine"].min() < 1
    costs = pd.read_csv(out / "costs.csv").set_index("method")["bytes_per_stream"]
    # per stream, Elman H = 8 with P = 88 parameters: RTRL P x H, SnAp-1 P,
    # UORO P + H numbers of 4 bytes
    assert (costs["RTRL"], costs["SnAp-1"], costs["UORO"]) == (
        88 * 8 * 4,
        88 * 4,
        96 * 4,
    )
    steps_kept = ["TBPTT(1, 4)", "TBPTT(1, 12)", "BPTT (100-step segments)"]
    assert costs[steps_kept].is_monotonic_increasing  # residuals grow with steps
    assert "cores" in json.loads((out / "summary.json").read_text())["machine"]
