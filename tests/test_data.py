"""Data loading: gap filling, leak-free scaling, window contents, bad files."""

import gzip

import numpy as np
import pandas as pd
import pytest

from rnnbptt import data
from rnnbptt.data import (
    Scaler,
    chronological_split,
    forecasting_data,
    load_digits,
    load_misspellings,
    load_series,
    load_words,
    sliding_windows,
)
from rnnbptt.data.series import MAX_GAP


@pytest.fixture
def write(tmp_path):
    """write(text, name) -> path of a new file in tmp_path holding ``text``."""

    def _write(text, name="series.csv"):
        path = tmp_path / name
        path.write_text(text)
        return path

    return _write


def shipped(name):
    """Path of data/<name>, or skip the test while the file is not there yet."""
    try:
        return data.data_path(name)
    except FileNotFoundError:
        pytest.skip(f"data/{name} is not in the repository yet")


# ------------------------------------------------------------------ series


def test_gaps_are_reindexed_counted_and_filled_linearly_in_time(write):
    # Weekly on Saturdays, 12 steps from 2021-01-02. Missing rows: steps 3, 7, 8;
    # empty values: step 0 (leading) and step 5. The rows are not in date order.
    weeks = pd.date_range("2021-01-02", periods=12, freq="W-SAT")
    given = {1: 10.0, 2: 12.0, 4: 20.0, 6: 30.0, 9: 33.0, 10: 31.0, 11: 40.0}
    rows = [f"{weeks[i].date()},{given.get(i, '')}" for i in (0, 5, *given)]
    path = write("date,level\n" + "\n".join(rows[::-1]) + "\n")

    series = load_series(path)

    assert series.filled == 5
    assert series.name == "level"
    assert series.freq == "W-SAT"
    assert series.values.dtype == np.float64
    pd.testing.assert_index_equal(series.values.index, weeks, check_names=False)
    assert series.values.index.freq == "W-SAT"
    # By hand: a value at t between (t0, v0) and (t1, v1) is v0 + (v1-v0)(t-t0)/(t1-t0).
    expected = dict(given)
    expected[0] = 10.0  # leading gap: the first valid value
    expected[3] = 12.0 + (20.0 - 12.0) * 1 / 2
    expected[5] = 20.0 + (30.0 - 20.0) * 1 / 2
    expected[7] = 30.0 + (33.0 - 30.0) * 1 / 3
    expected[8] = 30.0 + (33.0 - 30.0) * 2 / 3
    np.testing.assert_allclose(
        series.values.to_numpy(), [expected[i] for i in range(12)], rtol=0, atol=1e-12
    )


def test_interpolation_weights_by_time_not_by_position(write):
    # Daily series; the gap is 3 days, so the filled values are 1/3 and 2/3 of the
    # way, not halfway as position-based filling of a single missing row would give.
    path = write("t,v\n2020-03-01,0\n2020-03-02,3\n2020-03-05,12\n2020-03-06,15\n")
    series = load_series(path, date_column="t")
    assert series.freq == "D"
    assert series.filled == 2
    np.testing.assert_allclose(series.values.to_numpy(), [0, 3, 6, 9, 12, 15])


def test_trailing_gap_and_explicit_freq(write):
    path = write("date,a,b\n2020-01-31,1,5\n2020-03-31,9,7\n2020-04-30,2,\n")
    series = load_series(path, value_column="b", freq=pd.offsets.MonthEnd())
    assert series.name == "b"
    assert series.filled == 2  # the missing February row and the empty April cell
    feb = 5.0 + (7.0 - 5.0) * 29 / 60  # Jan 31 -> Feb 29 is 29 of the 60 days
    np.testing.assert_allclose(series.values.to_numpy(), [5, feb, 7, 7])
    with pytest.raises(ValueError, match="not on the grid"):
        load_series(path, value_column="b", freq=pd.offsets.MonthBegin())


