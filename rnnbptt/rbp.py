"""The backward engines of ``settle``: recurrent backpropagation and its kin.

Each engine turns the cotangent ``g = dL/dh*`` of the settled state into
``(d_params, d_x, d_carry0)``. The fixed-point engines find ``z`` with ``(I -
J^T) z = g`` and return ``(df/dw)^T z`` and ``(df/dx)^T z``, where every
product with ``J^T``, ``(df/dw)^T`` and ``(df/dx)^T`` is the hand-written
backward of one step (``bptt.backward`` on a one-step ``forward`` saved at
``h*``; no ``jax.vjp``), so they keep one step's residuals. ``"cg"`` also needs
``J v``: forward mode through the same one step (``jax.jvp``, recomputed at each
product, so it keeps nothing more).

Index convention: ``"neumann"`` with ``K = backward_steps`` terms is
``z = sum_{k=0}^{K-1} (J^T)^k g`` (``K - 1`` products); at an exact fixed point
it equals ``"tbptt"`` through the last ``K`` steps, where the gradient of step
``n - k`` meets ``k`` products with ``J^T``.

States are handled flat, [B, S] (S = H, or 2H for the LSTM's ``(h, c)``); the
rows of the batch are independent systems, so the inner products of ``"cg"``
and the solve of ``"implicit"`` are per row.
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp

from .bptt import backward
from .forward import forward, keep_rows, zero_masked_inputs

Array = jax.Array


def flat(carry) -> Array:
    """A carry (``h``, or ``(h, c)``) as one [B, S] array."""
    return jnp.concatenate(jax.tree.leaves(carry), axis=1)


def unflat(like, z: Array):
    """[B, S] back into the structure of the carry ``like``."""
    leaves, tree = jax.tree.flatten(like)
    cuts = list(itertools.accumulate(leaf.shape[1] for leaf in leaves[:-1]))
    parts = jnp.split(z, cuts, axis=1)
    return jax.tree.unflatten(tree, parts)


def step(cell, params, x: Array, carry):
    """One step of the cell on the input ``x`` [B, D]: the new carry."""
    final, _, _ = forward(cell, params, x[:, None], carry, None, save=False)
    return final


def tangent_product(cell, params, x: Array, h_star):
    """``j(v) = J v`` for flat ``v`` [..., B, S]: forward mode through one step
    from ``h_star``, recomputed at every product, so it keeps nothing."""
    h = flat(h_star)

    def one_step(state):
        return flat(step(cell, params, x, unflat(h_star, state)))

    def j(v):
        return jax.jvp(one_step, (h,), (v,))[1]

    return j


def linearised(cell, params, x: Array, h_star):
    """``vjp(v) -> (d_params, d_x, J^T v)`` for flat ``v`` [B, S]: the
    hand-written backward of one step from ``h_star``, whose residuals are
    saved once."""
    xs = x[:, None]
    _, _, saved = forward(cell, params, xs, h_star, None, save=True)
    no_outputs = jnp.zeros((x.shape[0], 1, cell.hidden_size), x.dtype)

    def vjp(v):
        d_params, d_xs, d_h = backward(
            cell, params, xs, h_star, None, saved, no_outputs, unflat(h_star, v)
        )
        return d_params, d_xs[:, 0], flat(d_h)

    return vjp


def _rows(a: Array, b: Array) -> Array:
    """Per-row inner products of [B, S] arrays."""
    return jnp.sum(a * b, axis=1)


def neumann(jt, g: Array, terms: int) -> Array:
    """``sum_{k=0}^{terms-1} (J^T)^k g``."""

    def body(_, state):
        z, power = state
        power = jt(power)
        return z + power, power

    return jax.lax.fori_loop(0, terms - 1, body, (g, g))[0]


def almeida_pineda(jt, g: Array, tol: float, max_iterations: int) -> Array:
    """``z <- J^T z + g`` from ``z = 0`` until the largest relative change of a
    row falls below ``tol``, at most ``max_iterations`` times: the series to
    convergence, which diverges where the spectral radius of ``J`` is >= 1."""

    def cond(state):
        k, _, change = state
        return (k < max_iterations) & (change >= tol)

    def body(state):
        k, z, _ = state
        new = jt(z) + g
        scale = jnp.maximum(jnp.max(jnp.abs(new), axis=1), jnp.finfo(g.dtype).tiny)
        change = jnp.max(jnp.max(jnp.abs(new - z), axis=1) / scale)
        return k + 1, new, jnp.where(jnp.isnan(change), -1, change)  # NaN: stop

    inf = jnp.asarray(jnp.inf, g.dtype)
    return jax.lax.while_loop(cond, body, (0, jnp.zeros_like(g), inf))[1]


def conjugate_gradients(jt, j, g: Array, iterations: int) -> Array:
    """``iterations`` CG steps on the normal equations ``A^T A z = A^T g``,
    ``A = I - J^T``, from ``z = 0``, per row (Liao et al. 2018's CG-RBP)."""

    def normal(v):
        a_v = v - jt(v)
        return a_v - j(a_v)

    def ratio(num, den):
        return jnp.where(den > 0, num / jnp.where(den > 0, den, 1), 0)[:, None]

    def body(_, state):
        z, r, p, rr = state
        a_p = normal(p)
        alpha = ratio(rr, _rows(p, a_p))
        z, r = z + alpha * p, r - alpha * a_p
        rr_new = _rows(r, r)
        return z, r, r + ratio(rr_new, rr) * p, rr_new

    r = g - j(g)
    return jax.lax.fori_loop(
        0, iterations, body, (jnp.zeros_like(g), r, r, _rows(r, r))
    )[0]


def implicit(jt, g: Array) -> Array:
    """The exact solve of ``(I - J^T) z = g``, with ``J^T`` built densely
    (S products with the basis vectors): for small states."""
    S = g.shape[1]
    eye = jnp.eye(S, dtype=g.dtype)
    columns = jax.lax.map(lambda e: jt(jnp.broadcast_to(e, g.shape)), eye)  # [S, B, S]
    jt_matrix = jnp.moveaxis(columns, 0, -1)  # [B, S, S]: column i is J^T e_i
    return jnp.linalg.solve(eye - jt_matrix, g[..., None])[..., 0]


def truncated(cell, params, x, carry0, steps, g, keep: int, max_steps: int):
    """BPTT through each row's last ``keep`` forward steps (all of them when
    ``keep >= max_steps``): the forward pass is rerun, the first ``steps -
    keep`` steps one at a time without residuals (nothing of length
    ``max_steps`` is built), the rest saved for ``bptt.backward``."""
    B, D = x.shape
    start = jnp.maximum(steps - keep, 0)

    def advance(k, carry):  # row by row, the steps before the kept ones
        return keep_rows(k < start, step(cell, params, x, carry), carry)

    h_start = jax.lax.fori_loop(0, jnp.max(start), advance, carry0)
    length = min(keep, max_steps)
    mask = jnp.arange(length)[None] < (steps - start)[:, None]
    xs = zero_masked_inputs(jnp.broadcast_to(x[:, None], (B, length, D)), mask)
    _, _, saved = forward(cell, params, xs, h_start, mask, save=True)
    no_outputs = jnp.zeros((B, length, cell.hidden_size), x.dtype)
    d_params, d_xs, d_start = backward(
        cell, params, xs, h_start, mask, saved, no_outputs, unflat(h_start, g)
    )
    reached = (start == 0)[:, None]  # the rows whose gradient reaches carry0
    d_carry0 = jax.tree.map(lambda d: jnp.where(reached, d, 0), d_start)
    return d_params, jnp.sum(d_xs, axis=1), d_carry0


def saved_steps(cfg) -> int:
    """Forward steps whose residuals the backward of ``cfg.backward`` keeps:
    every step of ``max_steps`` for ``"bptt"``, ``backward_steps`` of them for
    ``"tbptt"``, one (the step at ``h*``) for the fixed-point engines."""
    if cfg.backward == "bptt":
        return cfg.max_steps
    if cfg.backward == "tbptt":
        return min(cfg.backward_steps, cfg.max_steps)
    return 1


def residual_bytes(cell, cfg, params, x, carry0) -> int:
    """Bytes of the residuals the backward keeps (shapes only, nothing runs):
    the saved forward steps (``saved_steps``). The arguments may be
    ShapeDtypeStructs."""

    def kept(params, x, carry0):
        xs = jnp.zeros((x.shape[0], saved_steps(cfg), x.shape[1]), x.dtype)
        return forward(cell, params, xs, carry0, None, save=True)[2]

    shapes = jax.eval_shape(kept, params, x, carry0)
    return sum(leaf.size * leaf.dtype.itemsize for leaf in jax.tree.leaves(shapes))


def gradients(cell, cfg, params, x, carry0, h_star, steps, d_h_star):
    """``(d_params, d_x, d_carry0)`` by the engine ``cfg.backward``."""
    g = flat(d_h_star)
    if cfg.backward in ("bptt", "tbptt"):
        keep = saved_steps(cfg)
        return truncated(cell, params, x, carry0, steps, g, keep, cfg.max_steps)
    vjp = linearised(cell, params, x, h_star)

    def jt(v):
        return vjp(v)[2]

    if cfg.backward == "neumann":
        z = neumann(jt, g, cfg.backward_steps)
    elif cfg.backward == "rbp":
        z = almeida_pineda(jt, g, cfg.tol, cfg.max_steps)
    elif cfg.backward == "cg":
        j = tangent_product(cell, params, x, h_star)
        z = conjugate_gradients(jt, j, g, cfg.backward_steps)
    else:
        z = implicit(jt, g)
    d_params, d_x, _ = vjp(z)
    return d_params, d_x, jax.tree.map(jnp.zeros_like, carry0)
