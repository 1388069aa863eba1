"""SequenceModel: stacking, heads, masks, bidirectional layers, streams, engines."""

import functools
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import init_params, max_rel, normal, right_padded_mask
from reference import loop

import rnnbptt

LENGTHS = [7, 3, 5, 1]


def _problem(kind="lstm", sizes=(3, 3), head="many_to_many", seed=0, **kwargs):
    """(model, params, xs [4, 7, 3]). The default sizes make both layers of a
    model, and the first of a bidirectional one, the same cell, so that the
    layers, directions and tests share its compiled unrolls where they can (a
    forward pass of every layer; in a gradient, the first layers'). The
    NumPy-oracle and error tests keep distinct sizes."""
    model = rnnbptt.SequenceModel.build(kind, 3, list(sizes), 2, head=head, **kwargs)
    xs = normal(np.random.default_rng(seed + 1), (4, 7, 3), np.float64)
    return model, init_params(model, seed), xs


@functools.partial(jax.jit, static_argnums=0)
def _apply(model, params, xs, mask):
    """``model.apply`` as one program (eagerly, each operation compiles its own)."""
    return model.apply(params, xs, mask)


def _numpy_forward(model, params, xs, mask=None):
    """Layers as NumPy loops (tests/reference.py), then the readout."""
    h = np.asarray(xs)
    for cell, p in zip(model.cells, params.layers, strict=True):
        _, h = loop(cell, p, h, cell.initial_carry(h.shape[0], jnp.float64), mask)
    return h @ np.asarray(params.readout.w) + np.asarray(params.readout.b)


@pytest.mark.parametrize(
    "kind, options",
    [("elman", {}), ("lstm", {}), ("gru", {}), ("gru", {"reset_after": False})],
)
def test_stacked_many_to_many_equals_numpy_loops(kind, options):
    model, params, xs = _problem(kind, sizes=(5, 4), **options)
    mask = right_padded_mask(LENGTHS, 7)
    got = _apply(model, params, xs, mask)
    np.testing.assert_allclose(got, _numpy_forward(model, params, xs, mask), rtol=1e-12)


# Masks with the valid steps at the end, or scattered (every row has one). The
# scattered rows have as many valid steps as rows of LENGTHS (5, 3, 3, 1), so the
# rows alone have shapes that the right-padded case has run already.
SCATTERED = np.array(
    [
        [1, 1, 1, 1, 0, 0, 1],
        [0, 0, 0, 0, 1, 1, 1],
        [0, 1, 0, 1, 0, 1, 0],
        [0, 0, 0, 1, 0, 0, 0],
    ],
    bool,
)
MASKS = {"right": right_padded_mask(LENGTHS, 7), "scattered": SCATTERED}


# A pairwise cover of head x (pattern, engine) x bidirectional: every pair of
# their values meets in one case
@pytest.mark.parametrize(
    "head, pattern, backward, bidirectional",
    [
        ("many_to_one", "right", "autodiff", False),
        ("many_to_one", "scattered", "manual", True),
        ("many_to_many", "right", "autodiff", True),
        ("many_to_many", "scattered", "manual", False),
    ],
)
def test_padded_batch_equals_each_sequence_alone(
    head, pattern, backward, bidirectional
):
    """Values and gradients (parameters and inputs): a masked batch is each row's
    valid steps run on their own, whatever the mask's pattern (one engine per
    pattern; the engines agree through the model, tested below)."""
    mask = MASKS[pattern]
    model, params, xs = _problem(head=head, bidirectional=bidirectional)

    def outputs(params, xs, mask):  # [B, K], or the valid steps' [N_valid, K]
        out = model.apply(params, xs, mask, backward=backward)
        return out if head == "many_to_one" else out[mask]

    def square(params, xs, mask):  # the outputs ride along: no forward of their own
        out = outputs(params, xs, mask)
        return jnp.sum(out**2), out

    grad = jax.value_and_grad(square, argnums=(0, 1), has_aux=True)

    @jax.jit
    def alone_and_batch(params, rows, xs):
        """Each row alone and the batch, in one compiled program (the masks are
        constants of it: the valid steps' outputs are picked out by their
        values); eagerly, each of the model's operations and their derivatives
        compiled its own, dozens a case."""
        alone = [grad(params, x, np.ones(x.shape[:2], bool)) for x in rows]
        return alone, grad(params, xs, mask)

    rows = [np.asarray(xs)[b : b + 1, mask[b]] for b in range(4)]
    alone, batch = alone_and_batch(params, rows, xs)
    (_, batch_outputs), (batch_grad, batch_grad_xs) = batch
    np.testing.assert_allclose(
        batch_outputs,
        np.concatenate([out for (_, out), _ in alone]),
        rtol=1e-12,
        atol=1e-14,
    )
    # summed in NumPy: eager JAX adds would compile a program per shape
    total = jax.tree.map(np.zeros_like, params)
    for _, (g, _) in alone:
        total = jax.tree.map(np.add, total, g)
    assert max_rel(batch_grad, total) <= 1e-11
    # the inputs' gradient: each row's at its valid steps, zero at the padding
    batch_grad_xs = np.asarray(batch_grad_xs)
    row_grad_xs = np.concatenate([np.asarray(g_xs)[0] for _, (_, g_xs) in alone])
    assert max_rel(batch_grad_xs[mask], row_grad_xs) <= 1e-11
    np.testing.assert_array_equal(batch_grad_xs[~mask], 0.0)


