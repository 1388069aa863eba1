"""Checks of scalar arguments (sizes, rates, steps, flags, seeds, keys), shared
by every module.

Python and NumPy numbers are accepted alike (``np.int64(3)`` is a size), bools
are not numbers, and the value comes back as a plain ``int``, ``float`` or
``bool``. Each check raises a TypeError or ValueError naming the function and
the argument.
"""

from __future__ import annotations

import functools
import math
import operator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

# jax.random.key takes a seed in the range of a C long
SEED_RANGE = (-(2**63), 2**63 - 1)


def whole_number(value: Any) -> int | None:
    """``value`` as an int if it is one (Python's or NumPy's; a bool is not)."""
    if isinstance(value, bool):
        return None
    try:
        return operator.index(value)
    except TypeError:
        return None


def positive_int(fn: str, name: str, value: Any) -> int:
    """``value`` as an int >= 1; TypeError or ValueError naming ``name``."""
    number = whole_number(value)
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


def boolean(fn: str, name: str, value: Any) -> bool:
    """``value`` as a bool: True or False (NumPy's too, and the ints 0 and 1);
    a string such as ``"False"`` or ``"no"`` is refused, never read as true."""
    if isinstance(value, bool | np.bool_):
        return bool(value)
    number = whole_number(value)
    if number not in (0, 1):
        raise TypeError(
            f"{fn}: `{name}` must be True or False, got {type(value).__name__} "
            f"{value!r}"
        )
    return bool(number)


def int_seed(fn: str, name: str, value: Any) -> int:
    """``value`` as an int that ``jax.random.key`` takes (a C long)."""
    number = whole_number(value)
    if number is None:
        raise TypeError(
            f"{fn}: `{name}` must be an int, got {type(value).__name__} {value!r}"
        )
    low, high = SEED_RANGE
    if not low <= number <= high:
        raise ValueError(
            f"{fn}: `{name}` must be an int from -2**63 to 2**63 - 1 (what "
            f"jax.random.key takes), got {number}"
        )
    return number


def prng_key(fn: str, name: str, value: Any) -> jax.Array:
    """``value`` if it is one JAX random key: a typed key (``jax.random.key``,
    of any implementation) or raw ``uint32`` key data (``jax.random.PRNGKey``)
    of the shape of the default implementation (``jax_default_prng_impl``:
    ``uint32[2]`` for threefry, ``uint32[4]`` for "rbg"), as JAX reads raw
    data. Raw data of another shape is refused, since it does not say its
    implementation (``jax.random.wrap_key_data(data, impl=...)`` says it); an
    int seed is refused with the fix, so that a seed is never mistaken for key
    data.
    """
    if isinstance(value, jax.Array | np.ndarray):
        if jax.dtypes.issubdtype(value.dtype, jax.dtypes.prng_key):
            if value.shape == ():
                return value
        elif value.dtype == np.uint32 and value.shape == _raw_shape(
            jax.config.jax_default_prng_impl
        ):
            return jnp.asarray(value)
    raise TypeError(
        f"{fn}: `{name}` must be one JAX random key, e.g. jax.random.key(0) (for "
        f"an int seed s, pass jax.random.key(s)), got {_what(value)}"
    )


@functools.lru_cache(maxsize=8)
def _raw_shape(impl: str) -> tuple[int, ...]:
    """The shape of raw key data of implementation ``impl`` (traced, not run)."""
    data = lambda: jax.random.key_data(jax.random.key(0, impl=impl))  # noqa: E731
    return tuple(jax.eval_shape(data).shape)


def _what(value) -> str:
    """What ``prng_key`` got: an array with the raw key shape it takes."""
    shape = getattr(value, "shape", None)
    if shape is None:
        return f"{type(value).__name__} {value!r}"
    default = jax.config.jax_default_prng_impl
    return (
        f"an array of shape {tuple(shape)} and dtype {value.dtype} (raw key data "
        f"of the default implementation, {default}, is uint32 of shape "
        f"{_raw_shape(default)}; wrap other data with jax.random.wrap_key_data)"
    )
