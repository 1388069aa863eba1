"""The forecasting experiment: quick mode, a user's own CSV, bad data."""

import importlib
import json
import sys

import numpy as np
import pandas as pd
import pytest

from rnnbptt import cli
from rnnbptt.data import data_path
from rnnbptt.runs import Run

NAME = "forecast"
QUICK_WEEKS = 520  # experiments/forecast.py QUICK["steps"]
TEST_FRACTION = 0.15


@pytest.fixture(scope="module")
def forecast():
    return importlib.import_module(f"rnnbptt.experiments.{NAME}")


def _persistence_rmse_from_csv() -> float:
    """Test-span persistence RMSE of the quick CO2 slice, straight from the CSV."""
    frame = pd.read_csv(data_path("co2.csv"))
    co2 = frame.set_index(pd.to_datetime(frame["date"]))["co2"]
    weekly = co2.reindex(pd.date_range(co2.index[0], co2.index[-1], freq="7D"))
    values = weekly.interpolate(method="time").to_numpy()[:QUICK_WEEKS]
    start = QUICK_WEEKS - round(QUICK_WEEKS * TEST_FRACTION)
    errors = values[start:] - values[start - 1 : -1]
    return float(np.sqrt(np.mean(errors**2)))


def _metrics(out):
    metrics = pd.read_csv(out / "metrics.csv")
    assert np.isfinite(metrics[["rmse", "mae"]].to_numpy()).all()
    assert (metrics["rmse"] > 0).all()
    assert (metrics["mae"] <= metrics["rmse"] + 1e-12).all()
    covered = metrics[["coverage_80", "coverage_95"]].to_numpy()
    assert ((covered >= 0) & (covered <= 1)).all()
    assert (covered[:, 0] <= covered[:, 1]).all()  # the 95% band holds the 80%
    return metrics.set_index("method")


def test_forecast_quick(tmp_path, capsys):
    assert cli.main(["experiment", NAME, "--quick", "--out", str(tmp_path)]) == 0
    out = tmp_path / NAME
    files = ("config.json", "metrics.csv", "history.csv", "summary.json")
    for name in (*files, "forecast_co2.png"):
        assert (out / name).stat().st_size > 0
    test = _metrics(out)
    assert set(test.index) == {"naive", "seasonal_naive", "ar", "lstm", "elman"}
    # the experiment's windows, spans and gap filling give the persistence error
    # computed here from the raw CSV
    assert test.loc["naive", "rmse"] == pytest.approx(
        _persistence_rmse_from_csv(), rel=1e-9
    )
    # a year-old value misses a year of trend (~0.8 ppm in the 1960s); a trained
    # network that reads each window relative to its level does not
    assert test.loc["lstm", "rmse"] < 0.7 * test.loc["seasonal_naive", "rmse"]
    assert test.loc["lstm", "rmse"] < 1.5 * test.loc["naive", "rmse"]
    # calibrated on the validation windows, the network's 80% interval is neither
    # a point nor everything on the test windows
    assert 0.6 <= test.loc["lstm", "coverage_80"] < 1

    summary = json.loads((out / "summary.json").read_text())["co2"]
    assert summary["gaps_filled"] > 0 and summary["steps"] == QUICK_WEEKS
    assert summary["season"] == 52 and summary["horizon"] == 1
    assert summary["windows"]["test"] == round(QUICK_WEEKS * TEST_FRACTION)
    validation = summary["windows"]["validation"]
    assert summary["networks"]["lstm"]["validation_windows"] == validation
    assert summary["winner"] in test.index
    assert isinstance(summary["lstm_beats_every_baseline"], bool)
    config = json.loads((out / "config.json").read_text())
    assert config["series_settings"]["co2"]["input_length"] > 0
    history = pd.read_csv(out / "history.csv")
    assert set(history["model"]) == {"lstm", "elman"}
    assert np.isfinite(history["val_loss"]).all()
    printed = capsys.readouterr().out
    assert "test_rmse" in printed and "seasonal_naive" in printed


