"""Hand-written BPTT against autodiff, finite differences and unpadded runs."""

import ast
import functools
import importlib
import inspect

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import (
    CELLS,
    RECURRENT,
    _value_and_grads,
    make_problem,
    max_rel,
    right_padded_mask,
    value_and_grads,
)
from hypothesis import given, settings
from hypothesis import strategies as st
from reference import loop

import rnnbptt

bptt_module = importlib.import_module("rnnbptt.bptt")

TOL = {jnp.float64: 1e-10, jnp.float32: 1e-5}
FD_TOL = 1e-6


def _numpy_problem(cell, seed, batch, steps, dtype=jnp.float64):
    """conftest's ``make_problem`` (the same draws, in the same order) as NumPy
    arrays: a jitted program takes them as it takes JAX arrays, while
    jnp.asarray compiles a program per shape, several per example where the
    shapes are random."""
    rng = np.random.default_rng(seed)

    def draw(leaf):  # as conftest's draw_params
        if leaf.ndim == 1:  # a bias
            return (0.3 * rng.standard_normal(leaf.shape)).astype(leaf.dtype)
        bound = 1 / np.sqrt(leaf.shape[0])
        return rng.uniform(-bound, bound, leaf.shape).astype(leaf.dtype)

    shapes = jax.eval_shape(lambda key: cell.init(key, dtype), jax.random.key(0))
    params = jax.tree.map(draw, shapes)
    xs = rng.standard_normal((batch, steps, cell.input_size)).astype(dtype)
    carry_shapes = jax.eval_shape(lambda: cell.initial_carry(batch, dtype))
    carry = jax.tree.map(
        lambda leaf: (0.5 * rng.standard_normal(leaf.shape)).astype(dtype),
        carry_shapes,
    )
    return params, xs, carry


@st.composite
def problems(draw):
    """A random cell, sizes, seed and right-padded mask (T = 1 included)."""
    kind = draw(st.sampled_from(RECURRENT))
    batch, steps = draw(st.integers(1, 4)), draw(st.integers(1, 9))
    d, h = draw(st.integers(1, 4)), draw(st.integers(1, 5))
    cell = {
        "elman-tanh": rnnbptt.Elman(d, h),
        "elman-relu": rnnbptt.Elman(d, h, activation="relu"),
        "lstm": rnnbptt.LSTM(d, h),
        "gru": rnnbptt.GRU(d, h),
        "gru-reset-before": rnnbptt.GRU(d, h, reset_after=False),
    }[kind]
    seed = draw(st.integers(0, 2**16))
    lengths = draw(st.lists(st.integers(1, steps), min_size=batch, max_size=batch))
    mask = right_padded_mask(lengths, steps) if draw(st.booleans()) else None
    return cell, batch, steps, seed, mask


@functools.partial(jax.jit, static_argnums=0)
def _vjps(cell, params, xs, carry0, mask, d_hs, d_final):
    """(bptt's cotangents, jax.vjp's cotangents of the autodiff engine's unroll)
    of the outputs' cotangents, as one program (the eager calls compile several
    apiece). The default engine is the manual one: its vjp is bptt's own code."""
    manual = rnnbptt.bptt(cell, params, xs, carry0, d_hs, d_final, mask=mask)
    _, vjp = jax.vjp(
        lambda p, x, c: rnnbptt.unroll(cell, p, x, c, mask=mask, backward="autodiff"),
        params,
        xs,
        carry0,
    )
    return manual, vjp((d_final, d_hs))


def _normal(rng, shape, dtype):
    """conftest's ``normal`` as a NumPy array: a jitted program takes it as it
    takes a JAX array, and jnp.asarray compiles a program per shape."""
    return rng.standard_normal(shape).astype(dtype)


def _vjp_both(cell, params, xs, carry0, mask, seed):
    """``_vjps`` for random output cotangents (the final carry has carry0's shapes)."""
    rng = np.random.default_rng(seed + 1)
    d_hs = _normal(rng, (*xs.shape[:2], cell.hidden_size), xs.dtype)
    d_final = jax.tree.map(lambda a: _normal(rng, a.shape, a.dtype), carry0)
    return _vjps(cell, params, xs, carry0, mask, d_hs, d_final)


@settings(max_examples=20, deadline=None, derandomize=True)
@given(problem=problems(), dtype=st.sampled_from([jnp.float64, jnp.float32]))
def test_bptt_equals_vjp_of_unroll(problem, dtype):
    cell, batch, steps, seed, mask = problem
    params, xs, carry0 = _numpy_problem(cell, seed, batch, steps, dtype)
    manual, auto = _vjp_both(cell, params, xs, carry0, mask, seed)
    assert jax.tree.structure(manual) == jax.tree.structure(auto)
    for got, want in zip(manual, auto, strict=True):  # params, xs, carry0 in turn
        assert max_rel(got, want) <= TOL[dtype]


