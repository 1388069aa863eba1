"""Validation of training data, once, on the host, before anything is compiled.

Errors name the argument, what was expected and what came; non-finite values and
out-of-range labels are located by row (and step).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from .losses import CLASSIFICATION


def _first_bad(bad: np.ndarray, per_step: bool = True) -> str:
    """'row r, step t' of the first True entry of ``bad`` [N, T, ...], or 'row r'
    when there is no time axis (``bad`` [N, ...] and not ``per_step``)."""
    where = np.argwhere(bad)[0]
    text = f"row {where[0]}"
    return text + (f", step {where[1]}" if per_step and bad.ndim >= 2 else "")


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
        check_mask_pattern(fn, model, mask, name)
    ys = _check_targets(fn, model, ys, mask, loss, name, n, steps)
    if np.issubdtype(ys.dtype, np.floating):
        ys = ys.astype(dtype)
    return (
        jnp.asarray(xs, dtype),
        jnp.asarray(ys),
        None if mask is None else jnp.asarray(mask),
    )


def _prefix(name: str | None) -> str:
    return "" if name is None else f"{name} "


def check_mask_pattern(fn, model, mask: np.ndarray, name: str | None = None) -> None:
    """A many-to-one model reads each sequence at its last valid step, so every
    row of ``mask`` needs one."""
    if model.head == "many_to_one" and not mask.any(axis=1).all():
        row = int(np.argmin(mask.any(axis=1)))
        raise ValueError(
            f"{fn}: {_prefix(name)}`mask` row {row} has no valid step; a many-to-one "
            "model reads each sequence at its last valid step (drop empty sequences)"
        )


def check_target_shape(fn, model, loss, ys, n, steps, name="training") -> None:
    """Checks the shape and dtype of targets ``ys`` (an array or a tracer: static
    facts only) against ``n`` sequences of ``steps`` steps, the model's head and
    output size, and the loss."""
    per_step = model.per_step
    lead = (n, steps) if per_step else (n,)
    lead_text = "[N, T" if per_step else "[N"
    if ys.shape[: len(lead)] != lead:
        raise ValueError(
            f"{fn}: {name} `ys` must start with {lead} ({lead_text}, ...], matching "
            f"xs {(n, steps)}), got shape {ys.shape}; inputs and targets must have the "
            "same number of sequences" + (" and steps" if per_step else "")
        )
    K = model.out_features
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
        return
    if not callable(loss) and ys.shape != (*lead, K):
        raise ValueError(
            f"{fn}: {name} `ys` must have shape {(*lead, K)} ("
            + ("the model's output_size is" if model.head else "its last layer outputs")
            + f" {K}), got {ys.shape}"
        )
    if not (np.issubdtype(ys.dtype, np.number) or ys.dtype == bool):
        raise TypeError(f"{fn}: {name} `ys` must be numeric, got dtype {ys.dtype}")


def _check_targets(fn, model, ys, mask, loss, name, n, steps) -> np.ndarray:
    ys = np.asarray(ys)
    check_target_shape(fn, model, loss, ys, n, steps, name)
    per_step = model.per_step
    valid = (
        mask
        if mask is not None and per_step
        else np.ones(ys.shape[: 1 + per_step], bool)
    )
    if loss in CLASSIFICATION:
        K = model.out_features
        bad = valid & ((ys < 0) | (ys >= K))
        if bad.any():
            raise ValueError(
                f"{fn}: {name} label {ys[tuple(np.argwhere(bad)[0])]} at "
                f"{_first_bad(bad)} is out of range for {K} classes (expected 0 to "
                f"{K - 1})"
            )
        return ys.astype(np.int32)
    if np.issubdtype(ys.dtype, np.floating) and not np.all(np.isfinite(ys)):
        raise ValueError(
            f"{fn}: {name} `ys` has a non-finite value at "
            f"{_first_bad(~np.isfinite(ys), per_step)} (padding included: fill "
            "with 0)"
        )
    if loss == "binary_cross_entropy":
        bad = valid[..., None] & ((ys < 0) | (ys > 1))
        if bad.any():
            raise ValueError(
                f"{fn}: {name} target {ys[tuple(np.argwhere(bad)[0])]} at "
                f"{_first_bad(bad, per_step)} is outside [0, 1], the range of "
                "'binary_cross_entropy' targets (probabilities or 0/1 labels)"
            )
    if callable(loss) or np.issubdtype(ys.dtype, np.floating):
        return ys
    return ys.astype(np.float64)  # integers and bools: values to regress on
