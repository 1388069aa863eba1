"""Cells: construction, initialisation, single steps, and the PyTorch mapping."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import CELLS

import rnnbptt


def test_cells_are_hashable_static_descriptions():
    assert hash(rnnbptt.LSTM(3, 4)) == hash(rnnbptt.LSTM(3, 4))
    assert rnnbptt.Elman(3, 4) != rnnbptt.Feedforward(3, 4)
    with pytest.raises(AttributeError):
        rnnbptt.Elman(3, 4).hidden_size = 5
    traces = []
    f = jax.jit(lambda x, cell: traces.append(cell) or x, static_argnums=1)
    f(1.0, rnnbptt.Elman(3, 4))
    f(1.0, rnnbptt.Elman(3, 4))  # an equal cell: no retrace
    f(1.0, rnnbptt.Elman(3, 5))
    assert traces == [rnnbptt.Elman(3, 4), rnnbptt.Elman(3, 5)]


@pytest.mark.parametrize(
    "cell, fields",
    [
        (rnnbptt.Elman(3, 5), {"w_ih": (3, 5), "w_hh": (5, 5), "b": (5,)}),
        (rnnbptt.LSTM(3, 5), {"w_ih": (3, 20), "w_hh": (5, 20), "b": (20,)}),
        (
            rnnbptt.GRU(3, 5),
            {"w_ih": (3, 15), "w_hh": (5, 15), "b_ih": (15,), "b_hh": (15,)},
        ),
        (rnnbptt.Feedforward(3, 5), {"w_ih": (3, 5), "b": (5,)}),
    ],
)
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64, jnp.bfloat16, jnp.float16])
def test_init_shapes_and_dtype(cell, fields, dtype):
    params = cell.init(jax.random.key(0), dtype)
    assert params._fields == tuple(fields)
    for name, shape in fields.items():
        assert getattr(params, name).shape == shape
        assert getattr(params, name).dtype == dtype
    if jnp.finfo(dtype).bits < 32:  # float32's draw, rounded (no bfloat16 LAPACK)
        wide = cell.init(jax.random.key(0), jnp.float32)
        # rounded in NumPy (ml_dtypes): eagerly, a program per leaf
        jax.tree.map(
            lambda a, b: np.testing.assert_array_equal(a, np.asarray(b).astype(dtype)),
            params,
            wide,
        )


def test_numpy_integers_are_sizes():
    cell = rnnbptt.LSTM(np.int64(3), np.int32(4), forget_bias=np.float32(0.5))
    assert cell == rnnbptt.LSTM(3, 4, forget_bias=0.5)
    assert type(cell.input_size) is int and type(cell.forget_bias) is float
    assert cell.initial_carry(np.int64(2)).h.shape == (2, 4)


def test_default_init_is_as_documented():
    H = 16
    lstm = rnnbptt.LSTM(8, H, forget_bias=1.5)
    p = lstm.init(jax.random.key(1))
    for block in range(4):  # every gate block of w_hh is orthogonal
        w = np.asarray(p.w_hh[:, block * H : (block + 1) * H])
        np.testing.assert_allclose(w.T @ w, np.eye(H), atol=1e-12)
    expected_b = np.zeros(4 * H)
    expected_b[H : 2 * H] = 1.5
    np.testing.assert_array_equal(p.b, expected_b)
    limit = np.sqrt(3.0 / 8)
    assert np.abs(p.w_ih).max() <= limit
    assert np.abs(p.w_ih).max() > 0.8 * limit  # uniform over the whole range
    relu = rnnbptt.Elman(8, 64, activation="relu").init(jax.random.key(2))
    assert np.abs(relu.w_ih).max() > np.sqrt(2) * 0.9 * limit  # He gain for relu
    assert not np.array_equal(lstm.init(jax.random.key(3)).w_ih, p.w_ih)


def test_initial_carry(cell):
    carry = cell.initial_carry(5, jnp.float32)
    if isinstance(cell, rnnbptt.LSTM):
        assert isinstance(carry, rnnbptt.LSTMCarry)
    leaves = jax.tree.leaves(carry)
    assert (
        len(leaves)
        == {"LSTM": 2, "Elman": 1, "GRU": 1, "Feedforward": 0}[type(cell).__name__]
    )
    for leaf in leaves:
        assert leaf.shape == (5, 4) and leaf.dtype == jnp.float32
        assert not np.any(leaf)


@pytest.mark.parametrize(
    "make, error, text",
    [
        (lambda: rnnbptt.Elman(0, 4), ValueError, "input_size"),
        (lambda: rnnbptt.Elman(3, -1), ValueError, "hidden_size"),
        (lambda: rnnbptt.LSTM(3, 0), ValueError, "hidden_size"),
        (lambda: rnnbptt.LSTM(3.0, 4), TypeError, "input_size"),
        (lambda: rnnbptt.Feedforward(3, True), TypeError, "hidden_size"),
        (lambda: rnnbptt.Elman(3, 4, activation="softsign"), ValueError, "unknown"),
        (
            lambda: rnnbptt.Elman(3, 4, activation="step"),
            ValueError,
            "backpropagation needs a differentiable activation",
        ),
        (
            lambda: rnnbptt.Feedforward(3, 4, activation="sign"),
            ValueError,
            "backpropagation needs a differentiable activation",
        ),
        (
            lambda: rnnbptt.Elman(3, 4, activation=jnp.sign),
            ValueError,
            "backpropagation needs a differentiable activation",
        ),
        (lambda: rnnbptt.Elman(3, 4, activation=jnp.tanh), TypeError, "name"),
        (lambda: rnnbptt.LSTM(3, 4, forget_bias="1"), TypeError, "forget_bias"),
        (
            lambda: rnnbptt.LSTM(3, 4, forget_bias=float("nan")),
            ValueError,
            "`forget_bias` must be a finite number",
        ),
        (lambda: CELLS["lstm"].initial_carry(0), ValueError, "batch_size"),
        (lambda: CELLS["lstm"].init(jax.random.key(0), jnp.int32), TypeError, "dtype"),
        # an int seed is not key data (JAX said "invalid PRNG key data")
        (lambda: CELLS["lstm"].init(0), TypeError, "LSTM.init: `key` must be one JAX"),
        (
            lambda: CELLS["feedforward"].init(jnp.zeros(3, jnp.uint32)),
            TypeError,
            "Feedforward.init: `key` must be one JAX random key, e.g. "
            r"jax.random.key\(0\) \(for an int seed s, pass jax.random.key\(s\)\), "
            r"got an array of shape \(3,\)",
        ),
    ],
)
def test_bad_construction_raises(make, error, text):
    with pytest.raises(error, match=text):
        make()


@pytest.mark.parametrize("activation", ["tanh", "relu", "sigmoid", "identity"])
def test_activation_derivative_matches_autodiff(activation):
    z = jnp.asarray(np.linspace(-3, 3, 61) + 0.01)  # avoid relu's kink at exactly 0
    act = rnnbptt.cells.ACTIVATIONS[activation]
    want = jax.jit(jax.vmap(jax.grad(act)))(z)  # one program, not one per operation
    got = rnnbptt.cells.activation_derivative(activation, act(z))
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)


def _torch_array(module, name):
    """The torch module's tensor ``name`` as a JAX array."""
    return jnp.asarray(getattr(module, name).detach().numpy())


