"""The gradients experiment, in quick mode through the CLI."""

import json

import numpy as np
import pytest
from conftest import quick_experiment

from rnnbptt import cli

NAME = "gradients"
CELLS = {"elman-tanh", "lstm", "feedforward"}
QUICK_STEPS = {10}  # experiments/gradients.py QUICK["steps"]
DTYPES = {"float32", "float64"}
ENGINE_TOL = {"float64": 1e-10, "float32": 1e-5}
FD_TOL = {"float64": 1e-6, "float32": 1e-3}


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """(exit code, printed output, results folder) of one quick run."""
    return quick_experiment(tmp_path_factory, NAME)


def test_writes_config_metrics_summary_and_plots(quick_run):
    code, _, folder = quick_run
    assert code == 0
    for name in ("config.json", "metrics.csv", "summary.json", "errors.png"):
        assert (folder / name).stat().st_size > 0
    assert (folder / "cost.png").stat().st_size > 0
    config = json.loads((folder / "config.json").read_text())
    assert config["quick"] is True and "machine" in config


def test_one_row_per_cell_dtype_and_length(quick_run, metrics):
    keys = set(zip(metrics["cell"], metrics["dtype"], metrics["steps"], strict=True))
    assert keys == {(c, d, t) for c in CELLS for d in DTYPES for t in QUICK_STEPS}
    assert len(metrics) == len(keys)
    # the printed table: a header, then one row per cell, dtype and T
    table = quick_run[1].split("\n\n")[0].splitlines()
    assert "manual_autodiff_rel" in table[0] and "autodiff/manual" in table[0]
    assert len(table) == 1 + len(keys)


def test_engines_agree_with_each_other_and_finite_differences(metrics):
    errors = ["manual_autodiff_rel", "manual_fd_rel", "autodiff_fd_rel"]
    assert np.isfinite(metrics[errors].to_numpy()).all()
    assert (metrics[errors] >= 0).all().all()
    for dtype, part in metrics.groupby("dtype"):
        assert part["manual_autodiff_rel"].max() <= ENGINE_TOL[dtype], dtype
        assert part["manual_fd_rel"].max() <= FD_TOL[dtype], dtype
        assert part["autodiff_fd_rel"].max() <= FD_TOL[dtype], dtype
    # float32 rounding is really measured (two distinct engines), not zeroed
    assert metrics.loc[metrics["dtype"] == "float32", "manual_autodiff_rel"].max() > 0


def test_timings_and_memory_of_both_engines(metrics):
    timed = metrics[metrics["dtype"] == "float32"]
    assert set(zip(timed["cell"], timed["steps"], strict=True)) == {
        (c, t) for c in CELLS for t in QUICK_STEPS
    }
    for engine in ("manual", "autodiff"):
        ms = timed[f"ms_{engine}"].to_numpy()
        assert np.isfinite(ms).all() and (ms > 0).all() and (ms < 10_000).all()
        memory = timed[f"temp_bytes_{engine}"].to_numpy()
        assert np.isnan(memory).all() or (memory[~np.isnan(memory)] >= 0).all()
    # float64 is compared, not timed
    assert metrics.loc[metrics["dtype"] == "float64", "ms_manual"].isna().all()


def test_summary_has_worst_errors_ratios_and_machine(quick_run, metrics):
    summary = json.loads((quick_run[2] / "summary.json").read_text())
    for dtype in DTYPES:
        worst = summary["worst"][dtype]
        part = metrics[metrics["dtype"] == dtype]
        assert worst["ok"] is True
        assert worst["manual_autodiff_rel"] == pytest.approx(
            part["manual_autodiff_rel"].max()
        )
    ratios = summary["speed_ratio_autodiff_over_manual"]
    assert set(ratios) == CELLS
    for cell in CELLS:
        assert {int(t) for t in ratios[cell]} == QUICK_STEPS
        assert all(0 < r < np.inf for r in ratios[cell].values())
    assert summary["machine"]["cpu_count"] >= 1


def test_bad_steps_is_a_one_line_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["experiment", NAME, "--steps", "0", "--out", str(tmp_path)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "--steps: must be a positive integer, got 0" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / NAME).exists()
