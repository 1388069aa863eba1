"""The regular time grid of a series: its frequency (given, inferred by
``pandas.infer_freq``, or from the most common spacing between dates when gaps
break that), and the limits on what it may fill (:data:`MAX_FILLED` of its
steps, :data:`MAX_GAP` steps in a row, :data:`MAX_STEPS` in all; the size checked
before the grid is built), so that one mistyped date is an error naming its line,
not a series made of interpolation.

Used by :func:`rnnbptt.data.load_series` (``series.py``).
"""

from __future__ import annotations

import itertools
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
from pandas.tseries.frequencies import to_offset

from .._scalars import real_number, whole_number
from .dates import _when

# What load_series fills before it calls the dates suspect (a mistyped year, a
# stray timestamp): the share of the grid filled by interpolation, the longest
# run of steps without a date, and the size of the grid (checked before it is
# built: a year typo in data spaced by seconds asks for billions of steps).
MAX_FILLED = 0.5
MAX_GAP = 100
MAX_STEPS = 10_000_000

# Spacings (in days) that mean a calendar frequency, tried when the index has gaps
# and pandas.infer_freq gives up: (lowest, highest, months per step).
_MONTHLY_SPACINGS = ((28, 31, 1), (89, 92, 3), (181, 184, 6), (365, 366, 12))

# A given calendar freq's step is sampled over this many steps (its longest).
_SAMPLED_STEPS = 24
# What a step of about that many months is called
_CALENDAR = {1: "a month", 3: "a quarter", 6: "half a year", 12: "a year"}


@dataclass(frozen=True)
class _Limits:
    max_filled: float | None
    max_gap: int | None
    max_steps: int | None


def _check_limits(fn: str, max_filled, max_gap, max_steps) -> _Limits:
    if max_filled is not None:
        share = real_number(max_filled)
        if share is None:
            raise TypeError(
                f"`{fn}`: `max_filled` must be a number in [0, 1] or None, got "
                f"{type(max_filled).__name__}"
            )
        if not 0 <= share <= 1:
            raise ValueError(
                f"`{fn}`: `max_filled` must be in [0, 1] (a share of the steps), got "
                f"{max_filled!r}"
            )
        max_filled = share
    counts = []
    for name, value, least in (("max_gap", max_gap, 0), ("max_steps", max_steps, 1)):
        if value is not None:
            number = whole_number(value)
            if number is None:
                raise TypeError(
                    f"`{fn}`: `{name}` must be an int or None, got "
                    f"{type(value).__name__}"
                )
            value = number
            if value < least:
                raise ValueError(f"`{fn}`: `{name}` must be >= {least}, got {value}")
        counts.append(value)
    return _Limits(max_filled, *counts)


class _Dates(NamedTuple):
    """The file's dates, sorted (``index``), the line each is on (``lines``), and
    how many of them have no value (``empty``)."""

    index: pd.DatetimeIndex
    lines: np.ndarray
    empty: int


def _regular_grid(fn, path, dates: _Dates, freq, given, limits) -> pd.DatetimeIndex:
    """The regular grid from the first date to the last that every date lies on:
    ``given`` (the offset of ``freq``) or an inferred one. Refused if it is too
    large, has too long a gap or would be mostly filled (``limits``); where no
    grid fits, a far-off date is named first, as the likelier reason."""
    index = dates.index
    offset = given if given is not None else _inferred(index)
    estimate = None
    if offset is None or given is not None:  # infer_freq's grid has no gaps
        estimate = _lower_bounds(index, given)
        _check_grid(fn, path, dates, *estimate, limits, size_only=True)
    try:
        if offset is None:
            offset = _spacing_offset(fn, path, index, dates.lines)
        grid = pd.date_range(
            index[0], index[-1], freq=offset, name=index.name, unit=index.unit
        )
        positions = _positions(fn, path, dates, grid, freq)
    except ValueError:
        if estimate is not None:
            _check_grid(fn, path, dates, *estimate, limits)
        raise
    _check_grid(fn, path, dates, positions, _step_text(offset), True, limits)
    return grid


