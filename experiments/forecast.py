"""Forecasting real series: LSTM and Elman against the baselines a forecaster demands.

Series: Mauna Loa weekly CO2 (``data/co2.csv``, 2284 weeks 1958-2001, 59 missing
weeks filled by linear interpolation in time; the primary series) and the yearly
sunspot numbers (``data/sunspots.csv``, 309 years 1700-2008). Each is split in time
(``rnnbptt.data.forecasting_data``: 70/15/15, the last 15% is the held-out test span,
the same for every method), standardised with a scaler fitted on the training span
alone, and cut into sliding windows: CO2 reads 52 weeks (one year), sunspots 22
years (two solar cycles). ``--horizon H`` forecasts the next H steps at once.

Methods, all scored on the same test targets, RMSE and MAE in the series' own units:

* ``persistence``: every step ahead is the last observed value;
* ``seasonal_naive``: the value one season earlier (52 weeks for CO2, inferred from
  the weekly frequency; 11 years, the solar cycle, for sunspots); for steps beyond
  one season, whole seasons earlier;
* ``ar``: linear AR(p) with intercept, fitted by least squares (``numpy.linalg.
  lstsq``) on the training span, one regression per step ahead (direct forecasts);
  p is chosen by validation RMSE from ``AR_LAGS`` up to the input length, so the
  AR reads at most what the networks read;
* ``lstm`` and ``elman``: ``rnnbptt.SequenceModel`` (one recurrent layer, a
  many-to-one head with H outputs: the direct H-step forecast as one vector) trained
  by ``rnnbptt.fit`` with BPTT (``--backward``), Adam, MSE on scaled targets, early
  stopping on the validation loss (the best epoch's parameters are kept).

What the networks predict (``--target``). ``difference``, the default: each window
is re-centred on its last input value, the network reads ``(x - x_last) / s_in`` and
predicts ``(y - x_last) / s_out``, and the forecast is ``x_last + s_out * output``
mapped back to the series' units; ``s_in``, ``s_out`` are the standard deviations of
those quantities over the training windows. A trending series (CO2 rises ~40 ppm
from the training to the test span, out of the range the scaler saw) thus looks the
same to the network at any level. ``level`` reads and predicts the scaled values as
they are; on sunspots it did worse on the validation span (LSTM RMSE 20.3 against
18.6, Elman 20.9 against 18.0), so ``difference`` is used there too. Choices were
made on the validation span; the test span is scored once, at the end.

Command:  rnnbptt experiment forecast        (or: python experiments/forecast.py)
          rnnbptt experiment forecast --data FILE.csv --date-column date
              --value-column value [--horizon N]   (a user's own series)
Expected (found, full run, seed 0, manual BPTT, horizon 1; test RMSE / MAE):
          CO2 (ppm; 1546/343/343 windows, test 1995-06 to 2001-12):
            persistence 0.501 / 0.398, seasonal naive 1.893 / 1.699 (a year of
            trend behind), AR(52) 0.423 / 0.327, LSTM 0.371 / 0.282, Elman
            0.407 / 0.308: the LSTM beats every baseline; so does the Elman,
            but only AR(p) with p <= 52 (the AR reads at most what the
            networks read): chosen on validation from a longer grid, AR(78)
            scores 0.395, between the two.
            (0.377 / 0.285 and 0.407 / 0.313 before the weight gradients took a
            transposed copy of their operand: float32 rounding, 2026-11-30.)
          Sunspots (195/46/46 windows, test 1963-2008): persistence 29.3 / 22.5,
            seasonal naive 34.8 / 25.8, AR(8) 18.7 / 15.5, LSTM 15.7 / 12.8,
            Elman 16.7 / 13.4.
          About 16 s on 2 quiet CPU cores.
          Also seen (before the one-tanh LSTM gates of the performance work,
          which moved the CO2 figures by about 0.005): seed 1, CO2 LSTM 0.376,
          Elman 0.424 (AR 0.423); --horizon 4 (the error over all 4 steps): CO2
          LSTM 0.451, AR(52) 0.559, Elman 0.562, persistence 0.929; sunspots
          AR(8) 26.0 wins, Elman 28.8, LSTM 32.1, seasonal naive 35.9.
Quick:    --quick: the first 520 weeks of CO2 only, 26-week windows, 8 hidden
          units, 30 full-batch epochs (seconds), for the tests.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

import rnnbptt
import rnnbptt.data
from rnnbptt.data.series import MAX_FILLED, MAX_GAP, MAX_STEPS
from rnnbptt.experiment import positive_int_option

VALIDATION, TEST = 0.15, 0.15  # fractions of each series, the test span last
AR_LAGS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 52)  # AR(p) grid, p <= input length
NETWORKS = ("lstm", "elman")
BASELINES = ("persistence", "seasonal_naive", "ar")
TARGETS = ("difference", "level")
MIN_TRAIN_WINDOWS = 16  # below this there is next to nothing to learn from
DEFAULT_INPUT_LENGTH = 24  # user data whose frequency gives no season
ZOOM_STEPS = 60  # the plot's second panel: at least this many last test steps
SERIES = {
    "co2": {
        "file": "co2.csv",
        "column": "co2",
        "input_length": 52,  # one year of weeks
        "season": 52,  # from the weekly frequency
        "target": "difference",  # a strong trend: predict the change
    },
    "sunspots": {
        "file": "sunspots.csv",
        "column": "sunspots",
        "input_length": 22,  # two solar cycles
        "season": 11,  # the solar cycle, not a calendar season
        "target": "difference",  # better than "level" on the validation span
    },
}
FULL = {
    "series": ["co2", "sunspots"],
    "steps": None,  # the whole series
    "input_length": None,  # per series, from SERIES
    "hidden": 32,
    "epochs": 100,
    "patience": 10,
    "batch": 32,
    "learning_rate": 3e-3,
}
QUICK = {
    "series": ["co2"],
    "steps": 520,  # the first ten years of CO2
    "input_length": 26,
    "hidden": 8,
    "epochs": 30,
    "patience": None,
    "batch": None,  # full batch: one compiled shape, compilation dominates here
    "learning_rate": 2e-2,
}


# ---------------------------------------------------------------- baselines


def infer_season(freq: str) -> int | None:
    """Steps per calendar cycle for a pandas frequency: a year of weeks, months or
    quarters, a week of days (5 business days), a day of hours; None otherwise."""
    from pandas.tseries.frequencies import to_offset

    offset = to_offset(freq)
    name, n = type(offset).__name__, offset.n
    per_year = {"Week": 52, "MonthBegin": 12, "MonthEnd": 12, "QuarterBegin": 4}
    per_year |= {"QuarterEnd": 4}
    if name == "DateOffset" and set(offset.kwds) == {"months"}:
        name, n = "MonthBegin", offset.kwds["months"] * n
    if name in per_year and per_year[name] % n == 0 and per_year[name] // n > 1:
        return per_year[name] // n
    return {"Day": 7, "BusinessDay": 5, "Hour": 24}.get(name) if n == 1 else None


def persistence(raw: np.ndarray, first: np.ndarray, horizon: int) -> np.ndarray:
    """[N, H]: the last value before each window's first target, at every step."""
    return np.repeat(raw[first - 1][:, None], horizon, axis=1)


