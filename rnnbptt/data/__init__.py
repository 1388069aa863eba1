"""Loading and preparing the experiments' data, on the host, with NumPy and pandas.

Nothing here is jitted. Loaders check a file once and fail with one line that names
the file and, where it helps, the line; the arrays they return are ready for
``rnnbptt.fit``.

Time series go through :func:`load_series` (``series.py``: regular frequency, gaps
filled), then :func:`forecasting_data` (``windows.py``: chronological split, a
:class:`Scaler` fitted on the training span only, sliding windows per span). The
fixed-format files (digits, words, misspellings) have their loaders in
``datasets.py``, the M4 competition's hourly series theirs in ``m4.py``. The
shipped files are the repository's ``data/`` folder, installed
with the package as ``rnnbptt.data.shipped``; :func:`data_path` finds them there.
"""

from .datasets import (
    DIGITS_CLASSES,
    DIGITS_MAX_PIXEL,
    DIGITS_SHAPE,
    load_digits,
    load_misspellings,
    load_words,
)
from .files import _shipped_dir, data_path
from .m4 import M4_HOURLY_HORIZON, M4_HOURLY_PERIOD, M4Data, load_m4_hourly
from .series import Series, load_series
from .windows import (
    MIN_RELATIVE_STD,
    ForecastData,
    Scaler,
    Windows,
    chronological_split,
    forecasting_data,
    sliding_windows,
)


def __getattr__(name: str):
    # DATA_DIR, the installed data/ folder, is looked up when first asked for:
    # the package imports from an uninstalled checkout too.
    if name == "DATA_DIR":
        return _shipped_dir()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "DATA_DIR",
    "DIGITS_CLASSES",
    "DIGITS_MAX_PIXEL",
    "DIGITS_SHAPE",
    "M4_HOURLY_HORIZON",
    "M4_HOURLY_PERIOD",
    "MIN_RELATIVE_STD",
    "ForecastData",
    "M4Data",
    "Scaler",
    "Series",
    "Windows",
    "chronological_split",
    "data_path",
    "forecasting_data",
    "load_digits",
    "load_m4_hourly",
    "load_misspellings",
    "load_series",
    "load_words",
    "sliding_windows",
]
