"""Loading and preparing the experiments' data, on the host, with NumPy and pandas.

Nothing here is jitted. Loaders check a file once and fail with one line that names
the file and, where it helps, the line; the arrays they return are ready for
``rnnbptt.fit``.

Time series go through :func:`load_series` (regular frequency, gaps filled),
:func:`forecasting_data` (chronological split, a :class:`Scaler` fitted on the
training span only, sliding windows per span). The shipped files live in the
repository's ``data/`` folder; :func:`data_path` finds them.
"""

from __future__ import annotations

import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
from pandas.tseries.frequencies import to_offset

DATA_DIR = Path(__file__).resolve().parent.parent / "data"

# A std at or below this fraction of max(1, |mean|) is rounding noise on a
# constant series: scaling by it would blow the values up to ~1e12.
MIN_RELATIVE_STD = 1e-12

DIGITS_SHAPE = (8, 8)
DIGITS_MAX_PIXEL = 16
DIGITS_CLASSES = 10

_WORD = re.compile(r"[a-z]+")

# Spacings (in days) that mean a calendar frequency, tried when the index has gaps
# and pandas.infer_freq gives up: (lowest, highest, months per step).
_MONTHLY_SPACINGS = ((28, 31, 1), (89, 92, 3), (181, 184, 6), (365, 366, 12))


# --------------------------------------------------------------------- paths


def data_path(name: str) -> Path:
    """Path of a file shipped in the repository's ``data/`` folder.

    Args:
        name: the file name, e.g. ``"co2.csv"``.

    Returns:
        The absolute path of ``data/<name>``.

    Raises:
        TypeError: if ``name`` is not a string.
        FileNotFoundError: if the file is not there (the message lists what is).
    """
    if not isinstance(name, str):
        raise TypeError(f"`data_path`: `name` must be a str, got {type(name).__name__}")
    path = DATA_DIR / name
    if not path.is_file():
        have = sorted(p.name for p in DATA_DIR.iterdir()) if DATA_DIR.is_dir() else []
        raise FileNotFoundError(
            f"`data_path`: no shipped data file {name!r} in {DATA_DIR} (it has: "
            f"{', '.join(have) or 'nothing'}); see data/README.md for where each "
            "file comes from"
        )
    return path


def _existing_file(fn: str, path: Any) -> Path:
    if not isinstance(path, str | os.PathLike):
        raise TypeError(
            f"`{fn}`: `path` must be a str or os.PathLike, got {type(path).__name__}"
        )
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"`{fn}`: no such file: {path}")
    return path


def _read_csv(fn: str, path: Path, **kwargs) -> pd.DataFrame:
    try:
        return pd.read_csv(path, **kwargs)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeError) as err:
        message = str(err).strip().splitlines()[0] if str(err).strip() else "empty"
        raise ValueError(f"`{fn}`: cannot read {path} as CSV: {message}") from err
    except OSError as err:
        raise ValueError(f"`{fn}`: cannot read {path}: {err.strerror}") from err


def _require_columns(fn: str, path: Path, frame: pd.DataFrame, names) -> None:
    missing = [c for c in names if c not in frame.columns]
    if missing:
        raise ValueError(
            f"`{fn}`: {path} has no column {missing[0]!r}; its columns are "
            f"{list(frame.columns)}"
        )


# ------------------------------------------------------------------ series


@dataclass(frozen=True, eq=False)
class Series:
    """A cleaned time series: regular, sorted, without gaps.

    Attributes:
        values: float64 ``pandas.Series`` on a ``DatetimeIndex`` with a regular
            frequency (``values.index.freq``), sorted, no NaN.
        filled: how many values were missing (empty cells and absent rows alike)
            and were filled by interpolation.
        name: the name of the value column.
    """

    values: pd.Series
    filled: int
    name: str

    @property
    def freq(self) -> str:
        """The frequency of the index as a pandas alias, e.g. ``"W-SAT"``."""
        return self.values.index.freqstr


