"""Data parallelism: 4 virtual CPU devices give the 1-device result (subprocess)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parent / "scripts" / "data_parallel.py"


@pytest.fixture(scope="module")
def report():
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4"}
    env.pop("JAX_PLATFORMS", None)
    result = subprocess.run(
        [sys.executable, str(SCRIPT)],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout)


def test_four_devices_are_used(report):
    assert report["devices"] == 4
    assert report["all_reduce"]  # XLA reduces the gradients across devices


def test_one_step_on_four_devices_equals_one_device(report):
    # a pairwise covering set of Elman/LSTM x both engines x with/without masks x
    # full/truncated BPTT (truncated on the masked LSTM, with both engines)
    assert sorted(report["steps"]) == [
        "elman-autodiff-mask",
        "elman-manual-full",
        "lstm-autodiff-full",
        "lstm-autodiff-mask-tbptt",
        "lstm-manual-mask-tbptt",
    ]
    for name, case in report["steps"].items():
        assert case["max_rel"] < 1e-10, name
        assert case["loss_rel"] < 1e-12, name
        assert case["moved"] > 1e-3, name  # the step did change the parameters
        assert case["replicated_on"] == 4 and case["fully_replicated"], name
        assert case["all_reduce"], name  # the gradients are reduced across devices


def test_fit_on_four_devices_equals_one_device(report):
    assert report["fit_max_rel"] < 1e-10
    assert report["fit_moved"] > 1e-3


def test_sharded_inference_equals_unsharded(report):
    assert report["unroll_max_rel"] < 1e-12
    assert report["unroll_shards"] == 4 and not report["unroll_fully_replicated"]


@pytest.mark.parametrize(
    "case, kind, words",
    [
        (
            "indivisible_step",
            "ValueError",
            ["6 sequences", "4 devices", "multiple of 4"],
        ),
        ("indivisible_fit", "ValueError", ["fit", "`batch_size`", "multiple of 4"]),
        ("no_batch_axis", "ValueError", ["axis named 'batch'", "('x',)"]),
        ("not_a_mesh", "TypeError", ["`data_parallel`", "got str"]),
    ],
)
def test_bad_input_gets_a_clear_error(report, case, kind, words):
    error = report["errors"][case]
    assert error is not None, f"{case} was accepted"
    assert error[0] == kind
    for word in words:
        assert word in error[1]
