"""Baseline: the benchmark methods behind the Forecaster's interface."""

from statistics import NormalDist

import numpy as np
import pandas as pd
import pytest

from rnnbptt.forecast import (
    Baseline,
    ar_aic,
    ar_order,
    autoregressive,
    is_seasonal,
    naive2,
    seasonal_indices,
    seasonal_naive,
)

Z80, Z95 = NormalDist().inv_cdf(0.9), NormalDist().inv_cdf(0.975)


def _panel(rng, lengths=(75, 52, 96), m=12):
    """Seasonal series of different lengths and starts, monthly dates."""
    parts = []
    for i, n in enumerate(lengths):
        t = np.arange(n)
        y = 50 + 10 * np.sin(2 * np.pi * t / m) + 0.3 * t + rng.normal(0, 2, n)
        ds = pd.date_range(f"{2000 + i}-0{i + 1}-01", periods=n, freq="MS")
        parts.append(pd.DataFrame({"unique_id": f"s{i}", "ds": ds, "y": y}))
    return pd.concat(parts, ignore_index=True)


@pytest.mark.parametrize("method", ["seasonal_naive", "naive2", "ar", "ensemble"])
def test_many_series_give_what_each_alone_gives(method):
    df = _panel(np.random.default_rng(0))
    together = Baseline(method, h=7, p=3).fit(df).predict()
    for name, part in df.groupby("unique_id"):
        alone = Baseline(method, h=7, p=3).fit(part).predict()
        got = together[together["unique_id"] == name].reset_index(drop=True)
        pd.testing.assert_frame_equal(got, alone, check_exact=True)
        y = part["y"].to_numpy()
        members = {  # the functions, independently of the class
            "seasonal_naive": seasonal_naive(y, 7, 12),
            "naive2": naive2(y, 7, 12),
            "ar": autoregressive(y, 7, 3),
        }
        members["ensemble"] = np.mean(list(members.values()), axis=0)
        oracle = members[method]
        np.testing.assert_allclose(alone["forecast"], oracle, rtol=1e-12)
        # the dates continue the series, month by month
        want = pd.date_range(part["ds"].iloc[-1], periods=8, freq="MS")[1:]
        assert list(alone["ds"]) == list(want)


def test_intervals_by_hand():
    y = np.array([3.0, 5.0, 4.0, 8.0, 7.0, 9.0, 6.0, 10.0])
    frame = pd.Series(y, index=pd.date_range("2020-01-01", periods=8, freq="D"))
    naive = Baseline("naive", h=3).fit(frame).predict()
    sigma = np.sqrt(np.mean(np.diff(y) ** 2))
    k = np.arange(1, 4)
    np.testing.assert_allclose(naive["lo-80"], 10 - Z80 * sigma * np.sqrt(k))
    np.testing.assert_allclose(naive["hi-95"], 10 + Z95 * sigma * np.sqrt(k))
    # seasonal naive, m = 2: the deviation grows once a season
    snaive = Baseline("seasonal_naive", h=3, season_length=2).fit(frame).predict()
    sigma = np.sqrt(np.mean((y[2:] - y[:-2]) ** 2))
    np.testing.assert_allclose(snaive["forecast"], [6, 10, 6])
    np.testing.assert_allclose(
        snaive["hi-80"] - snaive["forecast"], Z80 * sigma * np.sqrt([1, 1, 2])
    )
    # AR(1): x_t = c + a x_{t-1}; the k-step variance is sigma^2 (1 - a^2k)/(1 - a^2)
    ar = Baseline("ar", h=3, p=1, season_length=1).fit(frame).predict()
    design = np.column_stack([np.ones(7), y[:-1]])
    (c, a), *_ = np.linalg.lstsq(design, y[1:], rcond=None)
    residuals = y[1:] - design @ [c, a]
    sigma = np.sqrt(residuals @ residuals / (7 - 2))
    sd = sigma * np.sqrt((1 - a ** (2 * k)) / (1 - a**2))
    f1 = c + a * 10
    f2 = c + a * f1
    np.testing.assert_allclose(ar["forecast"], [f1, f2, c + a * f2])
    np.testing.assert_allclose(ar["hi-95"] - ar["forecast"], Z95 * sd)


def test_naive_intervals_cover_a_random_walk():
    # 400 random walks of unit steps: the naive intervals are exact there
    rng = np.random.default_rng(1)
    walks = np.cumsum(rng.normal(0, 1, (400, 110)), axis=1)
    df = pd.DataFrame(
        {
            "unique_id": np.repeat(np.arange(400), 100),
            "ds": np.tile(np.arange(100), 400),
            "y": walks[:, :100].reshape(-1),
        }
    )
    out = Baseline("naive", h=10).fit(df).predict()
    actual = walks[:, 100:].reshape(-1)
    for level, tol in ((80, 0.03), (95, 0.02)):
        inside = (out[f"lo-{level}"] <= actual) & (actual <= out[f"hi-{level}"])
        assert abs(inside.mean() - level / 100) < tol, (level, inside.mean())