def seasonal_naive(
    raw: np.ndarray, first: np.ndarray, horizon: int, season: int
) -> np.ndarray:
    """[N, H]: step h (0-based) of a window is the value ``k`` seasons before its
    target, ``k = ceil((h + 1) / season)``, the nearest one already observed."""
    steps = np.arange(horizon)
    back = season * np.ceil((steps + 1) / season).astype(int)
    return raw[first[:, None] + steps[None, :] - back[None, :]]


def fit_ar(raw: np.ndarray, stop: int, p: int, horizon: int) -> np.ndarray:
    """[p + 1, H] least-squares coefficients (p lags, then the intercept) of the H
    direct regressions ``raw[t + h] ~ raw[t - p:t]``, on ``raw[:stop]`` only."""
    lags, targets = rnnbptt.data.sliding_windows(raw[:stop], p, horizon)
    design = np.c_[lags[:, :, 0], np.ones(len(lags))]
    coef, *_ = np.linalg.lstsq(design, targets, rcond=None)
    return coef


def ar_forecast(raw: np.ndarray, coef: np.ndarray, first: np.ndarray) -> np.ndarray:
    """[N, H]: the AR forecast from the p values before each window's targets."""
    p = coef.shape[0] - 1
    lags = raw[first[:, None] + np.arange(-p, 0)[None, :]]
    return np.c_[lags, np.ones(len(lags))] @ coef


def rmse(pred: np.ndarray, truth: np.ndarray) -> float:
    return float(np.sqrt(np.mean((pred - truth) ** 2)))


def mae(pred: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean(np.abs(pred - truth)))


# ----------------------------------------------------------------- networks