@functools.partial(jax.jit, static_argnums=0)
def _both_engines(cell, params, xs, carry0, mask, probe, carry_probe):
    """The gradients of a probe loss by both engines, in one program (arrays as
    arguments: examples of the same cell and shapes share it)."""

    def loss(params, xs, carry0, backward):
        final, hs = rnnbptt.unroll(
            cell, params, xs, carry0, mask=mask, backward=backward
        )
        total = jnp.sum(probe * hs) + jnp.sum(hs**2)  # non-linear in hs as well
        for p, c in zip(carry_probe, jax.tree.leaves(final), strict=True):
            total = total + jnp.sum(p * c)
        return total

    grad = jax.grad(loss, argnums=(0, 1, 2))
    return grad(params, xs, carry0, "manual"), grad(params, xs, carry0, "autodiff")


@settings(max_examples=14, deadline=None, derandomize=True)
@given(problem=problems())
def test_grad_through_manual_engine_equals_autodiff(problem):
    cell, batch, steps, seed, mask = problem
    params, xs, carry0 = _numpy_problem(cell, seed, batch, steps)
    # random linear probes of every output and every part of the final carry
    # (the final carry has carry0's shapes), drawn in NumPy: in the program, a
    # JAX draw would add its generator to every example's compilation
    rng = np.random.default_rng(seed + 2)
    probe = _normal(rng, (batch, steps, cell.hidden_size), jnp.float64)
    carry_probe = [_normal(rng, c.shape, c.dtype) for c in jax.tree.leaves(carry0)]

    got, want = _both_engines(cell, params, xs, carry0, mask, probe, carry_probe)
    assert jax.tree.structure(got) == jax.tree.structure(want)
    assert max_rel(got, want) <= TOL[jnp.float64]


def test_bptt_for_feedforward(cell):
    params, xs, carry0 = make_problem(cell)
    mask = right_padded_mask([6, 1, 3], 6)
    manual, auto = _vjp_both(cell, params, xs, carry0, mask, seed=4)
    assert max_rel(manual, auto) <= TOL[jnp.float64]


def _probes(cell, seed, batch, steps):
    """A random linear probe of every output and of every part of the final carry
    (which has carry0's shapes), drawn in NumPy: jax.random would compile a
    sampler per shape."""
    rng = np.random.default_rng(seed)
    probe = _normal(rng, (batch, steps, cell.hidden_size), jnp.float64)
    carry = jax.eval_shape(lambda: cell.initial_carry(batch, jnp.float64))
    return probe, [_normal(rng, c.shape, c.dtype) for c in jax.tree.leaves(carry)]


def _grads(cell, backward, params, xs, carry0, mask, probes):
    """The probe's gradient with respect to (params, xs, carry0): conftest's
    jitted program (arrays as arguments), so that the tests of the same cell,
    engine and shapes, here and in test_whatever_fills_the_padding_changes_nothing,
    share one compiled program."""
    return _value_and_grads(cell, backward, None, params, xs, carry0, mask, *probes)[1]


@pytest.mark.parametrize("masked", [False, True])
def test_engines_agree_with_float64_finite_differences(any_cell, masked):
    """Central differences of an independent NumPy forward (tests/reference.py)."""
    cell = any_cell
    params, xs, carry0 = make_problem(cell, seed=7)
    mask = right_padded_mask([6, 2, 4], 6) if masked else None
    probe, carry_probe = _probes(cell, 8, 3, 6)

    def numpy_loss(params, xs, carry0):
        # the reference returns the carry as a tuple of arrays
        final, hs = loop(cell, params, xs, carry0, mask)
        return np.sum(probe * hs) + sum(
            np.sum(p * c) for p, c in zip(carry_probe, final, strict=True)
        )

    args = (params, xs, carry0)
    # perturbed in NumPy: a JAX update of each leaf compiles a program per shape
    leaves, treedef = jax.tree.flatten(jax.tree.map(np.asarray, args))
    rng = np.random.default_rng(0)
    for engine in ("manual", "autodiff"):
        grads = jax.tree.leaves(_grads(cell, engine, *args, mask, (probe, carry_probe)))
        for i, (leaf, grad) in enumerate(zip(leaves, grads, strict=True)):
            coords = rng.choice(leaf.size, min(6, leaf.size), replace=False)
            est = []
            for k in coords:
                step = 1e-6 * max(1.0, abs(float(leaf.reshape(-1)[k])))
                vals = []
                for sign in (1, -1):
                    new = list(leaves)
                    moved = leaf.reshape(-1).copy()
                    moved[k] += sign * step
                    new[i] = moved.reshape(leaf.shape)
                    vals.append(numpy_loss(*jax.tree.unflatten(treedef, new)))
                est.append((vals[0] - vals[1]) / (2 * step))
            assert (
                max_rel(np.asarray(grad).reshape(-1)[coords], np.array(est)) <= FD_TOL
            )


