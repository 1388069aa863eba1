"""The M4 hourly experiment, quick mode: its files, its table, its forecasts."""

import json

import numpy as np
import pandas as pd

from rnnbptt import cli
from rnnbptt.data.m4 import load_m4_hourly
from rnnbptt.forecast import m4_scores, naive2


def test_m4_quick_writes_forecasts_anyone_can_score(tmp_path, capsys):
    argv = ["experiment", "m4", "--quick", "--out", str(tmp_path)]
    assert cli.main(argv) == 0
    out = tmp_path / "m4"
    for name in ("config.json", "metrics.csv", "summary.json", "forecasts.png"):
        assert (out / name).stat().st_size > 0
    forecasts = pd.read_csv(out / "forecasts.csv")
    assert list(forecasts.columns) == [
        "unique_id", "ds", "forecast", "lo-80", "hi-80", "lo-95", "hi-95"
    ]  # fmt: skip
    data = load_m4_hourly()
    n = forecasts.unique_id.nunique()
    assert list(forecasts.unique_id.unique()) == data.ids[:n]
    assert (
        forecasts.groupby("unique_id").ds.apply(list) == [list(range(1, 49))] * n
    ).all()
    # the table's row is what scoring the written file gives
    f = forecasts.forecast.to_numpy().reshape(n, 48)
    insample = np.full((n, 960), np.nan)
    for i, y in enumerate(data.train[:n]):
        insample[i, : y.size] = y
    base = np.stack([naive2(y, 48, 24) for y in data.train[:n]])
    lo, hi = (forecasts[c].to_numpy().reshape(n, 48) for c in ("lo-95", "hi-95"))
    scores = m4_scores(data.test[:n], f, insample, 24, base, lo, hi)
    row = json.loads((out / "summary.json").read_text())["results"][0]
    assert row["method"].startswith("rnnbptt")
    for key in ("smape", "mase", "owa", "msis", "coverage"):
        np.testing.assert_allclose(row[key], scores[key], rtol=1e-9)
    naive_row = json.loads((out / "summary.json").read_text())["results"][1]
    assert naive_row["method"] == "Naive2" and naive_row["owa"] == 1.0
    assert "Naive2" in capsys.readouterr().out
