"""Many series in the ecosystem's long format, checked once and held as arrays.

The input is what Nixtla's libraries take: a DataFrame with one row per series and
time, columns ``unique_id``, ``ds`` (datetimes, or integers counting steps) and
``y``, plus covariate columns; or one ``pandas.Series`` with a DatetimeIndex.
:func:`to_panel` checks it (duplicate rows, unsorted or irregular dates, missing
values: each error names the series and the row) and returns a :class:`Panel`:
each series' values and dates, of its own length and start, on one frequency.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd

from ..data.grid import _given_offset, _inferred

ID, DS, Y = "unique_id", "ds", "y"


class Panel(NamedTuple):
    """Series of their own lengths and starts on one frequency."""

    ids: list  # the unique_id of each series, in order of first appearance
    y: list[np.ndarray]  # each [T_i] float64, oldest first
    ds: list[pd.Index]  # each series' dates [T_i] (DatetimeIndex or integers)
    freq: object  # a pandas offset for dates, or 1 for integer steps
    covariates: dict[str, list[np.ndarray]]  # name -> each series' [T_i] values

    def future(self, i: int, h: int) -> pd.Index:
        """The ``h`` dates that follow series ``i``."""
        last = self.ds[i][-1]
        if self.freq == 1:
            return pd.Index(np.arange(last + 1, last + 1 + h), name=DS)
        return pd.date_range(last, periods=h + 1, freq=self.freq)[1:].rename(DS)


def _frame(fn: str, data) -> pd.DataFrame:
    if isinstance(data, pd.Series):
        if not isinstance(data.index, pd.DatetimeIndex):
            raise TypeError(
                f"`{fn}`: a Series must have a DatetimeIndex, got "
                f"{type(data.index).__name__}; or pass a DataFrame with "
                f"columns {ID!r}, {DS!r}, {Y!r}"
            )
        name = data.name if data.name is not None else "series"
        return pd.DataFrame({ID: name, DS: data.index, Y: data.to_numpy()})
    if not isinstance(data, pd.DataFrame):
        raise TypeError(
            f"`{fn}`: `df` must be a pandas DataFrame with columns {ID!r}, {DS!r}, "
            f"{Y!r} (or a Series with a DatetimeIndex), got {type(data).__name__}"
        )
    missing = [c for c in (ID, DS, Y) if c not in data.columns]
    if missing:
        raise ValueError(
            f"`{fn}`: `df` needs the columns {ID!r}, {DS!r}, {Y!r}; missing "
            f"{missing}, got {list(data.columns)}"
        )
    return data


def _check_dates(fn: str, frame: pd.DataFrame) -> bool:
    """Whether ``ds`` holds datetimes (else integers); raises for anything else."""
    ds = frame[DS]
    if pd.api.types.is_datetime64_any_dtype(ds):
        return True
    if pd.api.types.is_integer_dtype(ds):
        return False
    raise TypeError(
        f"`{fn}`: column {DS!r} must hold datetimes or integers, got {ds.dtype} "
        f"(convert it with pandas.to_datetime)"
    )


def _check_values(fn: str, frame: pd.DataFrame, columns) -> None:
    for column in columns:
        values = pd.to_numeric(frame[column], errors="coerce").to_numpy(np.float64)
        bad = ~np.isfinite(values)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise ValueError(
                f"`{fn}`: column {column!r} must be finite numbers; series "
                f"{frame[ID].iloc[row]!r} has {shown(frame[column].iloc[row])} at "
                f"{DS}={frame[DS].iloc[row]} (row {frame.index[row]})"
            )


def shown(value) -> str:
    """A cell's value as a user wrote it: ``nan``, ``'abc'``, ``inf``."""
    return repr(value.item() if isinstance(value, np.generic) else value)


def _check_order(fn: str, name, group: pd.DataFrame) -> None:
    ds = np.asarray(group[DS])
    back = np.flatnonzero(ds[1:] < ds[:-1])
    if back.size:
        at = int(back[0]) + 1
        raise ValueError(
            f"`{fn}`: series {name!r} is not in time order: {DS}={ds[at]} "
            f"(row {group.index[at]}) follows {ds[at - 1]}; sort `df` by "
            f"{ID!r} and {DS!r}"
        )