@pytest.mark.parametrize("backward", ["autodiff", "manual"])
def test_padded_batch_gradient_is_sum_of_unpadded(recurrent_cell, backward):
    """Jitted gradients (``_grads``): the padded batch's programs are those of
    test_whatever_fills_the_padding_changes_nothing and of the masked finite
    differences."""
    cell = recurrent_cell
    lengths = [6, 2, 4]
    params, xs, carry0 = make_problem(cell, seed=11)
    mask = right_padded_mask(lengths, 6)
    # drawn, sliced and summed in NumPy: eagerly, JAX would compile a program
    # for every slice and sum
    probe, carry_probe = _probes(cell, 12, 3, 6)
    g_params, g_xs, g_carry = _grads(
        cell, backward, params, xs, carry0, mask, (probe, carry_probe)
    )
    total = jax.tree.map(np.zeros_like, params)
    xs = np.asarray(xs)
    for b, n in enumerate(lengths):
        row = lambda a, b=b: np.asarray(a)[b : b + 1]  # noqa: E731
        gp, gx, gc = _grads(
            cell,
            backward,
            params,
            xs[b : b + 1, :n],
            jax.tree.map(row, carry0),
            None,
            (probe[b : b + 1, :n], [row(p) for p in carry_probe]),
        )
        total = jax.tree.map(np.add, total, gp)
        np.testing.assert_allclose(g_xs[b, :n], gx[0], rtol=1e-12, atol=1e-14)
        np.testing.assert_array_equal(g_xs[b, n:], 0.0)  # padding gets no gradient
        jax.tree.map(
            lambda a, c, b=b: np.testing.assert_allclose(a[b], c[0], rtol=1e-12),
            g_carry,
            gc,
        )
    assert max_rel(g_params, total) <= 1e-12


@pytest.mark.parametrize("recompute_every", [None, 4])
def test_whatever_fills_the_padding_changes_nothing(cell, recompute_every):
    """Padded steps holding inf and NaN: the same outputs and the same gradients
    (both engines, and bptt) as padding of zeros."""
    params, xs, carry0 = make_problem(cell, seed=5)
    mask = np.array([[1, 1, 0, 1, 0, 0], [1, 1, 1, 1, 1, 1], [0, 1, 1, 0, 0, 1]], bool)
    dirty = np.where(mask[..., None], xs, np.array([np.inf, np.nan, -np.inf]))
    results = {}
    for name, x in (("clean", np.where(mask[..., None], xs, 0)), ("dirty", dirty)):
        for backward in ("autodiff", "manual"):
            results[name, backward] = value_and_grads(
                cell, params, jnp.asarray(x), carry0, mask, backward, recompute_every
            )
        final, hs = rnnbptt.unroll(cell, params, jnp.asarray(x), carry0, mask=mask)
        ones = jax.tree.map(np.ones_like, final)  # NumPy: no programs
        results[name, "bptt"] = rnnbptt.bptt(
            cell, params, jnp.asarray(x), carry0, np.ones_like(hs), ones, mask=mask
        )
    for engine in ("autodiff", "manual", "bptt"):
        clean, dirty = results["clean", engine], results["dirty", engine]
        assert all(np.all(np.isfinite(leaf)) for leaf in jax.tree.leaves(dirty))
        jax.tree.map(np.testing.assert_array_equal, dirty, clean)


def test_bptt_returns_every_cotangent_in_its_structure():
    cell = CELLS["lstm"]
    params, xs, carry0 = make_problem(cell)
    d_hs = np.ones((3, 6, 4))
    d_params, d_xs, d_carry0 = rnnbptt.bptt(cell, params, xs, carry0, d_hs)
    assert isinstance(d_params, rnnbptt.LSTMParams)
    assert isinstance(d_carry0, rnnbptt.LSTMCarry)
    assert d_xs.shape == xs.shape
    # d_final_carry=None means zero: the same as passing zeros explicitly
    zeros = jax.tree.map(np.zeros_like, carry0)
    again = rnnbptt.bptt(cell, params, xs, carry0, d_hs, zeros)
    jax.tree.map(np.testing.assert_array_equal, (d_params, d_xs, d_carry0), again)
    assert all(  # compared in NumPy: eagerly, JAX compiles a program per shape
        np.any(np.asarray(leaf) != 0)
        for leaf in jax.tree.leaves((d_params, d_xs, d_carry0))
    )


def test_bptt_is_written_by_hand():
    """No JAX differentiation transform is used in the hand-written backward pass."""
    transforms = {"grad", "vjp", "jvp", "linearize", "value_and_grad", "custom_vjp"}
    tree = ast.parse(inspect.getsource(bptt_module))
    used = {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)}
    used |= {
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
    }
    assert not used & transforms
    assert "scan" in used  # the reverse pass is a lax.scan


def test_bptt_rejects_bad_cotangents():
    cell = CELLS["elman-tanh"]
    params, xs, carry0 = make_problem(cell)
    with pytest.raises(ValueError, match="d_hs"):
        rnnbptt.bptt(cell, params, xs, carry0, jnp.ones((3, 6, 5)))
    with pytest.raises(ValueError, match="d_final_carry"):
        rnnbptt.bptt(cell, params, xs, carry0, jnp.ones((3, 6, 4)), jnp.ones((3, 5)))
