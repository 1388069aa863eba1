"""make_online_step: online training on streams, against autodiff of the same
loss through the whole sequence."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import rnnbptt
from rnnbptt.online_step import make_online_step

MASK = np.array([[1] * 8, [1, 1, 1, 0, 1, 1, 1, 1], [1] * 5 + [0] * 3], bool)


def _problem(kind):
    model = rnnbptt.SequenceModel.build(kind, 3, [4], 2)
    params = model.init(jax.random.key(0), jnp.float64)
    xs = jax.random.normal(jax.random.key(1), (3, 8, 3), jnp.float64)
    ys = jax.random.normal(jax.random.key(2), (3, 8, 2), jnp.float64)
    return model, params, xs, ys


def _second_chunk_only():
    """SGD at rate 1 on the second update only: the first leaves params alone."""
    return optax.sgd(lambda count: jnp.where(count == 0, 0.0, 1.0))


@pytest.mark.parametrize("kind", ["elman", "lstm", "gru"])
def test_rtrl_steps_carry_the_gradient_across_chunks_exactly(kind):
    model, params, xs, ys = _problem(kind)
    optimizer = _second_chunk_only()
    step = make_online_step(model, "mse", optimizer, engine="rtrl")
    state, opt_state = step.init(params, 3), optimizer.init(params)
    new = params
    for chunk in (slice(0, 4), slice(4, 8)):
        new, opt_state, state, metrics = step(
            new, opt_state, state, xs[:, chunk], ys[:, chunk], MASK[:, chunk]
        )
        assert metrics["finite"]

    def second_chunk_loss(params):  # through all eight steps: no truncation
        out = model.apply(params, xs, MASK, backward="autodiff")
        return rnnbptt.losses.mean_squared_error(
            out[:, 4:], ys[:, 4:], jnp.asarray(MASK[:, 4:])
        )

    want = jax.tree.map(jnp.subtract, params, jax.grad(second_chunk_loss)(params))
    for got, expected in zip(jax.tree.leaves(new), jax.tree.leaves(want), strict=True):
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)
    _, final = model.apply(params, xs, MASK, return_carry=True)
    np.testing.assert_allclose(state.carry, final[0], rtol=1e-12)


@pytest.mark.parametrize("engine", ["uoro", "snap1"])
def test_the_approximate_engines_train_and_reset_streams(engine):
    model, params, xs, ys = _problem("lstm")
    optimizer = optax.adam(1e-2)
    step = make_online_step(model, "mse", optimizer, engine=engine)
    state = step.init(params, 3, key=jax.random.key(3))
    opt_state, losses = optimizer.init(params), []
    for _ in range(60):
        for t in range(8):  # one step at a time: fully online
            params, opt_state, state, metrics = step(
                params, opt_state, state, xs[:, t : t + 1], ys[:, t : t + 1]
            )
            losses.append(float(metrics["loss"]))
        state = step.reset(state, np.ones(3, bool))
        assert not any(jnp.any(a != 0) for a in jax.tree.leaves(state.influence))
    assert np.mean(losses[-8:]) < 0.8 * np.mean(losses[:8])


def test_bad_models_and_engines_get_clear_errors():
    model, params, _, _ = _problem("elman")
    with pytest.raises(ValueError, match="engine"):
        make_online_step(model, "mse", optax.sgd(0.1), engine="bptt")
    two = rnnbptt.SequenceModel.build("elman", 3, [4, 4], 2)
    with pytest.raises(ValueError, match="one recurrent layer"):
        make_online_step(two, "mse", optax.sgd(0.1))
    with pytest.raises(TypeError, match="optimizer"):
        make_online_step(model, "mse", "adam")
    step = make_online_step(model, "mse", optax.sgd(0.1), engine="uoro")
    with pytest.raises(ValueError, match="key"):
        step.init(params, 3)
    big = make_online_step(model, "mse", optax.sgd(0.1), max_bytes=1000)
    with pytest.raises(ValueError, match="max_bytes"):
        big.init(params, 3)


def test_run_is_the_steps_called_chunk_by_chunk():
    model, params, xs, ys = _problem("gru")
    optimizer = optax.adam(1e-2)
    step = make_online_step(model, "mse", optimizer, engine="snap1")
    state, opt_state = step.init(params, 3), optimizer.init(params)
    got = step.run(params, opt_state, state, xs, ys, MASK, chunk=2)
    want, losses = (params, opt_state, state), []
    for start in range(0, 8, 2):
        part = slice(start, start + 2)
        *want, metrics = step(*want, xs[:, part], ys[:, part], MASK[:, part])
        losses.append(metrics["loss"])
    got_state, want_state = got[2]._replace(key=None), want[2]._replace(key=None)
    pairs = zip(
        jax.tree.leaves((got[:2], got_state)),
        jax.tree.leaves((want[:2], want_state)),
        strict=True,
    )
    for a, b in pairs:
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(got[3]["loss"], losses, rtol=1e-12)
    with pytest.raises(ValueError, match="multiple of chunk 3"):
        step.run(params, opt_state, state, xs, ys, chunk=3)


def test_a_chunk_of_the_wrong_shape_gets_a_clear_error():
    model, params, xs, ys = _problem("elman")
    optimizer = optax.sgd(0.1)
    step = make_online_step(model, "mse", optimizer)
    state, opt_state = step.init(params, 3), optimizer.init(params)
    with pytest.raises(ValueError, match=r"\[3, C, 3\]"):
        step(params, opt_state, state, xs[:2], ys[:2])
    with pytest.raises(ValueError, match="ys"):
        step(params, opt_state, state, xs, ys[:, :4])
    with pytest.raises(ValueError, match="mask"):
        step(params, opt_state, state, xs, ys, MASK[:, :4])
    with pytest.raises(ValueError, match=r"done.*bool \[3\]"):
        step.reset(state, np.array([1, 0, 1]))  # ~int would keep every row
