"""Calendar features, the season length, and the conformal widening, by hand."""

import numpy as np
import pandas as pd
import pytest

from rnnbptt.forecast.calibration import calibrated, corrections, widen
from rnnbptt.forecast.features import calendar, calendar_count, season_length


def test_hourly_calendar_by_hand():
    ds = pd.DatetimeIndex(["2021-01-04 06:00", "2021-01-04 18:00"])  # a Monday
    got = calendar(ds, pd.tseries.frequencies.to_offset("h"), 24)
    assert got.shape == (2, 6) == (2, calendar_count(pd.offsets.Hour(), 24))
    hour = np.array([0.25, 0.75])
    week = (0 + hour) / 7
    year = (3 + hour) / 365.25
    expected = np.stack(
        [f(2 * np.pi * p) for p in (hour, week, year) for f in (np.sin, np.cos)], 1
    )
    np.testing.assert_allclose(got, expected, atol=1e-12)


def test_monthly_and_integer_calendars():
    ds = pd.date_range("2020-03-01", periods=2, freq="MS")
    got = calendar(ds, ds.freq, 12)
    phase = np.array([2, 3]) / 12
    np.testing.assert_allclose(
        got, np.stack([np.sin(2 * np.pi * phase), np.cos(2 * np.pi * phase)], 1)
    )
    steps = pd.Index([5, 6, 7])
    np.testing.assert_allclose(
        calendar(steps, 1, 4)[:, 0], np.sin(2 * np.pi * np.array([1, 2, 3]) / 4)
    )
    assert calendar(steps, 1, 1).shape == (3, 0)
    assert calendar(pd.date_range("2000", periods=3, freq="YS"), "YS", 1).shape == (
        3,
        0,
    )


@pytest.mark.parametrize(
    "freq, period", [("h", 24), ("D", 7), ("W", 52), ("MS", 12), ("QS", 4), ("YS", 1)]
)
def test_season_length(freq, period):
    assert season_length(pd.tseries.frequencies.to_offset(freq)) == period


def test_conformal_corrections_by_hand():
    # 9 windows, one step, an 80% interval [-1, 1]: scores max(lo - y, y - hi)
    y = np.array([-3.0, -1.5, -0.5, 0.0, 0.2, 0.5, 0.9, 1.2, 2.0])
    scores = np.maximum(-1 - y, y - 1)
    q = np.tile([-1.0, 0.0, 1.0], (9, 1, 1))
    got = corrections(q, y[:, None], [80])
    rank = int(np.ceil(10 * 0.8))  # the 8th smallest score of 9
    assert got.shape == (1, 1)
    assert got[0, 0] == np.sort(scores)[rank - 1]
    # a 95% interval needs at least 19 windows
    assert not calibrated(9, 95) and calibrated(19, 95)
    q5 = np.tile([-2.0, -1.0, 0.0, 1.0, 2.0], (9, 1, 1))
    assert corrections(q5, y[:, None], [80, 95])[0, 0] == 0.0  # 95: not enough


def test_widening_keeps_the_bounds_ordered():
    q = np.array([[[-2.0, -1.0, 0.0, 1.0, 2.0]]])
    wide = widen(q, np.array([[0.5], [-0.8]]))  # 95 wider, 80 narrower
    np.testing.assert_allclose(wide[0, 0], [-2.5, -0.2, 0.0, 0.2, 2.5], atol=1e-15)
    crossing = widen(q, np.array([[-3.0], [0.0]]))  # would put 95 inside 80
    np.testing.assert_array_equal(crossing[0, 0], [-1.0, -1.0, 0.0, 1.0, 1.0])
