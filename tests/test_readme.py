"""The README's commands and quick start are what they claim to be."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

README = (Path(__file__).parent.parent / "README.md").read_text()


def _blocks(lang):
    return re.findall(rf"```{lang}\n(.*?)```", README, flags=re.S)


# Runs code blocks one after another in one fresh interpreter, each in a namespace
# of its own (no name leaks from one block into the next), and prints SEPARATOR
# after each, so that the interpreter starts (and imports JAX) once.
SEPARATOR = "----- end of README block -----"
RUN_BLOCKS = f"""
import sys
for code in sys.argv[1:]:
    exec(compile(code, "README.md", "exec"), {{"__name__": "__main__"}})
    print({SEPARATOR!r}, flush=True)
"""


@pytest.fixture(scope="module")
def printed(tmp_path_factory):
    """What the quick start and the training example print, run in that order in
    a fresh interpreter (default float32 config) in an empty folder."""
    (quick,) = [b for b in _blocks("python") if "compare_gradients" in b]
    (training,) = [b for b in _blocks("python") if "rnnbptt.fit(" in b]
    (settling,) = [b for b in _blocks("python") if "rnnbptt.settle(" in b]
    (streams,) = [b for b in _blocks("python") if "make_online_step" in b]
    folder = tmp_path_factory.mktemp("readme")
    result = subprocess.run(
        [sys.executable, "-c", RUN_BLOCKS, quick, training, settling, streams],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=folder,
    )
    assert result.returncode == 0, result.stderr
    outputs = result.stdout.split(SEPARATOR + "\n")
    assert len(outputs) == 5 and outputs[4] == "", result.stdout
    names = ("quick start", "training", "settling", "online")
    return dict(zip(names, outputs, strict=False)) | {"folder": folder}


def test_quick_start_runs_and_engines_agree(printed):
    out = printed["quick start"]
    assert "manual_autodiff_rel" in out
    first_line = out.splitlines()[0]  # max |manual - autodiff| per parameter
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


def test_training_example_runs(printed):
    assert (printed["folder"] / "runs" / "sine.ckpt").exists()
    rows = [line.split() for line in printed["training"].splitlines()[1:]]
    val_losses = [float(row[3]) for row in rows]
    assert min(val_losses) < 0.05  # the series has variance 0.5: it learned


def test_settle_example_runs_and_its_engines_are_what_it_says(printed):
    lines = printed["settling"].splitlines()
    steps = [int(v) for v in re.findall(r"\d+", lines[0])]
    assert len(steps) == 8 and max(steps) > 20  # more steps than Neumann's terms
    worst = {
        line.split()[0]: float(line.split()[1])
        for line in lines
        if line.split()[:1] and line.split()[0] in ENGINE_NAMES
    }
    assert set(worst) == set(ENGINE_NAMES) and worst["bptt"] == 0
    assert max(worst["rbp"], worst["implicit"]) < 1e-3  # the fixed point's gradient
    assert worst["tbptt"] > 1e-2  # 20 terms truncate a slow contraction ...
    assert abs(worst["neumann"] - worst["tbptt"]) < 1e-4  # ... as 20 steps of BPTT


ENGINE_NAMES = ("bptt", "tbptt", "rbp", "neumann", "cg", "implicit")


def test_online_example_learns_and_rtrl_is_bptt(printed):
    loss_line, difference_line = printed["online"].splitlines()
    assert float(loss_line.split(":")[1]) < 0.662  # below remembering nothing
    assert float(difference_line.split(":")[1]) < 1e-4  # float32