class Targets(NamedTuple):
    """What the networks read and predict, and how their output becomes a forecast.

    ``level``: the scaled windows as they are. ``difference``: windows re-centred
    on their last input value ``a``: inputs ``(x - a) / in_scale``, targets
    ``(y - a) / out_scale``; the scales are fitted on the training windows.
    """

    mode: str
    in_scale: float = 1.0
    out_scale: float = 1.0

    @classmethod
    def fit(cls, mode: str, train: rnnbptt.data.Windows) -> Targets:
        if mode == "level":
            return cls(mode)
        anchor = train.x[:, -1:, 0]
        return cls(
            mode,
            float(np.std(train.x[:, :, 0] - anchor)),
            float(np.std(train.y - anchor)),
        )

    def _anchor(self, w: rnnbptt.data.Windows) -> np.ndarray:
        return w.x[:, -1:, 0] if self.mode == "difference" else np.zeros((len(w.x), 1))

    def inputs(self, w: rnnbptt.data.Windows) -> np.ndarray:
        """[N, L, 1] float32."""
        x = (w.x - self._anchor(w)[:, :, None]) / self.in_scale
        return x.astype(np.float32)

    def targets(self, w: rnnbptt.data.Windows) -> np.ndarray:
        """[N, H] float32."""
        return ((w.y - self._anchor(w)) / self.out_scale).astype(np.float32)

    def forecast(self, w, output: np.ndarray, scaler) -> np.ndarray:
        """[N, H] in the series' units, from the network's output [N, H]."""
        scaled = self._anchor(w) + self.out_scale * np.asarray(output, np.float64)
        return scaler.inverse(scaled)


def train_network(kind, data, targets: Targets, size: dict, args):
    """Fits one forecaster.

    Returns:
        ``(FitResult, {"validation"|"test": forecast [N, H]}, parameter count)``.
    """
    horizon = data.train.y.shape[1]
    model = rnnbptt.SequenceModel.build(
        kind, 1, [size["hidden"]], horizon, head="many_to_one"
    )
    result = rnnbptt.fit(
        model,
        model.init(jax.random.key(args.seed), jnp.float32),
        targets.inputs(data.train),
        targets.targets(data.train),
        validation=(
            targets.inputs(data.validation),
            targets.targets(data.validation),
        ),
        loss="mse",
        learning_rate=size["learning_rate"],
        epochs=size["epochs"],
        batch_size=min(size["batch"] or len(data.train.x), len(data.train.x)),
        clip_norm=1.0,
        patience=size["patience"],
        backward=args.backward,
        seed=args.seed,
        progress=not args.quick,
    )
    apply = jax.jit(model.apply)
    forecasts = {
        span: targets.forecast(w, apply(result.params, targets.inputs(w)), data.scaler)
        for span, w in (("validation", data.validation), ("test", data.test))
    }
    n_params = sum(int(np.size(leaf)) for leaf in jax.tree.leaves(result.params))
    return result, forecasts, n_params


# ------------------------------------------------------------------ one series


