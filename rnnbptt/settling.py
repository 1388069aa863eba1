"""Running a cell until its state settles, and recurrent backpropagation.

``settle`` holds one input ``x`` [B, D] fixed and runs the cell, ``h_k =
f(h_{k-1}, x; w)``, until the largest change of each row's state falls below
``tol``: the static-input, "forward until a threshold" case, where ``unroll``
is the sequence case. At a fixed point ``h* = f(h*)`` the gradient of a loss
``L(h*)`` is (Almeida 1987; Pineda 1987)

    dL/dw = (df/dw)^T z,    z = (I - J^T)^{-1} dL/dh*,    J = df/dh at h*,

so no step of the forward pass needs to be kept. The engines (``backward=``)
differ in how they get ``z`` (``rbp.py``): ``"bptt"`` backpropagates through
every step taken (the reference; it stores them), ``"tbptt"`` through the last
``backward_steps``, ``"rbp"`` iterates ``z <- J^T z + dL/dh*``, ``"neumann"``
sums ``backward_steps`` terms of the series ``sum_k (J^T)^k dL/dh*``, ``"cg"``
runs ``backward_steps`` conjugate-gradient steps on the normal equations and
``"implicit"`` solves the dense system exactly. The last four keep one step's
residuals, whatever the number of forward steps.
"""

from __future__ import annotations

import functools
import warnings
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from . import rbp
from ._checks import as_float_array, check_carry, check_params
from ._scalars import finite_number, positive_int
from .cells import GRU, LSTM, Elman, Hopfield
from .rbp import flat, step

Array = jax.Array

ENGINES = ("bptt", "tbptt", "rbp", "neumann", "cg", "implicit")
UNSETTLED = ("raise", "warn", "ignore")


class SettleInfo(NamedTuple):
    """How the forward pass went, per row of the batch.

    ``steps`` [B] int32: the steps each row took (at most ``max_steps``);
    ``residual`` [B]: the largest change of the row's state at its last step;
    ``rate`` [B]: that change over the one before it, the contraction of the
    last step, which estimates the spectral radius of ``J`` at the state (0
    after a single step); ``settled`` [B] bool: ``residual < tol``.
    """

    steps: Array
    residual: Array
    rate: Array
    settled: Array


class _Config(NamedTuple):
    backward: str
    backward_steps: int
    max_steps: int
    tol: float


def _forward(cell, params, x, carry0, cfg: _Config):
    """``lax.while_loop`` until every row has settled or ``max_steps``; a row
    that has settled keeps its state."""

    def cond(state):
        k, _, _, _, _, done = state
        return (k < cfg.max_steps) & ~jnp.all(done)

    def body(state):
        k, carry, steps, residual, previous, done = state
        new = step(cell, params, x, carry)
        change = jnp.max(jnp.abs(flat(new) - flat(carry)), axis=1)
        carry = jax.tree.map(
            lambda old, fresh: jnp.where(done[:, None], old, fresh), carry, new
        )
        previous = jnp.where(done, previous, residual)
        residual = jnp.where(done, residual, change)
        steps = jnp.where(done, steps, k + 1)
        return k + 1, carry, steps, residual, previous, done | (change < cfg.tol)

    B = x.shape[0]
    zeros = jnp.zeros((B,), x.dtype)
    start = (0, carry0, jnp.zeros((B,), jnp.int32), zeros, zeros, zeros > 0)
    _, h_star, steps, residual, previous, _ = jax.lax.while_loop(cond, body, start)
    positive = previous > 0
    rate = jnp.where(positive, residual / jnp.where(positive, previous, 1), 0)
    return h_star, SettleInfo(steps, residual, rate, residual < cfg.tol)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def _attach(cell, cfg, params, x, carry0, h_star, steps):
    """``h_star``, with the gradient of the chosen engine."""
    return h_star


def _attach_fwd(cell, cfg, params, x, carry0, h_star, steps):
    return h_star, (params, x, carry0, h_star, steps)


def _attach_bwd(cell, cfg, residuals, d_h_star):
    params, x, carry0, h_star, steps = residuals
    grads = rbp.gradients(cell, cfg, params, x, carry0, h_star, steps, d_h_star)
    return (*grads, None, None)


_attach.defvjp(_attach_fwd, _attach_bwd)


@functools.partial(jax.jit, static_argnums=(0, 1))
def _settle(cell, cfg, params, x, carry0):
    cell, params = _as_run(cell, params)  # autodiff differentiates a Hopfield's
    h_star, info = _forward(cell, *jax.lax.stop_gradient((params, x, carry0)), cfg)
    return _attach(cell, cfg, params, x, carry0, h_star, info.steps), info


