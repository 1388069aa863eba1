"""Training steps: both engines learn and agree; truncated BPTT(k1, k2) is exact."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import init_params, max_rel, right_padded_mask

import rnnbptt
from rnnbptt.losses import mean_squared_error


def sine_task(n=192, steps=24, seed=0):
    """Next-step prediction of noisy sines with random phase and frequency."""
    rng = np.random.default_rng(seed)
    t = np.arange(steps + 1)[None, :]
    phase, freq = rng.uniform(0, 2 * np.pi, (n, 1)), rng.uniform(0.2, 0.5, (n, 1))
    series = np.sin(freq * t + phase) + 0.05 * rng.normal(size=(n, steps + 1))
    return series[:, :-1, None], series[:, 1:, None]


@pytest.mark.parametrize("kind", ["elman", "lstm", "gru"])
def test_both_engines_learn_and_agree(kind):
    xs, ys = sine_task()
    model = rnnbptt.SequenceModel.build(kind, 1, [16], 1)
    # drawn in NumPy: init's samplers and QR compile programs for every shape
    # (about 15 per model), and init itself is tested in test_models.py
    params = init_params(model, 0)
    baseline = float(np.mean((ys - ys.mean()) ** 2))  # predicting the mean
    runs = {}
    for engine in ("autodiff", "manual"):
        runs[engine] = rnnbptt.fit(
            model,
            params,
            xs,
            ys,
            loss="mse",
            learning_rate=1e-2,
            epochs=8,
            batch_size=32,
            backward=engine,
            progress=False,
        )
        assert runs[engine].history["train_loss"].iloc[-1] < 0.1 * baseline
    # the same parameters after a few steps (float64), within 1e-9
    few = {
        engine: rnnbptt.fit(
            model,
            params,
            xs,
            ys,
            epochs=1,
            batch_size=32,
            learning_rate=1e-2,
            backward=engine,
            progress=False,
        ).params
        for engine in ("autodiff", "manual")
    }
    assert max_rel(few["manual"], few["autodiff"]) <= 1e-9
    assert max_rel(few["manual"], params) > 1e-3  # the steps really moved them


def grad_recorder():
    """An optax transformation that leaves params alone and sums the gradients."""

    def init(params):
        return jax.tree.map(jnp.zeros_like, params)

    def update(grads, state, params=None):
        return jax.tree.map(jnp.zeros_like, grads), jax.tree.map(jnp.add, state, grads)

    return optax.GradientTransformation(init, update)


@functools.partial(jax.jit, static_argnums=0)
def one_step(model, params, x, mask, carry):
    """Every layer's carry after one more step (``x`` [B, 1, D], ``mask`` [B, 1])."""
    return model.apply(params, x, mask, carry0=carry, return_carry=True)[1]


@functools.partial(jax.jit, static_argnums=0)
def window_gradient(model, params, carry0, xs, ys, mask, loss_mask):
    """The gradient of the mean-square error on the outputs where ``loss_mask`` is
    True, of a forward pass over ``xs`` from ``carry0`` (an input: no gradient
    flows into it). One program per model and shapes, shared by the cases below."""

    def loss(p):
        out = model.apply(p, xs, mask, carry0=carry0)
        return mean_squared_error(out, ys, loss_mask)

    return jax.grad(loss)(params)