@pytest.mark.parametrize(
    ("dates", "freq"),
    [
        (["2020-01-01", "2020-02-01", "2020-04-01", "2020-05-01"], "MS"),
        (["2020-01-31", "2020-02-29", "2020-04-30", "2020-05-31"], "ME"),
        (["2020-01-01 00:00", "2020-01-01 01:00", "2020-01-01 03:00"], "h"),
    ],
)
def test_frequency_is_inferred_through_a_missing_step(write, dates, freq):
    # infer_freq gives up on these (a step is missing); the most common spacing,
    # checked against every date, still finds the calendar frequency.
    path = write("date,v\n" + "".join(f"{d},{i}\n" for i, d in enumerate(dates)))
    series = load_series(path)
    assert series.freq == freq
    assert series.filled == 1
    assert len(series.values) == len(dates) + 1


def test_bad_freq_is_an_error(write):
    path = write("date,v\n2020-01-01,1\n2020-01-02,2\n2020-01-03,3\n")
    with pytest.raises(ValueError, match="`freq` must be a pandas frequency"):
        load_series(path, freq="fortnightly-ish")


def _daily(path, n=400, start="2020-01-01", change=None):
    """A daily CSV of n days with values 0..n-1; ``change``: {row: date text}."""
    days = pd.date_range(start, periods=n, freq="D")
    rows = [f"{d.date()},{i}" for i, d in enumerate(days)]
    for row, text in (change or {}).items():
        rows[row] = f"{text},{row}"
    path.write_text("date,v\n" + "\n".join(rows) + "\n")
    return path


def test_a_mistyped_year_is_refused_naming_its_line(tmp_path):
    # 2220 for 2020 on data row 101 (line 102): 73,048 of 73,052 days to fill
    path = _daily(tmp_path / "s.csv", n=366 * 2, change={100: "2220-04-10"})
    with pytest.raises(ValueError) as info:
        load_series(path)
    message = str(info.value)
    assert "2220-04-10 (line 102)" in message and "max_gap=100" in message
    assert "the last date, on line 102, stands alone" in message
    with pytest.raises(ValueError, match=r"99.\d\d% of the steps .*max_filled=0.5"):
        load_series(path, max_gap=None)
    series = load_series(path, max_gap=None, max_filled=None)  # as asked
    assert series.filled == len(series.values) - 2 * 366  # all but the dates given


def test_a_gap_up_to_max_gap_is_filled_and_a_longer_one_refused(tmp_path):
    n = 400
    keep = [i for i in range(n) if not 150 <= i < 150 + MAX_GAP]  # gap of MAX_GAP
    days = pd.date_range("2020-01-01", periods=n, freq="D")
    path = tmp_path / "s.csv"
    path.write_text("date,v\n" + "".join(f"{days[i].date()},{i}\n" for i in keep))
    series = load_series(path)
    assert series.filled == MAX_GAP and len(series.values) == n
    np.testing.assert_allclose(series.values.to_numpy(), np.arange(n))
    with pytest.raises(ValueError) as info:
        load_series(path, max_gap=MAX_GAP - 1)
    message = str(info.value)
    assert f"{MAX_GAP} steps of 1 day without a date" in message
    assert "2020-05-29 (line 151) and 2020-09-07 (line 152)" in message
    assert "(150 dates before them, 150 after)" in message


def test_a_mostly_empty_series_is_refused(write):
    path = write(
        "date,v\n"
        + "".join(f"2020-01-{d:02},{d if d % 3 == 0 else ''}\n" for d in range(1, 31))
    )
    with pytest.raises(
        ValueError,
        match=r"66.67% of the steps would be filled .*\(0 of 30 steps without a "
        r"date, 20 dates without a value\), more than max_filled=0.5",
    ):
        load_series(path)
    assert load_series(path, max_filled=0.7).filled == 20


