"""The online gradient engines (RTRL, UORO, SnAp-1), in float64, against
JAX's reverse-mode autodiff through ``unroll`` and against each other."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

import rnnbptt
from rnnbptt import influence, online

CELLS = {
    "elman": rnnbptt.Elman(3, 4),
    "elman-relu-two-biases": rnnbptt.Elman(3, 4, "relu", two_biases=True),
    "lstm": rnnbptt.LSTM(3, 4),
    "gru": rnnbptt.GRU(3, 4),
    "gru-reset-before": rnnbptt.GRU(3, 4, reset_after=False),
}
MASK = np.array([[1, 1, 1, 1, 1, 1], [1, 1, 0, 1, 1, 0], [0, 1, 1, 1, 0, 0]], bool)


def _problem(name, diagonal=False):
    """Parameters with non-zero biases, xs [3, 6, 3], a carry0, d_hs."""
    cell = CELLS[name]
    keys = jax.random.split(jax.random.key(0), 5)
    params = cell.init(keys[0], jnp.float64)
    params = jax.tree.map(
        lambda a: a + 0.1 * jax.random.normal(keys[1], a.shape, a.dtype), params
    )
    if diagonal:  # each [H, H] block of w_hh diagonal: no unit reaches another
        H = cell.hidden_size
        eye = jnp.tile(jnp.eye(H), (1, params.w_hh.shape[1] // H))
        params = params._replace(w_hh=eye * params.w_hh)
    xs = jax.random.normal(keys[2], (3, 6, 3), jnp.float64)
    carry0 = jax.tree.map(
        lambda a: 0.5 * jax.random.normal(keys[3], a.shape, a.dtype),
        cell.initial_carry(3, jnp.float64),
    )
    d_hs = jax.random.normal(keys[4], (3, 6, 4), jnp.float64)
    return cell, params, xs, carry0, d_hs


def _autodiff(cell, params, xs, carry0, d_hs):
    def outputs(params):
        return rnnbptt.unroll(cell, params, xs, carry0, mask=MASK, backward="autodiff")[
            1
        ]

    return ravel_pytree(jax.vjp(outputs, params)[1](d_hs)[0])[0]


def _online(cell, params, xs, carry0, d_hs, engine, **kw):
    got = online.online_gradient(
        cell, params, xs, d_hs, carry0, mask=MASK, engine=engine, **kw
    )
    assert jax.tree.structure(got) == jax.tree.structure(params)
    return ravel_pytree(got)[0]


def rel(a, b):
    return float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(b)))


@pytest.mark.parametrize("name", CELLS)
def test_rtrl_equals_backpropagation_through_time(name):
    cell, params, xs, carry0, d_hs = _problem(name)
    want = _autodiff(cell, params, xs, carry0, d_hs)
    assert rel(_online(cell, params, xs, carry0, d_hs, "rtrl"), want) < 1e-12


@pytest.mark.parametrize("name", ["elman", "lstm", "gru"])
def test_snap1_is_rtrl_when_no_unit_reaches_another_and_differs_otherwise(name):
    problem = _problem(name, diagonal=True)
    rtrl = _online(*problem, "rtrl")
    assert rel(_online(*problem, "snap1"), rtrl) < 1e-12
    problem = _problem(name)
    snap = _online(*problem, "snap1")
    rtrl = _online(*problem, "rtrl")
    assert rel(snap, rtrl) > 1e-3
    assert snap @ rtrl / jnp.linalg.norm(snap) / jnp.linalg.norm(rtrl) > 0.5


@pytest.mark.parametrize("name", ["elman", "lstm", "gru-reset-before"])
def test_uoro_is_unbiased_its_mean_error_falling_like_one_over_root_n(name):
    cell, params, xs, carry0, d_hs = _problem(name)
    want = _autodiff(cell, params, xs, carry0, d_hs)
    keys = jax.random.split(jax.random.key(1), 4096)

    @jax.vmap
    def estimate(key):
        grads = online._online_gradient(
            cell, "uoro", params, xs, carry0, jnp.asarray(MASK), d_hs, key
        )
        return ravel_pytree(grads)[0]

    samples = estimate(keys)
    sd = jnp.std(samples, axis=0)
    assert rel(samples[0], want) > 0.1  # one estimate is noisy ...
    for n in (64, 4096):  # ... the mean is within a few standard errors
        z = jnp.abs(samples[:n].mean(0) - want) / (sd / np.sqrt(n) + 1e-300)
        assert float(jnp.max(z)) < 5, n
    assert rel(samples.mean(0), want) < 0.5 * rel(samples[:64].mean(0), want)


@pytest.mark.parametrize("name", CELLS)
def test_the_hand_written_cotangent_is_the_vjp_of_a_step(name):
    cell, params, xs, carry0, _ = _problem(name)
    x, c_new = xs[:, 0], jax.random.normal(jax.random.key(7), (3, 4 * 2))
    S = influence.state_size(cell)
    c_new = c_new[:, :S]
    _, local = influence.step(cell, params, carry0, x)
    c_v = influence.cotangent(cell, params, local, c_new)
    mats = {
        k: jnp.zeros_like(v.reshape(-1, v.shape[-1]))
        for k, v in params._asdict().items()
    }
    for link in influence.links(cell, params, local):
        operand = jnp.ones((3, 1)) if link.operand is None else link.operand
        mats[link.leaf] = (
            mats[link.leaf].at[:, link.cols].add(operand.T @ c_v[:, link.units])
        )
    got = ravel_pytree(online._as_params(params, mats))[0]

    def new_state(params):
        return rnnbptt.rbp.flat(cell.step(params, carry0, x)[0])

    want = ravel_pytree(jax.vjp(new_state, params)[1](c_new)[0])[0]
    assert rel(got, want) < 1e-13


def test_influence_bytes_and_the_refusal_of_a_matrix_too_large():
    cell = rnnbptt.LSTM(8, 64)
    params = cell.init(jax.random.key(0), jnp.float32)
    P = sum(a.size for a in jax.tree.leaves(params))
    assert online.influence_bytes(cell, params, 16, "rtrl") == 16 * P * 128 * 4
    assert online.influence_bytes(cell, params, 16, "uoro") == 16 * (P + 128) * 4
    assert online.influence_bytes(cell, params, 16, "snap1") == 16 * P * 2 * 4
    xs, d_hs = jnp.zeros((16, 5, 8), jnp.float32), jnp.zeros((16, 5, 64), jnp.float32)
    with pytest.raises(ValueError, match=r"0\.143 GiB \(153092096 bytes"):
        online.online_gradient(cell, params, xs, d_hs, max_bytes=2**27)


@pytest.mark.parametrize(
    ("cell", "kwargs", "error", "match"),
    [
        (rnnbptt.Elman(3, 4), {"engine": "bptt"}, ValueError, "engine"),
        (rnnbptt.Elman(3, 4), {"engine": "uoro"}, ValueError, "key"),
        (rnnbptt.Elman(3, 4), {"engine": "uoro", "key": 3}, TypeError, "key"),
        (
            rnnbptt.GRU(3, 4, reset_after=False),
            {"engine": "snap1"},
            ValueError,
            "dense",
        ),
        (rnnbptt.Elman(3, 4), {"d_hs": jnp.zeros((2, 5, 3))}, ValueError, "d_hs"),
        (
            rnnbptt.Elman(3, 4),
            {"d_hs": jnp.zeros((2, 5, 4), jnp.float16)},
            TypeError,
            "d_hs",
        ),
        (rnnbptt.Feedforward(3, 4), {}, TypeError, "recurrent"),
        (rnnbptt.Elman(3, 4), {"max_bytes": 0}, ValueError, "max_bytes"),
    ],
)
def test_bad_input_gets_a_clear_error(cell, kwargs, error, match):
    params = cell.init(jax.random.key(0))
    args = {"d_hs": jnp.zeros((2, 5, 4))} | kwargs
    with pytest.raises(error, match=match):
        online.online_gradient(cell, params, jnp.zeros((2, 5, 3)), **args)


def test_uoro_samples_average_independent_estimates():
    cell, params, xs, carry0, d_hs = _problem("elman")
    want = _autodiff(cell, params, xs, carry0, d_hs)
    key = jax.random.key(2)
    one = _online(cell, params, xs, carry0, d_hs, "uoro", key=key)
    many = _online(cell, params, xs, carry0, d_hs, "uoro", key=key, samples=2048)
    assert rel(many, want) < 0.25 * rel(one, want)
    with pytest.raises(ValueError, match="samples"):
        _online(cell, params, xs, carry0, d_hs, "rtrl", samples=2)


def _snap_oracle(cell, params, xs, carry0, d_hs):
    """SnAp-1 from dense Jacobians (jax.jacfwd of ``cell.step``), per row:
    ``M <- pattern * (J M + I)``, the pattern each parameter's own hidden unit."""
    flat_params, unravel = ravel_pytree(params)
    H = cell.hidden_size
    unit_of = np.concatenate(  # each parameter's hidden unit, in ravel order
        [np.broadcast_to(np.arange(a.shape[-1]) % H, a.shape).ravel() for a in params]
    )
    S = influence.state_size(cell)
    pattern = (np.arange(S) % H)[:, None] == unit_of[None]
    total = jnp.zeros_like(flat_params)
    for b in range(xs.shape[0]):
        row = jax.tree.map(lambda a, b=b: a[b : b + 1], carry0)
        state, M = rnnbptt.rbp.flat(row)[0], jnp.zeros((S, flat_params.size))
        for t in np.flatnonzero(MASK[b]):

            def f(state, p, b=b, t=t, row=row):
                carry = rnnbptt.rbp.unflat(row, state[None])
                return rnnbptt.rbp.flat(
                    cell.step(unravel(p), carry, xs[b : b + 1, t])[0]
                )[0]

            jacobian, immediate = (
                jax.jacfwd(f, 0)(state, flat_params),
                jax.jacfwd(f, 1)(state, flat_params),
            )
            M, state = (
                jnp.where(pattern, jacobian @ M + immediate, 0),
                f(state, flat_params),
            )
            total = total + jnp.zeros(S).at[:H].set(d_hs[b, t]) @ M
    return total


@pytest.mark.parametrize("name", ["elman", "elman-relu-two-biases", "lstm", "gru"])
def test_snap1_against_dense_jacobians_masked_to_its_pattern(name):
    problem = _problem(name)
    assert rel(_online(*problem, "snap1"), _snap_oracle(*problem)) < 1e-12


def test_padding_at_masked_steps_never_reaches_a_gradient():
    cell, params, xs, carry0, d_hs = _problem("lstm")
    padded = jnp.where(jnp.asarray(MASK)[..., None], xs, jnp.nan)
    for engine, key in [("rtrl", None), ("uoro", jax.random.key(0)), ("snap1", None)]:
        want = _online(cell, params, xs, carry0, d_hs, engine, key=key)
        got = _online(cell, params, padded, carry0, d_hs, engine, key=key)
        np.testing.assert_array_equal(got, want)
