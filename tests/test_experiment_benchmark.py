"""The benchmark, in quick mode through ``rnnbptt bench``."""

import importlib.util
import re
import subprocess
from pathlib import Path

import jax
import numpy as np
import pandas as pd
import pytest
from conftest import quick_experiment

from rnnbptt import cli

NAME = "benchmark"
ROOT = Path(__file__).resolve().parent.parent
# optional framework (module name) -> the implementation it adds
OPTIONAL = {"torch": "torch.nn", "flax": "flax nn.RNN"}
INSTALLED = {m: importlib.util.find_spec(m) is not None for m in OPTIONAL}


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """(exit code, printed output, results folder) of one quick run."""
    return quick_experiment(tmp_path_factory, NAME, ["bench"])


def test_writes_tables_summary_and_plot(quick_run):
    code, printed, folder = quick_run
    assert code == 0
    for name in (
        "config.json",
        "metrics.csv",
        "checkpointing.csv",
        "compile.csv",
        "summary.json",
        "benchmark.png",
    ):
        assert (folder / name).stat().st_size > 0
    assert "one gradient, float32" in printed and "targets:" in printed


def test_every_engine_and_each_installed_framework_is_timed(metrics, summary):
    want = {"rnnbptt manual", "rnnbptt autodiff"}
    want |= {impl for module, impl in OPTIONAL.items() if INSTALLED[module]}
    for cell in ("lstm", "gru", "elman"):
        got = set(metrics.loc[metrics["cell"] == cell, "implementation"])
        assert got == want
    assert (metrics["ms"] > 0).all()
    for module in OPTIONAL:  # a missing framework is named in a note
        noted = any(
            note.startswith(f"{module} not installed") for note in summary["notes"]
        )
        assert noted == (not INSTALLED[module])


def test_throughput_columns_follow_from_the_times(metrics, summary):
    # 2*T*B*G*H*(2D + 3H) floating-point operations per gradient, G gates
    gates = metrics["cell"].map({"lstm": 4, "gru": 3, "elman": 1})
    flops = (
        2.0
        * metrics["T"]
        * metrics["B"]
        * gates
        * metrics["H"]
        * (2 * metrics["D"] + 3 * metrics["H"])
    )
    np.testing.assert_allclose(
        metrics["gflops"], flops / metrics["ms"] / 1e6, rtol=1e-9
    )
    peak = max(summary["gemm_peak_gflops"].values())
    np.testing.assert_allclose(metrics["pct_peak"], 100 * metrics["gflops"] / peak)
    torch_rows = metrics[metrics["implementation"] == "torch.nn"]
    np.testing.assert_allclose(torch_rows["vs_torch"], 1.0)
    rnnbptt_rows = metrics[metrics["implementation"].str.startswith("rnnbptt")]
    assert (rnnbptt_rows["compile_s"] > 0).all() and (
        rnnbptt_rows["scratch_mb"] > 0
    ).all()


def test_checkpointing_keeps_fewer_residuals(quick_run):
    table = pd.read_csv(quick_run[2] / "checkpointing.csv")
    assert set(zip(table["cell"], table["engine"], strict=True)) == {
        (c, e) for c in ("lstm", "elman") for e in ("manual", "autodiff")
    }
    assert (table["residual_ratio"] < 1).all()
    lstm = table[table["cell"] == "lstm"]
    assert (lstm["residual_ratio"] <= 0.25).all()


def test_summary_grades_each_target(summary):
    targets = summary["targets"]
    assert any("checkpointed / full residuals" in name for name in targets)
    for check in targets.values():
        assert check["met"] in (True, False, None)
        if check["met"] is not None:
            assert check["target"].startswith(("<=", ">="))
    assert summary["machine"]


def test_a_quick_run_grades_nothing(summary):
    """--quick runs tiny sizes: no target of the issue is about them."""
    assert all(check["met"] is None for check in summary["targets"].values())