def test_lstm_maps_torch_lstm_exactly():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    D, H, B, T = 3, 5, 2, 7
    ref = torch.nn.LSTM(D, H, batch_first=True).double()
    x = torch.randn(B, T, D, dtype=torch.float64)
    h0 = torch.randn(1, B, H, dtype=torch.float64)
    c0 = torch.randn(1, B, H, dtype=torch.float64)
    out, (hT, cT) = ref(x, (h0, c0))
    weight = functools.partial(_torch_array, ref)
    params = rnnbptt.LSTMParams(
        w_ih=weight("weight_ih_l0").T,
        w_hh=weight("weight_hh_l0").T,
        b=weight("bias_ih_l0") + weight("bias_hh_l0"),
    )
    carry0 = rnnbptt.LSTMCarry(jnp.asarray(h0[0].numpy()), jnp.asarray(c0[0].numpy()))
    (h, c), hs = rnnbptt.unroll(
        rnnbptt.LSTM(D, H), params, jnp.asarray(x.numpy()), carry0
    )
    np.testing.assert_allclose(hs, out.detach().numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(h, hT[0].detach().numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(c, cT[0].detach().numpy(), rtol=1e-12, atol=1e-14)


def test_gru_maps_torch_gru_exactly():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    D, H, B, T = 3, 5, 2, 7
    ref = torch.nn.GRU(D, H, batch_first=True).double()
    x = torch.randn(B, T, D, dtype=torch.float64)
    h0 = torch.randn(1, B, H, dtype=torch.float64)
    out, hT = ref(x, h0)
    weight = functools.partial(_torch_array, ref)
    params = rnnbptt.GRUParams(
        w_ih=weight("weight_ih_l0").T,
        w_hh=weight("weight_hh_l0").T,
        b_ih=weight("bias_ih_l0"),
        b_hh=weight("bias_hh_l0"),
    )
    h, hs = rnnbptt.unroll(
        rnnbptt.GRU(D, H), params, jnp.asarray(x.numpy()), jnp.asarray(h0[0].numpy())
    )
    np.testing.assert_allclose(hs, out.detach().numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(h, hT[0].detach().numpy(), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("reset_after", [True, False])
def test_gru_init_is_as_documented(reset_after):
    H = 16
    p = rnnbptt.GRU(8, H, reset_after=reset_after).init(jax.random.key(1))
    for block in range(3):  # every gate block of w_hh is orthogonal
        w = np.asarray(p.w_hh[:, block * H : (block + 1) * H])
        np.testing.assert_allclose(w.T @ w, np.eye(H), atol=1e-12)
    np.testing.assert_array_equal(p.b_ih, np.zeros(3 * H))
    np.testing.assert_array_equal(p.b_hh, np.zeros(3 * H))
    limit = np.sqrt(3.0 / 8)
    assert limit >= np.abs(p.w_ih).max() > 0.8 * limit


def test_gru_conventions_differ_and_refuse_a_non_bool():
    cell, before = rnnbptt.GRU(3, 4), rnnbptt.GRU(3, 4, reset_after=False)
    assert cell != before and hash(cell) != hash(before)
    p = cell.init(jax.random.key(0))
    p = p._replace(b_hh=p.b_hh + 0.5)  # the reset gate then matters for u_n
    x, h = jnp.ones((2, 3)), 0.5 * jnp.ones((2, 4))
    assert not np.allclose(cell.step(p, h, x)[0], before.step(p, h, x)[0])
    with pytest.raises(TypeError, match="GRU: `reset_after` must be True or False"):
        rnnbptt.GRU(3, 4, reset_after="yes")


def test_two_biases_keep_torchs_layout_and_compute_the_same():
    one, two = rnnbptt.LSTM(3, 4, forget_bias=1.5), rnnbptt.LSTM(3, 4, two_biases=True)
    p = two.init(jax.random.key(0))
    assert isinstance(p, rnnbptt.TwoBiasParams)
    np.testing.assert_array_equal(p.b_ih[4:8], 1.0)  # the forget bias, in b_ih
    np.testing.assert_array_equal(p.b_hh, np.zeros(16))
    split = p._replace(b_ih=p.b_ih - 0.25, b_hh=p.b_hh + 0.25)  # exact in binary
    fused = rnnbptt.LSTMParams(p.w_ih, p.w_hh, p.b_ih)
    x, carry = jnp.ones((2, 3)), one.initial_carry(2)
    np.testing.assert_array_equal(
        two.step(split, carry, x)[1], one.step(fused, carry, x)[1]
    )
    with pytest.raises(ValueError, match="Feedforward: `two_biases` is for recurrent"):
        rnnbptt.Feedforward(3, 4, two_biases=True)
    with pytest.raises(TypeError, match="Elman: `two_biases` must be True or False"):
        rnnbptt.Elman(3, 4, two_biases="yes")
    with pytest.raises(TypeError, match="must be TwoBiasParams"):
        rnnbptt.unroll(two, fused, jnp.ones((2, 5, 3)))