def settle(
    cell,
    params,
    x,
    carry0=None,
    *,
    tol: float = 1e-6,
    max_steps: int = 100,
    backward: str = "rbp",
    backward_steps: int = 20,
    unsettled: str = "raise",
):
    """Runs ``cell`` on the fixed input ``x`` until its state settles.

    Args:
        cell: an ``Elman``, ``LSTM``, ``GRU`` or ``Hopfield`` cell.
        params: its parameters (``cell.init``).
        x: [B, D] input, the same at every step (a sequence is ``unroll``'s).
        carry0: the starting state, or None for zeros.
        tol: a row has settled when the largest change of its state in a step
            (``max |h_k - h_{k-1}|``) falls below ``tol``.
        max_steps: at most this many forward steps.
        backward: the gradient engine, one of ``ENGINES`` (module docstring).
        backward_steps: steps of ``"tbptt"``, terms of ``"neumann"``'s series
            (``K`` terms are ``K - 1`` products with ``J^T``: the same as
            ``"tbptt"`` through the last ``K`` steps at a fixed point), and
            iterations of ``"cg"``. ``"rbp"`` iterates until the relative
            change of ``z`` falls below ``tol``, at most ``max_steps`` times.
        unsettled: where a row has not settled after ``max_steps``: ``"raise"``
            a ValueError (the default), ``"warn"`` or ``"ignore"``. Under a
            ``jit`` or ``grad`` of one's own the values are not known here:
            read ``info.settled`` and ``info.rate``.

    Returns:
        ``(h_star, info)``: the settled state (the carry's structure: ``h``,
        or ``LSTMCarry(h, c)``) and a ``SettleInfo``. ``h_star`` is
        differentiable with respect to ``params``, ``x`` and ``carry0``; the
        fixed-point engines (``"rbp"``, ``"neumann"``, ``"cg"``,
        ``"implicit"``) give ``carry0`` a zero gradient, the limit of BPTT's
        ``(J^T)^n dL/dh*`` at a fixed point that attracts.

    Raises:
        TypeError, ValueError: for bad arguments, or (``unsettled="raise"``) a
        state that did not settle, with its steps and residual.
    """
    fn = "settle"
    cfg = _check_config(fn, backward, backward_steps, max_steps, tol)
    if unsettled not in UNSETTLED:
        raise ValueError(
            f"{fn}: `unsettled` must be one of {UNSETTLED}, got {unsettled!r}"
        )
    params, x, carry0 = _check_inputs(fn, cell, params, x, carry0)
    h_star, info = _settle(cell, cfg, params, x, carry0)
    _report(fn, info, cfg, unsettled)
    return h_star, info


def settle_residual_bytes(
    cell,
    params,
    x,
    carry0=None,
    *,
    max_steps: int = 100,
    backward: str = "rbp",
    backward_steps: int = 20,
) -> int:
    """Bytes of the forward pass that ``settle``'s backward keeps, from shapes
    alone (nothing runs, so it answers at any ``max_steps``): linear in
    ``max_steps`` for ``"bptt"``, ``backward_steps`` steps' worth for
    ``"tbptt"``, one step's for the fixed-point engines. Arguments as for
    ``settle``; ``params`` and ``x`` may be ``jax.ShapeDtypeStruct``s."""
    fn = "settle_residual_bytes"
    cfg = _check_config(fn, backward, backward_steps, max_steps, tol=1.0)
    cell, params = _as_run(cell, params)
    if carry0 is None:
        carry0 = jax.eval_shape(lambda: cell.initial_carry(x.shape[0], x.dtype))
    return rbp.residual_bytes(cell, cfg, params, x, carry0)


def _as_run(cell, params):
    """The cell and parameters ``settle`` runs: a Hopfield cell as the Elman
    cell of its symmetric weights."""
    if isinstance(cell, Hopfield):
        return Elman(cell.input_size, cell.hidden_size, cell.activation), (
            cell.elman_params(params)
        )
    return cell, params


def _check_config(fn, backward, backward_steps, max_steps, tol) -> _Config:
    if backward not in ENGINES:
        raise ValueError(f"{fn}: `backward` must be one of {ENGINES}, got {backward!r}")
    return _Config(
        backward,
        positive_int(fn, "backward_steps", backward_steps),
        positive_int(fn, "max_steps", max_steps),
        finite_number(fn, "tol", tol, above=0),
    )


def _check_inputs(fn, cell, params, x, carry0):
    if not isinstance(cell, Elman | LSTM | GRU) or not cell.recurrent:
        raise TypeError(
            f"{fn}: `cell` must be a recurrent rnnbptt cell (Elman, LSTM, GRU or "
            f"Hopfield), got {type(cell).__name__} (a Feedforward cell has no "
            "state to settle)"
        )
    params, dtype = check_params(fn, cell, params)
    x = as_float_array(fn, "x", x)
    if x.ndim != 2:
        hint = ""
        if x.ndim == 3:
            hint = (
                "; settle holds one input fixed at every step, and an input with a "
                "time axis [B, T, D] is a sequence: run it with rnnbptt.unroll"
            )
        raise ValueError(
            f"{fn}: `x` must have rank 2, [B, D] (batch, features), got shape "
            f"{x.shape}{hint}"
        )
    if x.shape[1] != cell.input_size or x.shape[0] < 1:
        raise ValueError(
            f"{fn}: `x` must be [B, {cell.input_size}] (B >= 1, the cell's "
            f"input_size), got shape {x.shape}"
        )
    if x.dtype != dtype:
        raise TypeError(
            f"{fn}: `x` has dtype {x.dtype} but params have {dtype}; cast explicitly"
        )
    return params, x, check_carry(fn, "carry0", cell, carry0, x.shape[0], dtype)


