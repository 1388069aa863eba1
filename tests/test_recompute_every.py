"""Checkpointing through time (``recompute_every``): same numbers, fewer residuals;
its former name ``checkpoint_every`` still works, with a DeprecationWarning."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import (
    CELLS,
    RECURRENT,
    init_params,
    make_problem,
    max_rel,
    normal,
    value_and_grads,
)

import rnnbptt

STEPS = 7  # not a multiple of 3: the last chunk is padded with masked steps


# A pairwise cover of cell x engine x masked (every pair of values in a case),
# not the full product: each cell runs both engines and both masks, each
# engine both masks. The oracle (autodiff, no recomputation) is one program per
# cell and mask; lstm unmasked is shared with the chunk-length test below.
@pytest.mark.parametrize(
    "name, backward, masked",
    [
        ("elman-tanh", "manual", False),
        ("elman-tanh", "autodiff", True),
        ("elman-relu", "manual", True),
        ("elman-relu", "autodiff", False),
        ("lstm", "manual", False),
        ("lstm", "autodiff", True),
        ("gru", "manual", True),
        ("gru", "autodiff", False),
        ("gru-reset-before", "manual", False),
        ("gru-reset-before", "autodiff", True),
        ("feedforward", "manual", True),
        ("feedforward", "autodiff", False),
    ],
)
def test_checkpointed_unroll_matches_full_bptt(name, backward, masked):
    cell = CELLS[name]
    assert set(CELLS) == {
        "elman-tanh",
        "elman-relu",
        "lstm",
        "gru",
        "gru-reset-before",
        "feedforward",
    }
    params, xs, carry0 = make_problem(cell, steps=STEPS)
    mask = np.arange(STEPS)[None] < np.array([STEPS, 2, 5])[:, None] if masked else None
    want = value_and_grads(cell, params, xs, carry0, mask, "autodiff", None)
    got = value_and_grads(cell, params, xs, carry0, mask, backward, 3)
    assert max_rel(got, want) < 1e-12


@pytest.mark.parametrize("every", [1, STEPS, STEPS + 5])
def test_every_chunk_length_gives_the_same_gradients(every):
    cell = CELLS["lstm"]
    params, xs, carry0 = make_problem(cell, steps=STEPS)
    want = value_and_grads(cell, params, xs, carry0, None, "autodiff", None)
    got = value_and_grads(cell, params, xs, carry0, None, "manual", every)
    assert max_rel(got, want) < 1e-12


def _residual_bytes(cell, backward, every, steps=10_000, batch=16):
    """Bytes the VJP keeps for the backward pass (shapes only: nothing runs)."""
    params = jax.eval_shape(lambda: cell.init(jax.random.key(0), jnp.float32))
    xs = jax.ShapeDtypeStruct((batch, steps, cell.input_size), jnp.float32)
    return rnnbptt.residual_bytes(
        cell, params, xs, backward=backward, recompute_every=every
    )


@pytest.mark.parametrize("backward", ["manual", "autodiff"])
@pytest.mark.parametrize("name", ["lstm", "elman-tanh", "gru"])
def test_checkpointing_keeps_under_a_quarter_of_the_residuals(name, backward):
    cell = type(CELLS[name])(8, 128)
    full = _residual_bytes(cell, backward, None)
    kept = _residual_bytes(cell, backward, 100)
    # full BPTT keeps at least the outputs of all 10000 steps
    assert full >= 10_000 * 16 * 128 * 4
    assert kept <= full / 4


@pytest.mark.parametrize("bidirectional", [False, True])
def test_train_step_with_checkpointing_matches(bidirectional):
    model = rnnbptt.SequenceModel.build(
        "lstm",
        input_size=3,
        hidden_sizes=(4, 4),
        output_size=2,
        bidirectional=bidirectional,
        head="many_to_one" if bidirectional else "many_to_many",
    )
    params = init_params(model, 0)
    # drawn in NumPy (a JAX draw compiles a sampler per shape)
    rng = np.random.default_rng(1)
    xs = normal(rng, (3, STEPS, 3), jnp.float64)
    shape = (3, 2) if bidirectional else (3, STEPS, 2)
    ys = normal(rng, shape, jnp.float64)
    mask = np.arange(STEPS)[None] < np.array([STEPS, 3, 5])[:, None]  # NumPy too
    tx = optax.sgd(0.1)
    results = [
        rnnbptt.make_train_step(model, "mse", tx, recompute_every=every)(
            params, tx.init(params), xs, ys, mask, None
        )[0]
        for every in (None, 2)
    ]
    assert max_rel(results[1], results[0]) < 1e-12
    assert max_rel(results[0], params) > 1e-3  # the step did change the params


SGD = optax.sgd(0.1)


def _calls(**option) -> dict:
    """Every public function that takes the option, called with ``option``."""
    cell = CELLS[RECURRENT[0]]
    params, xs, _ = make_problem(cell)
    model = rnnbptt.SequenceModel.build("elman", 3, (4,), 1)
    model_params = init_params(model, 0)
    return {
        "unroll": lambda: rnnbptt.unroll(cell, params, xs, **option),
        "SequenceModel.apply": lambda: model.apply(model_params, xs, **option),
        "make_train_step": lambda: rnnbptt.make_train_step(model, "mse", SGD, **option),
        "fit": lambda: rnnbptt.fit(
            model,
            model_params,
            xs,
            xs[..., :1],
            batch_size=3,
            epochs=1,
            progress=False,
            **option,
        ),
        "residual_bytes": lambda: rnnbptt.residual_bytes(cell, params, xs, **option),
    }


@pytest.mark.parametrize("name", ["recompute_every", "checkpoint_every"])
@pytest.mark.parametrize(
    "every, error",
    [(0, ValueError), (-2, ValueError), (2.0, TypeError), (True, TypeError)],
)
@pytest.mark.filterwarnings("ignore:.*renamed `recompute_every`:DeprecationWarning")
def test_bad_recompute_every_is_refused_by_name(name, every, error):
    for fn, call in _calls(**{name: every}).items():
        with pytest.raises(error, match=rf"{fn}: `{name}`"):
            call()


def test_the_old_name_warns_and_computes_the_same():
    """``checkpoint_every=k`` is ``recompute_every=k`` with a DeprecationWarning
    that points at the caller's line."""
    new, old = _calls(recompute_every=2), _calls(checkpoint_every=2)
    for fn in new:
        want = new[fn]()
        with pytest.warns(DeprecationWarning, match="renamed `recompute_every`") as w:
            got = old[fn]()
        assert w[0].filename == __file__, fn
        if fn == "make_train_step":
            assert got is want  # the same compiled step
        elif fn == "fit":
            assert max_rel(got.params, want.params) == 0
        elif fn == "residual_bytes":
            assert got == want
        else:
            assert max_rel(got, want) == 0


def test_both_names_at_once_are_refused():
    for fn, call in _calls(recompute_every=2, checkpoint_every=2).items():
        with pytest.raises(TypeError, match=f"{fn}: pass `recompute_every` only"):
            call()
