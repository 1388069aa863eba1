"""settle and its gradient engines, in float64, against independent oracles: a
plain Python loop of ``cell.step`` differentiated by JAX (for "bptt"), the
other engines (Liao et al.'s identities), a dense solve and central finite
differences of the settled state."""

import functools
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

import rnnbptt
from rnnbptt.rbp import flat
from rnnbptt.settling import ENGINES, compare_settle

CELLS = {
    "elman": rnnbptt.Elman(3, 4),
    "lstm": rnnbptt.LSTM(3, 3),
    "gru": rnnbptt.GRU(3, 4),
    "gru-reset-before": rnnbptt.GRU(3, 3, reset_after=False),
    "hopfield": rnnbptt.Hopfield(3, 5),
}
TIGHT = {"tol": 1e-14, "max_steps": 400}


def _problem(name, scale=0.5):
    """A contracting cell (weights scaled by ``scale``), x [3, 3], a probe."""
    cell = CELLS[name]
    params = jax.tree.map(lambda a: scale * a, cell.init(jax.random.key(0)))
    x = jax.random.normal(jax.random.key(1), (3, 3))
    S = cell.hidden_size * (2 if isinstance(cell, rnnbptt.LSTM) else 1)
    probe = jax.random.normal(jax.random.key(2), (3, S))
    return cell, params, x, probe


@functools.partial(jax.jit, static_argnums=(0, 1, 2, 3, 4))
def _grad(cell, engine, backward_steps, tol, max_steps, params, x, probe):
    def loss(params, x):
        h, _ = rnnbptt.settle(
            cell,
            params,
            x,
            tol=tol,
            max_steps=max_steps,
            backward=engine,
            backward_steps=backward_steps,
        )
        return jnp.sum(probe * flat(h))

    return ravel_pytree(jax.grad(loss, argnums=(0, 1))(params, x))[0]


def grad(name, engine, backward_steps=20, tol=1e-14, max_steps=400):
    cell, params, x, probe = _problem(name)
    return _grad(cell, engine, backward_steps, tol, max_steps, params, x, probe)


def max_rel(a, b):
    return float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(b)))


@pytest.mark.parametrize("name", CELLS)
def test_bptt_engine_is_autodiff_of_a_plain_loop(name):
    cell, params, x, probe = _problem(name)
    _, info = rnnbptt.settle(cell, params, x, **TIGHT)
    steps = np.asarray(info.steps)

    def loop(params, x):  # each row stops at its own step count
        def body(k, carry):
            new, _ = cell.step(params, carry, x)
            live = (k < steps)[:, None]
            return jax.tree.map(lambda n, o: jnp.where(live, n, o), new, carry)

        carry0 = cell.initial_carry(x.shape[0], x.dtype)
        carry = jax.lax.fori_loop(0, int(steps.max()), body, carry0)
        return jnp.sum(probe * flat(carry))

    want = ravel_pytree(jax.grad(loop, argnums=(0, 1))(params, x))[0]
    assert max_rel(grad(name, "bptt"), want) < 1e-12


@pytest.mark.parametrize("name", CELLS)
@pytest.mark.parametrize("terms", [3])
def test_neumann_terms_equal_tbptt_through_as_many_steps(name, terms):
    # K terms, K - 1 products with J^T: TBPTT through the last K steps
    got = grad(name, "neumann", terms)
    assert max_rel(got, grad(name, "tbptt", terms)) < 1e-12
    assert max_rel(got, grad(name, "implicit")) > 1e-6  # truncated: not the limit


@pytest.mark.parametrize("name", CELLS)
def test_implicit_equals_bptt_and_the_iterations_converge_to_it(name):
    implicit = grad(name, "implicit")
    assert max_rel(implicit, grad(name, "bptt")) < 1e-10
    assert max_rel(grad(name, "rbp"), implicit) < 1e-10
    assert max_rel(grad(name, "cg", backward_steps=40), implicit) < 1e-10