def test_bidirectional_backward_half_reads_each_sequence_reversed():
    model, params, xs = _problem(sizes=(4,), bidirectional=True)
    mask = right_padded_mask(LENGTHS, 7)
    cell, p = model.cells[0], params.layers[0]
    hs = _apply(model, params, xs, mask)  # readout of concat([forward, backward])
    H = cell.hidden_size
    w, b = np.asarray(params.readout.w), np.asarray(params.readout.b)
    xs = np.asarray(xs)  # rows sliced in NumPy: eagerly, a program per slice
    for row, n in enumerate(LENGTHS):
        x = xs[row : row + 1, :n]
        zero = cell.initial_carry(1, jnp.float64)
        _, fwd = loop(cell, p.forward, x, zero)
        _, bwd = loop(cell, p.backward, x[:, ::-1], zero)
        want = fwd[0] @ w[:H] + bwd[0, ::-1] @ w[H:] + b
        # atol: the readout adds O(1) terms, so rounding (1e-16) is a large
        # relative error where they nearly cancel
        np.testing.assert_allclose(hs[row, :n], want, rtol=1e-12, atol=1e-14)


def test_feedforward_with_one_step_is_an_mlp():
    model = rnnbptt.SequenceModel.build(
        "feedforward", 3, [8, 6], 4, activation="relu", head="many_to_one"
    )
    params = init_params(model, 0)
    x = np.random.default_rng(1).standard_normal((5, 3))
    h = x
    for p in params.layers:
        h = np.maximum(h @ np.asarray(p.w_ih) + np.asarray(p.b), 0)
    want = h @ np.asarray(params.readout.w) + np.asarray(params.readout.b)
    np.testing.assert_allclose(
        _apply(model, params, x[:, None], None), want, rtol=1e-12
    )


@pytest.mark.parametrize("kind", ["elman", "lstm"])
def test_stateful_stream_in_two_calls_equals_one_call(kind):
    model, params, xs = _problem(kind)
    xs = np.asarray(xs)  # sliced in NumPy: eagerly, a program per slice

    @jax.jit  # one program per call's shapes (eagerly, one per operation)
    def stream(xs, carry0):
        return model.apply(params, xs, carry0=carry0, return_carry=True)

    whole, whole_carry = stream(xs, None)
    first, carry = stream(xs[:, :4], None)
    second, carry = stream(xs[:, 4:], carry)
    np.testing.assert_allclose(np.concatenate([first, second], 1), whole, rtol=1e-13)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-13), carry, whole_carry
    )
    # reset: carry0=None starts from zeros, unlike continuing the stream
    reset, _ = stream(xs[:, 4:], None)
    np.testing.assert_allclose(
        reset, stream(xs[:, 4:], model.initial_carry(4, jnp.float64))[0], rtol=0
    )
    assert not np.allclose(reset, second)


