"""Running a cell until its state settles, and recurrent backpropagation.

``settle`` holds one input ``x`` [B, D] fixed and runs the cell, ``h_k =
f(h_{k-1}, x; w)``, until the largest change of each row's state falls below
``tol``: the static-input, "forward until a threshold" case, where ``unroll``
is the sequence case. At a fixed point ``h* = f(h*)`` the gradient of a loss
``L(h*)`` is (Almeida 1987; Pineda 1987)

    dL/dw = (df/dw)^T z,    z = (I - J^T)^{-1} dL/dh*,    J = df/dh at h*,

so no step of the forward pass needs to be kept. The engines (``backward=``)
differ in how they get ``z`` (``rbp.py``):

- ``"bptt"`` backpropagates through every step taken: the reference; it reruns
  the forward pass for ``max_steps`` steps, each row masked after its own last
  step, and stores them all;
- ``"tbptt"`` backpropagates through the last ``backward_steps``;
- ``"rbp"`` iterates ``z <- J^T z + dL/dh*``;
- ``"neumann"`` sums ``backward_steps`` terms of ``sum_k (J^T)^k dL/dh*``;
- ``"cg"`` runs ``backward_steps`` conjugate-gradient steps on the normal
  equations;
- ``"implicit"`` solves the dense system exactly.

The last four keep one step's residuals, whatever the number of forward steps.
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
from ._scalars import finite_number, positive_int, whole_number
from .cells import GRU, LSTM, Elman, Hopfield
from .forward import keep_rows
from .rbp import flat, step

Array = jax.Array

ENGINES = ("bptt", "tbptt", "rbp", "neumann", "cg", "implicit")
UNSETTLED = ("raise", "warn", "ignore")


class SettleInfo(NamedTuple):
    """How the forward pass went, per row of the batch.

    ``steps`` [B] int32: the steps each row took (at most ``max_steps``);
    ``residual`` [B]: the largest change of the row's state at its last step;
    ``rate`` [B]: an estimate of the spectral radius of ``J = df/dh`` at the
    final state (``spectral_radius``: ``rate_steps`` power iterations, NaN
    with ``rate_steps=0``), below 1 where the
    fixed point attracts and the series of ``"rbp"`` and ``"neumann"``
    converge, about as fast as ``rate**k``; ``settled`` [B] bool: ``residual <
    tol``.
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
    rate_steps: int = 32


def _forward(cell, params, x, carry0, cfg: _Config):
    """``lax.while_loop`` until every row has settled or ``max_steps``; a row
    that has settled keeps its state."""

    def cond(state):
        k, _, _, _, done = state
        return (k < cfg.max_steps) & ~jnp.all(done)

    def body(state):
        k, carry, steps, residual, done = state
        new = step(cell, params, x, carry)
        change = jnp.max(jnp.abs(flat(new) - flat(carry)), axis=1)
        carry = keep_rows(~done, new, carry)
        residual = jnp.where(done, residual, change)
        steps = jnp.where(done, steps, k + 1)
        return k + 1, carry, steps, residual, done | (change < cfg.tol)

    B = x.shape[0]
    zeros = jnp.zeros((B,), x.dtype)
    start = (0, carry0, jnp.zeros((B,), jnp.int32), zeros, zeros > 0)
    _, h_star, steps, residual, _ = jax.lax.while_loop(cond, body, start)
    rate = jnp.full_like(residual, jnp.nan)
    if cfg.rate_steps:
        rate = spectral_radius(cell, params, x, h_star, cfg.rate_steps)
    return h_star, SettleInfo(steps, residual, rate, residual < cfg.tol)


