"""compare_gradients: the table users read, and that it catches a wrong gradient."""

import importlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import CELLS, make_problem, right_padded_mask

import rnnbptt

unroll_module = importlib.import_module("rnnbptt.unroll")
gradcheck_module = importlib.import_module("rnnbptt.gradcheck")


class Unhashable:
    """A loss object that defines equality but not hashing."""

    __hash__ = None

    def __call__(self, hs, final):
        return jnp.sum(hs)


LEAVES = {
    "elman-tanh": ["params.w_ih", "params.w_hh", "params.b", "xs", "carry0"],
    "elman-relu": ["params.w_ih", "params.w_hh", "params.b", "xs", "carry0"],
    "lstm": ["params.w_ih", "params.w_hh", "params.b", "xs", "carry0.h", "carry0.c"],
    "gru": ["params.w_ih", "params.w_hh", "params.b_ih", "params.b_hh", "xs", "carry0"],
    "feedforward": ["params.w_ih", "params.b", "xs"],
}


TWO_BIASES = {
    "lstm-two-biases": rnnbptt.LSTM(3, 4, two_biases=True),
    "elman-two-biases": rnnbptt.Elman(3, 4, activation="relu", two_biases=True),
}
LEAVES_TWO_BIASES = ["params.w_ih", "params.w_hh", "params.b_ih", "params.b_hh", "xs"]


@pytest.mark.parametrize("name", [*CELLS, *TWO_BIASES])
def test_table_rows_and_float64_agreement(name):
    cell = CELLS.get(name) or TWO_BIASES[name]
    params, xs, carry0 = make_problem(cell, seed=2)
    mask = right_padded_mask([6, 3, 5], 6)
    table = rnnbptt.compare_gradients(cell, params, xs, carry0, mask=mask)
    if name in TWO_BIASES:
        carry = ["carry0.h", "carry0.c"] if "lstm" in name else ["carry0"]
        assert list(table.index) == LEAVES_TWO_BIASES + carry
    else:
        assert list(table.index) == LEAVES[name.removesuffix("-reset-before")]
    assert (table["manual_autodiff_rel"] <= 1e-10).all()
    assert (table["manual_fd_rel"] <= 1e-6).all()
    assert (table["autodiff_fd_rel"] <= 1e-6).all()
    assert (table["fd_coords"] >= 1).all()
    assert table.attrs["dtype"] == "float64"


def test_float32_inputs_are_compared_against_float64_differences():
    cell = CELLS["lstm"]
    # the shapes and mask of test_table_rows_and_float64_agreement[lstm]: the
    # float64 differences are its compiled program
    params, xs, carry0 = make_problem(cell, seed=2, dtype=jnp.float32)
    mask = right_padded_mask([6, 3, 5], 6)
    table = rnnbptt.compare_gradients(cell, params, xs, carry0, mask=mask)
    assert table.attrs["dtype"] == "float32"
    assert (table["manual_autodiff_rel"] <= 1e-5).all()
    assert (table["manual_fd_rel"] <= 1e-3).all()
    # float32 rounding is visible against float64 differences, far above float64's
    assert table["manual_fd_abs"].max() > 1e-9


def test_custom_loss_is_used():
    cell = CELLS["elman-tanh"]
    params, xs, carry0 = make_problem(cell)
    table = rnnbptt.compare_gradients(
        cell, params, xs, carry0, loss=lambda hs, final: jnp.sum(hs[:, -1] ** 3)
    )
    # this loss ignores the final carry and all but the last output ...
    assert (table["manual_fd_rel"] <= 1e-6).all()
    # ... so the gradient into the first inputs comes only through the recurrence
    # jitted: eagerly, the gradient's every operation compiles its own program
    g = jax.jit(
        jax.grad(
            lambda x: jnp.sum(rnnbptt.unroll(cell, params, x, carry0)[1][:, -1] ** 3)
        )
    )(xs)
    assert abs(np.asarray(g)[0, 0, 0]) > 0


def test_a_wrong_manual_gradient_is_caught(monkeypatch):
    """Break the hand-written backward on purpose: the table must show it."""
    real = unroll_module.manual_backward

    def broken(*args):
        d_params, d_xs, d_carry0 = real(*args)
        return d_params._replace(w_hh=1.01 * d_params.w_hh), d_xs, d_carry0

    monkeypatch.setattr(unroll_module, "manual_backward", broken)
    # A cell used nowhere else (a static argument of every program it runs in),
    # so the programs are traced afresh with the broken backward, and no other
    # test meets them (jax.clear_caches would make every later test on this
    # worker compile its programs again). Had a program been cached unbroken,
    # the assertions below would fail, not pass. The shapes are those of
    # test_table_rows_and_float64_agreement[elman-tanh], whose eager operations
    # (one program per shape, as the finite differences' setup) it shares.
    cell = rnnbptt.Elman(3, 4, activation="sigmoid")
    params, xs, carry0 = make_problem(cell)
    table = rnnbptt.compare_gradients(cell, params, xs, carry0)
    assert table.loc["params.w_hh", "manual_autodiff_rel"] > 5e-3
    assert table.loc["params.w_hh", "manual_fd_rel"] > 5e-3
    assert table.loc["params.w_hh", "autodiff_fd_rel"] < 1e-6
    assert table.loc["params.w_ih", "manual_autodiff_rel"] < 1e-10


def test_a_second_check_of_the_same_shapes_compiles_nothing_new():
    # a cell used nowhere else, so its programs are new; the shapes of
    # test_table_rows_and_float64_agreement[lstm], so the eager operations of
    # the finite differences' setup (one program per shape) are not
    cell = rnnbptt.LSTM(3, 4, forget_bias=2.0)
    params, xs, carry0 = make_problem(cell)
    programs = (gradcheck_module._engine_grads, gradcheck_module._perturbed)
    before = [program._cache_size() for program in programs]
    first = rnnbptt.compare_gradients(cell, params, xs, carry0, key=jax.random.key(1))
    # one program per engine, one for the finite differences
    after = [before[0] + 2, before[1] + 1]
    assert [program._cache_size() for program in programs] == after
    second = rnnbptt.compare_gradients(cell, params, xs, carry0, key=jax.random.key(2))
    assert [program._cache_size() for program in programs] == after
    # ... with the new key's probe, not the old one's
    assert (second["manual_autodiff_abs"] != first["manual_autodiff_abs"]).any()


@pytest.mark.parametrize(
    "kwargs, error, text",
    [
        ({"fd_samples": 0}, ValueError, "fd_samples"),
        ({"fd_step": 0.0}, ValueError, "fd_step"),
        ({"fd_step": "1e-5"}, ValueError, "`fd_step` must be a finite number > 0"),
        ({"fd_samples": 2.5}, TypeError, "fd_samples"),
        ({"loss": "mse"}, TypeError, "`loss` must be a function"),
        ({"loss": Unhashable()}, TypeError, "`loss` must be hashable"),
        ({"key": 0}, TypeError, "compare_gradients: `key` must be one JAX random key"),
    ],
)
def test_bad_arguments(kwargs, error, text):
    cell = CELLS["elman-tanh"]
    params, xs, carry0 = make_problem(cell)
    with pytest.raises(error, match=text):
        rnnbptt.compare_gradients(cell, params, xs, carry0, **kwargs)