def test_a_mistyped_second_is_refused_before_any_grid_is_built(tmp_path):
    import tracemalloc

    # an hour of data spaced by seconds, one timestamp's year mistyped: the
    # grid would have 6.3e9 steps (tens of GiB)
    stamps = pd.date_range("2020-01-01", periods=3600, freq="s")
    rows = [f"{t},{i}" for i, t in enumerate(stamps)]
    rows[5] = rows[5].replace("2020", "2220", 1)
    path = tmp_path / "s.csv"
    path.write_text("date,v\n" + "\n".join(rows) + "\n")
    tracemalloc.start()
    try:
        with pytest.raises(ValueError) as info:
            load_series(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    message = str(info.value)
    assert "6,311,347,206 steps of 1 second, more than max_steps=10,000,000" in message
    assert "2220-01-01 00:00:05 (line 7)" in message
    assert peak < 50e6


def test_an_off_grid_or_far_date_is_named_when_inference_fails(write):
    weeks = pd.date_range("2021-01-02", periods=30, freq="W-SAT")
    rows = [f"{d.date()},{i}" for i, d in enumerate(weeks)]
    typo = rows.copy()
    typo[10] = "2221-03-13,10"  # not a Saturday, and 200 years off
    with pytest.raises(ValueError, match=r"2221-03-13 \(line 12\).*more than max_gap"):
        load_series(write("date,v\n" + "\n".join(typo) + "\n"))
    off = rows.copy()
    off[10] = "2021-03-14,10"  # a Sunday between Saturdays
    with pytest.raises(
        ValueError, match=r"2021-03-14 \(line 12\) is not a multiple of it from"
    ):
        load_series(write("date,v\n" + "\n".join(off) + "\n", "off.csv"))


def test_a_far_date_with_a_given_calendar_freq(write):
    days = pd.bdate_range("2020-01-01", periods=200)
    rows = [f"{d.date()},{i}" for i, d in enumerate(days)]
    rows[-1] = rows[-1].replace("2020", "2030", 1)  # a Sunday, 10 years on
    path = write("date,v\n" + "\n".join(rows) + "\n")
    with pytest.raises(
        ValueError,
        match=r"at least [\d,]+ steps of 'B' without a date.*"
        r"\(line 201\)",
    ):
        load_series(path, freq="B")
    saturday = write("date,v\n2020-01-01,1\n2020-01-02,2\n2020-01-04,3\n", "sat.csv")
    with pytest.raises(ValueError, match=r"line 4: date 2020-01-04 is not on the grid"):
        load_series(saturday, freq="B")


@pytest.mark.parametrize(
    ("limits", "error", "message"),
    [
        ({"max_filled": 1.5}, ValueError, r"`max_filled` must be in \[0, 1\]"),
        ({"max_filled": "half"}, TypeError, "`max_filled` must be a number"),
        ({"max_gap": -1}, ValueError, "`max_gap` must be >= 0, got -1"),
        ({"max_gap": 2.0}, TypeError, "`max_gap` must be an int or None, got float"),
        ({"max_steps": 0}, ValueError, "`max_steps` must be >= 1"),
        ({"freq": "-1D"}, ValueError, "`freq` must step forward in time"),
        ({"date_format": 3}, TypeError, "`date_format` must be a str"),
    ],
)
def test_bad_limits(write, limits, error, message):
    path = write("date,v\n2020-01-01,1\n2020-01-02,2\n")
    with pytest.raises(error, match=message):
        load_series(path, **limits)


def test_mixed_date_formats_and_invalid_formats_say_so(write):
    # midnight written as a bare date, as spreadsheets export it
    text = (
        "date,v\n2020-01-01,1\n2020-01-01 12:00,2\n2020-01-02,3\n2020-01-02 12:00,4\n"
    )
    path = write(text)
    with pytest.raises(ValueError) as info:
        load_series(path)
    message = str(info.value)
    assert "mixes date formats: line 2 has '2020-01-01' (%Y-%m-%d), line 3 has " in (
        message
    )
    assert "'2020-01-01 12:00' (%Y-%m-%d %H:%M)" in message
    assert "date_format='ISO8601'" in message and "must hold dates" not in message
    series = load_series(path, date_format="ISO8601")
    assert series.freq == "12h" and series.values.tolist() == [1, 2, 3, 4]
    with pytest.raises(
        ValueError,
        match=r"line 3 \(data row 2\): date '2020-01-01 12:00' does "
        r"not match date_format '%Y-%m-%d'",
    ):
        load_series(path, date_format="%Y-%m-%d")
    with pytest.raises(ValueError) as info:
        load_series(path, date_format="%Q")
    message = str(info.value)
    assert "'%Q' is not a valid date format: %Q is not a strptime directive" in (
        message
    )
    assert "UTC" not in message and "offset" not in message
    with pytest.raises(ValueError, match="a lone % at its end"):
        load_series(path, date_format="%Y-%m-%d %")
    with pytest.raises(ValueError, match=r"`date_format` '%G' cannot be used: .*%V"):
        load_series(path, date_format="%G")
    path = write("date,v\n01/02/2020,1\n2020-01-03,2\n", "other.csv")
    with pytest.raises(ValueError, match=r"\(%m/%d/%Y\).*date_format='mixed'"):
        load_series(path)


# ----------------------------------------------------------------- scaling


def test_inverse_undoes_transform_on_any_shape():
    rng = np.random.default_rng(0)
    scaler = Scaler.fit(rng.normal(3.0, 2.0, 50))
    x = rng.normal(size=(4, 5, 2))
    np.testing.assert_allclose(scaler.inverse(scaler.transform(x)), x, atol=1e-12)
    z = scaler.transform(rng.normal(3.0, 2.0, 50))
    assert z.shape == (50,)
    np.testing.assert_allclose(Scaler.fit(z).mean, 0, atol=0.5)


def test_scaler_uses_population_statistics():
    scaler = Scaler.fit([2.0, 4.0, 6.0, 8.0])
    assert scaler.mean == 5.0
    assert scaler.std == pytest.approx(np.sqrt(5.0))
    np.testing.assert_allclose(scaler.transform([5.0, 5.0 + np.sqrt(5.0)]), [0, 1])


def test_scaler_statistics_are_numpys_where_they_fit():
    values = np.random.default_rng(3).normal(350.0, 20.0, 1000)
    scaler = Scaler.fit(values)
    assert (scaler.mean, scaler.std) == (values.mean(), values.std())  # bitwise
    np.testing.assert_array_equal(
        scaler.transform(values), (values - values.mean()) / values.std()
    )


@pytest.mark.parametrize("big", [1e308, 1.7e308])
def test_scaler_of_values_whose_squares_overflow(big):
    values = np.array([1.0, -1.0, 1.0, 1.0]) * big  # the sum overflows too
    scaler = Scaler.fit(values)
    unit = Scaler.fit(values / big)
    assert np.isfinite(scaler.mean) and np.isfinite(scaler.std)
    assert scaler.mean == pytest.approx(unit.mean * big, rel=1e-15)
    assert scaler.std == pytest.approx(unit.std * big, rel=1e-15)
    z = scaler.transform(values)  # x - mean overflows for the negative one
    np.testing.assert_allclose(z, unit.transform(values / big), rtol=1e-14)
    np.testing.assert_allclose(scaler.inverse(z), values, rtol=1e-14)


def test_scaler_of_tiny_values_and_of_too_tiny_ones():
    tiny = Scaler.fit([1e-300, 2e-300, 3e-300])  # squares underflow to 0
    assert tiny.std == pytest.approx(np.sqrt(2 / 3) * 1e-300, rel=1e-15)
    np.testing.assert_allclose(tiny.transform([3e-300]), [np.sqrt(1.5)], rtol=1e-14)
    with pytest.raises(ValueError, match="below the smallest normal float64"):
        Scaler.fit([5e-324, 1e-323])  # subnormal: too few bits to scale by
    with pytest.raises(ValueError, match="must vary"):
        Scaler.fit([1e308, 1e308, 1e308])
    with pytest.raises(ValueError, match=r"must vary.*std 0"):
        Scaler.fit([0.0, 0.0])


def test_scaler_is_fitted_on_the_training_span_only():
    n, L, H = 100, 5, 2
    base = np.sin(np.arange(n) / 3.0) + np.arange(n) / 50.0
    spiked = base.copy()
    train, _, test = chronological_split(n)
    spiked[test] += 1e6  # a huge offset that only the test span sees

    first, second = (forecasting_data(v, L, H, 0.15, 0.15) for v in (base, spiked))

    assert second.scaler.mean == pytest.approx(base[train].mean(), rel=1e-12)
    assert second.scaler.std == pytest.approx(base[train].std(), rel=1e-12)
    assert second.scaler == first.scaler
    for name in ("train", "validation"):
        a, b = getattr(first, name), getattr(second, name)
        np.testing.assert_array_equal(a.x, b.x)
        np.testing.assert_array_equal(a.y, b.y)
    assert np.all(second.test.y_raw > 1e5)  # the offset did reach the test targets


# ----------------------------------------------------------------- windows


def test_sliding_windows_shapes_and_contents():
    values = np.arange(20.0) ** 2  # distinct values, so a shifted slice fails
    L, H = 4, 3
    X, Y = sliding_windows(values, L, H)
    assert X.shape == (20 - L - H + 1, L, 1)
    assert Y.shape == (20 - L - H + 1, H)
    for i in range(X.shape[0]):
        np.testing.assert_array_equal(X[i, :, 0], values[i : i + L])
        np.testing.assert_array_equal(Y[i], values[i + L : i + L + H])
    X[0, 0, 0] = -1.0
    assert values[0] == 0.0  # windows are copies, not views of the series


def test_sliding_windows_takes_every_window_of_an_exact_length_series():
    X, Y = sliding_windows(np.arange(5), 3, 2)
    assert X.dtype == np.float64
    np.testing.assert_array_equal(X[:, :, 0], [[0, 1, 2]])
    np.testing.assert_array_equal(Y, [[3, 4]])


def test_chronological_split_sizes_and_order():
    train, val, test = chronological_split(200, validation=0.1, test=0.25)
    assert (train, val, test) == (slice(0, 130), slice(130, 150), slice(150, 200))


def test_forecasting_windows_targets_lie_in_their_own_span():
    n, L, H = 60, 6, 3
    values = np.arange(n, dtype=float)  # a value is its own time index
    result = forecasting_data(values, L, H, validation=0.2, test=0.2)
    train, val, test = result.spans
    assert (train, val, test) == (slice(0, 36), slice(36, 48), slice(48, 60))
    for name, span in zip(("train", "validation", "test"), result.spans, strict=True):
        windows = getattr(result, name)
        targets = windows.y_raw
        # Every step of the span is a target of some window; none outside it is.
        assert targets.min() == (span.start + L if name == "train" else span.start)
        assert targets.max() == span.stop - 1
        np.testing.assert_array_equal(windows.first_target, targets[:, 0])
        # Inputs are the L steps just before the first target, in scaled units.
        inputs = result.scaler.inverse(windows.x[:, :, 0])
        np.testing.assert_allclose(inputs[:, -1] + 1, targets[:, 0], atol=1e-9)
        np.testing.assert_allclose(inputs[:, 0], targets[:, 0] - L, atol=1e-9)
        np.testing.assert_allclose(result.scaler.transform(targets), windows.y)
    assert result.validation.x.shape == (12 - H + 1, L, 1)
    assert result.validation.x[0, 0, 0] < result.scaler.transform(36.0)  # reaches back
    assert result.train.x.shape == (36 - L - H + 1, L, 1)


# ------------------------------------------------------------- fixed files


def test_load_digits_scales_pixels_and_reads_labels(tmp_path):
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 17, size=(5, 64))
    labels = np.array([3, 0, 9, 1, 7])
    text = "\n".join(
        ",".join(f"{v}.0" for v in (*p, lab))
        for p, lab in zip(pixels, labels, strict=True)
    )
    path = tmp_path / "digits.csv.gz"
    path.write_bytes(gzip.compress(text.encode()))
    images, got = load_digits(path)
    assert images.shape == (5, 8, 8)
    np.testing.assert_allclose(images, pixels.reshape(5, 8, 8) / 16)
    np.testing.assert_array_equal(got, labels)
    assert got.dtype.kind == "i"