def spectral_radius(cell, params, x, h_star, iterations: int = 32):
    """Per row, an estimate of the spectral radius of ``J = df/dh`` at
    ``h_star``: the growth ``(|J^K v| / |J^(K/2) v|)^(2/K)`` of a power
    iteration from a fixed start (forward mode through one step), which also
    reads a complex pair of eigenvalues right."""
    h, j = flat(h_star), rbp.tangent_product(cell, params, x, h_star)

    def body(_, state):
        v, log_growth = state
        w = j(v)
        norm = jnp.linalg.norm(w, axis=1, keepdims=True)
        tiny = jnp.finfo(h.dtype).tiny
        return w / jnp.maximum(norm, tiny), log_growth + jnp.log(norm[:, 0] + tiny)

    start = jnp.cos(jnp.arange(h.shape[1], dtype=h.dtype) + 1.0)  # no eigenvector
    v = jnp.broadcast_to(start / jnp.linalg.norm(start), h.shape)
    half = iterations // 2
    zeros = jnp.zeros(h.shape[:1], h.dtype)
    v, _ = jax.lax.fori_loop(0, half, body, (v, zeros))
    _, log_growth = jax.lax.fori_loop(0, iterations - half, body, (v, zeros))
    return jnp.exp(log_growth / (iterations - half))


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def _settled(cell, cfg, params, x, carry0):
    """``(h_star, info)``, ``h_star`` with the gradient of the chosen engine.
    Forward mode over that gradient (``jax.hessian``) differentiates both the
    while loop and the engine; a gradient of the gradient raises (JAX cannot
    reverse a while loop), and so does forward mode alone (``jax.jvp``)."""
    return _forward(cell, params, x, carry0, cfg)


def _settled_fwd(cell, cfg, params, x, carry0):
    h_star, info = _forward(cell, params, x, carry0, cfg)
    return (h_star, info), (params, x, carry0, h_star, info.steps)


def _settled_bwd(cell, cfg, residuals, cotangents):
    d_h_star, _ = cotangents  # info is a report, not differentiated
    params, x, carry0, h_star, steps = residuals
    return rbp.gradients(cell, cfg, params, x, carry0, h_star, steps, d_h_star)


_settled.defvjp(_settled_fwd, _settled_bwd)


@functools.partial(jax.jit, static_argnums=(0, 1))
def _settle(cell, cfg, params, x, carry0):
    cell, params = _as_run(cell, params)  # autodiff differentiates a Hopfield's
    h_star, info = _settled(cell, cfg, params, x, carry0)
    return h_star, jax.lax.stop_gradient(info)


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
    rate_steps: int = 32,
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
        rate_steps: power iterations of ``info.rate``'s estimate (forward
            mode through one step each, on top of the forward pass); 0 skips
            it: ``info.rate`` is NaN and the divergence warnings are off.
        unsettled: where a row has not settled after ``max_steps``: ``"raise"``
            a ValueError (the default), ``"warn"`` or ``"ignore"``. Under a
            ``jit`` or ``vmap`` of one's own the values are not known here and
            nothing is checked: read ``info.settled`` and ``info.rate``.

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
    cfg = _check_config(fn, backward, backward_steps, max_steps, tol, rate_steps)
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
    _check_cell(fn, cell)
    if not hasattr(x, "shape") or len(x.shape) != 2 or x.shape[1] != cell.input_size:
        raise ValueError(
            f"{fn}: `x` must be an array or ShapeDtypeStruct of shape [B, "
            f"{cell.input_size}], got {getattr(x, 'shape', type(x).__name__)}"
        )
    run_cell = _run_cell(cell)
    run_params = jax.eval_shape(lambda p: _as_run(cell, p)[1], params)
    if carry0 is None:
        carry0 = jax.eval_shape(lambda: cell.initial_carry(x.shape[0], x.dtype))
    return rbp.residual_bytes(run_cell, cfg, run_params, x, carry0)


def _run_cell(cell):
    """The cell ``settle`` runs: a Hopfield cell as an Elman cell."""
    if isinstance(cell, Hopfield):
        return Elman(cell.input_size, cell.hidden_size, cell.activation)
    return cell