def _concrete(a):
    """``a`` as a NumPy array, or None under a trace of the caller's."""
    try:
        return np.asarray(a)
    except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
        return None


def _report(fn: str, info: SettleInfo, cfg: _Config, unsettled: str) -> None:
    """The convergence report: an error or a warning for rows that did not
    settle, a warning where the backward iteration of the fixed-point engines
    diverges (the last step's contraction at or above 1)."""
    settled, rate = _concrete(info.settled), _concrete(info.rate)
    if settled is None or rate is None:
        return
    residual = np.asarray(info.residual)
    if not settled.all() and unsettled != "ignore":
        rows = np.flatnonzero(~settled)
        message = (
            f"{fn}: the state did not settle: {rows.size} of {settled.size} rows "
            f"(first: row {rows[0]}) still changed by up to "
            f"{np.nanmax(residual[rows]):.3g} >= tol {cfg.tol:g} after max_steps "
            f"{cfg.max_steps} steps; raise max_steps or tol, or a contracting cell"
        )
        if unsettled == "raise":
            raise ValueError(message + " (or pass unsettled='warn')")
        warnings.warn(message, RuntimeWarning, stacklevel=3)
    if cfg.backward in ("rbp", "neumann") and np.nanmax(rate) >= 1:
        warnings.warn(
            f"{fn}: the last forward step did not contract (rate {np.nanmax(rate):.3g}"
            " >= 1, an estimate of the spectral radius of J at the state): the "
            f"{cfg.backward!r} backward iteration diverges or converges slowly "
            "there; its gradient is not the fixed point's",
            RuntimeWarning,
            stacklevel=3,
        )


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _engine_gradient(cell, cfg, loss, probe, params, x, carry0):
    def objective(params, x, carry0):
        h_star, _ = _settle(cell, cfg, params, x, carry0)
        return jnp.sum(probe * flat(h_star)) if loss is None else loss(h_star)

    return jax.grad(objective, argnums=(0, 1, 2))(params, x, carry0)


def compare_settle(
    cell,
    params,
    x,
    carry0=None,
    *,
    loss=None,
    key=None,
    engines=ENGINES,
    reference: str = "bptt",
    tol: float = 1e-10,
    max_steps: int = 1000,
    backward_steps: int = 20,
):
    """The gradient of every engine against the ``reference`` engine's, as a table.

    Args:
        cell, params, x, carry0, tol, max_steps, backward_steps: as for
            ``settle`` (``"bptt"`` runs through every step taken).
        loss: ``loss(h_star) -> scalar``, hashable (a function); defaults to a
            random linear probe of the settled state.
        key: PRNG key of the probe (default key 0).
        engines: the engines to compare.
        reference: the engine they are compared with (default ``"bptt"``).

    Returns:
        A ``GradientTable`` indexed by (engine, leaf) with columns ``shape``,
        ``abs`` and ``rel`` (``max|a - b| / max|b|``, ``b`` the reference's gradient);
        ``attrs`` holds the forward steps taken and the largest residual and
        rate (``SettleInfo``).
    """
    from .gradcheck import GradientTable, _diff

    fn = "compare_settle"
    unknown = [e for e in engines if e not in ENGINES]
    if unknown or not engines:
        raise ValueError(f"{fn}: `engines` must be some of {ENGINES}, got {engines!r}")
    if reference not in ENGINES:
        raise ValueError(
            f"{fn}: `reference` must be one of {ENGINES}, got {reference!r}"
        )
    cfg = _check_config(fn, "bptt", backward_steps, max_steps, tol)
    params, x, carry0 = _check_inputs(fn, cell, params, x, carry0)
    h_star, info = _settle(cell, cfg, params, x, carry0)
    _report(fn, info, cfg, "warn")
    probe = None
    if loss is None:
        key = jax.random.key(0) if key is None else key
        probe = jax.random.normal(key, flat(h_star).shape, x.dtype)

    def grads(engine):
        args = (params, x, carry0)
        return _engine_gradient(cell, cfg._replace(backward=engine), loss, probe, *args)

    want_leaves = jax.tree.leaves(grads(reference))
    names = [f"params.{f}" for f in params._fields] + ["x"]
    names += [f"carry0.{f}" for f in getattr(carry0, "_fields", ())] or ["carry0"]
    rows = []
    for engine in engines:
        for name, got, want in zip(
            names, jax.tree.leaves(grads(engine)), want_leaves, strict=True
        ):
            abs_diff, rel_diff = _diff(got, want)
            rows.append(
                {
                    "engine": engine,
                    "leaf": name,
                    "shape": tuple(got.shape),
                    "abs": abs_diff,
                    "rel": rel_diff,
                }
            )
    table = GradientTable(rows).set_index(["engine", "leaf"])
    table.attrs.update(
        steps=np.asarray(info.steps).tolist(),
        residual=float(np.max(info.residual)),
        rate=float(np.max(info.rate)),
    )
    return table
