"""Online gradients: carried forward with the state, no backward pass through time.

The influence ``M_t = ds_t/dw`` of the parameters on the state obeys
``M_t = J_t M_{t-1} + I_t`` (``J_t = ds_t/ds_{t-1}``, ``I_t`` the immediate
influence of step t), and the gradient of a loss on the outputs is
``sum_t (dL/ds_t) M_t``. Three engines carry it:

- ``"rtrl"`` (Williams and Zipser 1989): ``M`` exactly, P x S per row for P
  parameters and a state of S; O(P S) memory and O(P S H) time a step.
- ``"uoro"`` (Tallec and Ollivier 2018): an unbiased rank-one estimate
  ``M ~ s~ theta~^T`` per row, renewed with random signs every step; O(P)
  memory, about the cost of one forward and one backward step.
- ``"snap1"`` (Menick et al. 2021): the entries of ``M`` that one step reaches,
  ``M_t = pattern(J_t M_{t-1}) + I_t``, stored sparsely: each parameter column
  keeps only the state of its own hidden unit (``h``, and ``c`` for the LSTM:
  the pattern is taken over units, so the LSTM's output gate keeps its ``c``
  entry too, which the one-step pattern over state entries would drop; thus it
  is exact wherever no unit reaches another, a diagonal ``W_hh``).
  Biased, with no truncation horizon; O(P) memory. Not for GRU
  ``reset_after=False``, whose reset gate reaches every unit in one step.

Every product with ``J_t``, ``I_t`` and their transposes is the hand-written one
of ``influence.py``. Inside, every parameter is a matrix [Din, n] (a bias is
[1, n], its operand ones). Masked steps leave the state and the influence alone.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from . import influence
from .forward import keep_rows, zero_masked_inputs
from .influence import Link

Array = jax.Array

ENGINES = ("rtrl", "uoro", "snap1")


def _matrices(params) -> dict:
    """Each parameter as a matrix: a bias [n] becomes [1, n]."""
    return {k: v.reshape(-1, v.shape[-1]) for k, v in params._asdict().items()}


def _as_params(params, grads: dict):
    return type(params)(
        **{k: grads[k].reshape(v.shape) for k, v in params._asdict().items()}
    )


def _operand(link: Link, like: Array) -> Array:
    """The link's operand [B, Din]; ones [B, 1] for a bias."""
    if link.operand is not None:
        return link.operand
    return jnp.ones((like.shape[0], 1), like.dtype)


def _output_cotangent(cell, d_h: Array) -> Array:
    """dL/ds_t [B, S] from the output's cotangent [B, H] (the LSTM's c: 0)."""
    if influence.state_size(cell) == cell.hidden_size:
        return d_h
    return jnp.concatenate([d_h, jnp.zeros_like(d_h)], axis=-1)


# RTRL ------------------------------------------------------------------------


def _rtrl_init(cell, params, batch: int, dtype):
    S = influence.state_size(cell)
    return {
        k: jnp.zeros((*m.shape, batch, S), dtype) for k, m in _matrices(params).items()
    }


def _rtrl_step(cell, params, local, influence_state, d_s, _key):
    """``M <- J M + I`` and this step's gradient ``sum_{b,s} d_s M``."""
    M = {
        k: influence.tangent(cell, params, local, m, None)
        for k, m in influence_state.items()
    }
    U = influence.unit_count(cell)
    like = local["x"]
    basis = jnp.broadcast_to(
        jnp.eye(U, dtype=like.dtype)[:, None], (U, like.shape[0], U)
    )
    A = influence.tangent(cell, params, local, None, basis)  # [U, B, S]: ds/dv
    for link in influence.links(cell, params, local):
        immediate = jnp.einsum("bi,kbs->ikbs", _operand(link, like), A[link.units])
        M[link.leaf] = M[link.leaf].at[:, link.cols].add(immediate)
    grads = {k: jnp.einsum("ikbs,bs->ik", m, d_s) for k, m in M.items()}
    return M, grads


# UORO ------------------------------------------------------------------------


def _uoro_init(cell, params, batch: int, dtype):
    S = influence.state_size(cell)
    theta = {
        k: jnp.zeros((batch, *m.shape), dtype) for k, m in _matrices(params).items()
    }
    return jnp.zeros((batch, S), dtype), theta


def _row_norm(tree) -> Array:
    return jnp.sqrt(
        sum(jnp.sum(a * a, axis=tuple(range(1, a.ndim))) for a in jax.tree.leaves(tree))
    )


