"""unroll: equality with plain loops, masks, the zero-recurrence case, jit size."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import CELLS, make_problem, normal, right_padded_mask
from reference import loop

import rnnbptt

LENGTHS = [6, 2, 4]  # right-padded sequences in a batch of 3, T = 6


@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("backward", ["autodiff", "manual"])
def test_unroll_equals_numpy_loop(any_cell, masked, backward):
    cell = any_cell
    params, xs, carry0 = make_problem(cell)
    mask = right_padded_mask(LENGTHS, xs.shape[1]) if masked else None
    final, hs = rnnbptt.unroll(cell, params, xs, carry0, mask=mask, backward=backward)
    want_final, want_hs = loop(cell, params, xs, carry0, mask)
    np.testing.assert_allclose(hs, want_hs, rtol=1e-12, atol=1e-13)
    for got, want in zip(jax.tree.leaves(final), want_final, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-13)


@functools.partial(jax.jit, static_argnums=0)
def _step(cell, params, carry, x):
    """``cell.step`` as one program (eagerly, each of its operations compiled
    its own)."""
    return cell.step(params, carry, x)


@pytest.mark.parametrize("masked", [False, True])
def test_unroll_equals_loop_over_cell_step(cell, masked):
    params, xs, carry0 = make_problem(cell)
    mask = right_padded_mask(LENGTHS, xs.shape[1]) if masked else None
    final, hs = rnnbptt.unroll(cell, params, xs, carry0, mask=mask)
    carry, outputs = carry0, []
    steps = np.asarray(xs)  # each step's inputs sliced in NumPy (no programs)
    for t in range(xs.shape[1]):
        new, h = _step(cell, params, carry, steps[:, t])
        if mask is not None:  # in NumPy (no programs)
            keep = mask[:, t, None]
            new = jax.tree.map(lambda n, o, k=keep: np.where(k, n, o), new, carry)
            h = np.where(keep, h, 0)
        carry = new
        outputs.append(np.asarray(h))
    np.testing.assert_allclose(hs, np.stack(outputs, axis=1), rtol=1e-12, atol=1e-13)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-12), final, carry
    )


def test_final_carry_is_carry_at_last_valid_step(recurrent_cell):
    params, xs, carry0 = make_problem(recurrent_cell)
    mask = right_padded_mask(LENGTHS, xs.shape[1])
    final, _ = rnnbptt.unroll(recurrent_cell, params, xs, carry0, mask=mask)
    xs = np.asarray(xs)  # rows sliced in NumPy: eagerly, a program per slice
    for b, n in enumerate(LENGTHS):
        short, _ = rnnbptt.unroll(
            recurrent_cell,
            params,
            xs[b : b + 1, :n],
            jax.tree.map(lambda a, b=b: np.asarray(a)[b : b + 1], carry0),
        )
        jax.tree.map(
            lambda got, want, b=b: np.testing.assert_allclose(
                got[b], want[0], rtol=1e-13
            ),
            final,
            short,
        )


def test_default_carry_is_zeros(cell):
    params, xs, _ = make_problem(cell)
    zeros = cell.initial_carry(xs.shape[0], xs.dtype)
    got = rnnbptt.unroll(cell, params, xs)
    want = rnnbptt.unroll(cell, params, xs, zeros)
    jax.tree.map(np.testing.assert_array_equal, got, want)


def test_lstm_carry_accepts_plain_pair():
    cell = CELLS["lstm"]
    params, xs, carry0 = make_problem(cell)
    final, hs = rnnbptt.unroll(cell, params, xs, (carry0.h, carry0.c))
    assert isinstance(final, rnnbptt.LSTMCarry)
    np.testing.assert_array_equal(hs, rnnbptt.unroll(cell, params, xs, carry0)[1])


def _elman_and_feedforward(activation):
    elman = rnnbptt.Elman(3, 4, activation=activation)
    ff = rnnbptt.Feedforward(3, 4, activation=activation)
    params, xs, _ = make_problem(elman, seed=3)
    zero_rec = params._replace(w_hh=np.zeros(params.w_hh.shape, params.w_hh.dtype))
    ff_params = rnnbptt.FeedforwardParams(w_ih=params.w_ih, b=params.b)
    return elman, ff, zero_rec, ff_params, xs


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _outputs_and_grads(elman, ff, backward, elman_params, ff_params, xs, mask, probe):
    """For each of the two cells: (gradient of the probe with respect to (params,
    xs), outputs), in one program (eagerly, every operation of the gradients
    compiled its own)."""

    def loss(cell, params, xs):
        _, hs = rnnbptt.unroll(cell, params, xs, mask=mask, backward=backward)
        return jnp.sum(probe * hs), hs

    def grads(cell, params):
        return jax.grad(functools.partial(loss, cell), (0, 1), has_aux=True)(params, xs)

    return grads(elman, elman_params), grads(ff, ff_params)


@pytest.mark.parametrize("activation", ["tanh", "relu"])
@pytest.mark.parametrize("backward", ["autodiff", "manual"])
def test_elman_without_recurrence_is_feedforward(activation, backward):
    elman, ff, zero_rec, ff_params, xs = _elman_and_feedforward(activation)
    mask = right_padded_mask(LENGTHS, xs.shape[1])
    probe = np.random.default_rng(5).standard_normal((3, 6, 4))  # no sampler program
    (g_e, hs_e), (g_f, hs_f) = _outputs_and_grads(
        elman, ff, backward, zero_rec, ff_params, xs, mask, probe
    )
    # The same sums, to rounding: XLA may add up [x, h] @ [W_ih; 0] in another
    # order than x @ W_ih (jax 0.12 does, by about 1e-16; 0.10 gave equal bits).
    np.testing.assert_allclose(hs_e, hs_f, rtol=1e-14, atol=1e-15)
    for name in ("w_ih", "b"):
        np.testing.assert_allclose(
            getattr(g_e[0], name), getattr(g_f[0], name), rtol=1e-14, atol=1e-15
        )
    np.testing.assert_allclose(g_e[1], g_f[1], rtol=1e-14, atol=1e-15)


def test_static_network_is_one_step():
    """A static problem: an MLP layer is Feedforward with T = 1."""
    ff = rnnbptt.Feedforward(3, 4)
    params, xs, _ = make_problem(ff, steps=1)
    _, hs = rnnbptt.unroll(ff, params, xs)
    # sliced in NumPy: eagerly, JAX compiles a program per slice
    want = np.tanh(
        np.asarray(xs)[:, 0] @ np.asarray(params.w_ih) + np.asarray(params.b)
    )
    np.testing.assert_allclose(np.asarray(hs)[:, 0], want, rtol=1e-13)


def _program_lines(fn, *args):
    return len(jax.jit(fn).lower(*args).as_text().splitlines())


@pytest.mark.parametrize("backward", ["autodiff", "manual"])
def test_program_size_does_not_grow_with_steps(recurrent_cell, backward):
    cell = recurrent_cell

    def value_and_grad(params, xs):
        def loss(params):
            final, hs = rnnbptt.unroll(cell, params, xs, backward=backward)
            return jnp.sum(hs**2) + sum(jnp.sum(c) for c in jax.tree.leaves(final))

        return jax.value_and_grad(loss)(params)

    sizes = []
    for steps in (10, 1000):
        params, xs, _ = make_problem(cell, steps=steps)
        sizes.append(_program_lines(value_and_grad, params, xs))
    assert sizes[0] == sizes[1]


def test_unroll_inside_user_jit_and_vmap():
    cell = CELLS["lstm"]
    params, xs, carry0 = make_problem(cell)
    want = rnnbptt.unroll(cell, params, xs, carry0)
    got = jax.jit(lambda p, x, c: rnnbptt.unroll(cell, p, x, c))(params, xs, carry0)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-14), got, want)
    # vmap over an extra leading axis of independent problems
    stacked = jax.vmap(lambda x: rnnbptt.unroll(cell, params, x[None])[1])(xs)
    np.testing.assert_allclose(
        np.asarray(stacked)[:, 0], rnnbptt.unroll(cell, params, xs)[1], rtol=1e-13
    )


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_dtype_follows_inputs(cell, dtype):
    params64, xs64, carry64 = make_problem(cell)

    def cast(tree):  # in NumPy (ml_dtypes for bfloat16): eagerly, a program per leaf
        return jax.tree.map(lambda a: jnp.asarray(np.asarray(a).astype(dtype)), tree)

    final, hs = rnnbptt.unroll(cell, cast(params64), cast(xs64), cast(carry64))
    assert hs.dtype == dtype
    assert all(leaf.dtype == dtype for leaf in jax.tree.leaves(final))
    _, want = loop(cell, cast(params64), cast(xs64), cast(carry64))
    tol = {jnp.float32: 1e-5, jnp.bfloat16: 5e-2}[dtype]
    np.testing.assert_allclose(np.asarray(hs, np.float64), want, atol=tol, rtol=tol)


def test_float32_gradients_by_both_engines():
    cell = CELLS["lstm"]
    params, xs, carry0 = make_problem(cell, dtype=jnp.float32)
    # a random linear probe of every output and every part of the final carry,
    # drawn in NumPy (jax.random compiles a sampler per shape)
    rng = np.random.default_rng(1)
    probe = normal(rng, (3, 6, 4), np.float32)
    carry_probe = [normal(rng, c.shape, c.dtype) for c in jax.tree.leaves(carry0)]

    def loss(params, backward):
        final, hs = rnnbptt.unroll(cell, params, xs, carry0, backward=backward)
        total = jnp.sum(probe * hs)
        for p, c in zip(carry_probe, jax.tree.leaves(final), strict=True):
            total = total + jnp.sum(p * c)
        return total

    # both engines in one program (eagerly, every operation compiles its own)
    grads = jax.jit(
        lambda p: (jax.grad(loss)(p, "manual"), jax.grad(loss)(p, "autodiff"))
    )
    g_m, g_a = grads(params)
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(g_m))
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), g_m, g_a
    )


def _bad_inputs():
    """(description, call, error type, text the message must contain)."""
    lstm, elman, ff = CELLS["lstm"], CELLS["elman-tanh"], CELLS["feedforward"]
    p_l, xs, c_l = make_problem(lstm)
    p_e, _, c_e = make_problem(elman)
    p_f, _, _ = make_problem(ff)
    u = rnnbptt.unroll
    return [
        ("xs rank 2", lambda: u(elman, p_e, xs[0]), ValueError, "rank 3"),
        ("xs rank 4", lambda: u(elman, p_e, xs[None]), ValueError, "rank 3"),
        ("xs wrong D", lambda: u(elman, p_e, xs[..., :2]), ValueError, "input_size 3"),
        ("xs zero steps", lambda: u(elman, p_e, xs[:, :0]), ValueError, "one step"),
        (
            "xs integer",
            lambda: u(elman, p_e, xs.astype(jnp.int32)),
            TypeError,
            "floating",
        ),
        (
            "xs other dtype",
            lambda: u(elman, p_e, xs.astype(jnp.float32)),
            TypeError,
            "dtype float32",
        ),
        ("xs not an array", lambda: u(elman, p_e, "abc"), TypeError, "xs"),
        (
            "carry wrong shape",
            lambda: u(elman, p_e, xs, c_e[:, :2]),
            ValueError,
            "carry0",
        ),
        ("carry wrong batch", lambda: u(elman, p_e, xs, c_e[:2]), ValueError, "(3, 4)"),
        (
            "elman carry as pair",
            lambda: u(elman, p_e, xs, (c_e, c_e)),
            TypeError,
            "one array",
        ),
        ("lstm carry single", lambda: u(lstm, p_l, xs, c_l.h), TypeError, "LSTMCarry"),
        (
            "lstm carry triple",
            lambda: u(lstm, p_l, xs, (*c_l, c_l.h)),
            TypeError,
            "length 3",
        ),
        (
            "lstm carry c shape",
            lambda: u(lstm, p_l, xs, (c_l.h, c_l.c[:, :1])),
            ValueError,
            "carry0.c",
        ),
        ("ff carry given", lambda: u(ff, p_f, xs, c_e), TypeError, "Feedforward"),
        (
            "mask not bool",
            lambda: u(elman, p_e, xs, mask=jnp.ones((3, 6))),
            TypeError,
            "bool",
        ),
        (
            "mask wrong shape",
            lambda: u(elman, p_e, xs, mask=jnp.ones((3, 5), bool)),
            ValueError,
            "mask",
        ),
        (
            "mask broadcastable",
            lambda: u(elman, p_e, xs, mask=jnp.ones((1, 6), bool)),
            ValueError,
            "(3, 6)",
        ),
        (
            "unknown backward",
            lambda: u(elman, p_e, xs, backward="numeric"),
            ValueError,
            "backward",
        ),
        ("params of other cell", lambda: u(elman, p_l, xs), TypeError, "ElmanParams"),
        ("params as dict", lambda: u(elman, p_e._asdict(), xs), TypeError, "params"),
        (
            "param wrong shape",
            lambda: u(elman, p_e._replace(b=p_e.b[:2]), xs),
            ValueError,
            "params.b",
        ),
        (
            "param integer",
            lambda: u(elman, p_e._replace(b=jnp.zeros(4, int)), xs),
            TypeError,
            "params.b",
        ),
        ("not a cell", lambda: u("lstm", p_l, xs), TypeError, "cell"),
        # JAX's own messages named no argument
        ("xs None", lambda: u(elman, p_e, None), TypeError, "unroll: `xs` must be an"),
        (
            "mask a string",
            lambda: u(elman, p_e, xs, mask="yes"),
            TypeError,
            "unroll: `mask` must be None or a bool array",
        ),
    ]


@pytest.mark.parametrize("case", _bad_inputs(), ids=lambda c: c[0])
def test_bad_input_raises_clear_error(case):
    _, call, error, text = case
    with pytest.raises(error, match=text.replace("(", r"\(").replace(")", r"\)")):
        call()


def test_bad_input_is_caught_at_trace_time_inside_jit():
    cell = CELLS["elman-tanh"]
    params, xs, _ = make_problem(cell)
    with pytest.raises(ValueError, match="input_size"):
        jax.jit(lambda x: rnnbptt.unroll(cell, params, x))(xs[..., :2])