@pytest.mark.parametrize("name", ["elman", "lstm", "gru", "hopfield"])
def test_every_engine_against_float64_finite_differences(name):
    cell, params, x, probe = _problem(name)
    flat_args, unravel = ravel_pytree((params, x))

    @jax.jit
    def settled(v):
        h, _ = rnnbptt.settle(cell, *unravel(v), tol=1e-15, max_steps=1000)
        return jnp.sum(probe * flat(h))

    idx = np.random.default_rng(0).choice(flat_args.size, 12, replace=False)
    step = 1e-5
    basis = np.eye(flat_args.size)[idx] * step
    fd = np.array(
        [(settled(flat_args + e) - settled(flat_args - e)) / (2 * step) for e in basis]
    )
    for engine in ENGINES:
        steps = {"tbptt": 400, "neumann": 60, "cg": 40}.get(engine, 20)
        got = np.asarray(grad(name, engine, steps))[idx]
        assert np.max(np.abs(got - fd)) / np.max(np.abs(fd)) < 1e-6, engine


def test_info_counts_each_rows_steps_like_a_plain_loop():
    cell, params, x, _ = _problem("elman")
    tol = 1e-8
    h, info = rnnbptt.settle(cell, params, x, tol=tol)
    for b in range(x.shape[0]):
        carry, k = jnp.zeros((1, cell.hidden_size)), 0
        while True:
            new, _ = cell.step(params, carry, x[b : b + 1])
            k, change = k + 1, float(jnp.max(jnp.abs(new - carry)))
            carry = new
            if change < tol:
                break
        assert int(info.steps[b]) == k
        np.testing.assert_allclose(h[b], carry[0], rtol=0, atol=1e-14)
        np.testing.assert_allclose(info.residual[b], change, rtol=1e-6)
    assert len(set(np.asarray(info.steps))) > 1  # the rows stop apart
    assert bool(info.settled.all())


@pytest.mark.parametrize("name", CELLS)
def test_rate_estimates_the_spectral_radius_of_the_jacobian(name):
    cell, params, x, _ = _problem(name)
    h, info = rnnbptt.settle(cell, params, x, **TIGHT)
    run_cell, run_params = rnnbptt.settling._as_run(cell, params)
    for b in range(x.shape[0]):  # the dense Jacobian of one step, by autodiff
        row = jax.tree.map(lambda a, b=b: a[b : b + 1], h)

        def one_step(v, b=b, row=row):
            state = rnnbptt.rbp.unflat(row, v[None])
            return flat(rnnbptt.rbp.step(run_cell, run_params, x[b : b + 1], state))[0]

        jacobian = np.asarray(jax.jacfwd(one_step)(flat(row)[0]))
        radius = np.max(np.abs(np.linalg.eigvals(jacobian)))
        assert abs(float(info.rate[b]) - radius) < 0.1 * radius


def test_rate_of_a_rotation_and_the_warnings_it_gives_rbp():
    cell = rnnbptt.Elman(2, 2, activation="identity")
    turn = jnp.array([[0.6, -0.8], [0.8, 0.6]])  # eigenvalues 0.6 +- 0.8i
    for scale, words in [(3.0, "about 3 >= 1"), (0.97, "needs about 454 iterations")]:
        params = rnnbptt.ElmanParams(jnp.eye(2), scale * turn, jnp.zeros(2))
        x = jnp.zeros((1, 2))  # h* = 0: settled at once, attracting or not
        with pytest.warns(RuntimeWarning, match=words):
            _, info = rnnbptt.settle(cell, params, x, max_steps=30)
        np.testing.assert_allclose(info.rate, scale, rtol=1e-12)
        assert int(info.steps[0]) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # CG solves; it does not iterate the series
        rnnbptt.settle(cell, params, x, max_steps=30, backward="cg")
        _, info = rnnbptt.settle(cell, params, x, max_steps=30, rate_steps=0)
    assert np.isnan(info.rate).all()  # not estimated, so not reported


def test_hessians_are_right_and_a_gradient_of_the_gradient_raises():
    cell, params, x, _ = _problem("elman")

    def total(x):
        h, _ = rnnbptt.settle(cell, params, x, tol=1e-13, max_steps=500)
        return jnp.sum(h**2)

    hessian = np.asarray(jax.hessian(total)(x)).reshape(x.size, x.size)
    gradient, step = jax.jit(jax.grad(total)), 1e-5
    basis = np.eye(x.size).reshape(x.size, *x.shape) * step
    fd = np.stack([(gradient(x + e) - gradient(x - e)).ravel() for e in basis], 1)
    np.testing.assert_allclose(hessian, fd / (2 * step), atol=1e-8)
    with pytest.raises(ValueError, match="while_loop"):
        jax.grad(lambda x: jnp.sum(jax.grad(total)(x)))(x)