def _lower_bounds(index: pd.DatetimeIndex, given) -> tuple[np.ndarray, str, bool]:
    """A lower bound on each date's step on the grid, what one step is, and
    whether the bounds are exact; before any grid is built (a mistyped year in
    data spaced by seconds asks for billions of steps)."""
    step, name, exact = _longest_step(index, given)
    at = np.cumsum(np.maximum((index[1:] - index[:-1]) // step, 1))
    return np.concatenate([[0], at]), name, exact


def _positions(fn, path, dates: _Dates, grid: pd.DatetimeIndex, freq) -> np.ndarray:
    """Each date's step on ``grid``; a date off it (only a given ``freq`` can
    miss one) is an error naming its line."""
    index, lines = dates.index, dates.lines
    positions = grid.get_indexer(index)
    if (positions < 0).any():
        k = int(np.argmax(positions < 0))
        raise ValueError(
            f"`{fn}`: {path}, line {lines[k]}: date {_when(index[k])} is not on "
            f"the grid of freq={freq!r} starting at {_when(index[0])}"
        )
    return positions


def _check_grid(
    fn, path, dates: _Dates, positions, step, exact, limits, size_only=False
) -> None:
    """Refuses the grid that puts date ``i`` at step ``positions[i]`` if it is too
    large, or (unless ``size_only``) has too long a gap or would be mostly
    filled; ``step`` says what one step is, ``exact`` whether the positions are
    exact or lower bounds."""
    index, lines, empty = dates
    least = "" if exact else "at least "
    size = int(positions[-1]) + 1
    absent = size - len(index)
    if absent == 0 and empty == 0:
        return
    longest, gap = _longest_gap(dates, positions, step, least)
    if limits.max_steps is not None and absent > 0 and size > limits.max_steps:
        raise ValueError(
            f"`{fn}`: {path}: the dates from {_when(index[0])} (line {lines[0]}) to "
            f"{_when(index[-1])} (line {lines[-1]}) span {least}{size:,} steps of "
            f"{step}, more than max_steps={limits.max_steps:,}; {gap}. Fix the "
            "dates, or pass a larger `max_steps`"
        )
    if size_only:
        return
    if limits.max_gap is not None and longest > limits.max_gap:
        raise ValueError(
            f"`{fn}`: {path}: {gap}, more than max_gap={limits.max_gap:,} to fill "
            "by interpolation. Fix the dates, or pass a larger `max_gap` (None: no "
            "limit)"
        )
    share = (absent + empty) / size
    if limits.max_filled is not None and share > limits.max_filled:
        why = f"; {gap}" if longest > 0 else ""
        raise ValueError(
            f"`{fn}`: {path}: {least}{share:.2%} of the steps would be filled by "
            f"interpolation ({absent:,} of {size:,} steps without a date, {empty:,} "
            f"dates without a value), more than max_filled={limits.max_filled:g}{why}. "
            "Check the dates and values, or pass a larger `max_filled`"
        )


def _longest_gap(dates: _Dates, positions, step: str, least: str) -> tuple[int, str]:
    """The most steps between two consecutive dates, and a text naming those
    dates and their lines (and a lone first or last date: a likely typo)."""
    index, lines, _ = dates
    gaps = np.diff(positions) - 1
    at = int(np.argmax(gaps))
    longest = int(gaps[at])
    before, after = at + 1, len(index) - at - 1
    gap = (
        f"{least}{longest:,} steps of {step} without a date lie between "
        f"{_when(index[at])} (line {lines[at]}) and {_when(index[at + 1])} "
        f"(line {lines[at + 1]})"
    )
    lone = min(before, after) == 1 and max(before, after) >= 3
    if lone:
        k = len(index) - 1 if after == 1 else 0
        which = "last" if after == 1 else "first"
        gap += f" (the {which} date, on line {lines[k]}, stands alone: mistyped?)"
    else:
        gap += f" ({_count(before, 'date')} before them, {after:,} after)"
    return longest, gap


def _given_offset(fn: str, freq: Any):
    try:
        offset = to_offset(freq)
    except (ValueError, TypeError) as err:
        raise ValueError(
            f"`{fn}`: `freq` must be a pandas frequency such as 'D', 'W-SAT' or "
            f"'MS', got {freq!r}"
        ) from err
    start = pd.Timestamp("2000-01-01")
    if not start + offset > start:
        raise ValueError(f"`{fn}`: `freq` must step forward in time, got {freq!r}")
    return offset


def _inferred(index: pd.DatetimeIndex):
    """The frequency ``pandas.infer_freq`` finds (None for gaps, or < 3 dates)."""
    if len(index) < 3:
        return None
    with warnings.catch_warnings():
        # pandas 3 warns that infer_freq will return an offset; to_offset
        # accepts either.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        inferred = pd.infer_freq(index)
    return None if inferred is None else to_offset(inferred)


def _spacing_offset(fn: str, path: Path, index: pd.DatetimeIndex, lines):
    """The regular frequency of the most common spacing between the dates of
    ``index`` (sorted, unique; ``lines`` their lines), for gappy data."""
    step = _common_spacing(index)
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
    off = np.flatnonzero(((index - index[0]) % step).to_numpy() != pd.Timedelta(0))
    which = f"{_when(index[off[0]])} (line {lines[off[0]]})" if len(off) else "a date"
    raise ValueError(
        f"`{fn}`: {path}: cannot infer a regular frequency (the most common spacing "
        f"is {_duration(step)}, but {which} is not a multiple of it from "
        f"{_when(index[0])} (line {lines[0]})); fix that date, or pass `freq`, e.g. "
        "freq='W-SAT'"
    )


def _on_grid(index: pd.DatetimeIndex, offset) -> bool:
    grid = pd.date_range(index[0], index[-1], freq=offset, unit=index.unit)
    return len(grid) > 0 and grid[0] == index[0] and bool(index.isin(grid).all())


def _common_spacing(index: pd.DatetimeIndex) -> pd.Timedelta:
    return pd.Series(index[1:] - index[:-1]).mode().min()


def _longest_step(index: pd.DatetimeIndex, offset) -> tuple[pd.Timedelta, str, bool]:
    """A step at least as long as any of the grid's, what to call one, and
    whether it is the grid's exact step: of ``offset``, or (None) of the grids
    :func:`_spacing_offset` tries, widened to the longest month, quarter or year
    where the spacing is one."""
    if offset is None:
        step = _common_spacing(index)
        days = step / pd.Timedelta(days=1)
        for low, high, months in _MONTHLY_SPACINGS:
            if low <= days <= high:
                return pd.Timedelta(days=high), f"about {_CALENDAR[months]}", False
        return step, _duration(step), True
    try:
        return pd.Timedelta(offset), _step_text(offset), True
    except (ValueError, TypeError):
        pass
    stamps = [index[0]]
    try:
        for _ in range(_SAMPLED_STEPS):
            stamps.append(stamps[-1] + offset)
    except (OverflowError, pd.errors.OutOfBoundsDatetime):
        if len(stamps) == 1:
            stamps.append(index[-1] + pd.Timedelta(1, unit=index.unit))
    longest = max(b - a for a, b in itertools.pairwise(stamps))
    return longest, _step_text(offset), False


def _step_text(offset) -> str:
    try:
        return _duration(pd.Timedelta(offset))
    except (ValueError, TypeError):
        return repr(offset.freqstr)


def _duration(step: pd.Timedelta) -> str:
    units = ("day", "1D"), ("hour", "1h"), ("minute", "1min"), ("second", "1s")
    for unit, size in units:
        count = step / pd.Timedelta(size)
        if count >= 1 and count == int(count):
            return _count(int(count), unit)
    return f"{step.total_seconds():g} s"


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}" + ("s" if n != 1 else "")