def test_targets_are_graded_only_where_the_run_matches_the_issue():
    bench = cli._load_experiment(NAME)
    timing = pd.DataFrame(
        [
            {"size": "medium", "cell": cell, "implementation": impl, "ms": ms}
            for cell in ("lstm", "gru", "elman")
            for impl, ms in (
                ("rnnbptt manual", 10.0),
                ("rnnbptt autodiff", 20.0),
                ("torch.nn", 40.0),
                ("flax nn.RNN", 5.0),
            )
        ]
    )
    checkpointing = pd.DataFrame(
        [
            {
                "cell": "lstm",
                "engine": "manual",
                "T": 10_000,
                "residual_ratio": 0.1,
                "time_ratio": 1.1,
            }
        ]
    )
    compiling = pd.DataFrame(
        [
            {"cell": "lstm", "engine": "manual", "T": t, "compile_s": 0.3}
            for t in (100, 1000)
        ]
    )
    graded = bench.targets(timing, checkpointing, compiling)
    assert graded["lstm medium: rnnbptt manual / torch.nn"]["met"] is True
    assert graded["gru medium: rnnbptt manual / torch.nn"]["met"] is True
    assert graded["gru medium: rnnbptt manual / flax nn.RNN"]["met"] is False
    assert graded["gru medium: autodiff / manual"]["met"] is None  # long only
    assert graded["elman medium: autodiff / manual"]["met"] is True
    assert graded["lstm manual T=10000: checkpointed / full time"]["met"] is True
    assert graded["lstm manual: compile seconds at T=100"]["met"] is True
    other = bench.targets(
        timing, checkpointing, compiling, sizes_named=False, torch_graded=False
    )
    assert other["lstm medium: rnnbptt manual / torch.nn"]["met"] is None
    assert other["elman medium: autodiff / manual"]["met"] is True  # no torch in it
    assert other["lstm manual T=10000: checkpointed / full time"]["met"] is None
    assert other["lstm manual: compile seconds at T=100"]["met"] is None


def test_machine_line_names_the_cpu_family_model_and_clock(tmp_path, summary):
    bench = cli._load_experiment(NAME)
    info = tmp_path / "cpuinfo"
    info.write_text(
        "processor\t: 0\nmodel name\t: AMD EPYC\ncpu family\t: 25\nmodel\t\t: 17\n"
        "stepping\t: 1\ncpu MHz\t\t: 2596.134\nflags\t\t: fpu avx2 avx512f\n\n"
        "processor\t: 1\nmodel name\t: AMD EPYC\ncpu family\t: 26\n"
    )
    line = bench.cpu_line(str(info))
    assert line == "AMD EPYC (family 25, model 17, stepping 1, 2596 MHz, AVX-512)"
    fallback = bench.cpu_line(str(tmp_path / "missing"))
    assert fallback and "(" not in fallback  # no /proc/cpuinfo: the bare name
    assert summary["machine"].startswith(bench.cpu_line())


def test_torch_runs_where_jax_runs():
    if jax.default_backend() != "cpu":
        pytest.skip("checks the CPU side; the GPU side runs in gpu_check.sh")
    bench = cli._load_experiment(NAME)
    assert bench.torch_device_for("auto") == "cpu"
    assert bench.torch_device_for("cuda") == "cuda"  # asked for: taken as given
    before = jax.config.jax_default_matmul_precision
    bench.full_float32("cpu")  # nothing to change on the CPU
    assert jax.config.jax_default_matmul_precision == before


def test_gpu_script_is_valid_and_runs_tests_that_exist():
    script = ROOT / "experiments" / "gpu_check.sh"
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    text = script.read_text()
    named = re.findall(r"tests/test_\w+\.py", text)
    assert "tests/test_bptt.py" in named and "tests/test_gradcheck.py" in named
    for path in named:
        assert (ROOT / path).is_file(), path
    assert '"$py" experiments/benchmark.py' in text  # rnnbptt bench, uninstalled