@pytest.mark.parametrize(
    "kind, bidirectional", [("lstm", False), ("lstm", True), ("gru", True)]
)
def test_engines_agree_through_the_model(kind, bidirectional):
    model, params, xs = _problem(kind, bidirectional=bidirectional, dropout=0.3)
    mask = right_padded_mask(LENGTHS, 7)
    key = jax.random.key(9)

    def loss(params, backward):
        return jnp.mean(model.apply(params, xs, mask, key=key, backward=backward) ** 2)

    # both engines in one program (eagerly, every operation compiles its own)
    both = jax.jit(
        lambda p: (jax.grad(loss)(p, "manual"), jax.grad(loss)(p, "autodiff"))
    )
    got, want = both(params)
    assert max_rel(got, want) <= 1e-10


def test_dropout_only_with_a_key():
    model, params, xs = _problem(dropout=0.5)
    plain = rnnbptt.SequenceModel(model.cells, model.output_size)

    # one program per model and key or none (eagerly, one per operation)
    @functools.partial(jax.jit, static_argnums=0)
    def apply(model, key):
        return model.apply(params, xs, key=key)

    np.testing.assert_array_equal(apply(model, None), apply(plain, None))
    a = apply(model, jax.random.key(1))
    b = apply(model, jax.random.key(2))
    assert not np.allclose(a, b)
    np.testing.assert_array_equal(a, apply(model, jax.random.key(1)))


@pytest.mark.parametrize(
    "make, error, text",
    [
        (
            lambda: rnnbptt.SequenceModel((rnnbptt.LSTM(3, 4), rnnbptt.LSTM(5, 4)), 1),
            ValueError,
            "layer 1 has input_size 5",
        ),
        (lambda: rnnbptt.SequenceModel((), 1), TypeError, "non-empty"),
        (
            lambda: rnnbptt.SequenceModel((rnnbptt.LSTM(3, 4),), 0),
            ValueError,
            "output_size",
        ),
        (
            lambda: rnnbptt.SequenceModel((rnnbptt.LSTM(3, 4),), 1, head="seq2seq"),
            ValueError,
            "head",
        ),
        (
            lambda: rnnbptt.SequenceModel((rnnbptt.LSTM(3, 4),), 1, dropout=1.0),
            ValueError,
            "dropout",
        ),
        (lambda: rnnbptt.SequenceModel.build("rnn", 3, [4], 1), ValueError, "kind"),
        (
            lambda: rnnbptt.SequenceModel.build("lstm", 3, [4], 1, bidirectional="no"),
            TypeError,
            "`bidirectional` must be True or False",
        ),
        (
            lambda: rnnbptt.SequenceModel.build("lstm", 3, [4], 1, dropout="0.1"),
            ValueError,
            "`dropout` must be a number",
        ),
        (
            lambda: rnnbptt.SequenceModel.build("lstm", 3, 4, 1),
            TypeError,
            "`hidden_sizes` must be a list",
        ),
        (lambda: rnnbptt.SequenceModel.build("lstm", 3, [], 1), ValueError, "empty"),
        # an option of another kind of cell was dropped without a word
        (
            lambda: rnnbptt.SequenceModel.build("lstm", 3, [4], 1, activation="relu"),
            ValueError,
            "`activation` applies to elman and feedforward layers, not 'lstm'",
        ),
        (
            lambda: rnnbptt.SequenceModel.build("elman", 3, [4], 1, forget_bias="x"),
            ValueError,
            "`forget_bias` applies to lstm layers, not 'elman'",
        ),
        (
            lambda: rnnbptt.SequenceModel.build("lstm", 3, [4], 1, reset_after=False),
            ValueError,
            "`reset_after` applies to gru layers, not 'lstm'",
        ),
        (
            lambda: rnnbptt.SequenceModel.build("gru", 3, [4], 1, reset_after=1),
            TypeError,
            "GRU: `reset_after` must be True or False, got 1",
        ),
        (
            lambda: rnnbptt.SequenceModel.build("lstm", 3, [4], 1).init(0),
            TypeError,
            "SequenceModel.init: `key` must be one JAX random key",
        ),
    ],
)
def test_bad_model_definitions(make, error, text):
    with pytest.raises(error, match=text):
        make()