def test_load_words_keeps_words_pandas_would_read_as_missing(write):
    path = write("word,frequency\nthe,100\nnull,40\nnan,40\nna,3\n", "words.csv")
    words, frequency = load_words(path)
    assert words == ["the", "null", "nan", "na"]
    np.testing.assert_array_equal(frequency, [100, 40, 40, 3])
    assert frequency.dtype == np.float64


def test_load_misspellings_pairs_in_file_order(write):
    path = write("spelling: speling spellin\n\nwrite: rite\n", "misspellings.txt")
    assert load_misspellings(path) == [
        ("speling", "spelling"),
        ("spellin", "spelling"),
        ("rite", "write"),
    ]
    # a byte-order mark (Windows editors write one) is not part of the first word
    bom = write("\ufeffspelling: speling\n", "bom.txt")
    assert load_misspellings(bom) == [("speling", "spelling")]


# --------------------------------------------------------------- bad input


def test_missing_file_names_it(tmp_path):
    missing = tmp_path / "nope.csv"
    for load in (load_series, load_digits, load_words, load_misspellings):
        with pytest.raises(FileNotFoundError, match=r"nope.csv"):
            load(missing)
    with pytest.raises(FileNotFoundError, match=r"no shipped data file 'nope.csv'"):
        data.data_path("nope.csv")


