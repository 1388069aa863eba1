"""Forecasting real series with the package: LSTM and Elman forecasters against
the baselines a forecaster demands, on the same held-out windows.

Series: Mauna Loa weekly CO2 (``data/co2.csv``, 2284 weeks 1958-2001, 59 missing
weeks filled by linear interpolation in time; the primary series) and the yearly
sunspot numbers (``data/sunspots.csv``, 309 years 1700-2008). Each is split in time,
70/15/15 (``rnnbptt.data.forecasting_data``'s spans): the networks train on the
first 70%, stop early and calibrate their intervals on the next 15%, and the last
15% is the test span, scored once. Every window whose ``--horizon H`` targets lie in
the test span is forecast from the history before it (one origin per step).

Methods (``rnnbptt.forecast``), all on the same windows, from the same history:

* ``lstm`` and ``elman``: a :class:`~rnnbptt.forecast.Forecaster` (one recurrent
  layer of 32 units; each window normalised by its own level and the series'
  scale, calendar features, a direct H-step quantile head trained with the
  pinball loss by BPTT, ``--backward``), fitted once on the training span with
  ``val_size`` the validation span, then :meth:`~rnnbptt.forecast.Forecaster.
  backtest`: no refitting on the test span. CO2 windows read 52 weeks (a year),
  sunspot windows 22 years (two solar cycles);
* ``naive`` (persistence), ``seasonal_naive`` (52 weeks for CO2; the 11-year solar
  cycle for sunspots) and ``ar`` (AR(p) by least squares, p of least AIC up to
  ``max(season, 10)``): :class:`~rnnbptt.forecast.Baseline`, each refitted at
  every origin on all the history before it (an advantage the networks do not
  get), with their usual normal intervals.

Scores: RMSE and MAE in the series' units over every window and step, and the
share of the truth inside the 80% and 95% intervals.

Command:  rnnbptt experiment forecast        (or: python experiments/forecast.py)
          rnnbptt experiment forecast --data FILE.csv --date-column date
              --value-column value [--horizon N]   (a user's own series)
Expected (found, full run, seed 0, manual BPTT, horizon 1; test RMSE / MAE,
          coverage of the 80% interval):
          CO2 (ppm; 1546/343/343 windows, test 1995-06 to 2001-12): LSTM 0.380 /
            0.287 (0.81), Elman 0.386 / 0.290 (0.80), AR 0.394 / 0.303 (0.78),
            naive 0.501 / 0.398 (0.84), seasonal naive 1.893 / 1.699 (0.66).
          Sunspots (195/46/46 windows, test 1963-2008): Elman 16.5 / 13.1
            (0.76), LSTM 16.7 / 13.8 (0.83), AR 16.9 / 13.9 (0.74), naive 29.3 /
            22.5, seasonal naive 34.8 / 25.8.
          About 55 s on 2 CPU cores (AMD EPYC, GEMM 183 GFLOP/s).
          The same series before the rebuild on the package (a SequenceModel fitted
          on each window re-centred on its last value, no intervals; AR(p) fitted on
          the training span only, p by validation): CO2 LSTM 0.371, Elman 0.407,
          AR(52) 0.423; sunspots LSTM 15.7, Elman 16.7, AR(8) 18.7.
Quick:    --quick: the first 520 weeks of CO2 only, 26-week windows, 8 hidden
          units, 30 short epochs (seconds), for the tests.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np
import pandas as pd

import rnnbptt
import rnnbptt.data
from rnnbptt.data.series import MAX_FILLED, MAX_GAP, MAX_STEPS
from rnnbptt.experiment import positive_int_option
from rnnbptt.forecast import Baseline, Forecaster
from rnnbptt.forecast.features import season_length
from rnnbptt.forecast.metrics import coverage, mae, rmse

VALIDATION, TEST = 0.15, 0.15  # fractions of each series, the test span last
NETWORKS = ("lstm", "elman")
BASELINES = ("naive", "seasonal_naive", "ar")
LEVELS = (80, 95)
MIN_TRAIN_WINDOWS = 16  # below this there is next to nothing to learn from
DEFAULT_INPUT_LENGTH = 24  # user data whose frequency gives no season
ZOOM_STEPS = 60  # the plot's second panel: at least this many last test steps
SERIES = {
    "co2": {
        "file": "co2.csv",
        "column": "co2",
        "input_length": 52,  # one year of weeks
        "season": 52,  # from the weekly frequency
    },
    "sunspots": {
        "file": "sunspots.csv",
        "column": "sunspots",
        "input_length": 22,  # two solar cycles
        "season": 11,  # the solar cycle, not a calendar season
    },
    # held out: run with the defaults (season and window from the frequency),
    # never tuned on; --series airline nile elnino unemployment
    "airline": {"file": "airline.csv", "column": "passengers"},
    "nile": {"file": "nile.csv", "column": "flow"},
    "elnino": {"file": "elnino.csv", "column": "temperature"},
    "unemployment": {"file": "unemployment.csv", "column": "unemployment"},
}
FULL = {
    "series": ["co2", "sunspots"],
    "steps": None,  # the whole series
    "input_length": None,  # per series, from SERIES
    "forecaster": {"hidden_sizes": [32]},  # the rest: the Forecaster's defaults
}
QUICK = {
    "series": ["co2"],
    "steps": 520,  # the first ten years of CO2
    "input_length": 26,
    "forecaster": {
        "hidden_sizes": [8],
        "head_size": 16,
        "epochs": 30,
        "patience": 30,
        "steps_per_epoch": 8,
        "batch_size": 32,
        "learning_rate": 1e-2,
    },
}


# ------------------------------------------------------------------ one series


def forecast_series(name: str, series, spec: dict, size: dict, args) -> dict:
    """Every method on one series: metric rows, a summary, what the plot needs."""
    raw = series.values.iloc[: spec["steps"]]
    horizon, length = args.horizon, spec["input_length"]
    data = rnnbptt.data.forecasting_data(
        raw.to_numpy(), length, horizon, VALIDATION, TEST
    )
    train_span = data.spans[0]
    if len(data.train.x) < MIN_TRAIN_WINDOWS:
        raise ValueError(
            f"series {name!r}: {len(raw)} steps leave {len(data.train.x)} training "
            f"windows of {length} + {horizon} steps, fewer than {MIN_TRAIN_WINDOWS}; "
            "use a longer series or a shorter --input-length"
        )
    season = _season(name, spec, train_span.stop)
    df = pd.DataFrame({"unique_id": name, "ds": raw.index, "y": raw.to_numpy()})
    windows = len(data.test.x)
    backtests, details, histories = {}, {}, []
    for method in BASELINES:
        if method == "seasonal_naive" and season == 1:
            continue  # one step back: the naive forecast again
        baseline = Baseline(method, horizon, season_length=season, levels=LEVELS)
        backtests[method] = baseline.cross_validation(df, windows, step_size=1)
    if args.statsforecast:
        backtests |= statsforecast_backtests(df, series.freq, horizon, windows, season)
    for kind in NETWORKS:
        backtests[kind], details[kind], history = _network(kind, df, data, size, args)
        epochs = range(1, len(history) + 1)
        histories.append(
            pd.DataFrame({"series": name, "model": kind, "epoch": epochs}).assign(
                val_loss=history
            )
        )
    rows = [{"series": name, "method": m, **_scores(cv)} for m, cv in backtests.items()]
    test = {r["method"]: r for r in rows}
    best_baseline = min(test[m]["rmse"] for m in test if m not in NETWORKS)
    summary = {
        "series": name,
        "frequency": series.freq,
        "gaps_filled": series.filled,
        "steps": len(raw),
        "first_date": str(raw.index[0].date()),
        "last_date": str(raw.index[-1].date()),
        "spans": {
            k: [s.start, s.stop]
            for k, s in zip(("train", "validation", "test"), data.spans, strict=True)
        },
        "windows": {
            "train": len(data.train.x),
            "validation": len(data.validation.x),
            "test": windows,
        },
        "input_length": length,
        "horizon": horizon,
        "season": season,
        "networks": details,
        "test": rows,
        "winner": min(test, key=lambda m: test[m]["rmse"]),
        **{
            f"{kind}_beats_every_baseline": bool(test[kind]["rmse"] < best_baseline)
            for kind in NETWORKS
        },
    }
    return {
        "rows": rows,
        "history": pd.concat(histories, ignore_index=True),
        "summary": summary,
        "plot": {
            "backtests": backtests,
            "rmse": {m: test[m]["rmse"] for m in test},
            "season": season,
            "column": series.name,
            "horizon": horizon,
        },
    }


def _network(kind: str, df: pd.DataFrame, data, size: dict, args):
    """A Forecaster fitted on the training span (stopped early on the validation
    span) and backtested over every test window, without refitting; returns
    ``(backtest, details, the validation loss by epoch)``."""
    started = time.perf_counter()
    _, validation_span, test_span = data.spans
    model = Forecaster(
        data.train.y.shape[1],
        data.train.x.shape[1],
        kind,
        val_size=validation_span.stop - validation_span.start,
        levels=LEVELS,
        backward=args.backward,
        seed=args.seed,
        **size["forecaster"],
    ).fit(df.iloc[: test_span.start])
    backtest = model.backtest(df, len(data.test.x), step_size=1)
    history = model.fitted.history
    details = {
        "epochs": len(history),
        "best_epoch": int(np.argmin(history)) + 1,
        "validation_windows": model.fitted.validation_windows,
        "seconds": round(time.perf_counter() - started, 2),
    }
    return backtest, details, history


STATSFORECAST = {"auto_ets": "AutoETS", "auto_arima": "AutoARIMA"}


def statsforecast_backtests(df, freq, horizon, windows, season) -> dict:
    """statsforecast's AutoETS and AutoARIMA on the same windows (an optional
    extra: ``pip install statsforecast``), fitted once on the history before the
    first window and then fed the later history (``refit=False``), as the
    networks are."""
    StatsForecast, AutoARIMA, AutoETS = _statsforecast()
    models = [AutoETS(season_length=season), AutoARIMA(season_length=season)]
    cv = StatsForecast(models=models, freq=freq, n_jobs=1).cross_validation(
        df=df, h=horizon, n_windows=windows, step_size=1, level=list(LEVELS),
        refit=False,
    )  # fmt: skip
    out = {}
    for method, name in STATSFORECAST.items():
        columns = {name: "forecast"} | {
            f"{name}-{side}-{level}": f"{side}-{level}"
            for side in ("lo", "hi")
            for level in LEVELS
        }
        frame = cv[["unique_id", "ds", "cutoff", "y", *columns]]
        out[method] = frame.rename(columns=columns)
    return out


def _statsforecast():
    """statsforecast's ``StatsForecast``, ``AutoARIMA`` and ``AutoETS``, or a clear
    error when the optional package is not installed."""
    try:
        from statsforecast import StatsForecast
        from statsforecast.models import AutoARIMA, AutoETS
    except ImportError as error:
        raise ValueError(
            "--statsforecast needs the statsforecast package (an optional extra): "
            "pip install statsforecast"
        ) from error
    return StatsForecast, AutoARIMA, AutoETS


def _season(name: str, spec: dict, train_steps: int) -> int:
    """The seasonal naive's period: the spec's, or 1 (none) when it does not fit
    in the training span (an error when the user gave it)."""
    season = spec["season"]
    if season > train_steps:
        if spec["season_given"]:
            raise ValueError(
                f"series {name!r}: --season {season} is longer than the training "
                f"span ({train_steps} steps)"
            )
        return 1
    return season


def _scores(cv: pd.DataFrame) -> dict:
    """RMSE and MAE over every window and step; the intervals' coverage."""
    y, forecast = cv["y"].to_numpy(), cv["forecast"].to_numpy()
    out = {"rmse": float(rmse(y, forecast)), "mae": float(mae(y, forecast))}
    for level in LEVELS:
        inside = coverage(y, cv[f"lo-{level}"].to_numpy(), cv[f"hi-{level}"].to_numpy())
        out[f"coverage_{level}"] = float(inside)
    return out