def test_fixed_point_engines_give_carry0_zero_and_bptt_its_vanishing_part():
    cell, params, x, probe = _problem("gru")

    def d_carry0(engine):
        def loss(h0):
            h, _ = rnnbptt.settle(cell, params, x, h0, backward=engine, **TIGHT)
            return jnp.sum(probe * h)

        return jax.grad(loss)(jnp.full((3, 4), 0.3))

    assert float(jnp.max(jnp.abs(d_carry0("rbp")))) == 0.0
    bptt = float(jnp.max(jnp.abs(d_carry0("bptt"))))
    assert 0 < bptt < 1e-12  # (J^T)^n g with n ~ 60 contracting steps


def test_hopfield_runs_with_symmetric_weights_and_gets_their_gradient():
    cell, params, x, probe = _problem("hopfield")
    raw = params._replace(w_hh=params.w_hh + jnp.triu(jnp.ones_like(params.w_hh)))
    sym = rnnbptt.cells.symmetric(raw.w_hh)
    assert np.allclose(sym, sym.T) and not np.any(np.diag(sym))
    carry = jnp.full((3, 5), 0.2)
    _, h = cell.step(raw, carry, x)
    want = 1 / (1 + np.exp(-(x @ raw.w_ih + carry @ sym + raw.b)))
    np.testing.assert_allclose(h, want, rtol=1e-14)

    def loss(p):
        h, _ = rnnbptt.settle(cell, p, x, backward="implicit", tol=1e-12)
        return jnp.sum(probe * h)

    d = jax.grad(loss)(params).w_hh
    assert np.allclose(d, d.T, rtol=0, atol=1e-15) and not np.any(np.diag(d))


def test_under_jit_and_in_float32():
    cell, params, x, _ = _problem("lstm")
    p32, x32 = jax.tree.map(lambda a: a.astype(jnp.float32), (params, x))
    run = jax.jit(lambda p, x: rnnbptt.settle(cell, p, x, tol=1e-5))
    h, info = run(p32, x32)
    assert h.h.dtype == jnp.float32 and info.residual.dtype == jnp.float32
    h64, _ = rnnbptt.settle(cell, params, x, tol=1e-12)
    np.testing.assert_allclose(h.h, h64.h, atol=1e-4)
    for engine in ("rbp", "neumann", "bptt"):
        got = _grad(
            cell, engine, 40, 1e-6, 400, p32, x32, jnp.ones((3, 6), jnp.float32)
        )
        want = _grad(cell, engine, 40, 1e-14, 400, params, x, jnp.ones((3, 6)))
        assert got.dtype == jnp.float32 and max_rel(got, want) < 1e-3, engine


def test_a_state_that_does_not_settle_raises_or_warns():
    cell = rnnbptt.Elman(2, 2, activation="identity")
    params = rnnbptt.ElmanParams(jnp.eye(2), -jnp.eye(2) * 1.0, jnp.zeros(2))
    x = jnp.ones((1, 2))  # h <- x - h: oscillates for ever, rate 1
    with pytest.raises(ValueError, match=r"did not settle.*up to 1 \(tol.*max_steps 7"):
        rnnbptt.settle(cell, params, x, max_steps=7)
    with pytest.warns(RuntimeWarning) as caught:
        _, info = rnnbptt.settle(cell, params, x, max_steps=7, unsettled="warn")
    messages = " ".join(str(w.message) for w in caught)
    assert "did not settle" in messages and "about 1 >= 1" in messages
    assert not bool(info.settled[0]) and int(info.steps[0]) == 7
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rnnbptt.settle(cell, params, x, max_steps=7, unsettled="ignore", backward="cg")


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"tol": 0}, ValueError, "tol"),
        ({"tol": -1e-3}, ValueError, "tol"),
        ({"max_steps": 0}, ValueError, "max_steps"),
        ({"max_steps": 2**31}, ValueError, r"max_steps.*2\*\*31"),
        ({"backward_steps": 0}, ValueError, "backward_steps"),
        ({"backward": "adjoint"}, ValueError, "backward.*one of"),
        ({"unsettled": "quiet"}, ValueError, "unsettled"),
        ({"rate_steps": 1}, ValueError, "rate_steps"),
        ({"rate_steps": 0.0}, TypeError, "rate_steps"),
        ({"x": jnp.ones((3, 5, 3))}, ValueError, "time axis.*rnnbptt.unroll"),
        ({"x": jnp.ones((3, 2))}, ValueError, r"\[B, 3\]"),
        ({"x": jnp.ones((3, 3), jnp.float32)}, TypeError, "dtype"),
        ({"carry0": jnp.ones((2, 4))}, ValueError, "carry0"),
        ({"cell": rnnbptt.Feedforward(3, 4)}, TypeError, "Feedforward cell has no"),
        ({"cell": "elman"}, TypeError, "got str$"),
    ],
)
def test_bad_input_gets_a_clear_error(kwargs, error, match):
    cell, params, x, _ = _problem("elman")
    args = {"cell": cell, "params": params, "x": x} | kwargs
    with pytest.raises(error, match=match):
        rnnbptt.settle(args.pop("cell"), args.pop("params"), args.pop("x"), **args)


