"""Long-format data sets: series of their own lengths and starts, checked once."""

import numpy as np
import pandas as pd
import pytest

from rnnbptt.forecast.panel import to_panel


def _long(rows):
    return pd.DataFrame(rows, columns=["unique_id", "ds", "y"])


def test_series_of_different_lengths_and_starts():
    a = pd.date_range("2024-01-01", periods=4, freq="h")
    b = pd.date_range("2024-01-01 02:00", periods=2, freq="h")
    df = _long(
        [("a", d, float(i)) for i, d in enumerate(a)]
        + [("b", b[0], 9.0), ("b", b[1], 8.0)]
    )
    df["temp"] = np.arange(6.0)
    panel = to_panel(df, covariates=["temp"])
    assert panel.ids == ["a", "b"]
    np.testing.assert_array_equal(panel.y[0], [0, 1, 2, 3])
    np.testing.assert_array_equal(panel.y[1], [9, 8])
    assert list(panel.ds[1]) == list(b)
    assert panel.freq == pd.tseries.frequencies.to_offset("h")
    np.testing.assert_array_equal(panel.covariates["temp"][1], [4, 5])
    # the future continues each series from its own last date
    assert list(panel.future(1, 2)) == list(
        pd.date_range("2024-01-01 04:00", periods=2, freq="h")
    )


def test_a_series_with_a_datetime_index_and_integer_steps():
    s = pd.Series(
        [1.0, 2.0, 3.0], pd.date_range("2020-01-01", periods=3, freq="MS"), name="sales"
    )
    panel = to_panel(s)
    assert panel.ids == ["sales"] and panel.freq == pd.tseries.frequencies.to_offset(
        "MS"
    )
    assert list(panel.future(0, 2)) == [
        pd.Timestamp("2020-04-01"),
        pd.Timestamp("2020-05-01"),
    ]
    steps = to_panel(_long([("x", 5, 1.0), ("x", 6, 2.0)]))
    assert steps.freq == 1 and list(steps.future(0, 3)) == [7, 8, 9]


def test_a_given_frequency_is_used_and_checked():
    days = pd.date_range("2024-01-01", periods=2, freq="D")  # too short to infer
    df = _long([("a", d, 1.0) for d in days])
    with pytest.raises(ValueError, match=r"cannot infer the frequency.*freq='h'"):
        to_panel(df)
    assert to_panel(df, freq="D").freq == pd.tseries.frequencies.to_offset("D")
    with pytest.raises(ValueError, match="not regular at frequency <Hour>"):
        to_panel(df, freq="h")


H = pd.date_range("2024-01-01", periods=4, freq="h")


@pytest.mark.parametrize(
    "rows, kwargs, error, words",
    [
        (
            [("a", H[0], 1.0), ("a", H[1], 1.0), ("a", H[1], 2.0)],
            {},
            ValueError,
            ["series 'a'", "two rows", "row 2"],
        ),
        (
            [("a", H[0], 1.0), ("a", H[2], 1.0), ("a", H[1], 2.0)],
            {},
            ValueError,
            ["'a'", "not in time order", "row 2"],
        ),
        (
            [
                ("a", H[0], 1.0),
                ("a", H[1], 1.0),
                ("a", H[2], 1.0),
                ("b", H[0], 1.0),
                ("b", H[2], 1.0),
            ],
            {},
            ValueError,
            ["series 'b'", "not regular", "row 4", "01:00:00 was due"],
        ),
        (
            [("a", H[0], 1.0), ("a", H[1], np.nan)],
            {"freq": "h"},
            ValueError,
            ["'y'", "series 'a'", "row 1"],
        ),
        ([("a", "monday", 1.0)], {}, TypeError, ["'ds'", "to_datetime"]),
        ([("a", H[0], 1.0)], {"covariates": ["price"]}, ValueError, ["['price']"]),
    ],
)
def test_bad_input_names_the_series_and_the_row(rows, kwargs, error, words):
    with pytest.raises(error) as info:
        to_panel(_long(rows), fn="Forecaster.fit", **kwargs)
    for word in ["Forecaster.fit", *words]:
        assert word in str(info.value)


def test_not_a_frame_or_missing_columns():
    with pytest.raises(TypeError, match=r"DataFrame.*got list"):
        to_panel([1, 2])
    with pytest.raises(TypeError, match="DatetimeIndex"):
        to_panel(pd.Series([1.0, 2.0]))
    with pytest.raises(ValueError, match=r"missing \['y'\]"):
        to_panel(pd.DataFrame({"unique_id": ["a"], "ds": [1]}))


def test_a_frequency_that_is_not_one():
    df = _long([("a", pd.Timestamp("2024-01-01"), 1.0)])
    with pytest.raises(ValueError, match="`freq` must be a pandas frequency"):
        to_panel(df, freq="fortnightly")