def test_missing_column_lists_the_columns(write):
    path = write("day,level,other\n2020-01-01,1,2\n2020-01-02,2,3\n")
    with pytest.raises(
        ValueError, match=r"no column 'date'.*\['day', 'level', 'other'\]"
    ):
        load_series(path)
    with pytest.raises(
        ValueError, match=r"no column 'co2'.*\['day', 'level', 'other'\]"
    ):
        load_series(path, date_column="day", value_column="co2")
    with pytest.raises(ValueError, match="pass `value_column`"):
        load_series(path, date_column="day")


def test_non_numeric_value_names_its_row_and_value(write):
    path = write("date,v\n2020-01-01,1.5\n2020-01-02,2\n2020-01-03,n/a?\n")
    with pytest.raises(ValueError, match=r"series.csv, line 4 \(data row 3\).*'n/a\?'"):
        load_series(path)


def test_bad_date_and_duplicate_date(write):
    path = write("date,v\n2020-01-01,1\n2020-13-45,2\n")
    with pytest.raises(ValueError, match=r"line 3 .*must hold dates, got '2020-13-45'"):
        load_series(path)
    path = write("date,v\n2020-01-02,1\n2020-01-01,2\n2020-01-03,3\n2020-01-02,4\n")
    with pytest.raises(ValueError, match=r"2020-01-02 appears more .*lines 2 and 5"):
        load_series(path)


