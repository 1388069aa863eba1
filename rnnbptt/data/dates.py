"""Dates read from a CSV's text: the reading (:func:`_parse_dates`) and, for a
date that does not read, why (:func:`_bad_date`): not a date, not in the given
``date_format``, or in another format than the first date's.

Used by :func:`rnnbptt.data.load_series` (``series.py``).
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Any

import pandas as pd
from pandas.tseries.api import guess_datetime_format

# strptime's directives, which pandas' format= takes
_DIRECTIVES = frozenset("aAbBcdfGHIjmMpSuUVwWxXyYzZ%")

# Dates such as 03/04/2020 (or 3.4.20, 03-04-2020): day and month can swap.
_NUMERIC_DATE = r"\d{1,2}[/.-]\d{1,2}[/.-]\d{2,4}(?:[ T].*)?"


def _check_format_type(fn: str, date_format: Any) -> None:
    if date_format is not None and not isinstance(date_format, str):
        raise TypeError(
            f"`{fn}`: `date_format` must be a str such as '%d/%m/%Y', got "
            f"{type(date_format).__name__}"
        )


def _parse_dates(fn: str, path: Path, raw: pd.Series, date_format) -> pd.Series:
    """The dates, month first or day first where only one reading parses; an
    error where both do and disagree (03/04/2020: 4 March or 3 April?)."""
    if date_format is not None:
        _check_date_format(fn, date_format)
    try:
        if date_format is not None:
            return _to_datetime(raw, format=date_format)
        dates = _to_datetime(raw)
        if not raw.dropna().str.fullmatch(_NUMERIC_DATE).all():
            return dates
        day_first = _to_datetime(raw, dayfirst=True)
    except ValueError as err:
        if date_format is not None and "timezone" not in str(err).lower():
            raise ValueError(  # e.g. %G without %V: pandas' reason is clear
                f"`{fn}`: `date_format` {date_format!r} cannot be used: {err}"
            ) from err
        raise ValueError(  # UTC offsets that change within the file
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


def _to_datetime(raw: pd.Series, **kwargs) -> pd.Series:
    with warnings.catch_warnings():
        # "could not infer format" is expected for unusual formats; a failure to
        # parse shows up as NaT, reported by the caller.
        warnings.simplefilter("ignore", UserWarning)
        return pd.to_datetime(raw, errors="coerce", **kwargs)


def _check_date_format(fn: str, date_format: str) -> None:
    """Refuses a format with a directive strptime does not have (``%Q``)."""
    if date_format in ("ISO8601", "mixed"):
        return
    for match in re.finditer(r"%(.?)", date_format):
        if match.group(1) not in _DIRECTIVES:
            what = f"%{match.group(1)}" if match.group(1) else "a lone % at its end"
            raise ValueError(
                f"`{fn}`: `date_format` {date_format!r} is not a valid date format: "
                f"{what} is not a strptime directive; use directives such as %Y %m "
                "%d %H %M %S (e.g. '%d/%m/%Y'), or 'ISO8601' or 'mixed'"
            )


def _bad_date(fn, path, raw: pd.Series, line: int, column: str, date_format) -> str:
    """Why the date on ``line`` did not parse: not a date, not in the given
    format, or in another format than the first date (pandas reads every date
    in the format it infers from the first)."""
    where = f"`{fn}`: {path}, line {line} (data row {line - 1})"
    text = raw.loc[line]
    if date_format is not None and _guess_format(text) is not None:
        return f"{where}: date {text!r} does not match date_format {date_format!r}"
    valid = raw[raw.notna() & (raw != "")]
    first = valid.index[0] if len(valid) else line
    formats = _guess_format(raw.loc[first]), _guess_format(text)
    if date_format is None and None not in formats and formats[0] != formats[1]:
        iso = all(f.startswith("%Y-%m-%d") for f in formats)
        return (
            f"`{fn}`: {path}: column {column!r} mixes date formats: line {first} has "
            f"{raw.loc[first]!r} ({formats[0]}), line {line} has {text!r} "
            f"({formats[1]}); write every date in one format, or pass "
            f"date_format={'ISO8601' if iso else 'mixed'!r} to read each as written"
        )
    return f"{where}: column {column!r} must hold dates, got {_shown(text)}"


def _guess_format(text: Any) -> str | None:
    if pd.isna(text) or text == "":
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return guess_datetime_format(text)
        except (ValueError, TypeError):
            return None


def _shown(text: Any) -> str:
    return "an empty cell" if pd.isna(text) or text == "" else repr(text)


def _when(stamp: pd.Timestamp) -> str:
    return str(stamp.date()) if stamp == stamp.normalize() else str(stamp)
