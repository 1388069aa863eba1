"""Where the shipped data lives, and reading a user's file with one-line errors."""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path
from typing import Any

import pandas as pd

# The repository's data/ folder, installed under this name (pyproject.toml): the
# editable install and a wheel find the same files. Looked up when asked for, so
# that the library itself imports from an uninstalled checkout too.
SHIPPED = "rnnbptt.data.shipped"


def _shipped_dir() -> Path:
    """The installed ``data/`` folder (``importlib.resources``).

    Raises:
        FileNotFoundError: if ``rnnbptt.data.shipped`` is not installed.
    """
    try:
        return Path(resources.files(SHIPPED))
    except ModuleNotFoundError as error:
        if error.name != SHIPPED:
            raise
        raise FileNotFoundError(
            f"the shipped data ({SHIPPED}, the repository's data/ folder) is not "
            "installed: install rnnbptt (in a checkout: pip install -e .)"
        ) from None


def data_path(name: str) -> Path:
    """Path of a file shipped with rnnbptt: the repository's ``data/`` folder,
    installed with the package as ``rnnbptt.data.shipped``.

    Args:
        name: the file name, e.g. ``"co2.csv"``.

    Returns:
        The absolute path of the installed ``data/<name>``.

    Raises:
        TypeError: if ``name`` is not a string.
        FileNotFoundError: if the file is not there (the message lists what is).
    """
    if not isinstance(name, str):
        raise TypeError(f"`data_path`: `name` must be a str, got {type(name).__name__}")
    try:
        folder = _shipped_dir()
    except FileNotFoundError as error:
        raise FileNotFoundError(
            f"`data_path`: no shipped data file {name!r}: {error}"
        ) from None
    path = folder / name
    if not path.is_file():
        have = sorted(
            p.name for p in folder.iterdir() if p.is_file() and p.suffix != ".py"
        )
        raise FileNotFoundError(
            f"`data_path`: no shipped data file {name!r} in {folder} (it has: "
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
