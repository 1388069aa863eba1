"""Checks of scalar arguments (sizes, rates, steps), shared by every module.

Python and NumPy numbers are accepted alike (``np.int64(3)`` is a size), bools
are not, and the value comes back as a plain ``int`` or ``float``.
"""

from __future__ import annotations

import math
import operator
from typing import Any

import numpy as np


def positive_int(fn: str, name: str, value: Any) -> int:
    """``value`` as an int >= 1; TypeError or ValueError naming ``name``."""
    try:
        number = None if isinstance(value, bool) else operator.index(value)
    except TypeError:
        number = None
    if number is None:
        raise TypeError(
            f"{fn}: `{name}` must be a positive int, got {type(value).__name__} "
            f"{value!r}"
        )
    if number <= 0:
        raise ValueError(f"{fn}: `{name}` must be a positive int, got {number}")
    return number


def real_number(value: Any) -> float | None:
    """``value`` as a float if it is one real number (not a bool or a string)."""
    if isinstance(value, bool | str | bytes):
        return None
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError):
        return None
    if arr.shape != () or not np.issubdtype(arr.dtype, np.number):
        return None
    return None if np.iscomplexobj(arr) else float(arr)


def finite_number(
    fn: str, name: str, value: Any, *, above: float | None = None, at_least=None
) -> float:
    """``value`` as a finite float, ``> above`` or ``>= at_least`` if given."""
    number = real_number(value)
    bound = ""
    if above is not None:
        bound = f" > {above}"
    elif at_least is not None:
        bound = f" >= {at_least}"
    ok = number is not None and math.isfinite(number)
    ok = ok and (above is None or number > above)
    ok = ok and (at_least is None or number >= at_least)
    if not ok:
        raise ValueError(
            f"{fn}: `{name}` must be a finite number{bound}, got {value!r}"
        )
    return number