def test_forecast_on_a_users_csv(tmp_path):
    rng = np.random.default_rng(0)
    steps = np.arange(300)
    wave = 10 + 3 * np.sin(2 * np.pi * steps / 25) + 0.1 * rng.normal(size=300)
    dates = pd.date_range("2020-01-01", periods=300, freq="D")
    path = tmp_path / "wave.csv"
    # an unusual date format, so that --date-format is needed
    pd.DataFrame({"day": dates.strftime("%Y/%d/%m"), "signal": wave}).to_csv(
        path, index=False
    )
    argv = ["experiment", NAME, "--quick", "--out", str(tmp_path / "runs")]
    argv += ["--data", str(path), "--date-column", "day", "--value-column", "signal"]
    argv += ["--date-format", "%Y/%d/%m"]
    assert cli.main([*argv, "--horizon", "2"]) == 0
    out = tmp_path / "runs" / NAME
    assert (out / "forecast_wave.png").stat().st_size > 0
    test = _metrics(out)
    # two steps of a sine with period 25 move it by ~1.5; a linear AR follows it
    assert test.loc["ar", "rmse"] < 0.5 * test.loc["naive", "rmse"]
    summary = json.loads((out / "summary.json").read_text())["wave"]
    assert summary["horizon"] == 2 and summary["season"] == 7  # daily data
    assert summary["gaps_filled"] == 0 and summary["steps"] == 300


def _contents(folder):
    """{relative path: bytes} of everything under ``folder``."""
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_forecast_missing_column_is_a_one_line_error(tmp_path, capsys):
    out = tmp_path / "runs"
    with Run(out, NAME, {}) as run:  # an earlier run's results, to be kept
        run.write_json("summary.json", {"earlier": "run"})
    previous = out / NAME
    before = _contents(previous)
    path = tmp_path / "series.csv"
    path.write_text("date,value\n2020-01-01,1\n2020-01-02,2\n2020-01-03,3\n")
    with pytest.raises(SystemExit) as exit_info:
        cli.main(
            [
                "experiment",
                NAME,
                "--out",
                str(out),
                "--data",
                str(path),
                "--value-column",
                "co2",
            ]
        )
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "'co2'" in err and "series.csv" in err
    assert sorted(p.name for p in out.iterdir()) == [NAME]
    assert _contents(previous) == before
    assert json.loads((previous / "summary.json").read_text()) == {"earlier": "run"}


def test_limit_options_parse_numbers_and_none_and_refuse_the_rest(forecast, capsys):
    from rnnbptt.experiment import experiment_parser

    parser = experiment_parser(NAME, forecast)
    args = parser.parse_args([])
    assert (args.max_gap, args.max_filled, args.max_steps) == (100, 0.5, 10_000_000)
    args = parser.parse_args(["--max-gap", "none", "--max-filled", "None"])
    assert (args.max_gap, args.max_filled) == (None, None)
    args = parser.parse_args(
        ["--max-gap", "0", "--max-filled", "1", "--max-steps", "5"]
    )
    assert (args.max_gap, args.max_filled, args.max_steps) == (0, 1.0, 5)
    for option, text in [
        ("--max-gap", "-1"),
        ("--max-gap", "2.5"),
        ("--max-filled", "1.5"),
        ("--max-filled", "nan"),
        ("--max-steps", "0"),
    ]:
        with pytest.raises(SystemExit) as exit_info:
            parser.parse_args([option, text])
        assert exit_info.value.code == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"argument {option}: must be" in err
        assert f"or none, got '{text}'" in err


def test_limit_options_reach_load_series(tmp_path, capsys):
    # 20 days with 3 missing in a row: 3 of 23 steps to fill, too few steps to
    # train on, so that a series the limits let through stops there (no training)
    days = pd.date_range("2020-01-01", periods=23, freq="D").delete([10, 11, 12])
    path = tmp_path / "gappy.csv"
    path.write_text(
        "date,v\n" + "".join(f"{d.date()},{i}\n" for i, d in enumerate(days))
    )
    argv = ["experiment", NAME, "--out", str(tmp_path / "runs"), "--data", str(path)]
    for limits, message in [
        (["--max-gap", "2"], "more than max_gap=2"),
        (["--max-filled", "0.1"], "13.04% of the steps would be filled"),
        (["--max-steps", "22"], "more than max_steps=22"),
        (["--max-gap", "3", "--max-filled", "none"], "fewer than 16"),
    ]:
        with pytest.raises(SystemExit) as exit_info:
            cli.main([*argv, *limits])
        assert exit_info.value.code == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "runs" / NAME).exists()


def test_statsforecast_columns_need_the_package_and_say_so(
    tmp_path, capsys, monkeypatch
):
    monkeypatch.setitem(sys.modules, "statsforecast", None)  # not installed
    argv = ["experiment", NAME, "--quick", "--statsforecast", "--out", str(tmp_path)]
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install statsforecast" in err
    assert not (tmp_path / NAME).exists()
