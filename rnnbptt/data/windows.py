"""Forecasting windows: a chronological split, a :class:`Scaler` fitted on the
training span only, and sliding windows per span (:func:`forecasting_data`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from .._scalars import positive_int
from .series import Series

# A std at or below this fraction of the values' magnitude (max |value|) is
# rounding noise on a constant series: scaling by it would blow the values up to
# ~1e12. Measured against the data's own scale, so tiny but varying values pass.
MIN_RELATIVE_STD = 1e-12
_SMALLEST = float(np.finfo(np.float64).tiny)


def _float_array(fn: str, name: str, x: Any) -> np.ndarray:
    arr = np.asarray(x)
    if (
        arr.dtype == bool
        or not np.issubdtype(arr.dtype, np.number)
        or np.issubdtype(arr.dtype, np.complexfloating)
    ):
        raise TypeError(f"`{fn}`: `{name}` must be real numbers, got dtype {arr.dtype}")
    if not np.issubdtype(arr.dtype, np.floating):
        arr = arr.astype(np.float64)
    return arr


@dataclass(frozen=True)
class Scaler:
    """Standardisation ``(x - mean) / std``, fitted on the training span only.

    Example:
        >>> scaler = Scaler.fit([1.0, 2.0, 3.0])
        >>> scaler.transform([1.0, 3.0]).tolist()
        [-1.224744871391589, 1.224744871391589]
        >>> scaler.inverse(scaler.transform([5.0])).tolist()
        [5.0]
    """

    mean: float
    std: float

    @classmethod
    def fit(cls, train_values: Any) -> Scaler:
        """Mean and (population, ddof=0) std of ``train_values``.

        Values whose sum or squares overflow (or underflow) float64, such as
        ``[1e308, -1e308, 1e308]`` or ``[1e-300, 2e-300]``, are divided by their
        largest magnitude first, so that the mean and std come out finite and
        right wherever float64 can hold them.

        Args:
            train_values: the training values, any shape; all are pooled.

        Returns:
            The fitted :class:`Scaler`.

        Raises:
            TypeError: if the values are not real numbers.
            ValueError: if they are empty, not finite, constant (a std of 0,
                or below 1e-12 of their largest magnitude: rounding noise), or
                vary by less than float64's smallest normal number.
        """
        fn = "Scaler.fit"
        values = _float_array(fn, "train_values", train_values).astype(np.float64)
        if values.size == 0:
            raise ValueError(f"`{fn}`: `train_values` must not be empty")
        if not np.all(np.isfinite(values)):
            raise ValueError(f"`{fn}`: `train_values` must be finite, got a NaN or inf")
        magnitude = float(np.abs(values).max())
        with np.errstate(over="ignore", under="ignore"):
            mean, std = float(values.mean()), float(values.std())
        constant = std <= MIN_RELATIVE_STD * magnitude
        if magnitude > 0 and (
            not (np.isfinite(mean) and np.isfinite(std)) or std < _SMALLEST
        ):
            # the sum or the squares went beyond float64: in units of the
            # largest magnitude every term lies within [-1, 1]
            unit = values / magnitude
            relative = float(unit.std())
            mean, std = float(unit.mean()) * magnitude, relative * magnitude
            constant = relative <= MIN_RELATIVE_STD
        if constant:
            raise ValueError(
                f"`{fn}`: `train_values` must vary to be standardised, got std {std} "
                f"(constant at {mean}); check the training span"
            )
        if std < _SMALLEST:
            raise ValueError(
                f"`{fn}`: `train_values` vary by std {std}, below the smallest normal "
                f"float64 ({_SMALLEST}), too little to divide by; multiply them by a "
                "power of ten first"
            )
        return cls(mean=mean, std=std)

    def transform(self, x: Any) -> np.ndarray:
        """``(x - mean) / std``, elementwise, for ``x`` of any shape."""
        x = _float_array("Scaler.transform", "x", x)
        with np.errstate(over="ignore", invalid="ignore"):
            z = (x - self.mean) / self.std
            return _where_overflowed(
                z, x, lambda x: x / self.std - self.mean / self.std
            )

    def inverse(self, x: Any) -> np.ndarray:
        """``x * std + mean``, elementwise, for ``x`` of any shape (e.g. [N, H])."""
        x = _float_array("Scaler.inverse", "x", x)
        with np.errstate(over="ignore", invalid="ignore"):
            y = x * self.std + self.mean
            return _where_overflowed(
                y, x, lambda x: (x * (self.std / 2) + self.mean / 2) * 2
            )


def _where_overflowed(result: np.ndarray, x: np.ndarray, stable) -> np.ndarray:
    """``result``, with ``stable(x)`` where it overflowed on a finite ``x`` (an
    intermediate beyond the float range; ``stable`` keeps them within it)."""
    bad = ~np.isfinite(result) & np.isfinite(x)
    if not np.any(bad):
        return result
    result = np.array(result, copy=True)
    result[bad] = stable(x[bad]) if np.ndim(result) else stable(x)
    return result


def _series_array(fn: str, values: Any) -> np.ndarray:
    if isinstance(values, Series):
        values = values.values
    if isinstance(values, pd.Series):
        values = values.to_numpy()
    arr = _float_array(fn, "values", values)
    if arr.ndim != 1:
        raise ValueError(
            f"`{fn}`: `values` must be one series, shape [n], got shape {arr.shape}"
        )
    if not np.all(np.isfinite(arr)):
        where = int(np.flatnonzero(~np.isfinite(arr))[0])
        raise ValueError(
            f"`{fn}`: `values` must be finite, got {arr[where]} at index {where}"
        )
    return arr


def sliding_windows(
    values: Any, input_length: int, horizon: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """Every window of ``input_length`` steps with the ``horizon`` steps after it.

    Window ``i`` is ``values[i:i + L]`` -> ``values[i + L:i + L + H]``.

    Args:
        values: [n] the series (an array, a ``pandas.Series`` or a :class:`Series`).
        input_length: L, steps the model reads.
        horizon: H, steps it forecasts.

    Returns:
        ``(X, Y)``: X [N, L, 1] and Y [N, H], N = n - L - H + 1, copies in the
        values' float dtype (float64 for integers).

    Raises:
        TypeError: if a size is not an int or the values are not numeric.
        ValueError: if a size is not positive, the values are not a finite 1-D
            series, or the series is shorter than L + H.

    Example:
        >>> X, Y = sliding_windows(np.arange(6.0), input_length=3, horizon=2)
        >>> X.shape, Y.shape
        ((2, 3, 1), (2, 2))
        >>> X[1, :, 0].tolist(), Y[1].tolist()
        ([1.0, 2.0, 3.0], [4.0, 5.0])
    """
    fn = "sliding_windows"
    L = positive_int(fn, "input_length", input_length)
    H = positive_int(fn, "horizon", horizon)
    arr = _series_array(fn, values)
    if arr.shape[0] < L + H:
        raise ValueError(
            f"`{fn}`: a series of length {arr.shape[0]} is too short for "
            f"input_length {L} plus horizon {H}; it needs at least {L + H} values"
        )
    windows = np.lib.stride_tricks.sliding_window_view(arr, L + H)
    return windows[:, :L, None].copy(), windows[:, L:].copy()


def chronological_split(
    n: int, validation: float = 0.15, test: float = 0.15
) -> tuple[slice, slice, slice]:
    """Train, validation and test spans of ``range(n)``, in time order.

    The validation and test sizes are ``round(n * fraction)``; training gets the
    rest, at the start. Nothing is shuffled.

    Args:
        n: the number of time steps.
        validation: the fraction of steps for validation, in (0, 1).
        test: the fraction of steps for testing, the last ones, in (0, 1).

    Returns:
        ``(train, validation, test)`` slices, contiguous and covering ``range(n)``.

    Raises:
        TypeError: if ``n`` is not an int or a fraction is not a number.
        ValueError: if a fraction is outside (0, 1) or a span would be empty.

    Example:
        >>> chronological_split(10, validation=0.2, test=0.1)
        (slice(0, 7, None), slice(7, 9, None), slice(9, 10, None))
    """
    fn = "chronological_split"
    n = positive_int(fn, "n", n)
    for name, fraction in (("validation", validation), ("test", test)):
        if isinstance(fraction, bool) or not isinstance(
            fraction, int | float | np.number
        ):
            raise TypeError(
                f"`{fn}`: `{name}` must be a number, got {type(fraction).__name__}"
            )
        if not 0 < fraction < 1:
            raise ValueError(f"`{fn}`: `{name}` must be in (0, 1), got {fraction}")
    n_val, n_test = round(n * validation), round(n * test)
    n_train = n - n_val - n_test
    if min(n_train, n_val, n_test) < 1:
        raise ValueError(
            f"`{fn}`: splitting {n} steps with validation={validation} and "
            f"test={test} leaves an empty span (train {n_train}, validation {n_val}, "
            f"test {n_test}); use more steps or other fractions"
        )
    return (
        slice(0, n_train),
        slice(n_train, n_train + n_val),
        slice(n_train + n_val, n),
    )


class Windows(NamedTuple):
    """The windows of one span of a forecasting data set.

    Attributes:
        x: [N, L, 1] scaled inputs.
        y: [N, H] scaled targets.
        y_raw: [N, H] the same targets in the series' own units.
        first_target: [N] int, the index in the series of each window's first
            target (its targets are ``first_target[i] : first_target[i] + H``).
    """

    x: np.ndarray
    y: np.ndarray
    y_raw: np.ndarray
    first_target: np.ndarray


@dataclass(frozen=True, eq=False)
class ForecastData:
    """Windows per span, the scaler fitted on the training span, and the spans.

    Attributes:
        train: windows whose inputs and targets lie in the training span.
        validation: windows whose targets lie in the validation span.
        test: windows whose targets lie in the test span.
        scaler: fitted on the raw training span only; ``scaler.inverse`` turns
            forecasts [N, H] back into the series' units.
        spans: the (train, validation, test) slices of the series.
    """

    train: Windows
    validation: Windows
    test: Windows
    scaler: Scaler
    spans: tuple[slice, slice, slice]


def forecasting_data(
    series_values: Any,
    input_length: int,
    horizon: int = 1,
    validation: float = 0.15,
    test: float = 0.15,
) -> ForecastData:
    """Windows for H-step forecasting, split in time, with no leak from the future.

    Convention: the raw series is split first with :func:`chronological_split`;
    the :class:`Scaler` is fitted on the training span alone and then applied to
    the whole series. Every window is ``L`` inputs followed by ``H`` targets, and a
    window belongs to the span that holds *all* of its targets. Training windows lie
    entirely in the training span. Validation and test windows take their inputs
    from the ``L`` steps before their targets, which for the first windows reach
    back into the previous span (as a forecaster in deployment would read recent
    history); no target is ever used twice or seen by the scaler outside training.
    A span of ``m`` steps thus gives ``m - H + 1`` windows (``m - L - H + 1`` for
    training).

    Args:
        series_values: [n] the raw series (array, ``pandas.Series`` or
            :class:`Series`).
        input_length: L, steps each window reads.
        horizon: H, steps each window forecasts.
        validation: fraction of the series for validation, in (0, 1).
        test: fraction of the series for testing (the last steps), in (0, 1).

    Returns:
        A :class:`ForecastData`.

    Raises:
        TypeError: if a size is not an int or the values are not numeric.
        ValueError: if the values are not a finite 1-D series, a fraction is out of
            range, the training span is shorter than L + H, the validation or test
            span shorter than H, or the training span is constant.
    """
    fn = "forecasting_data"
    L = positive_int(fn, "input_length", input_length)
    H = positive_int(fn, "horizon", horizon)
    raw = _series_array(fn, series_values).astype(np.float64)
    spans = chronological_split(raw.shape[0], validation, test)
    train, val, tst = spans
    if train.stop < L + H:
        raise ValueError(
            f"`{fn}`: the training span has {train.stop} steps, too few for "
            f"input_length {L} plus horizon {H}; use a longer series, a larger "
            "training fraction or shorter windows"
        )
    for name, span in (("validation", val), ("test", tst)):
        if span.stop - span.start < H:
            raise ValueError(
                f"`{fn}`: the {name} span has {span.stop - span.start} steps, fewer "
                f"than horizon {H}, so no window has all its targets in it; use a "
                f"larger `{name}` fraction or a longer series"
            )
    scaler = Scaler.fit(raw[train])
    scaled = scaler.transform(raw)

    def windows(span: slice) -> Windows:
        start = span.start if span.start == 0 else span.start - L
        x, y = sliding_windows(scaled[start : span.stop], L, H)
        _, y_raw = sliding_windows(raw[start : span.stop], L, H)
        return Windows(x, y, y_raw, start + L + np.arange(x.shape[0]))

    return ForecastData(
        train=windows(train),
        validation=windows(val),
        test=windows(tst),
        scaler=scaler,
        spans=spans,
    )