def load_series(
    path: str | os.PathLike,
    date_column: str = "date",
    value_column: str | None = None,
    *,
    freq: str | pd.DateOffset | None = None,
) -> Series:
    """Reads a CSV time series and puts it on a regular, gap-free time grid.

    The rows are sorted by date; the frequency is inferred (``pandas.infer_freq``,
    or the most common spacing between dates when gaps break that, e.g. weekly data
    with missing weeks) unless ``freq`` is given. The series is reindexed to every
    step from the first to the last date; missing rows and empty values become NaN,
    are counted in ``filled``, and are filled by linear interpolation in time, the
    ones before the first (after the last) valid value by that value.

    Args:
        path: the CSV file, with a header row.
        date_column: the column of dates.
        value_column: the column of values; ``None`` means the only other column.
        freq: a pandas frequency (``"D"``, ``"W-SAT"``, ``"MS"`` …) to use instead
            of inferring one; every date must lie on its grid. Business days, for
            example, need ``freq="B"``: inferred from gappy data they come out
            daily, with the weekends filled.

    Returns:
        A :class:`Series`.

    Raises:
        FileNotFoundError: if the file does not exist.
        ValueError: if the file cannot be read as CSV, lacks a named column (the
            message lists the columns it has), has a date that does not parse, a
            value that is not a finite number (the message gives its line), a
            duplicate date, fewer than 2 values, or dates off any regular grid.
        TypeError: if ``path`` is not a path.
    """
    fn = "load_series"
    path = _existing_file(fn, path)
    # Strings first, so a bad cell can be reported as written; blank lines kept so
    # that frame row i is line i + 2 of the file (the header is line 1).
    frame = _read_csv(fn, path, dtype=str, skip_blank_lines=False)
    frame.columns = [str(c).strip() for c in frame.columns]
    frame.index = pd.RangeIndex(2, len(frame) + 2)
    frame = frame.dropna(how="all")
    if value_column is None:
        _require_columns(fn, path, frame, [date_column])
        others = [c for c in frame.columns if c != date_column]
        if len(others) != 1:
            raise ValueError(
                f"`{fn}`: {path} has columns {list(frame.columns)}; with more than "
                "one besides the date, pass `value_column` to choose one"
            )
        value_column = others[0]
    _require_columns(fn, path, frame, [date_column, value_column])

    raw_dates = frame[date_column].str.strip()
    with warnings.catch_warnings():
        # "could not infer format" is expected for unusual formats; a failure to
        # parse shows up as NaT, reported below.
        warnings.simplefilter("ignore", UserWarning)
        dates = pd.to_datetime(raw_dates, errors="coerce")
    if dates.isna().any():
        line = dates.index[dates.isna()][0]
        raise ValueError(
            f"`{fn}`: {path}, line {line} (data row {line - 1}): column "
            f"{date_column!r} must hold dates, got {_shown(raw_dates.loc[line])}"
        )
    raw_values = frame[value_column].str.strip()
    values = pd.to_numeric(raw_values, errors="coerce").astype(np.float64)
    bad = (values.isna() & raw_values.notna()) | np.isinf(values)
    if bad.any():
        line = values.index[bad][0]
        raise ValueError(
            f"`{fn}`: {path}, line {line} (data row {line - 1}): column "
            f"{value_column!r} must hold finite numbers, got {raw_values.loc[line]!r}"
        )
    repeated = dates.duplicated(keep="first")
    if repeated.any():
        line = dates.index[repeated][0]
        first = dates.index[(dates == dates.loc[line]).to_numpy()][0]
        raise ValueError(
            f"`{fn}`: {path}: date {_when(dates.loc[line])} appears more than once "
            f"(lines {first} and {line}); each date must appear once"
        )
    if values.notna().sum() < 2:
        raise ValueError(
            f"`{fn}`: {path} needs at least 2 values in column {value_column!r}, got "
            f"{int(values.notna().sum())}"
        )

    series = pd.Series(
        values.to_numpy(), index=pd.DatetimeIndex(dates.to_numpy(), name=date_column)
    ).sort_index(kind="stable")
    offset = _grid_offset(fn, path, series.index, freq)
    grid = pd.date_range(
        series.index[0],
        series.index[-1],
        freq=offset,
        name=date_column,
        unit=series.index.unit,
    )
    series = series.reindex(grid)
    filled = int(series.isna().sum())
    series = series.interpolate(method="time", limit_area="inside").bfill().ffill()
    return Series(values=series.rename(value_column), filled=filled, name=value_column)


