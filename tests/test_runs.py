"""Run folders: written completely or not at all; old results survive failures."""

import json
import os
import subprocess
import sys

import pandas as pd
import pytest

from rnnbptt import run_folder, runs
from rnnbptt.runs import Run


def test_run_writes_config_metrics_summary_and_a_record(tmp_path):
    with Run(tmp_path, "exp", {"seed": 3, "nan": float("nan")}) as run:
        run.metrics([{"epoch": 1, "loss": 0.25}, {"epoch": 2, "loss": 0.125}])
        run.summary({"best": 0.125})
        assert not (tmp_path / "exp").exists()  # nothing visible until done
    out = tmp_path / "exp"
    config = json.loads((out / "config.json").read_text())
    assert config["seed"] == 3 and config["nan"] is None
    assert config["machine"]["platform"] == "cpu"
    assert list(pd.read_csv(out / "metrics.csv")["loss"]) == [0.25, 0.125]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["best"] == 0.125 and summary["seconds"] >= 0
    assert [p.name for p in tmp_path.iterdir()] == ["exp"]  # no temporary leftovers
    record = json.loads((out / run_folder.RECORD).read_text())
    assert record["complete"] and record["name"] == "exp"
    names = ["config.json", "metrics.csv", "summary.json"]
    assert list(record["entries"]) == names
    for name in names:  # a file as its size and modification time
        info = (out / name).stat()
        assert record["entries"][name] == ["file", info.st_size, info.st_mtime_ns]


def test_failed_run_leaves_previous_results_untouched(tmp_path):
    with Run(tmp_path, "exp", {"attempt": 1}) as run:
        run.summary({"score": 1})
    before = {p.name: p.read_bytes() for p in (tmp_path / "exp").iterdir()}
    with pytest.raises(RuntimeError), Run(tmp_path, "exp", {"attempt": 2}) as run:
        run.summary({"score": 2})
        raise RuntimeError("crash mid-run")
    after = {p.name: p.read_bytes() for p in (tmp_path / "exp").iterdir()}
    assert after == before
    assert [p.name for p in tmp_path.iterdir()] == ["exp"]


def test_successful_rerun_replaces_results(tmp_path):
    for attempt in (1, 2):
        with Run(tmp_path, "exp", {"attempt": attempt}) as run:
            run.summary({"score": attempt})
    summary = json.loads((tmp_path / "exp" / "summary.json").read_text())
    assert summary["score"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exp"]


def test_results_get_the_usual_permissions_and_arrays_are_lists(tmp_path):
    import numpy as np

    with Run(tmp_path, "exp", {"sizes": np.array([16, 32]), "inf": float("inf")}):
        pass
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "exp").stat().st_mode & 0o777 == 0o777 & ~umask
    config = json.loads((tmp_path / "exp" / "config.json").read_text())
    assert config["sizes"] == [16, 32] and config["inf"] is None


def test_sigterm_mid_run_leaves_no_temporary_folder(tmp_path):
    """The CLI turns SIGTERM into an exit: the half-written run is removed."""
    import signal
    import time

    with Run(tmp_path, "vanishing", {"attempt": 1}) as run:
        run.summary({"score": 1})
    before = (tmp_path / "vanishing" / "summary.json").read_bytes()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "rnnbptt",
            "experiment",
            "vanishing",
            "--out",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not any(
        p.name.startswith(".vanishing.") for p in tmp_path.iterdir()
    ):
        time.sleep(0.05)
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 128 + signal.SIGTERM
    assert [p.name for p in tmp_path.iterdir()] == ["vanishing"]
    assert (tmp_path / "vanishing" / "summary.json").read_bytes() == before


def test_config_records_the_devices_jax_was_given(tmp_path):
    """JAX_PLATFORMS and XLA_FLAGS are respected and the devices recorded."""
    code = (
        "import sys; from rnnbptt.runs import Run\n"
        "with Run(sys.argv[1], 'exp', {}) as run: pass\n"
    )
    env = {
        **os.environ,
        "JAX_PLATFORMS": "cpu",
        "XLA_FLAGS": "--xla_force_host_platform_device_count=3",
    }
    subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)], env=env, check=True, timeout=120
    )
    machine = json.loads((tmp_path / "exp" / "config.json").read_text())["machine"]
    assert machine["platform"] == "cpu" and machine["device_kind"] == "cpu"
    assert machine["device_count"] == 3


def test_interleaved_medians_warm_up_alternate_and_take_medians(monkeypatch):
    clock, order = [0.0], []
    durations = {"a": [5.0, 1.0, 3.0], "b": [2.0, 9.0, 4.0]}  # timed rounds only

    def perf_counter():
        return clock[0]

    def make(name):
        def call():
            order.append(name)
            timed = [n for n in order[4:] if n == name]  # after 2 warm-ups each
            if len(order) > 4:
                clock[0] += durations[name][len(timed) - 1]

        return call

    monkeypatch.setattr(runs.time, "perf_counter", perf_counter)
    got = runs.interleaved_medians({"a": make("a"), "b": make("b")}, repeats=3)
    assert order == ["a", "a", "b", "b", "a", "b", "b", "a", "a", "b"]
    assert got == {"a": 3.0, "b": 4.0}
