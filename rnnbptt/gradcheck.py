"""Comparing the two gradient engines with each other and with finite differences.

``compare_gradients`` differentiates one scalar loss of ``unroll`` three ways:
the hand-written BPTT (``backward="manual"``), JAX's autodiff, and central finite
differences computed in float64 on a random sample of coordinates. It returns one
row per gradient leaf (each parameter, ``xs``, each part of ``carry0``).

Differences are reported as the max absolute difference and a max-norm relative
difference, ``max|a - b| / max|b|`` with ``b`` the reference (autodiff, or the
finite differences); it is well defined where single coordinates are near zero.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from jax.flatten_util import ravel_pytree

from . import draws
from ._checks import NOT_GIVEN, check_recompute_every, check_unroll_args
from ._scalars import finite_number, positive_int, prng_key
from .unroll import unroll

# Coordinates sampled per leaf for the finite differences.
FD_SAMPLES = 8
# Central-difference step, relative to max(1, |coordinate|): near the float64
# optimum eps**(1/3) ~ 6e-6, where truncation and rounding error balance (~1e-10).
FD_STEP = 1e-5

Loss = Callable[[jax.Array, object], jax.Array]


class GradientTable(pd.DataFrame):
    """A ``pandas.DataFrame`` that prints every column, differences as ``1.23e-16``."""

    @property
    def _constructor(self):
        return GradientTable

    def __repr__(self) -> str:
        return format_table(self)

    __str__ = __repr__


def format_table(table: pd.DataFrame) -> str:
    """A comparison table as text: all columns, differences in scientific notation."""
    return pd.DataFrame(table).to_string(float_format=lambda v: f"{v:.2e}")


def _probe(key: jax.Array, hs_shape, final_carry) -> tuple:
    """Random directions for ``hs`` and each leaf of the final carry: the default
    loss is the linear probe along them, so every output and every part of the
    final carry receives a random, non-zero cotangent and no gradient path is left
    untested."""
    k_hs, k_carry = jax.random.split(key)
    p_carry = tuple(
        draws.normal(jax.random.fold_in(k_carry, i), leaf.shape)
        for i, leaf in enumerate(jax.tree.leaves(final_carry))
    )
    return draws.normal(k_hs, hs_shape), p_carry


def _probe_value(probe: tuple, hs, final) -> jax.Array:
    """``<p_hs, hs> + sum_i <p_i, final_i>``, in the dtype of the outputs."""
    p_hs, p_carry = probe
    total = jnp.sum(p_hs.astype(hs.dtype) * hs)
    for p, leaf in zip(p_carry, jax.tree.leaves(final), strict=True):
        total = total + jnp.sum(p.astype(leaf.dtype) * leaf)
    return total


def probe_loss(key: jax.Array, hs_shape, final_carry) -> Loss:
    """``loss(hs, final_carry)``: the random linear probe ``compare_gradients``
    uses by default, as a function (for checks of one's own)."""
    return functools.partial(_probe_value, _probe(key, hs_shape, final_carry))


def _objective(cell, loss, backward, mask, probe, params, xs, carry0):
    """The scalar that is differentiated: ``loss``, or the probe when it is None."""
    final, hs = unroll(cell, params, xs, carry0, mask=mask, backward=backward)
    return _probe_value(probe, hs, final) if loss is None else loss(hs, final)


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _engine_grads(cell, loss, backward, mask, probe, params, xs, carry0):
    """One engine's gradient with respect to (params, xs, carry0), as one program
    (arrays as arguments, so a second check of the same shapes compiles nothing)."""
    objective = functools.partial(_objective, cell, loss, backward, mask, probe)
    return jax.grad(objective, argnums=(0, 1, 2))(params, xs, carry0)


def _leaf_names(cell, params, carry0) -> list[str]:
    names = [f"params.{field}" for field in params._fields]
    names.append("xs")
    if isinstance(carry0, tuple) and hasattr(carry0, "_fields"):
        names += [f"carry0.{field}" for field in carry0._fields]
    elif not isinstance(carry0, tuple):
        names.append("carry0")
    return names


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _perturbed(cell, loss, unravel, mask, probe, flat, idx, deltas):
    """The objective at ``flat`` moved by ``deltas[k]`` along coordinate ``idx[k]``,
    for every k, in one vmapped program (autodiff's forward: no gradient here)."""

    def at(i, delta):
        args = unravel(flat.at[i].add(delta))
        return _objective(cell, loss, "autodiff", mask, probe, *args)

    return jax.vmap(at)(idx, deltas)


@functools.partial(jax.jit, static_argnums=(1, 2))
def _draw_coordinates(key: jax.Array, sizes: tuple, samples: int) -> tuple:
    """For each leaf of ``sizes`` elements, ``min(samples, size)`` distinct flat
    indices, drawn in one program per sizes."""
    return tuple(
        jax.random.choice(
            jax.random.fold_in(key, i), size, (min(samples, size),), replace=False
        )
        for i, size in enumerate(sizes)
    )


def _finite_differences(cell, loss, mask, probe, args, key, samples, step):
    """Central differences of the objective at sampled coordinates, per leaf.

    All leaves of ``args`` (params, xs, carry0) are raveled into one vector, so
    every perturbed evaluation of every leaf runs in one vmapped call, compiled
    once per structure and shapes.

    Returns a list (one entry per leaf of ``args``) of (flat indices, estimates).
    """
    leaves = jax.tree.leaves(args)
    flat, unravel = ravel_pytree(args)
    sizes = tuple(leaf.size for leaf in leaves)
    per_leaf = [np.asarray(i) for i in _draw_coordinates(key, sizes, samples)]
    offsets = np.cumsum((0, *sizes))
    idx = np.concatenate([off + i for off, i in zip(offsets, per_leaf, strict=False)])
    # the steps in NumPy (float64, as exact as on the device; no program to compile)
    h = step * np.maximum(1.0, np.abs(np.asarray(flat)[idx]))
    deltas = np.concatenate([h, -h])
    both = _perturbed(cell, loss, unravel, mask, probe, flat, np.tile(idx, 2), deltas)
    plus, minus = np.split(np.asarray(both), 2)
    estimates = (plus - minus) / (2 * h)
    splits = np.cumsum([len(i) for i in per_leaf])[:-1]
    return list(zip(per_leaf, np.split(estimates, splits), strict=True))


def _diff(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """(max absolute difference, max-norm relative difference against ``b``)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    abs_diff = float(np.max(np.abs(a - b))) if a.size else 0.0
    scale = float(np.max(np.abs(b))) if b.size else 0.0
    if scale == 0.0:
        return abs_diff, (0.0 if abs_diff == 0.0 else float("inf"))
    return abs_diff, abs_diff / scale


def compare_gradients(
    cell,
    params,
    xs,
    carry0=None,
    *,
    mask=None,
    loss: Loss | None = None,
    key: jax.Array | None = None,
    fd_samples: int = FD_SAMPLES,
    fd_step: float = FD_STEP,
) -> GradientTable:
    """Manual BPTT against autodiff against float64 finite differences.

    Args:
        cell, params, xs, carry0, mask: as for ``unroll``.
        loss: ``loss(hs, final_carry) -> scalar``, hashable (a function); defaults
            to a random linear probe of ``hs`` plus one of the final carry
            (``probe_loss``).
        key: PRNG key for the probe and the sampled coordinates (default key 0).
        fd_samples: coordinates per leaf checked by finite differences.
        fd_step: central-difference step, relative to max(1, |coordinate|).

    Returns:
        A ``GradientTable`` (a DataFrame that prints in full) indexed by leaf
        (``params.w_ih``, ..., ``xs``, ``carry0``...) with columns ``shape``,
        ``manual_autodiff_abs``, ``manual_autodiff_rel``, ``manual_fd_abs``,
        ``manual_fd_rel``, ``autodiff_fd_abs``, ``autodiff_fd_rel`` and
        ``fd_coords``. ``df.attrs`` records the dtype.

    Example:
        >>> import jax, rnnbptt
        >>> cell = rnnbptt.Elman(2, 3)
        >>> xs = jax.random.normal(jax.random.key(1), (4, 6, 2))
        >>> table = rnnbptt.compare_gradients(cell, cell.init(jax.random.key(0)), xs)
        >>> bool((table["manual_autodiff_rel"] < 1e-5).all())
        True
    """
    params, xs, carry0, mask = check_unroll_args(
        "compare_gradients", cell, params, xs, carry0, mask
    )
    fd_samples = positive_int("compare_gradients", "fd_samples", fd_samples)
    fd_step = finite_number("compare_gradients", "fd_step", fd_step, above=0)
    if loss is not None:
        if not callable(loss):
            raise TypeError(
                "compare_gradients: `loss` must be a function loss(hs, final_carry) "
                f"-> scalar, got {type(loss).__name__}"
            )
        try:
            hash(loss)  # it keys the compiled gradients
        except TypeError:
            raise TypeError(
                "compare_gradients: `loss` must be hashable (a function, or an "
                f"object with __hash__), got an unhashable {type(loss).__name__}"
            ) from None
    fn = "compare_gradients"
    key = jax.random.key(0) if key is None else prng_key(fn, "key", key)
    k_loss, k_fd = jax.random.split(key)
    probe = None
    if loss is None:
        final, hs = jax.eval_shape(lambda: unroll(cell, params, xs, carry0, mask=mask))
        probe = _probe(k_loss, hs.shape, final)

    args = (params, xs, carry0)
    grads = {
        engine: jax.tree.leaves(_engine_grads(cell, loss, engine, mask, probe, *args))
        for engine in ("manual", "autodiff")
    }
    with jax.enable_x64(True):
        args64 = jax.tree.map(lambda a: a.astype(jnp.float64), args)
        fd = _finite_differences(
            cell, loss, mask, probe, args64, k_fd, fd_samples, fd_step
        )

    rows = []
    names = _leaf_names(cell, params, carry0)
    for name, manual, auto, (idx, est) in zip(
        names, grads["manual"], grads["autodiff"], fd, strict=True
    ):
        manual_s = np.asarray(manual, np.float64).reshape(-1)[idx]
        auto_s = np.asarray(auto, np.float64).reshape(-1)[idx]
        row = {"leaf": name, "shape": tuple(manual.shape)}
        row["manual_autodiff_abs"], row["manual_autodiff_rel"] = _diff(manual, auto)
        row["manual_fd_abs"], row["manual_fd_rel"] = _diff(manual_s, est)
        row["autodiff_fd_abs"], row["autodiff_fd_rel"] = _diff(auto_s, est)
        row["fd_coords"] = len(idx)
        rows.append(row)
    table = GradientTable(rows).set_index("leaf")
    table.attrs["dtype"] = str(xs.dtype)
    table.attrs["cell"] = repr(cell)
    return table


def residual_bytes(
    cell,
    params,
    xs,
    carry0=None,
    *,
    mask=None,
    backward="manual",
    recompute_every=None,
    checkpoint_every=NOT_GIVEN,
) -> int:
    """Bytes ``unroll`` keeps from its forward pass for its backward pass.

    Counts the residuals of ``jax.vjp`` of ``unroll`` with respect to ``params``,
    ``xs`` and ``carry0`` from shapes alone (``jax.eval_shape``: nothing runs, so
    it works at any T). Arguments as for ``unroll``; ``params`` and ``xs`` may be
    ``jax.ShapeDtypeStruct``s (``checkpoint_every`` is ``recompute_every``'s
    former name, deprecated).
    """
    every = check_recompute_every("residual_bytes", recompute_every, checkpoint_every)

    def run(params, xs, carry0):
        return unroll(
            cell,
            params,
            xs,
            carry0,
            mask=mask,
            backward=backward,
            recompute_every=every,
        )

    residuals = jax.eval_shape(lambda *args: jax.vjp(run, *args)[1], params, xs, carry0)
    return sum(
        math.prod(r.shape) * r.dtype.itemsize for r in jax.tree.leaves(residuals)
    )
