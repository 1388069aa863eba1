"""``rnnbptt forecast``: a CSV of one or many series in, dated forecasts out.

    rnnbptt forecast --data sales.csv --date-column date --value-column units \\
        --id-column store --h 12 --backtest 3 --out runs/sales

fits a :class:`~rnnbptt.forecast.Forecaster` on every series and writes
``OUT/forecast.csv`` (the ``h`` steps after each series' end, with dates and
``lo-L``/``hi-L`` intervals, under the file's own column names),
``OUT/model.ckpt`` (the whole model, for ``--load``), ``OUT/forecast.png``
(history, forecast and bands); with ``--backtest K``, ``OUT/backtest.csv``, the
last ``K`` windows of ``h`` steps forecast from the data before each (the
network trained once, on the data before the first), scored beside the
baselines on the same windows. ``--load MODEL`` forecasts from a saved model
without training, after the history in ``--data``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from ..data.dates import _bad_date, _parse_dates
from ..data.files import _read_csv, _require_columns
from ..experiment import positive_int_option
from .baseline import METHODS, Baseline
from .features import season_length
from .forecaster import Forecaster
from .metrics import coverage, mae, rmse, smape
from .panel import DS, ID, Y, shown, to_panel

PROG = "rnnbptt forecast"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    data = parser.add_argument_group("data")
    data.add_argument("--data", required=True, help="a CSV file, one row a step")
    data.add_argument("--date-column", required=True, help="dates or integer steps")
    data.add_argument("--value-column", required=True, help="the values to forecast")
    data.add_argument("--id-column", help="which series a row belongs to")
    data.add_argument("--freq", help="pandas frequency (default: inferred)")
    data.add_argument(
        "--missing",
        choices=["error", "interpolate"],
        default="error",
        help="empty or non-numeric values: refuse them, or interpolate linearly",
    )
    model = parser.add_argument_group("model")
    model.add_argument("--h", type=positive_int_option, help="steps to forecast")
    model.add_argument("--input-size", type=positive_int_option)
    model.add_argument("--level", type=float, nargs="+", default=[80.0, 95.0])
    model.add_argument("--cell", default="lstm", choices=["lstm", "gru", "elman"])
    model.add_argument("--n-models", type=positive_int_option, default=3)
    model.add_argument("--epochs", type=positive_int_option, default=100)
    model.add_argument(
        "--val-size",
        type=positive_int_option,
        help="last steps of each series held out for early stopping and the "
        "intervals' calibration (default: h)",
    )
    model.add_argument("--seed", type=int, default=0)
    model.add_argument("--load", help="a model file from an earlier run: no training")
    out = parser.add_argument_group("output")
    out.add_argument(
        "--backtest",
        type=positive_int_option,
        metavar="K",
        help="score the last K windows beside the baselines (trains, even with --load)",
    )
    out.add_argument("--out", default="runs/forecast-cli", help="results folder")


def read_series(args) -> pd.DataFrame:
    """The CSV in the long format (``unique_id``, ``ds``, ``y``), checked; its
    dates read as ``rnnbptt.data.load_series`` reads them (03/04/2020, day or
    month first, is asked about, not guessed)."""
    path = Path(args.data)
    if not path.is_file():
        raise ValueError(f"--data: no file {str(path)!r}")
    # strings first, indexed by line (the header is line 1), as load_series does
    frame = _read_csv("--data", path, dtype=str, skip_blank_lines=False)
    frame.index = pd.RangeIndex(2, len(frame) + 2)
    frame = frame.dropna(how="all")
    wanted = [args.date_column, args.value_column]
    _require_columns(
        "--data", path, frame, wanted + [args.id_column] * bool(args.id_column)
    )
    ids = frame[args.id_column] if args.id_column else args.value_column
    df = pd.DataFrame({ID: ids, DS: _dates(path, frame, args.date_column)})
    raw = frame[args.value_column]
    df[Y] = pd.to_numeric(raw.str.strip(), errors="coerce").astype(np.float64)
    bad = ~np.isfinite(df[Y].to_numpy())
    if bad.any() and args.missing == "error":
        line = df.index[bad][0]
        raise ValueError(
            f"--value-column {args.value_column!r}: row {line} of {path.name} "
            f"holds {_cell(raw.loc[line])}, not a number "
            f"({int(bad.sum())} such rows; --missing interpolate fills them)"
        )
    if bad.any():
        df[Y] = df[Y].where(~bad).groupby(df[ID], sort=False).transform(_interpolated)
    return df.reset_index(drop=True)


def _dates(path: Path, frame: pd.DataFrame, column: str) -> pd.Series:
    """Integer steps, or dates parsed as load_series parses them."""
    raw = frame[column].str.strip()
    if raw.notna().all() and raw.str.fullmatch(r"[+-]?\d+").all():
        return raw.astype(np.int64)
    dates = _parse_dates("--date-column", path, raw, None)
    if dates.isna().any():
        line = dates.index[dates.isna()][0]
        raise ValueError(_bad_date("--date-column", path, raw, line, column, None))
    return dates


def _cell(value) -> str:
    """A CSV cell as its writer would name it."""
    return "nothing (an empty cell)" if pd.isna(value) else shown(value)


def _interpolated(y: pd.Series) -> pd.Series:
    """Missing values filled linearly between their neighbours (the nearest at
    the ends)."""
    return y.interpolate(limit_direction="both")


def default_sizes(args, df: pd.DataFrame, season: int) -> tuple[int, int]:
    """(h, input_size): given, else one season (10 steps without one) and the
    larger of 2 h and two seasons, within what the shortest series allows."""
    h = args.h or (season if season > 1 else 10)
    shortest = int(df.groupby(ID).size().min())
    input_size = args.input_size or max(2 * h, 2 * season)
    return h, max(1, min(input_size, shortest - 2 * h))


def backtest_table(model, df, k: int, season: int) -> pd.DataFrame:
    """Mean scores over the last ``k`` windows of every series: the model and
    each baseline, on the same windows."""
    h, levels = model.config.h, model.config.levels
    rows = {"network": model.cross_validation(df, n_windows=k, refit=False)}
    for method in METHODS:
        base = Baseline(method, h, season_length=season, levels=levels)
        rows[method] = base.cross_validation(df, n_windows=k)
    return pd.DataFrame(
        {name: _scores(cv, levels) for name, cv in rows.items()}
    ).T.rename_axis("method")


def _scores(cv: pd.DataFrame, levels) -> dict:
    windows = [part for _, part in cv.groupby([ID, "cutoff"], sort=False)]
    y = np.stack([w[Y].to_numpy() for w in windows])
    f = np.stack([w["forecast"].to_numpy() for w in windows])
    out = {
        "rmse": rmse(y, f).mean(),
        "mae": mae(y, f).mean(),
        "smape": smape(y, f).mean(),
    }
    for level in levels:
        lo = np.stack([w[f"lo-{level:g}"].to_numpy() for w in windows])
        hi = np.stack([w[f"hi-{level:g}"].to_numpy() for w in windows])
        out[f"coverage-{level:g}"] = coverage(y, lo, hi).mean()
    return out


def run(args) -> int:
    """Fits (or loads), forecasts, plots and backtests; see the module docstring."""
    df = read_series(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.load:
        model = Forecaster.load(args.load)
        forecast = model.predict(h=args.h, df=df)
    else:
        model = _fitted(args, df)
        model.save(out / "model.ckpt")
        forecast = model.predict()
    season = model.config.season(model.freq)
    written = _user_columns(forecast, args)
    _write_csv(written, out / "forecast.csv")
    plot(df, forecast, model.config.levels, out / "forecast.png")
    print(f"{forecast[ID].nunique()} series, {len(forecast)} forecast rows:")
    print(written.head(model.config.h).to_string(index=False))
    if args.backtest:
        table = backtest_table(model, df, args.backtest, season)
        _write_csv(table.reset_index(), out / "backtest.csv")
        print(f"\nbacktest, last {args.backtest} windows of {model.config.h} steps:")
        print(table.to_string(float_format=lambda v: f"{v:.4g}"))
    print(
        f"\nwrote {out}/: forecast.csv, forecast.png" + ", model.ckpt" * (not args.load)
    )
    return 0


def _fitted(args, df: pd.DataFrame) -> Forecaster:
    panel = to_panel(df, args.freq, (), PROG)
    season = season_length(panel.freq)
    h, input_size = default_sizes(args, df, season)
    model = Forecaster(
        h,
        input_size,
        cell=args.cell,
        levels=tuple(args.level),
        n_models=args.n_models,
        epochs=args.epochs,
        seed=args.seed,
        val_size=args.val_size,
    )
    print(
        f"fitting {args.cell} on {len(panel.ids)} series ({panel.freq}, season "
        f"{season}): h={h}, input_size={input_size}, {args.n_models} networks"
    )
    return model.fit(df, freq=args.freq)


def _user_columns(forecast: pd.DataFrame, args) -> pd.DataFrame:
    """The forecast under the file's own names for the id and date columns."""
    if not args.id_column:
        forecast = forecast.drop(columns=[ID])
    return forecast.rename(columns={ID: args.id_column, DS: args.date_column})