def test_unroll_points_a_hopfield_cell_at_settle():
    cell, params, x, _ = _problem("hopfield")
    with pytest.raises(TypeError, match=r"rnnbptt\.settle"):
        rnnbptt.unroll(cell, params, x[:, None])


def test_compare_settle_table():
    cell, params, x, _ = _problem("lstm")
    table = compare_settle(cell, params, x, tol=1e-13, backward_steps=5)
    assert set(table.index.get_level_values("engine")) == set(ENGINES)
    weights = table.xs("params.w_hh", level="leaf")["rel"]
    # CG needs about S iterations; five are too few for the LSTM's S = 6
    assert weights["bptt"] == 0 and max(weights[["rbp", "implicit"]]) < 1e-9
    assert weights["cg"] > 1e-6
    assert (
        weights["neumann"] > 1e-4 and abs(weights["neumann"] - weights["tbptt"]) < 1e-9
    )
    assert table.loc[("rbp", "carry0.c"), "rel"] == 1.0  # zero, by design
    against_tbptt = compare_settle(
        cell, params, x, tol=1e-13, engines=("neumann",), reference="tbptt"
    )["rel"]
    assert max(against_tbptt) < 1e-12  # the default backward_steps, 20, each
    with pytest.raises(ValueError, match="engines"):
        compare_settle(cell, params, x, engines=("bptt", "adjoint"))
    with pytest.raises(ValueError, match="reference"):
        compare_settle(cell, params, x, reference="adjoint")


def _scratch(cell, params, x, engine, max_steps):
    def loss(params):
        h, _ = rnnbptt.settle(
            cell, params, x, tol=1e-30, max_steps=max_steps, backward=engine
        )
        return jnp.sum(h)

    compiled = jax.jit(jax.grad(loss)).lower(params).compile()
    return compiled.memory_analysis().temp_size_in_bytes


def test_residual_bytes_count_the_steps_the_backward_keeps():
    cell = rnnbptt.Elman(3, 16)  # the hand-written Elman backward keeps h per step
    params, x = cell.init(jax.random.key(0)), jnp.zeros((8, 3))
    one_step = 8 * 16 * x.dtype.itemsize
    count = functools.partial(rnnbptt.settle_residual_bytes, cell, params, x)
    assert count(max_steps=300, backward="bptt") == 300 * one_step
    assert count(max_steps=300, backward="tbptt", backward_steps=7) == 7 * one_step
    assert count(max_steps=5, backward="tbptt", backward_steps=7) == 5 * one_step
    for engine in ("rbp", "neumann", "cg", "implicit"):
        assert count(max_steps=5000, backward=engine) == one_step
    # the compiled programs agree: BPTT's scratch grows by the residuals of the
    # extra steps, Neumann-RBP's and TBPTT's do not grow
    grow = _scratch(cell, params, x, "bptt", 400) - _scratch(
        cell, params, x, "bptt", 100
    )
    assert grow >= 300 * one_step
    for engine in ("neumann", "tbptt"):  # TBPTT reruns the untruncated steps
        assert _scratch(cell, params, x, engine, 400) == _scratch(
            cell, params, x, engine, 100
        )