def _uoro_step(cell, params, local, influence_state, d_s, key):
    """One UORO update of ``(s~, theta~)`` per row, and this step's estimate."""
    s_tilde, theta = influence_state
    like = local["x"]
    nu = jax.random.rademacher(key, s_tilde.shape, like.dtype)
    j_s = influence.tangent(cell, params, local, s_tilde, None)
    c_v = influence.cotangent(cell, params, local, nu)
    nu_f = {k: jnp.zeros_like(t) for k, t in theta.items()}
    for link in influence.links(cell, params, local):
        outer = jnp.einsum("bi,bk->bik", _operand(link, like), c_v[:, link.units])
        nu_f[link.leaf] = nu_f[link.leaf].at[:, :, link.cols].add(outer)
    eps = jnp.finfo(like.dtype).eps
    rho0 = jnp.sqrt((_row_norm(theta) + eps) / (_row_norm(j_s) + eps))
    rho1 = jnp.sqrt((_row_norm(nu_f) + eps) / (_row_norm(nu) + eps))
    s_tilde = rho0[:, None] * j_s + rho1[:, None] * nu
    theta = {
        k: t / rho0[:, None, None] + nu_f[k] / rho1[:, None, None]
        for k, t in theta.items()
    }
    weight = jnp.sum(d_s * s_tilde, axis=-1)  # (dL/ds) s~ per row
    grads = {k: jnp.einsum("b,bik->ik", weight, t) for k, t in theta.items()}
    return (s_tilde, theta), grads


# SnAp-1 ----------------------------------------------------------------------


def _parts(cell) -> int:
    """State entries per hidden unit: h (and the LSTM's c)."""
    return influence.state_size(cell) // cell.hidden_size


def _snap_init(cell, params, batch: int, dtype):
    n_s = _parts(cell)
    return {
        k: jnp.zeros((*m.shape, batch, n_s), dtype)
        for k, m in _matrices(params).items()
    }


def _by_unit(cell, out: Array) -> Array:
    """[Q, B, S] tangents, one per block of units lit at once, as [U, B, n_s]:
    unit ``u``'s effect on the state of its own hidden unit ``u % H``."""
    Q, B = out.shape[:2]
    H, n_s = cell.hidden_size, _parts(cell)
    per = out.reshape(Q, B, n_s, H)
    return jnp.transpose(per, (0, 3, 1, 2)).reshape(Q * H, B, n_s)