def test_day_first_and_month_first_dates(write):
    # only day first parses (19/01): read day first, weekly
    weekly = write("date,v\n05/01/2000,1\n12/01/2000,2\n19/01/2000,3\n26/01/2000,4\n")
    series = load_series(weekly)
    assert [str(d.date()) for d in series.values.index] == [
        "2000-01-05",
        "2000-01-12",
        "2000-01-19",
        "2000-01-26",
    ]
    # both parse and disagree: an error that asks for the format...
    monthly = write("date,v\n01/01/2000,1\n01/02/2000,2\n01/03/2000,3\n", "m.csv")
    with pytest.raises(
        ValueError, match=r"line 3: date '01/02/2000' reads as 2000-01-02"
    ):
        load_series(monthly)
    # ... and with it, the months
    series = load_series(monthly, date_format="%d/%m/%Y")
    assert series.freq == "MS" and len(series.values) == 3
    # ISO dates never ask
    assert (
        len(
            load_series(
                write("date,v\n2000-01-02,1\n2000-02-01,2\n2000-03-01,3\n", "iso.csv"),
                freq="D",
                max_filled=None,  # 57 of the 60 days filled, as asked
            ).values
        )
        == 60
    )


def test_blank_cells_are_missing_and_mixed_offsets_are_a_clear_error(write):
    path = write("date,v\n2020-01-01,1\n2020-01-02,  \n2020-01-03,3\n")
    series = load_series(path)
    assert series.filled == 1 and series.values.tolist() == [1.0, 2.0, 3.0]
    path = write(
        "date,v\n2021-03-27T00:00+01:00,1\n2021-03-28T00:00+01:00,2\n"
        "2021-03-29T00:00+02:00,3\n",
        "dst.csv",
    )
    with pytest.raises(ValueError, match=r"`load_series`: .*dst.csv: the dates cannot"):
        load_series(path)