def truncated_gradient(model, params, xs, ys, mask, k1, k2):
    """The gradient of Williams and Peng's BPTT(k1, k2) objective, built directly.

    Chunk j's loss is on outputs [j*k1, (j+1)*k1); its forward pass starts
    (k2 steps before the chunk's end) from the carry of a forward run from t = 0,
    with the gradient stopped there. The objective's gradient is the sum of the
    chunks' gradients.

    The carries at every step come from a run one step at a time (from zeros).
    Each chunk's window [w, end) is moved to the front of a sequence of all T
    steps, the steps after it masked out and outside the loss: later steps
    cannot change the window's outputs, and every window of every case then has
    the same shapes (one compiled gradient per model).
    """
    batch, steps = mask.shape
    carries = [model.initial_carry(batch, xs.dtype)]
    for t in range(steps):
        x, m = xs[:, t : t + 1], mask[:, t : t + 1]
        carries.append(one_step(model, params, x, m, carries[-1]))
    total = jax.tree.map(lambda p: np.zeros(p.shape, p.dtype), params)
    for j in range(-(-steps // k1)):
        start, end = j * k1, min((j + 1) * k1, steps)
        w = max(0, (j + 1) * k1 - k2)
        n = end - w  # the window's length
        xw, yw = np.zeros_like(xs), np.zeros_like(ys)
        mw, loss_mask = np.zeros_like(mask), np.zeros_like(mask)
        xw[:, :n], yw[:, :n], mw[:, :n] = xs[:, w:end], ys[:, w:end], mask[:, w:end]
        loss_mask[:, start - w : n] = mask[:, start:end]
        grad = window_gradient(model, params, carries[w], xw, yw, mw, loss_mask)
        total = jax.tree.map(lambda a, b: a + np.asarray(b), total, grad)
    return total


@pytest.mark.parametrize(
    "kind, backward, k1, k2",
    [
        ("elman", "autodiff", 3, 3),  # chunked, T = 10 not a multiple of k1
        ("elman", "manual", 5, 5),
        ("elman", "manual", 3, 5),  # k2 > k1
        ("elman", "autodiff", 5, 11),  # k2 > T
        ("lstm", "manual", 3, 3),
        ("lstm", "autodiff", 2, 7),
        ("lstm", "manual", 3, 4),
        ("lstm", "autodiff", 4, 10),
        ("gru", "manual", 3, 4),
    ],
)
def test_tbptt_gradient_equals_direct_truncated_objective(kind, backward, k1, k2):
    xs, ys = sine_task(n=4, steps=10)
    mask = right_padded_mask([10, 7, 4, 9], 10)
    model = rnnbptt.SequenceModel.build(kind, 1, [5, 4], 1)
    params = init_params(model, 3)
    tx = grad_recorder()
    step = rnnbptt.make_train_step(
        model, "mse", tx, backward=backward, tbptt=rnnbptt.TBPTT(k1, k2)
    )
    new_params, summed, metrics = step(params, tx.init(params), xs, ys, mask, None)
    want = truncated_gradient(model, params, xs, ys, mask, k1, k2)
    assert max_rel(summed, want) <= 1e-10
    jax.tree.map(np.testing.assert_array_equal, new_params, params)
    assert int(metrics["updates"]) == -(-10 // k1)
    # cutting the graph matters: the full-BPTT gradient (the loss on every output
    # of one pass from zeros) is different
    zeros = model.initial_carry(4, xs.dtype)
    full = window_gradient(model, params, zeros, xs, ys, mask, mask)
    assert max_rel(summed, full) > 1e-3


@pytest.mark.parametrize("backward", ["autodiff", "manual"])
def test_tbptt_over_the_whole_sequence_is_full_bptt(backward):
    xs, ys = sine_task(n=6, steps=12)
    mask = right_padded_mask([12, 5, 9, 12, 1, 7], 12)
    model = rnnbptt.SequenceModel.build("lstm", 1, [6], 1)
    params = init_params(model, 1)
    tx = optax.sgd(0.1)
    full = rnnbptt.make_train_step(model, "mse", tx, backward=backward)
    whole = rnnbptt.make_train_step(
        model, "mse", tx, backward=backward, tbptt=rnnbptt.TBPTT(12, 12)
    )
    p_full, _, m_full = full(params, tx.init(params), xs, ys, mask, None)
    p_tb, _, m_tb = whole(params, tx.init(params), xs, ys, mask, None)
    assert max_rel(p_tb, p_full) <= 1e-12
    np.testing.assert_allclose(m_tb["loss"], m_full["loss"], rtol=1e-12)


# one object (optax transformations are compared by identity): the tests that
# train the same model on the same shapes with it share their compiled steps
SGD_HALF = optax.sgd(0.5)


def test_tbptt_chunks_update_online():
    """Each chunk is one optimizer update: chunk 2's gradient sees chunk 1's update."""
    xs, ys = sine_task(n=4, steps=8)
    model = rnnbptt.SequenceModel.build("elman", 1, [4], 1)
    params = init_params(model, 2)
    tx = SGD_HALF
    step = rnnbptt.make_train_step(model, "mse", tx, tbptt=rnnbptt.TBPTT(4))
    got, _, _ = step(params, tx.init(params), xs, ys, None, None)

    @jax.jit  # one program (eagerly, every operation at every shape compiles one)
    def by_hand(params):
        # update on chunk 1, carry from chunk 1's forward, update on chunk 2
        g1 = jax.grad(
            lambda p: mean_squared_error(model.apply(p, xs[:, :4]), ys[:, :4])
        )(params)
        _, carry = model.apply(params, xs[:, :4], return_carry=True)
        p1 = jax.tree.map(lambda p, g: p - 0.5 * g, params, g1)
        g2 = jax.grad(
            lambda p: mean_squared_error(
                model.apply(p, xs[:, 4:], carry0=carry), ys[:, 4:]
            )
        )(p1)
        return jax.tree.map(lambda p, g: p - 0.5 * g, p1, g2)

    assert max_rel(got, by_hand(params)) <= 1e-12


def test_tbptt_program_does_not_grow_with_chunks():
    model = rnnbptt.SequenceModel.build("lstm", 1, [4], 1)
    params = init_params(model, 0)
    tx = optax.sgd(0.1)
    step = rnnbptt.make_train_step(model, "mse", tx, tbptt=rnnbptt.TBPTT(5, 8))
    sizes = []
    for steps in (20, 2000):
        # NumPy (a JAX zeros compiles a program per shape; lower needs shapes only)
        xs, ys = np.zeros((2, steps, 1)), np.zeros((2, steps, 1))
        text = step.lower(params, tx.init(params), xs, ys, None, None).as_text()
        sizes.append(len(text.splitlines()))
    assert sizes[0] == sizes[1]


@pytest.mark.parametrize(
    "k1, k2, error, text",
    [
        (0, None, ValueError, "`k1` must be a positive int"),
        (3, 2, ValueError, "`k2`"),
        (2, 0, ValueError, "`k2` must be a positive int"),
        (True, None, TypeError, "`k1`"),
        (2.0, None, TypeError, "`k1`"),
    ],
)
def test_bad_tbptt(k1, k2, error, text):
    with pytest.raises(error, match=text):
        rnnbptt.TBPTT(k1, k2)


def test_tbptt_needs_a_causal_many_to_many_model():
    tx = optax.sgd(0.1)
    one = rnnbptt.SequenceModel.build("lstm", 1, [4], 1, head="many_to_one")
    with pytest.raises(ValueError, match="many_to_many"):
        rnnbptt.make_train_step(one, "mse", tx, tbptt=rnnbptt.TBPTT(2))
    bi = rnnbptt.SequenceModel.build("lstm", 1, [4], 1, bidirectional=True)
    with pytest.raises(ValueError, match="bidirectional"):
        rnnbptt.make_train_step(bi, "mse", tx, tbptt=rnnbptt.TBPTT(2))


def test_stateful_stream_equals_tbptt_over_the_whole_series():
    """Windows fed one call at a time, the carry passed on, are TBPTT(k, k)."""
    xs, ys = sine_task(n=3, steps=20)
    model = rnnbptt.SequenceModel.build("lstm", 1, [5], 1)
    params = init_params(model, 4)
    tx = optax.sgd(0.3)
    step = rnnbptt.make_train_step(model, "mse", tx, backward="manual")
    # the streams start from zeros (what carry0=None means): one program for
    # every window
    p, state, carry = params, tx.init(params), model.initial_carry(3)
    for start in range(0, 20, 5):
        window = slice(start, start + 5)
        p, state, metrics = step(
            p, state, xs[:, window], ys[:, window], None, None, carry
        )
        carry = metrics["carry"]
    whole = rnnbptt.make_train_step(model, "mse", tx, tbptt=rnnbptt.TBPTT(5))
    want, _, want_metrics = whole(params, tx.init(params), xs, ys, None, None)
    assert max_rel(p, want) <= 1e-12
    assert max_rel(carry, want_metrics["carry"]) <= 1e-12


def test_reset_carry_zeroes_only_the_chosen_streams():
    model = rnnbptt.SequenceModel.build("lstm", 1, [5, 3], 1)
    params = init_params(model, 0)
    xs, _ = sine_task(n=4, steps=6)

    @jax.jit  # one program (eagerly, every operation at every shape compiles one)
    def run_and_reset(params, xs, streams):
        _, carry = model.apply(params, xs, return_carry=True)
        return carry, model.reset_carry(carry, streams)

    carry, reset = run_and_reset(params, xs, np.array([False, True, False, True]))
    for before, after in zip(
        jax.tree.leaves(carry), jax.tree.leaves(reset), strict=True
    ):
        before, after = np.asarray(before), np.asarray(after)
        np.testing.assert_array_equal(after[[1, 3]], 0)
        np.testing.assert_array_equal(after[[0, 2]], before[[0, 2]])
        assert np.all(before[[1, 3]] != 0)


# one object: the many-to-one tests below share their compiled step
SGD_TENTH = optax.sgd(0.1)


def test_steps_refuse_targets_that_would_broadcast():
    model = rnnbptt.SequenceModel.build("elman", 1, [4], 1, head="many_to_one")
    params = init_params(model, 0)
    tx = SGD_TENTH
    # the shapes (and mask) of the next test's batch: one compiled step for both
    xs, ys = np.zeros((6, 5, 1)), np.zeros(6)  # [B], not [B, 1]
    mask = np.ones((6, 5), bool)
    step = rnnbptt.make_train_step(model, "mse", tx)
    with pytest.raises(ValueError, match=r"make_train_step: batch `ys` must have"):
        step(params, tx.init(params), xs, ys, mask, None)
    evaluate = rnnbptt.make_eval_step(model, "mse")
    with pytest.raises(ValueError, match=r"make_eval_step: batch `ys` must have"):
        evaluate(params, xs, ys, mask)
    step(params, tx.init(params), xs, ys[:, None], mask, None)  # the right shape
    # another optimizer's state (or none) is named, at trace time
    for wrong in (None, optax.adam(0.1).init(params)):
        with pytest.raises(TypeError, match="`opt_state` must be this step's"):
            step(params, wrong, xs, ys[:, None], mask, None)


def test_a_sequence_without_a_valid_step_has_no_weight_under_jit():
    """Under jit the mask's values are unknown: a many-to-one row with no valid
    step counts for nothing (it used to be read at its last step and scored),
    so a batch with one is the batch without it. Eager apply refuses it."""
    model = rnnbptt.SequenceModel.build("elman", 1, [4], 1, head="many_to_one")
    params, tx = init_params(model, 0), SGD_TENTH
    xs, ys = sine_task(n=6, steps=5)
    ys = ys[:, -1]
    mask = right_padded_mask([5, 0, 3, 4, 2, 5], 5)
    step = rnnbptt.make_train_step(model, "mse", tx)
    evaluate = rnnbptt.make_eval_step(model, "mse")
    keep = np.array([0, 2, 3, 4, 5])
    with_row = step(params, tx.init(params), xs, ys, mask, None)
    without = step(params, tx.init(params), xs[keep], ys[keep], mask[keep], None)
    assert max_rel(with_row[0], without[0]) <= 1e-13
    assert max_rel(with_row[0], params) > 1e-3  # the step moved them
    for name in ("loss", "count"):
        assert float(with_row[2][name]) == pytest.approx(float(without[2][name]))
    assert int(with_row[2]["count"]) == 5
    loss, count = evaluate(params, xs, ys, mask)
    assert (float(loss), int(count)) == (
        pytest.approx(float(evaluate(params, xs[keep], ys[keep], mask[keep])[0])),
        5,
    )
    with pytest.raises(ValueError, match="row 1 has no valid step"):
        model.apply(params, xs, mask)


def test_make_train_step_arguments():
    model = rnnbptt.SequenceModel.build("elman", 1, [4], 1)
    with pytest.raises(TypeError, match="`optimizer` must be an optax"):
        rnnbptt.make_train_step(model, "mse", "adam")
    with pytest.raises(TypeError, match="`tbptt`"):
        rnnbptt.make_train_step(model, "mse", optax.sgd(0.1), tbptt="5")
    # k and (k1, k2) as in fit: the same program as TBPTT(...) (TBPTT(4) on
    # these shapes with this optimizer is test_tbptt_chunks_update_online's step)
    xs, ys = sine_task(n=4, steps=8)
    params = init_params(model, 1)
    tx = SGD_HALF
    runs = [
        rnnbptt.make_train_step(model, "mse", tx, tbptt=t)(
            params, tx.init(params), xs, ys, None, None
        )[0]
        for t in (4, rnnbptt.TBPTT(4), (4, 6), rnnbptt.TBPTT(4, 6))
    ]
    assert max_rel(runs[0], runs[1]) == 0 and max_rel(runs[2], runs[3]) == 0
    assert max_rel(runs[0], runs[2]) > 0


@pytest.mark.parametrize("tbptt", [None, rnnbptt.TBPTT(4)])
def test_a_batch_of_padding_only_updates_nothing(tbptt):
    model = rnnbptt.SequenceModel.build("elman", 1, [4], 1)
    params = init_params(model, 0)
    xs, ys = sine_task(n=4, steps=8)
    tx = optax.adamw(0.1)  # momentum and weight decay would move the parameters
    step = rnnbptt.make_train_step(model, "mse", tx, tbptt=tbptt)
    # one step on every target first (a mask, as below: the same program)
    state = step(params, tx.init(params), xs, ys, np.ones((4, 8), bool), None)[:2]
    padding = np.zeros((4, 8), bool)
    after, _, metrics = step(*state, xs, ys, padding, None)
    assert int(metrics["updates"]) == 0 and int(metrics["count"]) == 0
    assert bool(metrics["finite"])
    assert max_rel(after, state[0]) == 0


def test_tbptt_window_halves_draw_their_own_dropout():
    """TBPTT(k, 2k): both halves of a window have the same shapes; their dropout
    masks must still differ (one key for both would repeat the masks)."""
    model = rnnbptt.SequenceModel.build("elman", 1, [8, 8], 1, dropout=0.5)
    params = init_params(model, 0)
    tx = optax.sgd(0.0)
    xs = np.ones((2, 6, 1))  # NumPy: no program compiled for it
    masks = []
    original = rnnbptt.models._dropout

    def recording(key, rate, x):
        out = original(key, rate, x)
        jax.debug.callback(lambda o: masks.append(np.asarray(o) != 0), out)
        return out

    rnnbptt.models._dropout = recording
    try:
        step = rnnbptt.make_train_step(model, "mse", tx, tbptt=rnnbptt.TBPTT(3, 6))
        jax.block_until_ready(
            step(
                params,
                tx.init(params),
                xs,
                np.zeros((2, 6, 1)),
                None,
                jax.random.key(1),
            )
        )
    finally:
        rnnbptt.models._dropout = original
    # two chunks of two halves; every draw differs from every other
    assert len(masks) == 4
    for a in range(len(masks)):
        for b in range(a + 1, len(masks)):
            assert not np.array_equal(masks[a], masks[b]), (a, b)


def test_steps_take_what_worked_before():
    """A loss of one's own with its own targets (or none), bool targets for
    binary cross-entropy, and optax wrappers such as MultiSteps."""
    model = rnnbptt.SequenceModel.build("elman", 1, [4], 1)
    params = init_params(model, 0)
    xs, ys = sine_task(n=4, steps=6)
    own = lambda pred, target, mask: jnp.mean(pred[:, -1] ** 2)  # noqa: E731
    tx = optax.sgd(0.1)
    for targets in (None, {"any": 1}, ys[:, -1]):
        step = rnnbptt.make_train_step(model, own, tx)
        _, _, metrics = step(params, tx.init(params), xs, targets, None, None)
        assert np.isfinite(metrics["loss"])
    bce = rnnbptt.make_train_step(model, "binary_cross_entropy", tx)
    _, _, metrics = bce(params, tx.init(params), xs, ys > 0, None, None)
    want = bce(params, tx.init(params), xs, (ys > 0).astype(float), None, None)[2]
    assert float(metrics["loss"]) == float(want["loss"])
    multi = optax.MultiSteps(optax.sgd(0.1), every_k_schedule=2)
    step = rnnbptt.make_train_step(model, "mse", multi)
    state = multi.init(params)
    p1, state, _ = step(params, state, xs, ys, None, None)
    p2, state, _ = step(p1, state, xs, ys, None, None)
    assert max_rel(p1, params) == 0 and max_rel(p2, params) > 0  # every 2nd step


def test_a_bfloat16_tbptt_loss_weighs_chunks_by_exact_counts():
    """A batch's TBPTT loss weighs each chunk's mean by its valid count; in
    bfloat16 their total of 257 rounded to 256, so an error of 1 at one of 257
    valid outputs read 1/256."""
    values = jnp.asarray([1.0, 0.0], jnp.bfloat16)  # chunk means
    got = rnnbptt.tbptt.weighted_loss(values, jnp.asarray([1, 256]))
    assert got.dtype == jnp.bfloat16
    assert got == jnp.asarray(1 / 257, jnp.bfloat16)
    # float32: as it always was
    values = jnp.asarray([0.5, 2.0], jnp.float32)
    got = rnnbptt.tbptt.weighted_loss(values, jnp.asarray([3, 5]))
    assert got.dtype == jnp.float32 and got == jnp.float32((0.5 * 3 + 2.0 * 5) / 8)


def test_a_loss_of_ones_own_gets_one_mask_entry_per_many_to_one_row():
    """What the README promises a custom loss of a many-to-one model: given a
    mask, a [B] bool mask, True for each row with a valid step (it was None)."""
    model = rnnbptt.SequenceModel.build("elman", 1, [2], 1, head="many_to_one")
    seen = []

    def own(pred, target, mask):
        seen.append((mask.shape, mask.dtype))
        return jnp.sum(jnp.where(mask, 2.0 ** jnp.arange(mask.shape[0]), 0.0))

    xs, ys = np.zeros((3, 4, 1)), np.zeros((3, 1))
    evaluate = rnnbptt.make_eval_step(model, own)
    mask = right_padded_mask([4, 0, 1], 4)
    loss, count = evaluate(init_params(model, 0), xs, ys, mask)
    assert seen == [((3,), jnp.bool_)]
    assert (float(loss), int(count)) == (1.0 + 4.0, 2)  # rows 0 and 2
