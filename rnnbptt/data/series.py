"""A CSV time series put on a regular, gap-free time grid (:func:`load_series`)."""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pandas.tseries.frequencies import to_offset

from .files import _existing_file, _read_csv, _require_columns

# Spacings (in days) that mean a calendar frequency, tried when the index has gaps
# and pandas.infer_freq gives up: (lowest, highest, months per step).
_MONTHLY_SPACINGS = ((28, 31, 1), (89, 92, 3), (181, 184, 6), (365, 366, 12))


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
        """The frequency of the index as a pandas alias, e.g. ``"W-SAT"`` (for
        a calendar step that has no alias, such as monthly on the 15th, pandas'
        description of the offset)."""
        return self.values.index.freqstr


def load_series(
    path: str | os.PathLike,
    date_column: str = "date",
    value_column: str | None = None,
    *,
    freq: str | pd.DateOffset | None = None,
    date_format: str | None = None,
) -> Series:
    """Reads a CSV time series and puts it on a regular, gap-free time grid.

    The rows are sorted by date; the frequency is inferred (``pandas.infer_freq``,
    or the most common spacing between dates when gaps break that, e.g. weekly data
    with missing weeks) unless ``freq`` is given. The series is reindexed to every
    step from the first to the last date; missing rows and missing values (an
    empty or blank cell, or one of pandas' missing markers such as ``NA``, ``NaN``,
    ``null`` or ``#N/A``) become NaN, are counted in ``filled``, and are filled by
    linear interpolation in time, the ones before the first (after the last) valid
    value by that value.

    Args:
        path: the CSV file, with a header row.
        date_column: the column of dates.
        value_column: the column of values; ``None`` means the only other column.
        freq: a pandas frequency (``"D"``, ``"W-SAT"``, ``"MS"`` …) to use instead
            of inferring one; every date must lie on its grid. Business days, for
            example, need ``freq="B"``: inferred from gappy data they come out
            daily, with the weekends filled.
        date_format: a ``strftime`` format of the dates (``"%d/%m/%Y"``);
            None infers it. Numeric dates that read both day first and month
            first, differently, are an error that asks for it.

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
    frame, value_column = _read_frame(fn, path, date_column, value_column)
    dates, values = _dates_and_values(
        fn, path, frame, date_column, value_column, date_format
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


def _read_frame(fn, path: Path, date_column: str, value_column: str | None):
    """The file's cells as strings, indexed by line, and the value column."""
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
    return frame, value_column


def _dates_and_values(fn, path, frame, date_column, value_column, date_format):
    """The parsed dates and float64 values (NaN where missing), each checked:
    a bad cell or a repeated date is an error naming its line."""
    raw_dates = frame[date_column].str.strip()
    dates = _parse_dates(fn, path, raw_dates, date_format)
    if dates.isna().any():
        line = dates.index[dates.isna()][0]
        raise ValueError(
            f"`{fn}`: {path}, line {line} (data row {line - 1}): column "
            f"{date_column!r} must hold dates, got {_shown(raw_dates.loc[line])}"
        )
    raw_values = frame[value_column].str.strip().replace("", None)  # blank: empty
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
    return dates, values


def _when(stamp: pd.Timestamp) -> str:
    return str(stamp.date()) if stamp == stamp.normalize() else str(stamp)


# Dates such as 03/04/2020 (or 3.4.20, 03-04-2020): day and month can swap.
_NUMERIC_DATE = r"\d{1,2}[/.-]\d{1,2}[/.-]\d{2,4}(?:[ T].*)?"


def _to_datetime(raw: pd.Series, **kwargs) -> pd.Series:
    with warnings.catch_warnings():
        # "could not infer format" is expected for unusual formats; a failure to
        # parse shows up as NaT, reported by the caller.
        warnings.simplefilter("ignore", UserWarning)
        return pd.to_datetime(raw, errors="coerce", **kwargs)


def _parse_dates(fn: str, path: Path, raw: pd.Series, date_format) -> pd.Series:
    """The dates, month first or day first where only one reading parses; an
    error where both do and disagree (03/04/2020: 4 March or 3 April?)."""
    try:
        if date_format is not None:
            return _to_datetime(raw, format=date_format)
        dates = _to_datetime(raw)
        if not raw.dropna().str.fullmatch(_NUMERIC_DATE).all():
            return dates
        day_first = _to_datetime(raw, dayfirst=True)
    except ValueError as err:  # e.g. UTC offsets that change within the file
        raise ValueError(
            f"`{fn}`: {path}: the dates cannot be read as one time line ({err}); "
            "give them without UTC offsets, or all in one offset"
        ) from err
    if day_first.notna().all() and dates.isna().any():
        return day_first
    differ = dates.notna() & day_first.notna() & (dates != day_first)
    if differ.any():
        line = differ.index[differ][0]
        raise ValueError(
            f"`{fn}`: {path}, line {line}: date {raw.loc[line]!r} reads as "
            f"{_when(dates.loc[line])} (month first) or {_when(day_first.loc[line])} "
            "(day first); pass `date_format`, e.g. '%d/%m/%Y' or '%m/%d/%Y'"
        )
    return dates


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
