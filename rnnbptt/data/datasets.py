"""Fixed-format files: the 8x8 digits, a word-frequency list, Norvig's misspellings."""

from __future__ import annotations

import os
import re

import numpy as np
import pandas as pd

from .files import _existing_file, _read_csv, _require_columns, data_path

DIGITS_SHAPE = (8, 8)
DIGITS_MAX_PIXEL = 16
DIGITS_CLASSES = 10

_WORD = re.compile(r"[a-z]+")


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
        text = path.read_text(encoding="utf-8-sig")  # a byte-order mark is not text
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
