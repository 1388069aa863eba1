"""The README's commands and quick start are what they claim to be."""

import re
import subprocess
import sys
from pathlib import Path

README = (Path(__file__).parent.parent / "README.md").read_text()


def _blocks(lang):
    return re.findall(rf"```{lang}\n(.*?)```", README, flags=re.S)


def test_quick_start_runs_and_engines_agree():
    """Runs the quick start in a fresh interpreter (default float32 config)."""
    (code,) = [b for b in _blocks("python") if "compare_gradients" in b]
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert "manual_autodiff_rel" in result.stdout
    first_line = result.stdout.splitlines()[0]  # max |manual - autodiff| per parameter
    diffs = [float(v) for v in re.findall(r"=([0-9.e+-]+)", first_line)]
    assert len(diffs) == 3 and max(diffs) < 1e-6


def test_setup_commands_come_first():
    commands = _blocks("bash")[0].splitlines()
    runs = [line for line in commands if not line.startswith("#")]
    assert runs[0].endswith("rnnbptt experiment forecast")
    assert "'.[test]'" in runs[1] and runs[1].endswith("pytest -q -n auto")
    # .ci/run runs exactly the README's test command
    ci = (Path(__file__).parent.parent / ".ci" / "run").read_text()
    assert runs[1].split("&& ", 1)[1] in ci


def test_training_example_runs(tmp_path):
    (code,) = [b for b in _blocks("python") if "rnnbptt.fit(" in b]
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "runs" / "sine.ckpt").exists()
    rows = [line.split() for line in result.stdout.splitlines()[1:]]
    val_losses = [float(row[3]) for row in rows]
    assert min(val_losses) < 0.05  # the series has variance 0.5: it learned
