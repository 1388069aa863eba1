"""``rnnbptt forecast``: from a CSV to dated forecasts, a model file, a plot and
a backtest beside the baselines; ``--load`` forecasts without training."""

import numpy as np
import pandas as pd
import pytest

from rnnbptt import cli
from rnnbptt.forecast import Forecaster, command, seasonal_naive

SMALL = ["--epochs", "2", "--n-models", "1", "--h", "6", "--input-size", "12"]


@pytest.fixture(scope="module")
def csv(tmp_path_factory):
    """Two daily series of different lengths and starts, the file's own names."""
    rng = np.random.default_rng(0)
    parts = []
    for name, n, start in (("north", 60, "2024-01-01"), ("south", 45, "2024-02-10")):
        t = np.arange(n)
        y = 20 + 5 * np.sin(2 * np.pi * t / 7) + rng.normal(0, 1, n)
        ds = pd.date_range(start, periods=n, freq="D")
        parts.append(pd.DataFrame({"shop": name, "day": ds, "sales": y}))
    path = tmp_path_factory.mktemp("data") / "sales.csv"
    pd.concat(parts).to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def fitted(csv, tmp_path_factory):
    out = tmp_path_factory.mktemp("fit")
    argv = ["forecast", "--data", str(csv), "--date-column", "day"]
    argv += ["--value-column", "sales", "--id-column", "shop", "--backtest", "2"]
    assert cli.main([*argv, *SMALL, "--val-size", "8", "--out", str(out)]) == 0
    return argv, out


def test_writes_dated_forecasts_under_the_files_names(fitted, csv):
    _, out = fitted
    forecast = pd.read_csv(out / "forecast.csv", parse_dates=["day"])
    assert list(forecast.columns[:3]) == ["shop", "day", "forecast"]
    assert {"lo-80", "hi-80", "lo-95", "hi-95"} <= set(forecast.columns)
    data = pd.read_csv(csv, parse_dates=["day"])
    for shop, part in forecast.groupby("shop"):
        last = data.loc[data["shop"] == shop, "day"].max()
        assert list(part["day"]) == list(pd.date_range(last, periods=7)[1:])
        assert (part["lo-95"] <= part["lo-80"]).all()
        assert (part["lo-80"] <= part["forecast"]).all()
        assert (part["hi-80"] <= part["hi-95"]).all()
    assert (out / "forecast.png").stat().st_size > 0


def test_the_model_file_is_the_model(fitted):
    _, out = fitted
    model = Forecaster.load(out / "model.ckpt")
    assert model.config.h == 6 and model.config.input_size == 12
    assert model.config.val_size == 8  # --val-size reaches the Forecaster
    forecast = pd.read_csv(out / "forecast.csv")
    np.testing.assert_array_equal(
        model.predict()["forecast"].to_numpy(), forecast["forecast"].to_numpy()
    )


def test_backtest_scores_the_network_beside_the_baselines(fitted, csv):
    _, out = fitted
    table = pd.read_csv(out / "backtest.csv").set_index("method")
    assert list(table.index) == [
        "network",
        "naive",
        "seasonal_naive",
        "naive2",
        "ar",
        "ensemble",
    ]
    # seasonal naive's scores by hand, on the same two windows of 6 days
    data = pd.read_csv(csv)
    errors = []
    for _, part in data.groupby("shop"):
        y = part["sales"].to_numpy()
        for end in (len(y) - 12, len(y) - 6):
            errors.append(y[end : end + 6] - seasonal_naive(y[:end], 6, 7))
    errors = np.array(errors)
    assert table.loc["seasonal_naive", "mae"] == pytest.approx(np.abs(errors).mean())
    rmse = np.sqrt((errors**2).mean(axis=1)).mean()
    assert table.loc["seasonal_naive", "rmse"] == pytest.approx(rmse)
    assert np.isfinite(table.to_numpy()).all()


def test_load_forecasts_without_training(fitted, tmp_path, capsys):
    argv, out = fitted
    again = tmp_path / "again"
    code = cli.main(
        [*argv[:-2], "--load", str(out / "model.ckpt"), "--out", str(again)]
    )
    assert code == 0
    assert not (again / "model.ckpt").exists()
    first, second = (pd.read_csv(d / "forecast.csv") for d in (out, again))
    pd.testing.assert_frame_equal(first, second, check_exact=True)


@pytest.mark.parametrize(
    "change, words",
    [
        ({"--date-column": "when"}, "has no column 'when'; its columns are"),
        ({"--data": "missing.csv"}, "--data: no file"),
        ({"--value-column": "shop"}, "rnnbptt forecast: "),
        (
            {"--date-column": "shop"},
            "line 2 (data row 1): column 'shop' must hold dates, got 'north'",
        ),
    ],
)
def test_bad_input_is_one_line_and_keeps_what_was_written(
    fitted, change, words, capsys
):
    argv, out = fitted
    before = (out / "forecast.csv").read_bytes()
    argv = list(argv)
    for option, value in change.items():
        argv[argv.index(option) + 1] = value
    with pytest.raises(SystemExit) as stop:
        cli.main([*argv, *SMALL, "--out", str(out)])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert words in err and len(err.strip().splitlines()) == 1
    assert (out / "forecast.csv").read_bytes() == before


def test_empty_cells_are_refused_or_interpolated(tmp_path):
    path = tmp_path / "gaps.csv"
    path.write_text(
        "day,sales\n2024-01-01,1\n2024-01-02,\n2024-01-03,4\n2024-01-04,x\n"
    )
    argv = ["forecast", "--data", str(path), "--date-column", "day"]
    args = cli.build_parser().parse_args([*argv, "--value-column", "sales"])
    with pytest.raises(ValueError, match=r"row 3 of gaps.csv holds nothing .*\(2 such"):
        command.read_series(args)
    args.missing = "interpolate"
    df = command.read_series(args)
    np.testing.assert_array_equal(df["y"], [1.0, 2.5, 4.0, 4.0])  # the end: nearest
    assert list(df["unique_id"].unique()) == ["sales"]


def test_dates_that_read_day_or_month_first_are_asked_about(tmp_path):
    path = tmp_path / "ambiguous.csv"
    rows = [f"{d:02d}/03/2024,{d}" for d in range(1, 13)]  # 01/03 .. 12/03
    path.write_text("day,sales\n" + "\n".join(rows) + "\n")
    argv = ["forecast", "--data", str(path), "--date-column", "day"]
    args = cli.build_parser().parse_args([*argv, "--value-column", "sales"])
    with pytest.raises(ValueError, match=r"\(month first\) or .* \(day first\)"):
        command.read_series(args)
