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
