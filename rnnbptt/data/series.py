"""A CSV time series put on a regular, gap-free time grid (:func:`load_series`).

Its dates are read by ``dates.py``; its grid, and the limits on what that may
fill, are ``grid.py``'s.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .dates import _bad_date, _check_format_type, _parse_dates, _when
from .files import _existing_file, _read_csv, _require_columns
from .grid import (
    MAX_FILLED,
    MAX_GAP,
    MAX_STEPS,
    _check_limits,
    _Dates,
    _given_offset,
    _regular_grid,
)


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
    max_filled: float | None = MAX_FILLED,
    max_gap: int | None = MAX_GAP,
    max_steps: int | None = MAX_STEPS,
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

    A series that would be mostly filled, or that has a long run of steps without
    a date, is refused: one mistyped date (2220 for 2020) would otherwise turn it
    into a straight line. The limits are arguments; ``None`` lifts one.

    Args:
        path: the CSV file, with a header row.
        date_column: the column of dates.
        value_column: the column of values; ``None`` means the only other column.
        freq: a pandas frequency (``"D"``, ``"W-SAT"``, ``"MS"`` …) to use instead
            of inferring one; every date must lie on its grid. Business days, for
            example, need ``freq="B"``: inferred from gappy data they come out
            daily, with the weekends filled.
        date_format: a ``strftime`` format of the dates (``"%d/%m/%Y"``), or
            pandas' ``"ISO8601"`` or ``"mixed"``; None infers it from the first
            date. Numeric dates that read both day first and month first,
            differently, are an error that asks for it.
        max_filled: the largest share of the grid's steps, in [0, 1], that may be
            filled (empty cells and absent rows together).
        max_gap: the most consecutive steps without a date (absent rows) that
            are filled by interpolation.
        max_steps: the most steps the regular grid may have where it adds steps
            to the file's dates; checked before the grid is built.

    Returns:
        A :class:`Series`.

    Raises:
        FileNotFoundError: if the file does not exist.
        ValueError: if the file cannot be read as CSV, lacks a named column (the
            message lists the columns it has), has a date that does not parse (or
            dates in two formats, or a ``date_format`` that is not one), a value
            that is not a finite number (the message gives its line), a duplicate
            date, fewer than 2 values, or dates off any regular grid; or if the
            grid would exceed ``max_steps``, ``max_gap`` or ``max_filled`` (the
            message names the dates around the longest gap, and their lines).
        TypeError: if ``path`` is not a path, ``date_format`` not a string or a
            limit not a number.
    """
    fn = "load_series"
    limits = _check_limits(fn, max_filled, max_gap, max_steps)
    _check_format_type(fn, date_format)
    given = None if freq is None else _given_offset(fn, freq)
    path = _existing_file(fn, path)
    frame, value_column = _read_frame(fn, path, date_column, value_column)
    dates, values = _dates_and_values(
        fn, path, frame, date_column, value_column, date_format
    )
    dates, values = _sorted(dates, values, date_column)
    grid = _regular_grid(fn, path, dates, freq, given, limits)
    series = pd.Series(values, index=dates.index).reindex(grid)
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
        raise ValueError(_bad_date(fn, path, raw_dates, line, date_column, date_format))
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


def _sorted(dates: pd.Series, values: pd.Series, date_column: str):
    """The dates sorted (with their lines and how many have no value), and the
    values in their order, as a float64 array."""
    order = np.argsort(dates.to_numpy(), kind="stable")
    index = pd.DatetimeIndex(dates.to_numpy()[order], name=date_column)
    lines = dates.index.to_numpy()[order]
    empty = int(values.isna().sum())
    return _Dates(index, lines, empty), values.to_numpy()[order]
