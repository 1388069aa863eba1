"""The M4 competition's hourly series (shipped as ``data/m4-hourly-*.csv.gz``)."""

from __future__ import annotations

import os
from typing import NamedTuple

import numpy as np

from .files import _existing_file, _read_csv, data_path

M4_HOURLY_HORIZON = 48
M4_HOURLY_PERIOD = 24  # the seasonal period: MASE's and MSIS's m


class M4Data(NamedTuple):
    """One M4 frequency: the series' ids, training values and test values."""

    ids: list[str]  # as M4 names them: "H1" ... "H414"
    train: list[np.ndarray]  # each [T_i] float64, oldest first (700 to 960 hourly)
    test: np.ndarray  # [N, horizon] float64: the values that follow each series
    horizon: int
    period: int

    def insample(self) -> np.ndarray:
        """The training series as one [N, max T] array, right-padded with NaN."""
        out = np.full((len(self.train), max(map(len, self.train))), np.nan)
        for row, values in zip(out, self.train, strict=True):
            row[: values.size] = values
        return out


def _wide(fn: str, path, name: str) -> tuple[list[str], list[np.ndarray]]:
    """(ids, values of each row) of an M4 file: ``V1`` the id, then the values,
    each row's trailing cells empty where its series is shorter."""
    path = data_path(name) if path is None else _existing_file(fn, path)
    frame = _read_csv(fn, path, index_col=0)
    if frame.shape[1] == 0 or frame.index.has_duplicates:
        raise ValueError(
            f"`{fn}`: {path} must be M4's layout (an id column, then values, one "
            f"row per series, ids unique), got {frame.shape[1] + 1} columns"
        )
    values = frame.to_numpy(np.float64)
    rows = []
    for i, row in enumerate(values):
        present = ~np.isnan(row)
        length = int(present.sum())
        if length == 0 or not present[:length].all():
            raise ValueError(
                f"`{fn}`: {path}, series {frame.index[i]} (line {i + 2}): values "
                "must be contiguous from the first column, empty cells only at the end"
            )
        rows.append(row[:length])
    return [str(i) for i in frame.index], rows


def load_m4_hourly(
    train: str | os.PathLike | None = None, test: str | os.PathLike | None = None
) -> M4Data:
    """The 414 hourly series of the M4 competition, its training and test sets.

    Args:
        train, test: ``Hourly-train.csv`` and ``Hourly-test.csv`` of the M4
            organisers' repository (gzipped or not); ``None`` means the shipped
            ``data/m4-hourly-train.csv.gz`` and ``data/m4-hourly-test.csv.gz``.

    Returns:
        An :class:`M4Data` with horizon 48 and period 24.

    Raises:
        ValueError: if a file is not in M4's layout, the two files do not list
            the same series in the same order, or a test row is not 48 values.
    """
    fn = "load_m4_hourly"
    ids, rows = _wide(fn, train, "m4-hourly-train.csv.gz")
    test_ids, test_rows = _wide(fn, test, "m4-hourly-test.csv.gz")
    if test_ids != ids:
        raise ValueError(
            f"`{fn}`: the test file must list the training file's series in its "
            f"order; first difference: {_first_difference(ids, test_ids)}"
        )
    for name, row in zip(ids, test_rows, strict=True):
        if row.size != M4_HOURLY_HORIZON:
            raise ValueError(
                f"`{fn}`: test series {name} must have {M4_HOURLY_HORIZON} values, "
                f"got {row.size}"
            )
    return M4Data(ids, rows, np.stack(test_rows), M4_HOURLY_HORIZON, M4_HOURLY_PERIOD)


def _first_difference(a: list[str], b: list[str]) -> str:
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return f"row {i + 1}: {x!r} in training, {y!r} in test"
    return f"{len(a)} series in training, {len(b)} in test"