# ------------------------------------------------------------------------- CLI


def add_arguments(parser) -> None:
    parser.add_argument(
        "--series", nargs="+", choices=sorted(SERIES), help="shipped series to run"
    )
    parser.add_argument("--data", help="a CSV of your own series instead")
    parser.add_argument("--date-column", help="with --data (default: date)")
    parser.add_argument(
        "--value-column", help="with --data (default: the only other column)"
    )
    parser.add_argument(
        "--date-format",
        help="with --data: e.g. %%d/%%m/%%Y, or ISO8601 or mixed for dates written "
        "in several formats (default: inferred)",
    )
    limits = parser.add_argument_group(
        "what the series may fill",
        "a series beyond a limit is an error naming its suspicious dates (a "
        "mistyped year, say); none lifts the limit",
    )
    limits.add_argument(
        "--max-gap",
        type=_limit_option(int, 0),
        default=MAX_GAP,
        metavar="N|none",
        help=f"most steps in a row without a date to fill (default {MAX_GAP})",
    )
    limits.add_argument(
        "--max-filled",
        type=_limit_option(float, 0, 1),
        default=MAX_FILLED,
        metavar="SHARE|none",
        help=f"largest share of the steps to fill (default {MAX_FILLED})",
    )
    limits.add_argument(
        "--max-steps",
        type=_limit_option(int, 1),
        default=MAX_STEPS,
        metavar="N|none",
        help=f"most steps of the regular time grid (default {MAX_STEPS:,})",
    )
    parser.add_argument(
        "--horizon", type=positive_int_option, default=1, help="steps ahead, H"
    )
    parser.add_argument(
        "--input-length", type=positive_int_option, help="steps each window reads"
    )
    parser.add_argument(
        "--season",
        type=positive_int_option,
        help="the baselines' seasonal period (steps)",
    )
    parser.add_argument(
        "--statsforecast",
        action="store_true",
        help="add statsforecast's AutoETS and AutoARIMA "
        "(pip install 'rnnbptt[compare]')",
    )