def _when(stamp: pd.Timestamp) -> str:
    return str(stamp.date()) if stamp == stamp.normalize() else str(stamp)


def _shown(text: Any) -> str:
    return "an empty cell" if pd.isna(text) or text == "" else repr(text)


def _on_grid(index: pd.DatetimeIndex, offset) -> bool:
    grid = pd.date_range(index[0], index[-1], freq=offset, unit=index.unit)
    return len(grid) > 0 and grid[0] == index[0] and bool(index.isin(grid).all())


def _grid_offset(fn: str, path: Path, index: pd.DatetimeIndex, freq: Any):
    """The regular frequency that ``index`` (sorted, unique) lies on."""
    if freq is not None:
        try:
            offset = to_offset(freq)
        except (ValueError, TypeError) as err:
            raise ValueError(
                f"`{fn}`: `freq` must be a pandas frequency such as 'D', 'W-SAT' or "
                f"'MS', got {freq!r}"
            ) from err
        grid = pd.date_range(index[0], index[-1], freq=offset, unit=index.unit)
        off = index[~index.isin(grid)]
        if len(off):
            raise ValueError(
                f"`{fn}`: {path}: date {_when(off[0])} is not on the grid of "
                f"freq={freq!r} starting at {_when(index[0])}"
            )
        return offset
    if len(index) >= 3:
        with warnings.catch_warnings():
            # pandas 3 warns that infer_freq will return an offset; to_offset
            # accepts either.
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", FutureWarning)
            inferred = pd.infer_freq(index)
        if inferred is not None:
            return to_offset(inferred)
    spacings = pd.Series(index[1:] - index[:-1])
    step = spacings.mode().min()
    days = step / pd.Timedelta(days=1)
    candidates = []
    if days == int(days) and days % 7 == 0:
        candidates.append(pd.offsets.Week(int(days) // 7, weekday=index[0].weekday()))
    candidates.append(pd.offsets.Day(int(days)) if days == int(days) else step)
    for low, high, months in _MONTHLY_SPACINGS:
        if low <= days <= high:
            candidates += (
                [pd.offsets.YearBegin(), pd.offsets.YearEnd()]
                if months == 12
                else [pd.offsets.MonthBegin(months), pd.offsets.MonthEnd(months)]
            )
            candidates.append(pd.DateOffset(months=months))
    for offset in candidates:
        if _on_grid(index, to_offset(offset)):
            return to_offset(offset)
    raise ValueError(
        f"`{fn}`: {path}: cannot infer a regular frequency (the most common spacing "
        f"is {step}, but not every date is a multiple of it from "
        f"{_when(index[0])}); pass `freq`, e.g. freq='W-SAT'"
    )


# ----------------------------------------------------------------- scaling


def _float_array(fn: str, name: str, x: Any) -> np.ndarray:
    arr = np.asarray(x)
    if arr.dtype == bool or not np.issubdtype(arr.dtype, np.number):
        raise TypeError(f"`{fn}`: `{name}` must be numeric, got dtype {arr.dtype}")
    if not np.issubdtype(arr.dtype, np.floating):
        arr = arr.astype(np.float64)
    return arr


@dataclass(frozen=True)
class Scaler:
    """Standardisation ``(x - mean) / std``, fitted on the training span only.

    Example:
        >>> scaler = Scaler.fit([1.0, 2.0, 3.0])
        >>> scaler.transform([1.0, 3.0]).tolist()
        [-1.224744871391589, 1.224744871391589]
        >>> scaler.inverse(scaler.transform([5.0])).tolist()
        [5.0]
    """

    mean: float
    std: float

    @classmethod
    def fit(cls, train_values: Any) -> Scaler:
        """Mean and (population, ddof=0) std of ``train_values``.

        Args:
            train_values: the training values, any shape; all are pooled.

        Returns:
            The fitted :class:`Scaler`.

        Raises:
            TypeError: if the values are not numeric.
            ValueError: if they are empty, not finite, or constant (std 0).
        """
        fn = "Scaler.fit"
        values = _float_array(fn, "train_values", train_values).astype(np.float64)
        if values.size == 0:
            raise ValueError(f"`{fn}`: `train_values` must not be empty")
        if not np.all(np.isfinite(values)):
            raise ValueError(f"`{fn}`: `train_values` must be finite, got a NaN or inf")
        mean, std = float(values.mean()), float(values.std())
        if std <= MIN_RELATIVE_STD * max(1.0, abs(mean)):
            raise ValueError(
                f"`{fn}`: `train_values` must vary to be standardised, got std {std} "
                f"(constant at {mean}); check the training span"
            )
        return cls(mean=mean, std=std)

    def transform(self, x: Any) -> np.ndarray:
        """``(x - mean) / std``, elementwise, for ``x`` of any shape."""
        return (_float_array("Scaler.transform", "x", x) - self.mean) / self.std

    def inverse(self, x: Any) -> np.ndarray:
        """``x * std + mean``, elementwise, for ``x`` of any shape (e.g. [N, H])."""
        return _float_array("Scaler.inverse", "x", x) * self.std + self.mean


# ----------------------------------------------------------------- windows


def _positive_int(fn: str, name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(f"`{fn}`: `{name}` must be an int, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"`{fn}`: `{name}` must be positive, got {value}")
    return int(value)


def _series_array(fn: str, values: Any) -> np.ndarray:
    if isinstance(values, Series):
        values = values.values
    if isinstance(values, pd.Series):
        values = values.to_numpy()
    arr = _float_array(fn, "values", values)
    if arr.ndim != 1:
        raise ValueError(
            f"`{fn}`: `values` must be one series, shape [n], got shape {arr.shape}"
        )
    if not np.all(np.isfinite(arr)):
        where = int(np.flatnonzero(~np.isfinite(arr))[0])
        raise ValueError(
            f"`{fn}`: `values` must be finite, got {arr[where]} at index {where}"
        )
    return arr


def sliding_windows(
    values: Any, input_length: int, horizon: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """Every window of ``input_length`` steps with the ``horizon`` steps after it.

    Window ``i`` is ``values[i:i + L]`` -> ``values[i + L:i + L + H]``.

    Args:
        values: [n] the series (an array, a ``pandas.Series`` or a :class:`Series`).
        input_length: L, steps the model reads.
        horizon: H, steps it forecasts.

    Returns:
        ``(X, Y)``: X [N, L, 1] and Y [N, H], N = n - L - H + 1, copies in the
        values' float dtype (float64 for integers).

    Raises:
        TypeError: if a size is not an int or the values are not numeric.
        ValueError: if a size is not positive, the values are not a finite 1-D
            series, or the series is shorter than L + H.

    Example:
        >>> X, Y = sliding_windows(np.arange(6.0), input_length=3, horizon=2)
        >>> X.shape, Y.shape
        ((2, 3, 1), (2, 2))
        >>> X[1, :, 0].tolist(), Y[1].tolist()
        ([1.0, 2.0, 3.0], [4.0, 5.0])
    """
    fn = "sliding_windows"
    L = _positive_int(fn, "input_length", input_length)
    H = _positive_int(fn, "horizon", horizon)
    arr = _series_array(fn, values)
    if arr.shape[0] < L + H:
        raise ValueError(
            f"`{fn}`: a series of length {arr.shape[0]} is too short for "
            f"input_length {L} plus horizon {H}; it needs at least {L + H} values"
        )
    windows = np.lib.stride_tricks.sliding_window_view(arr, L + H)
    return windows[:, :L, None].copy(), windows[:, L:].copy()


def chronological_split(
    n: int, validation: float = 0.15, test: float = 0.15
) -> tuple[slice, slice, slice]:
    """Train, validation and test spans of ``range(n)``, in time order.

    The validation and test sizes are ``round(n * fraction)``; training gets the
    rest, at the start. Nothing is shuffled.

    Args:
        n: the number of time steps.
        validation: the fraction of steps for validation, in (0, 1).
        test: the fraction of steps for testing, the last ones, in (0, 1).

    Returns:
        ``(train, validation, test)`` slices, contiguous and covering ``range(n)``.

    Raises:
        TypeError: if ``n`` is not an int or a fraction is not a number.
        ValueError: if a fraction is outside (0, 1) or a span would be empty.

    Example:
        >>> chronological_split(10, validation=0.2, test=0.1)
        (slice(0, 7, None), slice(7, 9, None), slice(9, 10, None))
    """
    fn = "chronological_split"
    n = _positive_int(fn, "n", n)
    for name, fraction in (("validation", validation), ("test", test)):
        if isinstance(fraction, bool) or not isinstance(
            fraction, int | float | np.number
        ):
            raise TypeError(
                f"`{fn}`: `{name}` must be a number, got {type(fraction).__name__}"
            )
        if not 0 < fraction < 1:
            raise ValueError(f"`{fn}`: `{name}` must be in (0, 1), got {fraction}")
    n_val, n_test = round(n * validation), round(n * test)
    n_train = n - n_val - n_test
    if min(n_train, n_val, n_test) < 1:
        raise ValueError(
            f"`{fn}`: splitting {n} steps with validation={validation} and "
            f"test={test} leaves an empty span (train {n_train}, validation {n_val}, "
            f"test {n_test}); use more steps or other fractions"
        )
    return (
        slice(0, n_train),
        slice(n_train, n_train + n_val),
        slice(n_train + n_val, n),
    )


class Windows(NamedTuple):
    """The windows of one span of a forecasting data set.

    Attributes:
        x: [N, L, 1] scaled inputs.
        y: [N, H] scaled targets.
        y_raw: [N, H] the same targets in the series' own units.
        first_target: [N] int, the index in the series of each window's first
            target (its targets are ``first_target[i] : first_target[i] + H``).
    """

    x: np.ndarray
    y: np.ndarray
    y_raw: np.ndarray
    first_target: np.ndarray


@dataclass(frozen=True, eq=False)
class ForecastData:
    """Windows per span, the scaler fitted on the training span, and the spans.

    Attributes:
        train: windows whose inputs and targets lie in the training span.
        validation: windows whose targets lie in the validation span.
        test: windows whose targets lie in the test span.
        scaler: fitted on the raw training span only; ``scaler.inverse`` turns
            forecasts [N, H] back into the series' units.
        spans: the (train, validation, test) slices of the series.
    """

    train: Windows
    validation: Windows
    test: Windows
    scaler: Scaler
    spans: tuple[slice, slice, slice]


def forecasting_data(
    series_values: Any,
    input_length: int,
    horizon: int = 1,
    validation: float = 0.15,
    test: float = 0.15,
) -> ForecastData:
    """Windows for H-step forecasting, split in time, with no leak from the future.

    Convention: the raw series is split first with :func:`chronological_split`;
    the :class:`Scaler` is fitted on the training span alone and then applied to
    the whole series. Every window is ``L`` inputs followed by ``H`` targets, and a
    window belongs to the span that holds *all* of its targets. Training windows lie
    entirely in the training span. Validation and test windows take their inputs
    from the ``L`` steps before their targets, which for the first windows reach
    back into the previous span (as a forecaster in deployment would read recent
    history); no target is ever used twice or seen by the scaler outside training.
    A span of ``m`` steps thus gives ``m - H + 1`` windows (``m - L - H + 1`` for
    training).

    Args:
        series_values: [n] the raw series (array, ``pandas.Series`` or
            :class:`Series`).
        input_length: L, steps each window reads.
        horizon: H, steps each window forecasts.
        validation: fraction of the series for validation, in (0, 1).
        test: fraction of the series for testing (the last steps), in (0, 1).

    Returns:
        A :class:`ForecastData`.

    Raises:
        TypeError: if a size is not an int or the values are not numeric.
        ValueError: if the values are not a finite 1-D series, a fraction is out of
            range, the training span is shorter than L + H, the validation or test
            span shorter than H, or the training span is constant.
    """
    fn = "forecasting_data"
    L = _positive_int(fn, "input_length", input_length)
    H = _positive_int(fn, "horizon", horizon)
    raw = _series_array(fn, series_values).astype(np.float64)
    spans = chronological_split(raw.shape[0], validation, test)
    train, val, tst = spans
    if train.stop < L + H:
        raise ValueError(
            f"`{fn}`: the training span has {train.stop} steps, too few for "
            f"input_length {L} plus horizon {H}; use a longer series, a larger "
            "training fraction or shorter windows"
        )
    for name, span in (("validation", val), ("test", tst)):
        if span.stop - span.start < H:
            raise ValueError(
                f"`{fn}`: the {name} span has {span.stop - span.start} steps, fewer "
                f"than horizon {H}, so no window has all its targets in it; use a "
                f"larger `{name}` fraction or a longer series"
            )
    scaler = Scaler.fit(raw[train])
    scaled = scaler.transform(raw)

    def windows(span: slice) -> Windows:
        start = span.start if span.start == 0 else span.start - L
        x, y = sliding_windows(scaled[start : span.stop], L, H)
        _, y_raw = sliding_windows(raw[start : span.stop], L, H)
        return Windows(x, y, y_raw, start + L + np.arange(x.shape[0]))

    return ForecastData(
        train=windows(train),
        validation=windows(val),
        test=windows(tst),
        scaler=scaler,
        spans=spans,
    )


# ------------------------------------------------------- fixed-format files


def load_digits(
    path: str | os.PathLike | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The 8x8 handwritten digits of scikit-learn (UCI optical digits test set).

    Args:
        path: ``digits.csv.gz`` as shipped with scikit-learn: gzip CSV, no header,
            65 columns (64 pixel counts 0..16, then the label 0..9). ``None`` means
            the repository's ``data/digits.csv.gz``.

    Returns:
        ``(images, labels)``: images [N, 8, 8] float64 in [0, 1] (counts / 16) and
        labels [N] int64.

    Raises:
        FileNotFoundError: if the file does not exist.
        ValueError: if it is not 65 columns of integers in range.
    """
    fn = "load_digits"
    path = data_path("digits.csv.gz") if path is None else _existing_file(fn, path)
    try:
        table = np.loadtxt(path, delimiter=",", ndmin=2)
    except (ValueError, OSError, EOFError) as err:
        raise ValueError(f"`{fn}`: cannot read {path} as numeric CSV: {err}") from err
    columns = DIGITS_SHAPE[0] * DIGITS_SHAPE[1] + 1
    if table.shape[0] == 0 or table.shape[1] != columns:
        raise ValueError(
            f"`{fn}`: {path} must have {columns} columns (64 pixels and a label), got "
            f"shape {table.shape}"
        )
    pixels, labels = table[:, :-1], table[:, -1]
    bad = (pixels != np.round(pixels)) | (pixels < 0) | (pixels > DIGITS_MAX_PIXEL)
    if bad.any():
        row, col = (int(i) for i in np.argwhere(bad)[0])
        raise ValueError(
            f"`{fn}`: {path}, line {row + 1}: pixels must be integers 0..."
            f"{DIGITS_MAX_PIXEL}, got {pixels[row, col]} in column {col + 1}"
        )
    bad = (labels != np.round(labels)) | (labels < 0) | (labels >= DIGITS_CLASSES)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"`{fn}`: {path}, line {row + 1}: the label must be an integer 0..."
            f"{DIGITS_CLASSES - 1}, got {labels[row]}"
        )
    images = (pixels / DIGITS_MAX_PIXEL).reshape(-1, *DIGITS_SHAPE)
    return images, labels.astype(np.int64)


def load_words(
    path: str | os.PathLike | None = None,
) -> tuple[list[str], np.ndarray]:
    """A word-frequency list: CSV with header ``word,frequency``, most frequent first.

    Args:
        path: the CSV file; ``None`` means the repository's ``data/words.csv``.

    Returns:
        ``(words, frequency)``: the words (lowercase a-z) in file order and their
        frequencies [V] float64, non-increasing.

    Raises:
        FileNotFoundError: if the file does not exist.
        ValueError: if a column is missing, a word is not lowercase a-z or repeats,
            a frequency is not a finite non-negative number, the frequencies
            increase somewhere, or there are no words.
    """
    fn = "load_words"
    path = data_path("words.csv") if path is None else _existing_file(fn, path)
    # No NA parsing: "null", "nan" and "na" are words here.
    frame = _read_csv(fn, path, dtype=str, keep_default_na=False, na_filter=False)
    _require_columns(fn, path, frame, ["word", "frequency"])
    if len(frame) == 0:
        raise ValueError(f"`{fn}`: {path} has a header but no words")
    words = [w.strip() for w in frame["word"]]
    for row, word in enumerate(words):
        if not _WORD.fullmatch(word):
            raise ValueError(
                f"`{fn}`: {path}, line {row + 2}: words must be lowercase a-z, got "
                f"{word!r}"
            )
    seen: dict[str, int] = {}
    for row, word in enumerate(words):
        if word in seen:
            raise ValueError(
                f"`{fn}`: {path}: the word {word!r} appears twice (lines "
                f"{seen[word] + 2} and {row + 2})"
            )
        seen[word] = row
    raw = frame["frequency"].str.strip()
    frequency = pd.to_numeric(raw, errors="coerce").to_numpy(np.float64)
    bad = ~np.isfinite(frequency) | (frequency < 0)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"`{fn}`: {path}, line {row + 2}: the frequency must be a finite number "
            f">= 0, got {raw.iloc[row]!r}"
        )
    rising = np.flatnonzero(np.diff(frequency) > 0)
    if rising.size:
        row = int(rising[0]) + 1
        raise ValueError(
            f"`{fn}`: {path}, line {row + 2}: frequencies must not increase (sorted "
            f"most frequent first), got {frequency[row]} after {frequency[row - 1]}"
        )
    return words, frequency


def load_misspellings(path: str | os.PathLike) -> list[tuple[str, str]]:
    """Misspellings in Norvig's format: ``right: wrong1 wrong2 ...`` per line.

    Args:
        path: the text file, e.g. ``data_path("spell-testset1.txt")``. Blank lines
            are skipped.

    Returns:
        ``(wrong, right)`` pairs in file order.

    Raises:
        FileNotFoundError: if the file does not exist.
        ValueError: if a line is not one word, a colon and at least one word (the
            message gives the line number), or the file has no pairs.
    """
    fn = "load_misspellings"
    path = _existing_file(fn, path)
    try:
        text = path.read_text(encoding="utf-8")
    except (UnicodeError, OSError) as err:
        raise ValueError(f"`{fn}`: cannot read {path} as UTF-8 text: {err}") from err
    pairs = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        right, colon, rest = line.partition(":")
        right, wrongs = right.strip(), rest.split()
        if not colon or ":" in rest or len(right.split()) != 1 or not wrongs:
            raise ValueError(
                f"`{fn}`: {path}, line {number}: expected 'right: wrong1 wrong2 ...', "
                f"got {line.strip()!r}"
            )
        pairs += [(wrong, right) for wrong in wrongs]
    if not pairs:
        raise ValueError(f"`{fn}`: {path} has no misspellings")
    return pairs