def test_cross_validation_reads_only_the_history_before_each_cutoff():
    df = _panel(np.random.default_rng(2))
    cv = Baseline("seasonal_naive", h=4).cross_validation(df, n_windows=2)
    assert len(cv) == 3 * 2 * 4
    for (name, cutoff), part in cv.groupby(["unique_id", "cutoff"]):
        series = df[df["unique_id"] == name]
        seen = series[series["ds"] <= cutoff]["y"].to_numpy()
        np.testing.assert_allclose(part["forecast"], seasonal_naive(seen, 4, 12))
        truth = series.set_index("ds").loc[part["ds"], "y"].to_numpy()
        np.testing.assert_array_equal(part["y"], truth)


@pytest.mark.parametrize(
    "make, words",
    [
        (lambda df: Baseline("theta", h=3), "`method` must be one of"),
        (lambda df: Baseline("naive", h=0), "`h`"),
        (lambda df: Baseline("naive", h=3, levels=(120,)), "level"),
        (lambda df: Baseline("naive", h=3).predict(), "call `fit` first"),
        (lambda df: Baseline("naive", h=3).fit(df).predict(h=5), "`h` (5)"),
        (lambda df: Baseline("ar", h=3, p=30).fit(df), "series 's1' has 52 values"),
        (  # the history before an early cutoff: 52 - 3 - 3 * 4 values
            lambda df: Baseline("ar", h=3, p=20).fit(df).backtest(df, n_windows=5),
            "`Baseline.backtest`: series 's1' has 37 values",
        ),
    ],
)
def test_bad_input_is_refused_clearly(make, words):
    df = _panel(np.random.default_rng(0))
    with pytest.raises(ValueError) as error:
        make(df)
    assert words in str(error.value)


def test_naive2_intervals_are_naives_on_the_adjusted_series_by_hand():
    rng = np.random.default_rng(3)
    t = np.arange(40)
    y = (100 + t) * np.array([0.7, 1.0, 1.4, 0.9])[t % 4] + rng.normal(0, 1, 40)
    assert is_seasonal(y, 4)
    df = pd.DataFrame({"unique_id": "q", "ds": t, "y": y})
    out = Baseline("naive2", h=6, season_length=4).fit(df).predict()
    figure = seasonal_indices(y, 4)
    adjusted = y / figure[t % 4]
    sigma = np.sqrt(np.mean(np.diff(adjusted) ** 2))
    k = np.arange(1, 7)
    ahead = figure[(40 + k - 1) % 4]
    np.testing.assert_allclose(out["forecast"], adjusted[-1] * ahead)
    np.testing.assert_allclose(
        out["hi-80"], (adjusted[-1] + Z80 * sigma * np.sqrt(k)) * ahead
    )
    np.testing.assert_allclose(
        out["lo-95"], (adjusted[-1] - Z95 * sigma * np.sqrt(k)) * ahead
    )


def _aic_by_lstsq(x, p, max_p):
    rows = np.array([[1.0, *x[t - p : t][::-1]] for t in range(max_p, x.size)])
    coef, *_ = np.linalg.lstsq(rows, x[max_p:], rcond=None)
    n = x.size - max_p
    return n * np.log(np.sum((x[max_p:] - rows @ coef) ** 2) / n) + 2 * (p + 1)


def test_the_default_ar_order_is_the_least_aic_by_a_plain_loop():
    rng = np.random.default_rng(4)
    x = np.zeros(300)
    for t in range(2, 300):  # an AR(2)
        x[t] = 0.6 * x[t - 1] - 0.3 * x[t - 2] + rng.normal()
    aic = []
    for p in range(1, 11):  # every order on the steps t >= 10, by hand
        rows = [[1.0, *x[t - p : t][::-1]] for t in range(10, 300)]
        coef, *_ = np.linalg.lstsq(np.array(rows), x[10:], rcond=None)
        rss = np.sum((x[10:] - np.array(rows) @ coef) ** 2)
        aic.append(290 * np.log(rss / 290) + 2 * (p + 1))
    best = int(np.argmin(aic)) + 1
    np.testing.assert_allclose(ar_aic(x, 10), aic, rtol=1e-10)
    assert ar_order(x, 10) == best
    # a trend far above its steps (RSS a millionth of the sum of squares):
    # the one-QR RSS keeps its digits, the order as the loop's
    trend = 350 + 0.03 * np.arange(300) + 0.3 * x
    loop = [_aic_by_lstsq(trend, p, 10) for p in range(1, 11)]
    np.testing.assert_allclose(ar_aic(trend, 10), loop, rtol=1e-9)
    # a late start (46 zeros, then 16 values): dependent columns, every order fitted
    late = np.r_[np.zeros(46), rng.normal(size=16) * 10 + 5]
    loop = [_aic_by_lstsq(late, p, 20) for p in range(1, 21)]
    np.testing.assert_allclose(ar_aic(late, 20), loop, rtol=1e-9)
    df = pd.DataFrame({"unique_id": "a", "ds": np.arange(300), "y": x})
    got = Baseline("ar", h=5).fit(df).predict()["forecast"]
    np.testing.assert_allclose(got, autoregressive(x, 5, best), rtol=1e-12)
