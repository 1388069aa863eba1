"""Calendar features of any dates, the future's included, and the season length.

A forecaster knows the dates of the steps it forecasts, so what the calendar says
about them (the hour of the day, the day of the week, the month) is an input known
in the future. Each periodic component becomes two features, the sine and cosine
of its phase, so that 23:00 lies next to 00:00. Which components a frequency has:
below a day, hour of day, day of week and day of year; daily, day of week and
day of year; weekly, day of year; monthly and quarterly, month of year; yearly,
none. Integer ``ds`` (steps with no calendar) give the phase of the step in the
season, ``ds mod season_length``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

_DAY = 86400.0


def step_days(freq) -> float:
    """The length of one step of ``freq`` (a pandas offset, or 1 for integer
    steps, counted as a day) in days; months and years by their calendar."""
    if freq == 1:
        return 1.0
    two = pd.date_range("2001-01-01", periods=2, freq=freq)
    return (two[1] - two[0]).total_seconds() / _DAY


def season_length(freq) -> int:
    """The usual seasonal period of a frequency: 24 hourly, 7 daily, 52 weekly,
    12 monthly, 4 quarterly; 1 otherwise (yearly, integer steps, minutes)."""
    if freq == 1:
        return 1
    days = step_days(freq)
    for low, high, period in (
        (1 / 24 - 1e-9, 1 / 24 + 1e-9, 24),
        (1 - 1e-9, 1 + 1e-9, 7),
        (7 - 1e-9, 7 + 1e-9, 52),
        (28, 31, 12),
        (89, 92, 4),
    ):
        if low <= days <= high:
            return period
    return 1


def _phases(ds: pd.DatetimeIndex, days: float) -> list[np.ndarray]:
    """The phases in [0, 1) of the calendar components that vary at this step."""
    hour = (ds.hour + ds.minute / 60) / 24
    year = (ds.day_of_year - 1 + hour) / 365.25
    week = (ds.day_of_week + hour) / 7
    if days < 1:
        return [np.asarray(hour), np.asarray(week), np.asarray(year)]
    if days < 7:
        return [np.asarray(week), np.asarray(year)]
    if days < 28:
        return [np.asarray(year)]
    if days < 365:
        return [np.asarray((ds.month - 1) / 12)]
    return []


def calendar_count(freq, season: int) -> int:
    """How many calendar features :func:`calendar` gives for this frequency."""
    if freq == 1:
        return 2 if season > 1 else 0
    sample = pd.date_range("2001-01-01", periods=1, freq=freq)
    return 2 * len(_phases(sample, step_days(freq)))


def calendar(ds: pd.Index, freq, season: int) -> np.ndarray:
    """Sine and cosine of each calendar phase of ``ds``: [len(ds), C] float64.

    Args:
        ds: dates (a DatetimeIndex) or integer steps.
        freq: their frequency (a pandas offset, or 1 for integer steps).
        season: the season length, for integer steps.
    """
    if freq == 1:
        if season <= 1:
            return np.empty((len(ds), 0))
        phases = [np.mod(np.asarray(ds, np.int64), season) / season]
    else:
        phases = _phases(pd.DatetimeIndex(ds), step_days(freq))
    angles = [2 * np.pi * p.astype(np.float64) for p in phases]
    columns = [f(a) for a in angles for f in (np.sin, np.cos)]
    return np.stack(columns, axis=1) if columns else np.empty((len(ds), 0))
