"""The rnnbptt command line."""

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import pytest

from rnnbptt import cli, experiment
from rnnbptt.runs import Run


def test_gradcheck_prints_table_and_passes(capsys):
    # float32 only, four of the cells: test_gradcheck checks float64
    # compare_gradients of every cell against finite differences at the CLI's
    # tolerances
    defaults = cli.build_parser().parse_args(["gradcheck"])
    assert defaults.dtype == ["float32", "float64"] and defaults.cell is None
    assert set(cli.demo_cells(1, 1)) == {
        "elman-tanh",
        "elman-relu",
        "lstm",
        "gru",
        "gru-reset-before",
        "feedforward",
    }
    cells = ["elman-relu", "lstm", "gru-reset-before", "feedforward"]
    sizes = ["-T", "4", "-B", "2", "-H", "3"]
    code = cli.main(["gradcheck", "--dtype", "float32", *sizes, "--cell", *cells])
    out = capsys.readouterr().out
    assert code == 0
    for name in (*cells, "carry0.c", "b_hh"):
        assert name in out
    assert "elman-tanh" not in out
    assert "20/20 gradients agree" in out
    assert not [line for line in out.splitlines()[1:] if " float64 " in line]
    # float32 rounding is really measured, not zeroed: some float32 row differs
    rows = [line.split() for line in out.splitlines() if " float32 " in line]
    assert len(rows) == 20
    assert any(float(row[-7]) > 0 for row in rows)  # manual_autodiff_abs


@pytest.mark.parametrize(
    "argv, words",
    [
        (["gradcheck", "-T", "0"], "rnnbptt gradcheck: error: argument --steps/-T: "),
        (["gradcheck", "--steps", "x"], "must be a positive integer, got 'x'"),
        (["gradcheck", "--dtype", "int8"], "invalid choice: 'int8'"),
        (["nonsense"], "rnnbptt: error: argument command: invalid choice"),
        (["devices", "extra"], "unrecognized arguments: extra"),
        (["--no-such-option"], "rnnbptt: error: "),
    ],
)
def test_bad_arguments_are_one_line_errors(argv, words, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert words in err and "usage" not in err
    assert len(err.strip().splitlines()) == 1


def test_no_command_prints_the_help_with_status_2(capsys):
    assert cli.main([]) == 2
    out, err = capsys.readouterr()
    assert out.startswith("usage: rnnbptt") and not err
    for command in ("gradcheck", "devices", "bench", "experiment"):
        assert command in out


def test_help_is_plain_text_and_lists_every_command(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "The rnnbptt command line." in out
    assert "``" not in out  # no reStructuredText markup from the docstring
    for command in ("gradcheck", "devices", "bench", "experiment"):
        assert command in out


@pytest.mark.parametrize(
    "name, option",
    [("benchmark", "--backward"), ("benchmark", "--seed"), ("gradients", "--backward")],
)
def test_an_option_the_experiment_would_ignore_is_refused(name, option, capsys):
    value = {"--backward": "autodiff", "--seed": "3"}[option]
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["experiment", name, option, value])
    assert exit_info.value.code == 2
    assert f"unrecognized arguments: {option} {value}" in capsys.readouterr().err


COUNTS = {  # every count-like option of every experiment
    "autocorrect": ["--vocab", "--steps", "--hidden", "--layers"],
    "benchmark": ["--repeats", "--torch-threads"],
    "forecast": ["--horizon", "--input-length", "--season"],
    "gradients": ["--steps"],
    "memory": ["--steps"],
    "ocr": ["--hidden", "--epochs"],
    "scaling": ["--batch", "--repeats"],
    "vanishing": ["--steps", "--hidden"],
}


@pytest.mark.parametrize(
    "name, option", [(n, o) for n, options in COUNTS.items() for o in options]
)
def test_a_count_of_zero_is_refused_not_replaced_by_the_default(name, option):
    parser = experiment.experiment_parser(name, cli._load_experiment(name))
    assert parser.parse_args([option, "3"]) is not None
    for value in ("0", "-2", "2.5"):
        with pytest.raises(SystemExit) as exit_info:
            parser.parse_args([option, value])
        assert exit_info.value.code == 2


def test_common_options_reach_the_experiments_that_use_them():
    for name, taken in [
        ("forecast", {"backward": "autodiff", "seed": 3}),
        ("gradients", {"seed": 3}),
        ("benchmark", {}),
    ]:
        argv = ["--backward", "autodiff"] * ("backward" in taken)
        argv += ["--seed", "3"] * ("seed" in taken)
        parser = experiment.experiment_parser(name, cli._load_experiment(name))
        args = vars(parser.parse_args(argv))
        assert {k: args[k] for k in ("backward", "seed") if k in args} == taken, name


def test_unknown_experiment_is_a_one_line_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["experiment", "telepathy"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "unknown experiment 'telepathy'" in err and "memory" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_bad_experiment_option_keeps_old_results(tmp_path, capsys):
    with Run(tmp_path, "memory", {"earlier": "run"}) as run:  # an earlier run's
        run.summary({"earlier": "run"})
    old = {p.name: p.read_bytes() for p in (tmp_path / "memory").iterdir()}
    with pytest.raises(SystemExit) as exit_info:
        cli.main(
            ["experiment", "memory", "--quick", "--steps", "1", "--out", str(tmp_path)]
        )
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "--steps must all be >= 2" in err and "Traceback" not in err
    assert {p.name: p.read_bytes() for p in (tmp_path / "memory").iterdir()} == old
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["experiment", "memory", "--no-such-option"])
    assert exit_info.value.code == 2


@pytest.mark.parametrize(
    "argv, status",
    [(["--help"], 0), (["--steps", "0"], 2), (["--quick", "--steps", "1"], 2)],
    ids=["help", "bad option", "bad value"],
)
def test_the_script_is_the_command(tmp_path, argv, status):
    """``python experiments/NAME.py ...`` prints and exits as ``rnnbptt
    experiment NAME ...`` does."""
    script = Path(__file__).parent.parent / "experiments" / "memory.py"
    results = [
        subprocess.run(
            [sys.executable, *command, *argv, "--out", str(tmp_path)],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=tmp_path,
        )
        for command in ([str(script)], ["-m", "rnnbptt", "experiment", "memory"])
    ]
    by_script, by_command = [(r.returncode, r.stdout, r.stderr) for r in results]
    assert by_script == by_command
    assert by_script[0] == status and "rnnbptt experiment memory" in "".join(
        by_script[1:]
    )


@pytest.mark.parametrize(
    "content, text",
    [
        (None, "No such file"),
        ("date,value\n2020-01-01,1.0\n2020-01-02,abc\n2020-01-03,2.0\n", "abc"),
        ("date,value\n2020-01-01,1.0\n2020-01-02,2.0\n2020-01-03,3.0\n", "more steps"),
        ("when,value\n2020-01-01,1.0\n2020-01-02,2.0\n", "date"),
    ],
    ids=["missing file", "non-numeric", "too short", "no date column"],
)
def test_bad_user_data_is_a_one_line_error(tmp_path, capsys, content, text):
    path = tmp_path / "series.csv"
    if content is not None:
        path.write_text(content)
    argv = ["experiment", "forecast", "--quick", "--out", str(tmp_path / "out")]
    argv += ["--data", str(path), "--date-column", "date", "--value-column", "value"]
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert text.lower() in err.lower()
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out" / "forecast").exists()


def _run(args, **env):
    """``python ARGS`` in a fresh interpreter (JAX reads its flags at import),
    with only the JAX settings in ``env``."""
    full_env = {k: v for k, v in os.environ.items() if k not in cli.DEVICE_ENV}
    return subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**full_env, **env},
    )