def _write_csv(frame: pd.DataFrame, path: Path) -> None:
    """Whole or not at all: a failed write leaves the earlier file."""
    partial = path.with_name(f".{path.name}.partial")
    frame.to_csv(partial, index=False)
    partial.replace(path)


def plot(df: pd.DataFrame, forecast: pd.DataFrame, levels, path: Path) -> None:
    """History (the last four horizons), forecast and bands, a panel a series
    (the first six)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(forecast[ID].unique())[:6]
    fig, axes = plt.subplots(
        len(names), 1, figsize=(9, 2.6 * len(names)), squeeze=False
    )
    h = int((forecast[ID] == names[0]).sum())
    for ax, name in zip(axes[:, 0], names, strict=True):
        past = df[df[ID] == name].tail(4 * h)
        ahead = forecast[forecast[ID] == name]
        ax.plot(past[DS], past[Y], color="black", lw=1, label="history")
        for level in sorted(levels, reverse=True):
            lo, hi = ahead[f"lo-{level:g}"], ahead[f"hi-{level:g}"]
            ax.fill_between(ahead[DS], lo, hi, alpha=0.25, label=f"{level:g}%")
        ax.plot(ahead[DS], ahead["forecast"], color="C3", lw=1.5, label="forecast")
        ax.set_title(str(name), fontsize=9)
    axes[0, 0].legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    partial = path.with_name(f".{path.name}.partial.png")
    fig.savefig(partial, dpi=110)
    plt.close(fig)
    partial.replace(path)