def _limit_option(kind: type, least: float, most: float = math.inf):
    """An ``argparse`` type for a limit of ``load_series``: a ``kind`` number in
    [``least``, ``most``], or ``none`` (None: no limit)."""
    what = (
        f"a number in [{least}, {most}]" if kind is float else f"an integer >= {least}"
    )

    def parse(text: str):
        if text.strip().lower() == "none":
            return None
        try:
            value = kind(text)
        except ValueError:
            value = math.nan
        if not least <= value <= most:
            raise argparse.ArgumentTypeError(f"must be {what} or none, got {text!r}")
        return value

    return parse


def _specs(args, size: dict) -> dict:
    """{name: (Series, spec)} for the series to run, after checking the options."""
    if args.statsforecast:
        _statsforecast()  # missing: said now, before any training
    if args.data is None:
        for option in ("date_column", "value_column", "date_format"):
            if getattr(args, option) is not None:
                flag = "--" + option.replace("_", "-")
                raise ValueError(f"{flag} goes with --data FILE.csv")
        specs = {}
        for name in args.series or size["series"]:
            shipped = SERIES[name]
            series = rnnbptt.data.load_series(
                rnnbptt.data.data_path(shipped["file"]),
                "date",
                shipped["column"],
                **_limits(args),
            )
            spec = {**_from_frequency(series), **shipped, "steps": size["steps"]}
            if size["input_length"] is not None:
                spec["input_length"] = size["input_length"]
            specs[name] = (series, spec)
    else:
        if args.series:
            raise ValueError("--series chooses shipped series; drop it with --data")
        series = rnnbptt.data.load_series(
            args.data,
            args.date_column or "date",
            args.value_column,
            date_format=args.date_format,
            **_limits(args),
        )
        spec = {"file": str(args.data), "column": series.name, "steps": None}
        specs = {Path(args.data).stem: (series, {**_from_frequency(series), **spec})}
    for _, spec in specs.values():
        spec["season_given"] = args.season is not None
        spec["season"] = args.season or spec["season"]
        spec["input_length"] = args.input_length or spec["input_length"]
    return specs