def _device_rows(out: str) -> list[list[str]]:
    """The rows of the device table: id, platform, device_kind, process_index."""
    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.split()[:1] == ["id"])
    return [line.split() for line in lines[header + 1 :] if line.strip()]


def test_devices_lists_virtual_cpu_devices_in_a_subprocess():
    flags = "--xla_force_host_platform_device_count=3"
    result = _run(["-m", "rnnbptt", "devices"], JAX_PLATFORMS="cpu", XLA_FLAGS=flags)
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert "backend: cpu" in out
    assert "process: 0 of 1" in out
    assert "devices: 3 local, 3 global" in out
    assert "JAX_PLATFORMS=cpu" in out and f"XLA_FLAGS={flags}" in out
    rows = _device_rows(out)
    assert [row[0] for row in rows] == ["0", "1", "2"]
    assert all(row[1] == "cpu" and row[-1] == "0" for row in rows)


# Commands run in one interpreter on a backend it cannot start: JAX_PLATFORMS=cuda
# from the environment (no GPU here; jax 0.10 fails with a bare AssertionError),
# then tpu (a RuntimeError; the backend is not started yet, so it can change).
MISSING_BACKEND = """
import contextlib, io, json, sys
import jax
from rnnbptt import cli
out = sys.argv[1]
commands = [
    ["devices"],
    ["gradcheck", "-T", "2"],
    ["experiment", "memory", "--quick", "--out", out],
    ["bench", "--quick", "--out", out],
    ["tpu", "devices"],
]
said = []
for argv in commands:
    if argv[0] == "tpu":
        jax.config.update("jax_platforms", argv.pop(0))
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        try:
            status = cli.main(argv)
        except SystemExit as exit:
            status = exit.code
    said.append([argv, status, stdout.getvalue(), stderr.getvalue()])
json.dump(said, sys.__stdout__)
"""


def test_a_missing_backend_is_a_one_line_error_for_every_command(tmp_path):
    result = _run(["-c", MISSING_BACKEND, str(tmp_path / "out")], JAX_PLATFORMS="cuda")
    assert result.returncode == 0, result.stderr[-3000:]
    said = json.loads(result.stdout)
    progs = ["devices", "gradcheck", "experiment memory", "experiment benchmark"]
    progs += ["devices"]
    assert len(said) == len(progs)
    for (argv, status, out, err), prog, platform in zip(
        said, progs, ["cuda"] * 4 + ["tpu"], strict=True
    ):
        assert status == 2 and not out, (argv, out, err)
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
        assert err.startswith(
            f"rnnbptt {prog}: JAX_PLATFORMS={platform} asks for a backend JAX "
            "cannot start on this machine ("
        ), err
        assert err.strip().endswith("); unset JAX_PLATFORMS or set it to cpu"), err
    assert "(JAX sees no cuda device)" in said[0][3]
    assert "Unable to initialize backend 'tpu'" in said[-1][3]
    assert "JAX_PLATFORMS=''" not in said[-1][3]  # JAX's advice, replaced by ours
    assert not (tmp_path / "out").exists()  # no experiment started


def test_devices_in_process_matches_jax(capsys):
    assert cli.main(["devices"]) == 0
    out = capsys.readouterr().out
    devices = jax.devices()
    assert f"backend: {jax.default_backend()}" in out
    assert f"devices: {jax.local_device_count()} local, {len(devices)} global" in out
    rows = _device_rows(out)
    assert [int(row[0]) for row in rows] == [d.id for d in devices]
    assert [row[1] for row in rows] == [d.platform for d in devices]
    for name in cli.DEVICE_ENV:  # named exactly when set
        assert (f"{name}=" in out) == (name in os.environ)
