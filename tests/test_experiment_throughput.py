"""The training-throughput experiment, in quick mode: its table, the programs each
call compiled, and the host it ran on. Speeds are not asserted: they belong to the
machine, not to the code."""

import importlib.util

import numpy as np
import pandas as pd
import pytest
from conftest import quick_experiment

from rnnbptt import cli, runs

NAME = "throughput"
FIT_COLD, FIT_AGAIN = "rnnbptt.fit, first call", "rnnbptt.fit, again"
BARE = "make_train_step loop"
# optional framework (module name) -> its row
OPTIONAL = {"torch": "torch loop", "keras": "keras (jax)"}
INSTALLED = {m: importlib.util.find_spec(m) is not None for m in OPTIONAL}


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """(exit code, printed output, results folder) of one quick run."""
    return quick_experiment(tmp_path_factory, NAME)


def row(metrics, name):
    chosen = metrics[metrics["implementation"] == name]
    assert len(chosen) == 1, name
    return chosen.iloc[0]


def test_writes_table_and_summary(quick_run):
    code, printed, folder = quick_run
    assert code == 0
    for name in ("config.json", "metrics.csv", "summary.json"):
        assert (folder / name).stat().st_size > 0
    assert "targets:" in printed and "seconds per epoch" in printed


def test_a_second_fit_compiles_nothing(metrics, summary):
    # the counter sees the first fit's programs, so its 0 for the second is news
    assert row(metrics, FIT_COLD)["compilations"] > 0
    assert row(metrics, FIT_COLD)["compile_s"] > 0
    assert row(metrics, FIT_AGAIN)["compilations"] == 0
    assert summary["fit_again_compilations_per_round"] == [0]
    check = summary["targets"]["programs compiled by a second fit"]
    assert check["value"] == 0 and check["met"] is True and check["verdict"] == "met"


def test_rnnbptt_rows_have_positive_finite_times(metrics, summary):
    for name in (FIT_COLD, FIT_AGAIN, BARE):
        timed = row(metrics, name)
        for column in ("s_per_epoch", "first_epoch_s"):
            assert np.isfinite(timed[column]) and timed[column] > 0, (name, column)
        epochs = summary["epoch_seconds"][name]
        assert [len(call) for call in epochs] == [summary["problem"]["epochs"]]


def test_each_framework_is_timed_or_noted_as_skipped(metrics, summary):
    for module, name in OPTIONAL.items():
        timed = name in set(metrics["implementation"])
        noted = any(note.startswith(f"{module} not") for note in summary["notes"])
        assert timed == INSTALLED[module] and noted == (not INSTALLED[module])
    if INSTALLED["torch"]:
        np.testing.assert_allclose(
            metrics["vs_torch"],
            metrics["s_per_epoch"] / row(metrics, OPTIONAL["torch"])["s_per_epoch"],
        )
    else:
        assert metrics["vs_torch"].isna().all()


def test_summary_records_the_host_and_grades_no_speed_in_quick_mode(summary):
    assert summary["machine"].startswith(runs.cpu_line())
    assert summary["gemm_peak_gflops"]["xla"] > 0
    assert len(summary["load_average"]["before"]) == 3
    for name, check in summary["targets"].items():
        if name != "programs compiled by a second fit":
            assert check["met"] is None and check["verdict"] == "not graded"


def test_targets_are_ratios_with_their_distance():
    throughput = cli._load_experiment(NAME)
    frame = pd.DataFrame(
        {
            "implementation": [FIT_COLD, FIT_AGAIN, "torch loop", "keras (jax)"],
            "s_per_epoch": [0.5, 0.3, 0.4, 0.4],
            "first_epoch_s": [2.0, 0.3, 0.5, 1.6],
        }
    )
    checks = throughput.targets(frame, 1, graded=True)
    per_epoch = checks["fit again / torch loop, seconds per epoch"]
    assert per_epoch["value"] == pytest.approx(0.75) and per_epoch["met"] is True
    assert per_epoch["distance"] == pytest.approx(-0.25)
    first = checks["fit first call / keras first fit, first epoch seconds"]
    assert first["value"] == pytest.approx(1.25) and first["verdict"] == "not met"
    assert checks["programs compiled by a second fit"]["met"] is False
    missing = throughput.targets(frame.iloc[:2], 0, graded=True)
    assert missing["fit again / torch loop, seconds per epoch"]["met"] is None


def test_one_epoch_is_refused_in_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        cli.main(
            ["experiment", NAME, "--quick", "--epochs", "1", "--out", str(tmp_path)]
        )
    assert stop.value.code == 2
    assert "at least 2" in capsys.readouterr().err
