"""The rnnbptt command line."""

import pytest

from rnnbptt import cli


def test_gradcheck_prints_table_and_passes(capsys):
    code = cli.main(
        ["gradcheck", "-T", "4", "-B", "2", "-H", "3", "--dtype", "float64"]
    )
    out = capsys.readouterr().out
    assert code == 0
    for name in ("elman-tanh", "elman-relu", "lstm", "feedforward", "carry0.c"):
        assert name in out
    assert "19/19 gradients agree" in out


def test_gradcheck_table_flags_disagreement():
    table = cli.gradcheck_table(3, 2, 2, 3, ["float32"], seed=1)
    assert table["ok"].all()
    assert set(table["dtype"]) == {"float32"}
    tightened = (
        table["manual_autodiff_rel"] <= 0.0
    )  # what "ok" would be at zero tolerance
    assert not tightened.all()  # float32 rounding is really measured, not zeroed


@pytest.mark.parametrize(
    "argv", [["gradcheck", "-T", "0"], ["gradcheck", "--dtype", "int8"], ["nonsense"]]
)
def test_bad_arguments_exit_with_usage(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    assert exit_info.value.code == 2
    assert "usage" in capsys.readouterr().err


def test_unknown_experiment_is_a_one_line_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["experiment", "telepathy"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "unknown experiment 'telepathy'" in err and "memory" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_bad_experiment_option_keeps_old_results(tmp_path, capsys):
    assert cli.main(["experiment", "memory", "--quick", "--out", str(tmp_path)]) == 0
    old = (tmp_path / "memory" / "summary.json").read_bytes()
    with pytest.raises(SystemExit) as exit_info:
        cli.main(
            ["experiment", "memory", "--quick", "--steps", "1", "--out", str(tmp_path)]
        )
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "--steps must all be >= 2" in err and "Traceback" not in err
    assert (tmp_path / "memory" / "summary.json").read_bytes() == old
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["experiment", "memory", "--no-such-option"])
    assert exit_info.value.code == 2