def test_too_few_values(write):
    path = write("date,v\n2020-01-01,1\n2020-01-02,\n2020-01-03,NaN\n")
    with pytest.raises(ValueError, match=r"at least 2 values.*got 1"):
        load_series(path)


def test_series_too_short_for_the_window():
    with pytest.raises(ValueError, match=r"length 6 .*input_length 5 plus horizon 2"):
        sliding_windows(np.arange(6.0), 5, 2)
    with pytest.raises(ValueError, match="`horizon` must be a positive int, got 0"):
        sliding_windows(np.arange(6.0), 2, 0)
    with pytest.raises(TypeError, match="`input_length` must be a positive int"):
        sliding_windows(np.arange(6.0), 2.0)
    with pytest.raises(ValueError, match="shape \\[n\\]"):
        sliding_windows(np.zeros((6, 1)), 2)
    with pytest.raises(ValueError, match="validation span has 2 steps, fewer than"):
        forecasting_data(np.arange(20.0), 4, 3, validation=0.1, test=0.2)


@pytest.mark.parametrize(
    ("validation", "test", "message"),
    [
        (0.0, 0.1, r"`validation` must be in \(0, 1\), got 0.0"),
        (0.1, 1.0, r"`test` must be in \(0, 1\), got 1.0"),
        (-0.2, 0.1, r"`validation` must be in \(0, 1\)"),
        (0.5, 0.5, "leaves an empty span"),
        (0.01, 0.1, "leaves an empty span"),
    ],
)
def test_bad_split_fractions(validation, test, message):
    with pytest.raises(ValueError, match=message):
        chronological_split(20, validation, test)


def test_malformed_misspelling_line_names_its_number(write):
    path = write("right: rihgt\nwrong wrnog\n", "m.txt")
    with pytest.raises(ValueError, match=r"m.txt, line 2: expected 'right: wrong1"):
        load_misspellings(path)
    path = write("right: rihgt\n\nwrong:\n", "m.txt")
    with pytest.raises(ValueError, match="line 3"):
        load_misspellings(path)


def test_constant_training_span_is_an_error():
    with pytest.raises(ValueError, match=r"must vary.*std 0"):
        Scaler.fit(np.full(10, 3.0))
    with pytest.raises(ValueError, match="must vary"):
        Scaler.fit(np.full(10, 0.1))  # rounding leaves std ~1e-17, not exactly 0
    values = np.concatenate([np.full(70, 2.0), np.arange(30.0)])
    with pytest.raises(ValueError, match="must vary"):
        forecasting_data(values, 3, 1, validation=0.15, test=0.15)
    # tiny values that vary are a scale, not rounding noise
    tiny = Scaler.fit(np.array([1.0, 2.0, 3.0]) * 1e-12)
    np.testing.assert_allclose(tiny.transform([2e-12]), [0.0], atol=1e-12)
    np.testing.assert_allclose(tiny.inverse(tiny.transform([3e-12])), [3e-12])


def test_complex_values_are_refused_not_truncated():
    with pytest.raises(TypeError, match="must be real numbers, got dtype complex128"):
        Scaler.fit(np.array([1 + 1j, 2.0, 3.0]))
    with pytest.raises(TypeError, match="real numbers"):
        forecasting_data(np.arange(50) + 0j, 3, 1, validation=0.15, test=0.15)