def test_bad_apply_arguments():
    model, params, xs = _problem(sizes=(5, 4), bidirectional=True)
    with pytest.raises(ValueError, match="bidirectional"):
        model.apply(params, xs, carry0=model.initial_carry(4))
    with pytest.raises(TypeError, match="ModelParams"):
        model.apply(params.layers, xs)
    with pytest.raises(ValueError, match="mask"):
        model.apply(params, xs, jnp.ones((4, 6), bool))
    with pytest.raises(ValueError, match=r"params.readout.w` must have shape \(8, 2\)"):
        model.apply(
            params._replace(readout=params.readout._replace(w=jnp.ones((8, 3)))), xs
        )
    with pytest.raises(ValueError, match=r"params.readout.b` must have shape \(2,\)"):
        model.apply(params._replace(readout=params.readout._replace(b=jnp.ones(3))), xs)
    clf, clf_params, _ = _problem(sizes=(5, 4), head="many_to_one")
    with pytest.raises(ValueError, match="`xs` must have rank 3"):
        clf.apply(clf_params, xs[0], jnp.ones(7, bool))
    empty_row = np.ones((4, 7), bool)
    empty_row[2] = False
    with pytest.raises(ValueError, match="row 2 has no valid step"):
        clf.apply(clf_params, xs, empty_row)
    uni, uni_params, _ = _problem(sizes=(5, 4))
    with pytest.raises(TypeError, match="tuple of 2 carries"):
        uni.apply(uni_params, xs, carry0=uni.initial_carry(4)[:1])
    with pytest.raises(ValueError, match="input_size"):
        uni.apply(uni_params, xs[..., :2])
    # a string is not a flag (it returned a tuple), an int is not a key
    with pytest.raises(TypeError, match="`return_carry` must be True or False"):
        uni.apply(uni_params, xs, return_carry="no")
    with pytest.raises(TypeError, match="`key` must be one JAX random key"):
        uni.apply(uni_params, xs, key=0)
    # one dtype for every parameter (a bfloat16 readout was taken silently)
    narrow = jax.tree.map(lambda a: a.astype(jnp.bfloat16), uni_params.readout)
    with pytest.raises(TypeError, match=r"`params.readout.w` is bfloat16 and"):
        uni.apply(uni_params._replace(readout=narrow), xs)


@pytest.mark.parametrize(
    "reset, error, text",
    [
        (np.array([True]), ValueError, "must have shape (B,)"),  # zeroed all four
        (np.array([True, False, True]), ValueError, "batch sizes [4]), got (3,)"),
        (np.array([1, 0, 0, 1]), TypeError, "`reset` must be bool"),
    ],
)
def test_reset_carry_needs_one_flag_per_stream(reset, error, text):
    model = rnnbptt.SequenceModel.build("lstm", 3, [4], 1)
    with pytest.raises(error, match=re.escape(text)):
        model.reset_carry(model.initial_carry(4), reset)


def test_a_model_without_readout_outputs_its_last_layers_states():
    model = rnnbptt.SequenceModel.build("gru", 3, [5, 4], None, head=None)
    params = init_params(model, 0)
    assert params.readout is None and model.out_features == 4 and model.per_step
    xs = normal(np.random.default_rng(1), (4, 7, 3), np.float64)
    mask = right_padded_mask(LENGTHS, 7)
    h = np.asarray(xs)
    for cell, p in zip(model.cells, params.layers, strict=True):
        _, h = loop(cell, p, h, cell.initial_carry(4, jnp.float64), mask)
    np.testing.assert_allclose(_apply(model, params, xs, mask), h, rtol=1e-12)
    with pytest.raises(ValueError, match="`output_size` must be None, got 2"):
        rnnbptt.SequenceModel.build("gru", 3, [4], 2, head=None)
    readout = rnnbptt.DenseParams(jnp.zeros((4, 1)), jnp.zeros(1))
    with pytest.raises(TypeError, match=r"takes `params\.readout` None"):
        model.apply(params._replace(readout=readout), xs)
    wrong = r"its last layer outputs 4\), got \(4, 7, 2\)"
    with pytest.raises(ValueError, match=wrong):
        rnnbptt.fit(model, params, xs, np.zeros((4, 7, 2)), progress=False)


def test_bidirectional_layers_must_be_bidirectional_params():
    model, params, xs = _problem(bidirectional=True)
    flat = params._replace(layers=(tuple(params.layers[0]), params.layers[1]))
    with pytest.raises(TypeError, match=r"`params\.layers\[0\]` of a bidirectional"):
        model.apply(flat, xs)