def forecast_series(name: str, series, spec: dict, size: dict, args) -> dict:
    """Every method on one series: metric rows, a summary, what the plot needs."""
    raw = series.values.to_numpy(np.float64)[: spec["steps"]]
    horizon, length = args.horizon, spec["input_length"]
    data = rnnbptt.data.forecasting_data(raw, length, horizon, VALIDATION, TEST)
    train_span = data.spans[0]
    if len(data.train.x) < MIN_TRAIN_WINDOWS:
        raise ValueError(
            f"series {name!r}: {len(raw)} steps leave {len(data.train.x)} training "
            f"windows of {length} + {horizon} steps, fewer than {MIN_TRAIN_WINDOWS}; "
            "use a longer series or a shorter --input-length"
        )
    season = spec["season"]
    if season is not None and season > train_span.stop:
        if spec["season_given"]:
            raise ValueError(
                f"series {name!r}: --season {season} is longer than the training "
                f"span ({train_span.stop} steps)"
            )
        season = None
    spans = {"validation": data.validation, "test": data.test}
    forecasts = {
        "persistence": {
            span: persistence(raw, w.first_target, horizon) for span, w in spans.items()
        }
    }
    if season is not None:
        forecasts["seasonal_naive"] = {
            span: seasonal_naive(raw, w.first_target, horizon, season)
            for span, w in spans.items()
        }

    # AR(p): p chosen on the validation span, among the lags that fit in the
    # networks' window and leave at least two training rows per coefficient
    lags = [
        p
        for p in AR_LAGS
        if p <= length and train_span.stop - p - horizon + 1 >= 2 * (p + 1)
    ]
    ar_val = {}
    for p in lags:
        coef = fit_ar(raw, train_span.stop, p, horizon)
        ar_val[p] = rmse(
            ar_forecast(raw, coef, data.validation.first_target),
            data.validation.y_raw,
        )
    best_p = min(ar_val, key=ar_val.get)
    coef = fit_ar(raw, train_span.stop, best_p, horizon)
    forecasts["ar"] = {
        span: ar_forecast(raw, coef, w.first_target) for span, w in spans.items()
    }

    targets = Targets.fit(spec["target"], data.train)
    details, histories = {"ar": {"p": best_p}}, []
    for kind in NETWORKS:
        started = time.perf_counter()
        result, forecasts[kind], n_params = train_network(
            kind, data, targets, size, args
        )
        details[kind] = {
            "parameters": n_params,
            "epochs": len(result.history),
            "best_epoch": result.best_epoch,
            "stop_reason": result.stop_reason,
            "seconds": round(time.perf_counter() - started, 2),
        }
        histories.append(result.history.assign(series=name, model=kind))

    rows = []
    for method, by_span in forecasts.items():
        for span, pred in by_span.items():
            truth = spans[span].y_raw
            rows.append(
                {
                    "series": name,
                    "method": method,
                    "split": span,
                    "rmse": rmse(pred, truth),
                    "mae": mae(pred, truth),
                }
            )
    test = {r["method"]: r for r in rows if r["split"] == "test"}
    best_baseline = min(test[m]["rmse"] for m in BASELINES if m in test)
    summary = {
        "series": name,
        "frequency": series.freq,
        "gaps_filled": series.filled,
        "steps": len(raw),
        "first_date": str(series.values.index[0].date()),
        "last_date": str(series.values.index[len(raw) - 1].date()),
        "spans": {
            k: [s.start, s.stop]
            for k, s in zip(("train", "validation", "test"), data.spans, strict=True)
        },
        "windows": {
            "train": len(data.train.x),
            **{span: len(w.x) for span, w in spans.items()},
        },
        "input_length": length,
        "horizon": horizon,
        "season": season,
        "target": targets._asdict(),
        "scaler": {"mean": data.scaler.mean, "std": data.scaler.std},
        "ar_validation_rmse": ar_val,
        "methods": details,
        "test": [{k: test[m][k] for k in ("method", "rmse", "mae")} for m in test],
        "winner": min(test, key=lambda m: test[m]["rmse"]),
        "lstm_beats_every_baseline": bool(test["lstm"]["rmse"] < best_baseline),
        "elman_beats_every_baseline": bool(test["elman"]["rmse"] < best_baseline),
    }
    if season is None:
        summary["note"] = (
            f"no seasonal naive: the frequency {series.freq} has no calendar "
            "season, or it is longer than the training span; pass --season N"
        )
    plot = {
        "dates": series.values.index[data.test.first_target + horizon - 1],
        "truth": data.test.y_raw[:, -1],
        "forecasts": {m: by_span["test"][:, -1] for m, by_span in forecasts.items()},
        "rmse": {m: test[m]["rmse"] for m in test},
        "season": season,
        "column": series.name,
        "horizon": horizon,
    }
    return {
        "rows": rows,
        "history": pd.concat(histories, ignore_index=True),
        "summary": summary,
        "plot": plot,
    }


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
        "--season", type=positive_int_option, help="seasonal naive period (steps)"
    )
    parser.add_argument("--target", choices=TARGETS, help="what the networks predict")


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
            spec = {**shipped, "steps": size["steps"], "season_given": False}
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
        season = args.season or infer_season(series.freq)
        specs = {
            Path(args.data).stem: (
                series,
                {
                    "file": str(args.data),
                    "column": series.name,
                    "input_length": season or DEFAULT_INPUT_LENGTH,
                    "season": season,
                    "target": "difference",
                    "steps": None,
                    "season_given": args.season is not None,
                },
            )
        }
    for series, spec in specs.values():
        if args.data is not None and args.input_length is None:
            # a default must leave room for training windows in a short series
            train_steps = round(len(series.values) * (1 - VALIDATION - TEST))
            spec["input_length"] = max(2, min(spec["input_length"], train_steps // 4))
        spec["input_length"] = args.input_length or spec["input_length"]
        if args.season is not None:
            spec["season"], spec["season_given"] = args.season, True
        spec["target"] = args.target or spec["target"]
    return specs


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
    table = metrics[metrics["split"] == "test"].drop(columns="split")
    return table.rename(columns={"rmse": "test_rmse", "mae": "test_mae"})


def _plot(run, name: str, plot: dict) -> None:
    plt = rnnbptt.runs.pyplot()

    dates, truth = plot["dates"], plot["truth"]
    zoom = max(2 * (plot["season"] or 0), ZOOM_STEPS)  # a closer look at the end
    parts = [slice(None)] + ([slice(-zoom, None)] if zoom < len(dates) else [])
    fig, axes = plt.subplots(len(parts), 1, figsize=(9, 3.5 * len(parts)))
    axes = np.atleast_1d(axes)
    styles = {
        "persistence": {"color": "C7", "linestyle": ":"},
        "seasonal_naive": {"color": "C8", "linestyle": "--"},
        "ar": {"color": "C2"},
        "elman": {"color": "C1"},
        "lstm": {"color": "C3"},
    }
    for ax, part in zip(axes, parts, strict=True):
        ax.plot(dates[part], truth[part], color="black", linewidth=2, label="truth")
        for method, pred in plot["forecasts"].items():
            ax.plot(
                dates[part],
                pred[part],
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
