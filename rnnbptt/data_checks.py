"""Validation of training data, once, on the host, before anything is compiled.

Errors name the argument, what was expected and what came; non-finite values and
out-of-range labels are located by row (and step).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from .losses import CLASSIFICATION


def _first_bad(bad: np.ndarray) -> str:
    """'row r, step t' (or 'row r') of the first True entry of ``bad`` [N, (T, ...)]."""
    where = np.argwhere(bad)[0]
    text = f"row {where[0]}"
    return text + (f", step {where[1]}" if bad.ndim >= 2 else "")


def check_dataset(fn, model, xs, ys, mask, loss, dtype, name="training"):
    """Checks a dataset against ``model`` and ``loss``; returns it on device.

    Inputs are cast to ``dtype`` (the parameters' dtype); labels stay integers.
    """
    xs = np.asarray(xs)
    if not np.issubdtype(xs.dtype, np.floating):
        if not np.issubdtype(xs.dtype, np.integer):
            raise TypeError(f"{fn}: {name} `xs` must be numeric, got dtype {xs.dtype}")
        xs = xs.astype(np.float64)
    if xs.ndim != 3:
        raise ValueError(
            f"{fn}: {name} `xs` must have shape [N, T, D], got shape {xs.shape}"
        )
    n, steps, features = xs.shape
    if n == 0 or steps == 0:
        raise ValueError(f"{fn}: the {name} data is empty (xs has shape {xs.shape})")
    if features != model.input_size:
        raise ValueError(
            f"{fn}: {name} `xs` has {features} features per step but the model's "
            f"input_size is {model.input_size}"
        )
    if not np.all(np.isfinite(xs)):
        raise ValueError(
            f"{fn}: {name} `xs` has a non-finite value at "
            f"{_first_bad(~np.isfinite(xs))} (padding included: fill padded steps "
            "with 0)"
        )
    if mask is not None:
        mask = np.asarray(mask)
        if mask.dtype != bool:
            raise TypeError(f"{fn}: {name} `mask` must be bool, got {mask.dtype}")
        if mask.shape != (n, steps):
            raise ValueError(
                f"{fn}: {name} `mask` must have shape {(n, steps)} like xs[..., 0], "
                f"got {mask.shape}"
            )
    ys = _check_targets(fn, model, ys, mask, loss, name, n, steps)
    if np.issubdtype(ys.dtype, np.floating):
        ys = ys.astype(dtype)
    return (
        jnp.asarray(xs, dtype),
        jnp.asarray(ys),
        None if mask is None else jnp.asarray(mask),
    )


def _check_targets(fn, model, ys, mask, loss, name, n, steps) -> np.ndarray:
    ys = np.asarray(ys)
    per_step = model.head == "many_to_many"
    lead = (n, steps) if per_step else (n,)
    lead_text = "[N, T" if per_step else "[N"
    if ys.shape[: len(lead)] != lead:
        raise ValueError(
            f"{fn}: {name} `ys` must start with {lead} ({lead_text}, ...], matching "
            f"xs {(n, steps)}), got shape {ys.shape}; inputs and targets must have the "
            "same number of sequences" + (" and steps" if per_step else "")
        )
    valid = np.ones(lead, bool)
    if mask is not None and per_step:
        valid = mask
    K = model.output_size
    if loss in CLASSIFICATION:
        if ys.shape != lead:
            raise ValueError(
                f"{fn}: {name} labels for {loss!r} must have shape {lead} (one integer "
                f"class per {'step' if per_step else 'sequence'}), got {ys.shape}"
            )
        if not np.issubdtype(ys.dtype, np.integer):
            raise TypeError(
                f"{fn}: {name} labels for {loss!r} must be integers, got {ys.dtype}"
            )
        bad = valid & ((ys < 0) | (ys >= K))
        if bad.any():
            raise ValueError(
                f"{fn}: {name} label {ys[tuple(np.argwhere(bad)[0])]} at "
                f"{_first_bad(bad)} is out of range for {K} classes (expected 0 to "
                f"{K - 1})"
            )
        return ys.astype(np.int32)
    if not callable(loss) and ys.shape != (*lead, K):
        raise ValueError(
            f"{fn}: {name} `ys` must have shape {(*lead, K)} (the model's "
            f"output_size is {K}), got {ys.shape}"
        )
    if not np.issubdtype(ys.dtype, np.number):
        raise TypeError(f"{fn}: {name} `ys` must be numeric, got dtype {ys.dtype}")
    if np.issubdtype(ys.dtype, np.floating) and not np.all(np.isfinite(ys)):
        raise ValueError(
            f"{fn}: {name} `ys` has a non-finite value at "
            f"{_first_bad(~np.isfinite(ys))} (padding included: fill with 0)"
        )
    if callable(loss) or not np.issubdtype(ys.dtype, np.integer):
        return ys
    return ys.astype(np.float64)