def _from_frequency(series) -> dict:
    """What a series without settings of its own reads: the frequency's season
    (one season a window; 24 steps without one), within a quarter of the
    training span so that a short series leaves training windows."""
    season = season_length(series.freq)
    length = season if season > 1 else DEFAULT_INPUT_LENGTH
    train_steps = round(len(series.values) * (1 - VALIDATION - TEST))
    return {"season": season, "input_length": max(2, min(length, train_steps // 4))}


def _limits(args) -> dict:
    """What ``load_series`` may fill, from --max-gap, --max-filled, --max-steps."""
    return {
        "max_gap": args.max_gap,
        "max_filled": args.max_filled,
        "max_steps": args.max_steps,
    }


def run(args, run) -> pd.DataFrame:
    size = QUICK if args.quick else FULL
    specs = _specs(args, size)
    run.write_json(
        "config.json",
        {
            **run.config,
            "size": size,
            "series_settings": {
                name: {k: v for k, v in spec.items() if k != "season_given"}
                for name, (_, spec) in specs.items()
            },
        },
    )
    results = {
        name: forecast_series(name, series, spec, size, args)
        for name, (series, spec) in specs.items()
    }
    metrics = pd.DataFrame([r for res in results.values() for r in res["rows"]])
    run.metrics(metrics)
    history = pd.concat([res["history"] for res in results.values()])
    history.to_csv(run.path("history.csv"), index=False)
    run.summary({name: res["summary"] for name, res in results.items()})
    for name, res in results.items():
        _plot(run, name, res["plot"])
    return metrics.rename(columns={"rmse": "test_rmse", "mae": "test_mae"})


def _plot(run, name: str, plot: dict) -> None:
    """The test span: the truth, every method's last forecast step, and the LSTM's
    80% interval; a second panel zooms in on the end."""
    plt = rnnbptt.runs.pyplot()

    backtests = plot["backtests"]
    last = {m: cv.groupby("cutoff").tail(1) for m, cv in backtests.items()}
    lstm = last["lstm"]
    dates, truth = lstm["ds"].to_numpy(), lstm["y"].to_numpy()
    zoom = max(2 * plot["season"], ZOOM_STEPS)  # a closer look at the end
    parts = [slice(None)] + ([slice(-zoom, None)] if zoom < len(dates) else [])
    fig, axes = plt.subplots(len(parts), 1, figsize=(9, 3.5 * len(parts)))
    axes = np.atleast_1d(axes)
    styles = {
        "naive": {"color": "C7", "linestyle": ":"},
        "seasonal_naive": {"color": "C8", "linestyle": "--"},
        "ar": {"color": "C2"},
        "auto_ets": {"color": "C4", "linestyle": "-."},
        "auto_arima": {"color": "C9", "linestyle": "-."},
        "elman": {"color": "C1"},
        "lstm": {"color": "C3"},
    }
    for ax, part in zip(axes, parts, strict=True):
        ax.fill_between(
            dates[part],
            lstm["lo-80"].to_numpy()[part],
            lstm["hi-80"].to_numpy()[part],
            color="C3",
            alpha=0.15,
            label="lstm 80%",
        )
        ax.plot(dates[part], truth[part], color="black", linewidth=2, label="truth")
        for method, cv in last.items():
            ax.plot(
                dates[part],
                cv["forecast"].to_numpy()[part],
                linewidth=1,
                label=f"{method} (RMSE {plot['rmse'][method]:.3g})",
                **styles[method],
            )
    ahead = "" if plot["horizon"] == 1 else f", {plot['horizon']} steps ahead"
    axes[0].set_title(f"{name}: forecasts on the test span against the truth{ahead}")
    if len(parts) > 1:
        axes[1].set_title(f"the last {zoom} steps")
    for ax in axes:
        ax.set_ylabel(plot["column"])
    axes[0].legend(fontsize=8, ncol=2)
    fig.tight_layout()
    run.figure(fig, f"forecast_{name}.png")


if __name__ == "__main__":
    import sys

    from rnnbptt.experiment import main

    sys.exit(main(sys.modules[__name__]))
