"""The scaling experiment, in quick mode through ``rnnbptt experiment``."""

import json

import jax
import numpy as np
import pytest
from conftest import quick_experiment

from rnnbptt import cli, runs

NAME = "scaling"
BATCH = 8  # the quick global batch
VIRTUAL = jax.devices()[0].platform == "cpu"


def expected_counts() -> list[int]:
    """Quick mode's device counts: virtual 1 and 2 on a CPU, else the real
    devices present that divide the batch."""
    if VIRTUAL:
        return [1, 2]
    return [n for n in range(1, jax.device_count() + 1) if BATCH % n == 0]


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """(exit code, printed output, results folder) of one quick run."""
    return quick_experiment(tmp_path_factory, NAME)


def test_writes_table_summary_and_plot(quick_run):
    code, printed, folder = quick_run
    assert code == 0
    for name in ("config.json", "metrics.csv", "summary.json", "scaling.png"):
        assert (folder / name).stat().st_size > 0
    assert "speedup" in printed and "efficiency" in printed


def test_every_device_count_has_a_row_that_really_used_its_devices(metrics):
    counts = expected_counts()
    assert metrics["devices"].tolist() == counts
    # each child saw and sharded over exactly its own number of devices
    assert (metrics["devices_used"] == metrics["devices"]).all()
    assert (metrics["batch_shards"] == metrics["devices"]).all()
    assert (metrics["batch"] == BATCH).all()
    assert (metrics["per_device_batch"] * metrics["devices"] == BATCH).all()
    assert (metrics["ms_per_step"] > 0).all()
    assert (metrics["ms_min"] <= metrics["ms_per_step"]).all()


def test_multi_device_step_equals_the_one_device_step(metrics, summary):
    one = metrics[metrics["devices"] == 1].iloc[0]
    assert one["max_rel_diff"] == 0 and one["update_rel_diff"] == 0
    # float32: loss and parameters to rounding; the update (a difference of
    # gradients summed in another order) to a few hundred ulps of its largest entry
    assert (metrics["max_rel_diff"] < 1e-5).all()
    assert (metrics["update_rel_diff"] < 1e-3).all()
    assert summary["worst_max_rel_diff"] == pytest.approx(metrics["max_rel_diff"].max())


def test_speedup_and_efficiency_follow_from_the_times(metrics, summary):
    seconds = metrics["ms_per_step"] / 1e3
    np.testing.assert_allclose(metrics["sequences_per_s"], BATCH / seconds)
    base = metrics.loc[metrics["devices"] == 1, "ms_per_step"].iloc[0]
    np.testing.assert_allclose(metrics["speedup"], base / metrics["ms_per_step"])
    np.testing.assert_allclose(
        metrics["efficiency"], metrics["speedup"] / metrics["devices"]
    )
    for n, speedup in zip(metrics["devices"], metrics["speedup"], strict=True):
        assert summary["speedup"][str(n)] == pytest.approx(speedup)


def test_summary_names_the_machine_and_what_the_speedup_means(quick_run, summary):
    assert summary["machine"] == runs.machine()
    assert summary["devices"] == expected_counts()
    assert summary["virtual_cpu_devices"] == VIRTUAL
    if VIRTUAL:
        assert "share the same" in summary["note"]
        assert "not real scaling" in summary["note"]
    config = json.loads((quick_run[2] / "config.json").read_text())
    assert config["quick"] is True and config["machine"]["jax"] == jax.__version__


@pytest.mark.parametrize(
    "argv, words",
    [
        (["--devices", "3"], ["--devices: 3 does not divide", "batch of 8"]),
        (["--batch", "0"], ["--batch: must be a positive integer, got 0"]),
        (["--repeats", "-1"], ["--repeats: must be a positive integer, got -1"]),
    ],
)
def test_bad_options_are_one_line_errors(tmp_path, capsys, argv, words):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["experiment", NAME, "--quick", "--out", str(tmp_path), *argv])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    for word in words:
        assert word in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / NAME).exists()


def test_child_environment_sets_the_device_count_and_keeps_other_flags(monkeypatch):
    module = cli._load_experiment(NAME)
    monkeypatch.setenv(
        "XLA_FLAGS", "--xla_cpu_foo=1 --xla_force_host_platform_device_count=5"
    )
    env = module._child_env(4, virtual=True)
    assert env["XLA_FLAGS"].split() == [
        "--xla_cpu_foo=1",
        "--xla_force_host_platform_device_count=4",
    ]
    assert env["JAX_PLATFORMS"] == "cpu"
    monkeypatch.setenv("JAX_PLATFORMS", "cuda")
    real = module._child_env(4, virtual=False)  # real devices: left to JAX
    assert real["JAX_PLATFORMS"] == "cuda"
    assert "device_count=4" not in real["XLA_FLAGS"]