def _local_jacobians(cell, params, local):
    """(``A`` [U, B, n_s]: ds/dv of each unit on its own hidden unit, ``Jd``
    [B, n_s, n_s, H]: the diagonal blocks of ``J``), from one tangent per block
    of units and one per part of the state (the blocks are H-aligned, and a unit
    reaches only its own hidden unit, so lighting a whole block at once is exact)."""
    H, n_s, U = cell.hidden_size, _parts(cell), influence.unit_count(cell)
    like = local["x"]
    B, dtype = like.shape[0], like.dtype
    blocks = jnp.repeat(jnp.eye(U // H, dtype=dtype), H, axis=1)  # [Q, U]
    lit = jnp.broadcast_to(blocks[:, None], (U // H, B, U))
    A = _by_unit(
        cell, influence.tangent(cell, params, local, None, lit, recurrent=False)
    )
    parts = jnp.repeat(jnp.eye(n_s, dtype=dtype), H, axis=1)  # [n_s, S]
    d_carry = jnp.broadcast_to(parts[:, None], (n_s, B, n_s * H))
    direct = influence.tangent(cell, params, local, d_carry, None, recurrent=False)
    Jd = jnp.transpose(direct.reshape(n_s, B, n_s, H), (1, 2, 0, 3))  # [B, t, t', j]
    for units, w in influence.recurrent_weights(cell, params):
        m = w.shape[1]
        diagonal = w[jnp.arange(m) % H, jnp.arange(m)]  # w[j, unit of j]
        through = A[units] * diagonal[:, None, None]  # [m, B, n_s]
        through = through.reshape(m // H, H, B, n_s).sum(0)  # [H, B, n_s]
        Jd = Jd.at[:, :, 0, :].add(jnp.transpose(through, (1, 2, 0)))  # via h_{t-1}
    return A, Jd


def _snap_step(cell, params, local, influence_state, d_s, _key):
    """``M <- pattern(J M) + I`` on the kept entries, and this step's gradient."""
    A, Jd = _local_jacobians(cell, params, local)
    H, n_s, like = cell.hidden_size, _parts(cell), local["x"]
    d_s = d_s.reshape(d_s.shape[0], n_s, H)
    M, grads = {}, {}
    for k, m in influence_state.items():
        cols = jnp.arange(m.shape[1]) % H  # the hidden unit of each column
        M[k] = jnp.einsum("btpk,ikbp->ikbt", Jd[..., cols], m)
    for link in influence.links(cell, params, local):
        immediate = jnp.einsum("bi,kbt->ikbt", _operand(link, like), A[link.units])
        M[link.leaf] = M[link.leaf].at[:, link.cols].add(immediate)
    for k, m in M.items():
        cols = jnp.arange(m.shape[1]) % H
        grads[k] = jnp.einsum("ikbt,btk->ik", m, d_s[..., cols])
    return M, grads


_ENGINE_STEPS = {
    "rtrl": (_rtrl_init, _rtrl_step),
    "uoro": (_uoro_init, _uoro_step),
    "snap1": (_snap_init, _snap_step),
}


@functools.partial(jax.jit, static_argnums=(0, 7))
def _uoro_mean(cell, params, xs, carry0, mask, d_hs, key, samples):
    def estimate(key):
        return _online_gradient(cell, "uoro", params, xs, carry0, mask, d_hs, key)

    estimates = jax.vmap(estimate)(jax.random.split(key, samples))
    return jax.tree.map(lambda a: jnp.mean(a, axis=0), estimates)


def init_influence(cell, engine: str, params, batch: int, dtype):
    """The engine's influence state at the start of a sequence (all zeros)."""
    return _ENGINE_STEPS[engine][0](cell, params, batch, dtype)


def run(cell, engine: str, params, xs, carry0, influence_state, mask, d_hs, key):
    """The forward pass with the engine's influence carried along: ``(grads,
    carry, influence_state)`` at the end of ``xs`` [B, T, D], ``grads`` the
    parameters as matrices (``_matrices``). Unjitted; ``mask`` [B, T] bool."""
    engine_step = _ENGINE_STEPS[engine][1]

    def body(state, inputs):
        carry, influence_state, total = state
        x_t, valid, d_h, t = inputs
        new, local = influence.step(cell, params, carry, x_t)
        d_s = _output_cotangent(cell, jnp.where(valid[:, None], d_h, 0))
        updated, grads = engine_step(
            cell, params, local, influence_state, d_s, jax.random.fold_in(key, t)
        )
        carry = keep_rows(valid, new, carry)
        influence_state = _keep_influence(engine, valid, updated, influence_state)
        # a masked step adds nothing: its cotangent is zero
        return (carry, influence_state, jax.tree.map(jnp.add, total, grads)), None

    T = xs.shape[1]
    xs = zero_masked_inputs(xs, mask)  # whatever the padding holds stays out
    start = (carry0, influence_state, jax.tree.map(jnp.zeros_like, _matrices(params)))
    steps = (jnp.swapaxes(xs, 0, 1), mask.T, jnp.swapaxes(d_hs, 0, 1), jnp.arange(T))
    (carry, influence_state, total), _ = jax.lax.scan(body, start, steps)
    return total, carry, influence_state


@functools.partial(jax.jit, static_argnums=(0, 1))
def _online_gradient(cell, engine, params, xs, carry0, mask, d_hs, key):
    fresh = init_influence(cell, engine, params, xs.shape[0], xs.dtype)
    total, _, _ = run(cell, engine, params, xs, carry0, fresh, mask, d_hs, key)
    return _as_params(params, total)


def _keep_influence(engine, valid, new, old):
    if engine == "uoro":  # (s~ [B, S], theta~ {leaf: [B, Din, n]})
        return keep_rows(valid, new, old)
    return keep_rows(valid, new, old, 2)  # {leaf: [Din, n, B, ...]}


def influence_bytes(cell, params, batch: int, engine: str) -> int:
    """Bytes of the influence state an engine carries for ``batch`` rows (from
    shapes; P parameters, a state of S): RTRL P S per row, UORO P + S, SnAp-1
    P (or 2P for the LSTM's h and c)."""
    P = sum(m.size for m in _matrices(params).values())
    S = influence.state_size(cell)
    itemsize = jax.tree.leaves(params)[0].dtype.itemsize
    per_row = {"rtrl": P * S, "uoro": P + S, "snap1": P * _parts(cell)}[engine]
    return batch * per_row * itemsize


def online_gradient(
    cell,
    params,
    xs,
    d_hs,
    carry0=None,
    *,
    mask=None,
    engine: str = "rtrl",
    key=None,
    samples: int = 1,
    max_bytes: int = 2**31,
):
    """The gradient of a sequence's loss with respect to ``params``, carried
    forward through time (module docstring) instead of backpropagated.

    Args:
        cell: an ``Elman``, ``LSTM`` or ``GRU`` cell.
        params: its parameters.
        xs: [B, T, D] inputs.
        d_hs: [B, T, H] the loss's cotangent of the outputs ``hs`` of
            ``unroll(cell, params, xs, carry0, mask=mask)`` (e.g. ``jax.grad``
            of the loss with respect to ``hs``). At masked steps it is ignored.
        carry0: the initial carry, or None for zeros.
        mask: [B, T] bool, True at valid steps; None means all valid.
        engine: ``"rtrl"`` (exact), ``"uoro"`` (unbiased estimate; needs
            ``key``) or ``"snap1"`` (the one-step sparsity pattern).
        key: a JAX random key, for ``"uoro"``'s random signs.
        samples: ``"uoro"`` only: the mean of this many independent estimates
            (its error falls like ``1 / sqrt(samples)``).
        max_bytes: refuse an engine whose influence state would need more bytes
            (RTRL grows as P times S; ``influence_bytes`` says how much). It
            bounds the state carried from step to step; a step's temporaries
            take 3-6 times as much again (RTRL pushes all of ``M`` through the
            units: 4H of them for the LSTM, 6H for the GRU).

    Returns:
        The gradient, of the type and shapes of ``params``: for ``"rtrl"`` the
        same as BPTT's (``bptt(...)[0]``); for ``"uoro"`` one random estimate,
        whose mean over keys is BPTT's; for ``"snap1"`` an approximation.
    """
    from ._checks import check_unroll_args
    from ._scalars import positive_int

    fn = "online_gradient"
    check_engine(fn, cell, engine)
    params, xs, carry0, mask = check_unroll_args(fn, cell, params, xs, carry0, mask)
    B, T, _ = xs.shape
    d_hs = _check_cotangent(fn, d_hs, (B, T, cell.hidden_size), xs.dtype)
    key = check_key(fn, engine, key)
    samples = positive_int(fn, "samples", samples)
    if samples > 1 and engine != "uoro":
        raise ValueError(f"{fn}: `samples` is for engine 'uoro', got {engine!r}")
    limit = positive_int(fn, "max_bytes", max_bytes)
    check_size(fn, cell, params, B * samples, engine, limit)
    mask = jnp.ones((B, T), bool) if mask is None else mask
    if samples > 1:
        return _uoro_mean(cell, params, xs, carry0, mask, d_hs, key, samples)
    return _online_gradient(cell, engine, params, xs, carry0, mask, d_hs, key)


def check_engine(fn: str, cell, engine: str) -> None:
    """A known engine, for a recurrent cell it can serve."""
    if engine not in ENGINES:
        raise ValueError(f"{fn}: `engine` must be one of {ENGINES}, got {engine!r}")
    from ._checks import check_cell

    check_cell(fn, cell)
    if not cell.recurrent:
        raise TypeError(
            f"{fn}: `cell` must be recurrent (Elman, LSTM or GRU), got a "
            "Feedforward cell"
        )
    if engine == "snap1" and not influence.local_units(cell):
        raise ValueError(
            f"{fn}: engine 'snap1' needs units that reach only their own hidden "
            "unit in one step; GRU(reset_after=False)'s reset gate reaches every "
            "unit (its one-step pattern is dense): use reset_after=True or 'rtrl'"
        )


def check_key(fn: str, engine: str, key):
    """UORO's key (required), or a placeholder for the other engines."""
    from ._scalars import prng_key

    if engine != "uoro":
        return jax.random.key(0)  # unused
    if key is None:
        raise ValueError(
            f"{fn}: engine 'uoro' draws random signs: pass `key` (jax.random.key(seed))"
        )
    return prng_key(fn, "key", key)


def check_size(fn: str, cell, params, batch: int, engine: str, limit: int) -> None:
    """Refuses an influence state larger than ``limit`` bytes, before it exists."""
    needed = influence_bytes(cell, params, batch, engine)
    if needed > limit:
        raise ValueError(
            f"{fn}: the {engine!r} influence state would take {needed / 2**30:.3g} GiB "
            f"({needed} bytes: batch {batch} x {needed // batch} bytes a row) > "
            f"max_bytes {limit} (a step's temporaries need 3-6 times the state "
            "again); use 'snap1' or 'uoro', a smaller batch or state, or raise "
            "max_bytes"
        )


def _check_cotangent(fn, d_hs, shape, dtype):
    from ._checks import _check_dtype, as_float_array, check_shape

    d_hs = as_float_array(fn, "d_hs", d_hs)
    check_shape(fn, "d_hs", d_hs, shape)
    _check_dtype(fn, "d_hs", d_hs, dtype, "params")
    return d_hs