def _as_run(cell, params):
    """The cell and parameters ``settle`` runs: a Hopfield cell as the Elman
    cell of its symmetric weights."""
    if isinstance(cell, Hopfield):
        return _run_cell(cell), cell.elman_params(params)
    return cell, params


def _check_config(fn, backward, backward_steps, max_steps, tol, rate_steps=32):
    if backward not in ENGINES:
        raise ValueError(f"{fn}: `backward` must be one of {ENGINES}, got {backward!r}")
    if whole_number(rate_steps) != 0:
        rate_steps = positive_int(fn, "rate_steps", rate_steps)
        if rate_steps < 2:
            raise ValueError(f"{fn}: `rate_steps` must be 0 or >= 2, got {rate_steps}")
    counts = {
        name: positive_int(fn, name, value)
        for name, value in [
            ("backward_steps", backward_steps),
            ("max_steps", max_steps),
        ]
    }
    for name, count in counts.items():
        if count >= 2**31:  # the step counter is int32
            raise ValueError(f"{fn}: `{name}` must be < 2**31, got {count}")
    return _Config(
        backward,
        counts["backward_steps"],
        counts["max_steps"],
        finite_number(fn, "tol", tol, above=0),
        rate_steps,
    )


def _check_cell(fn, cell) -> None:
    if not isinstance(cell, Elman | LSTM | GRU) or not cell.recurrent:
        raise TypeError(
            f"{fn}: `cell` must be a recurrent rnnbptt cell (Elman, LSTM, GRU or "
            f"Hopfield), got {type(cell).__name__}"
            + (" (a Feedforward cell has no state)" if isinstance(cell, Elman) else "")
        )


def _check_inputs(fn, cell, params, x, carry0):
    _check_cell(fn, cell)
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
    settle, a warning where the series of ``"rbp"`` or ``"neumann"`` diverges
    (``rate``, the spectral radius of ``J``, at or above 1) or where ``"rbp"``
    would need more than ``max_steps`` iterations to reach ``tol``."""
    settled, rate = _concrete(info.settled), _concrete(info.rate)
    if settled is None or rate is None:
        return
    residual = np.asarray(info.residual)
    if not settled.all() and unsettled != "ignore":
        rows = np.flatnonzero(~settled)
        message = (
            f"{fn}: the state did not settle: {rows.size} of {settled.size} rows "
            f"(first: row {rows[0]}) still changed by up to "
            f"{_largest(residual[rows]):.3g} (tol {cfg.tol:g}) after max_steps "
            f"{cfg.max_steps} steps; raise max_steps or tol, or a contracting cell"
        )
        if unsettled == "raise":
            raise ValueError(message + " (or pass unsettled='warn')")
        warnings.warn(message, RuntimeWarning, stacklevel=3)
    worst = _largest(rate)
    if cfg.backward not in ("rbp", "neumann") or not np.isfinite(worst):
        return
    if worst >= 1:
        problem = (
            f"the spectral radius of J at the state is about {worst:.3g} >= 1: "
            f"the series of {cfg.backward!r} diverges there"
        )
    elif cfg.backward == "rbp" and np.log(cfg.tol) / np.log(worst) > cfg.max_steps:
        needed = int(np.ceil(np.log(cfg.tol) / np.log(worst)))
        problem = (
            f"with the spectral radius of J about {worst:.3g}, 'rbp' needs about "
            f"{needed} iterations to reach tol {cfg.tol:g}, more than max_steps "
            f"{cfg.max_steps}: raise max_steps, or use 'cg' or 'implicit'"
        )
    else:
        return
    warnings.warn(
        f"{fn}: {problem}; its gradient is not the fixed point's",
        RuntimeWarning,
        stacklevel=3,
    )


def _largest(values: np.ndarray) -> float:
    """The largest finite value, or NaN (no NumPy warning) where none is."""
    finite = values[np.isfinite(values)]
    return float(finite.max()) if finite.size else float("nan")


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