def _infer_freq(fn: str, dates: list[pd.DatetimeIndex]):
    for ds in dates:
        offset = _inferred(ds)
        if offset is not None:
            return offset
    raise ValueError(
        f"`{fn}`: cannot infer the frequency (no series has 3 or more regularly "
        "spaced dates); pass `freq`, e.g. freq='h'"
    )


def _check_regular(fn: str, name, ds: pd.Index, freq, rows: pd.Index) -> None:
    if freq == 1:
        expected = pd.Index(np.arange(ds[0], ds[0] + len(ds)))
    else:
        expected = pd.date_range(ds[0], periods=len(ds), freq=freq)
    off = np.asarray(ds) != np.asarray(expected)
    if off.any():
        at = int(np.flatnonzero(off)[0])
        raise ValueError(
            f"`{fn}`: series {name!r} is not regular at frequency {freq}: "
            f"{DS}={ds[at]} (row {rows[at]}) where {expected[at]} was due; fill "
            "the gap or give the right `freq`"
        )


def to_panel(df, freq=None, covariates=(), fn: str = "to_panel") -> Panel:
    """Checks a long-format data set and splits it into its series.

    Args:
        df: a DataFrame with columns ``unique_id``, ``ds``, ``y`` (and
            ``covariates``), rows of a series in time order; or a Series with a
            DatetimeIndex (one series, named by the Series' name).
        freq: a pandas frequency (``"h"``, ``"D"``, ``"MS"``...); inferred from
            the dates when None. Integer ``ds`` count steps: their frequency is 1.
        covariates: names of further columns, finite numbers.
        fn: the name the errors give (the caller's).

    Raises:
        TypeError: if ``df`` or its ``ds`` column are of the wrong type.
        ValueError: naming the series and the row, for a duplicate
            ``(unique_id, ds)``, dates out of order or off the frequency, or a
            missing or non-finite value.
    """
    frame = _frame(fn, df)
    covariates = list(covariates)
    absent = [c for c in covariates if c not in frame.columns]
    if absent:
        raise ValueError(f"`{fn}`: covariate columns {absent} are not in `df`")
    dated = _check_dates(fn, frame)
    duplicated = frame.duplicated([ID, DS])
    if duplicated.any():
        at = int(np.flatnonzero(duplicated.to_numpy())[0])
        raise ValueError(
            f"`{fn}`: series {frame[ID].iloc[at]!r} has two rows for "
            f"{DS}={frame[DS].iloc[at]} (the second is row {frame.index[at]})"
        )
    _check_values(fn, frame, [Y, *covariates])
    ids, groups = [], []
    for name, group in frame.groupby(ID, sort=False):
        _check_order(fn, name, group)
        ids.append(name)
        groups.append(group)
    dates = [pd.DatetimeIndex(g[DS]) if dated else pd.Index(g[DS]) for g in groups]
    if not dated:
        freq = 1
    elif freq is None:
        freq = _infer_freq(fn, dates)
    else:
        freq = _given_offset(fn, freq)
    for name, ds, group in zip(ids, dates, groups, strict=True):
        _check_regular(fn, name, ds, freq, group.index)
    return Panel(
        ids,
        [g[Y].to_numpy(np.float64) for g in groups],
        [ds.rename(DS) for ds in dates],
        freq,
        {c: [g[c].to_numpy(np.float64) for g in groups] for c in covariates},
    )


def tail_panel(panel: Panel, steps: int, order=None) -> Panel:
    """The last ``steps`` of each series (in the order of ``order``'s ids)."""
    index = None
    if order is not None:
        where = {name: i for i, name in enumerate(panel.ids)}
        index = [where[name] for name in order if name in where]
    return sliced(panel, slice(-steps, None), index)


def sliced(panel: Panel, cut: slice, index=None) -> Panel:
    """Every series' values, dates and covariates cut alike (series ``index``,
    default all, in that order)."""
    index = range(len(panel.ids)) if index is None else index
    return Panel(
        [panel.ids[i] for i in index],
        [panel.y[i][cut] for i in index],
        [panel.ds[i][cut] for i in index],
        panel.freq,
        {k: [v[i][cut] for i in index] for k, v in panel.covariates.items()},
    )