def test_bad_words_file(write):
    path = write("word,frequency\nthe,10\nBig,5\n", "w.csv")
    with pytest.raises(
        ValueError, match="line 3: words must be lowercase a-z, got 'Big'"
    ):
        load_words(path)
    path = write("word,frequency\nthe,10\nof,12\n", "w.csv")
    with pytest.raises(ValueError, match="line 3: frequencies must not increase"):
        load_words(path)


# ----------------------------------------------------- shipped files (optional)


def test_shipped_co2_is_weekly_with_gaps_filled():
    series = load_series(shipped("co2.csv"))
    assert series.values.index.freqstr.startswith("W")
    assert series.filled > 0
    assert not series.values.isna().any()
    assert series.values.index.is_monotonic_increasing


def test_shipped_series_load_with_the_default_limits():
    co2 = load_series(shipped("co2.csv"), "date", "co2")
    assert (co2.freq, len(co2.values), co2.filled) == ("W-SAT", 2284, 59)
    sunspots = load_series(shipped("sunspots.csv"), "date", "sunspots")
    assert (sunspots.freq, len(sunspots.values), sunspots.filled) == ("YS-JAN", 309, 0)


def test_shipped_digits():
    images, labels = load_digits(shipped("digits.csv.gz"))
    assert images.shape == (1797, 8, 8)
    assert images.min() == 0.0 and images.max() == 1.0
    assert set(labels.tolist()) == set(range(10))


def test_shipped_words():
    words, frequency = load_words(shipped("words.csv"))
    assert len(words) == len(frequency) > 0
    assert all(w.isascii() and w.isalpha() and w.islower() for w in words)
    assert np.all(np.diff(frequency) <= 0)


def test_shipped_misspellings():
    pairs = load_misspellings(shipped("spell-testset1.txt"))
    assert len(pairs) == 270
    lines = {}
    for line in shipped("spell-testset1.txt").read_text().splitlines():
        right, _, wrongs = line.partition(":")
        lines[right.strip()] = wrongs.split()
    for wrong, right in pairs:
        assert wrong in lines[right]
    assert pairs[0] == ("contenpted", "contented")


def _m4_file(path, rows):
    """An M4-layout CSV: a header V1..Vn, then one quoted id and its values a row."""
    width = 1 + max(len(values) for _, values in rows)
    lines = [",".join(f'"V{i}"' for i in range(1, width + 1))]
    for name, values in rows:
        cells = [str(v) for v in values] + [""] * (width - 1 - len(values))
        lines.append(",".join([f'"{name}"', *cells]))
    path.write_text("\n".join(lines) + "\n")
    return path


def test_m4_hourly_loads_series_of_different_lengths(tmp_path):
    train = _m4_file(tmp_path / "train.csv", [("H1", [1, 2, 3]), ("H2", [4, 5])])
    test = _m4_file(tmp_path / "test.csv", [("H1", range(48)), ("H2", range(1, 49))])
    m4 = data.load_m4_hourly(train, test)
    assert m4.ids == ["H1", "H2"]
    np.testing.assert_array_equal(m4.train[1], [4, 5])
    np.testing.assert_array_equal(m4.test[1], np.arange(1, 49))
    np.testing.assert_array_equal(m4.insample(), [[1, 2, 3], [4, 5, np.nan]])


@pytest.mark.parametrize(
    "train_rows, test_rows, words",
    [
        ([("H1", [1, 2])], [("H2", range(48))], ["row 1", "'H1'", "'H2'"]),
        ([("H1", [1, 2])], [("H1", range(47))], ["test series H1", "48", "got 47"]),
        ([("H1", [1, "", 3])], [("H1", range(48))], ["series H1", "line 2"]),
    ],
)
def test_m4_hourly_refuses_a_file_not_in_m4s_layout(
    tmp_path, train_rows, test_rows, words
):
    train = _m4_file(tmp_path / "train.csv", train_rows)
    test = _m4_file(tmp_path / "test.csv", test_rows)
    with pytest.raises(ValueError) as info:
        data.load_m4_hourly(train, test)
    for word in ["load_m4_hourly", *words]:
        assert word in str(info.value)
