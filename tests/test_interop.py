"""rnnbptt.interop: torch.nn.RNN, LSTM and GRU weights in and out, exactly."""

import functools
import re
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rnnbptt
from rnnbptt.interop import from_torch, to_torch

try:
    import torch
except ImportError:  # every test but the first needs it
    torch = None
needs_torch = pytest.mark.skipif(torch is None, reason="needs torch")

B, T, D, H = 3, 6, 4, 5
# name -> (torch class, options): stacked and bidirectional, both layouts,
# without biases, both torch.nn.RNN non-linearities
MODULES = {
    "rnn-tanh": ("RNN", dict(num_layers=2, bidirectional=True, batch_first=False)),
    "rnn-relu": ("RNN", dict(nonlinearity="relu", bias=False, batch_first=True)),
    "lstm": ("LSTM", dict(num_layers=2, bidirectional=True, batch_first=True)),
    "gru": ("GRU", dict(num_layers=2, bidirectional=True, batch_first=False)),
    "gru-no-bias": ("GRU", dict(bias=False, batch_first=True)),
}


def test_without_torch_the_error_names_the_extra(monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "torch", None)  # not importable
    model, params = _built("lstm", None)
    with pytest.raises(ImportError, match=r"to_torch needs PyTorch.*rnnbptt\[torch\]"):
        to_torch(model, params)


def _module(name, seed=0):
    kind, options = MODULES[name]
    torch.manual_seed(seed)
    module = getattr(torch.nn, kind)(D, H, **options)
    with torch.no_grad():  # non-zero biases on both sides (torch draws them so)
        for p in module.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return module


def _torch_run(module, xs):
    """torch's output [B, T, ...] for batch-major ``xs``, and the gradient of
    sum(output * probe) with respect to every named parameter."""
    x = torch.tensor(xs, requires_grad=False)
    out, _ = module(x if module.batch_first else x.transpose(0, 1))
    out = out if module.batch_first else out.transpose(0, 1)
    probe = torch.tensor(
        np.cos(np.arange(out.numel())).reshape(out.shape), dtype=out.dtype
    )
    module.zero_grad()
    (out * probe).sum().backward()
    grads = {n: p.grad.numpy().copy() for n, p in module.named_parameters()}
    return out.detach().numpy(), probe.numpy(), grads


@functools.partial(jax.jit, static_argnums=0)
def _apply_and_grad(model, params, xs, probe):
    def loss(params):
        out = model.apply(params, xs)
        return jnp.sum(out * probe), out

    return jax.grad(loss, has_aux=True)(params)


@needs_torch
@pytest.mark.parametrize("name", list(MODULES))
def test_outputs_and_gradients_equal_torchs(name):
    module = _module(name)
    xs = np.random.default_rng(0).standard_normal((B, T, D)).astype(np.float32)
    want, probe, torch_grads = _torch_run(module, xs)
    model, params = from_torch(module)
    assert model.head is None and model.out_features == want.shape[-1]
    grads, got = _apply_and_grad(model, params, xs, probe)
    assert got.dtype == jnp.float32
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
    # rnnbptt's gradients in torch's layout (the cells keep torch's two biases)
    mapped = dict(to_torch(model, grads).named_parameters())
    for tensor_name, want_grad in torch_grads.items():
        got_grad = mapped[tensor_name].detach().numpy()
        scale = np.max(np.abs(want_grad))
        assert np.max(np.abs(got_grad - want_grad)) <= 1e-5 * max(scale, 1), tensor_name


@needs_torch
@pytest.mark.parametrize("name", list(MODULES))
def test_round_trips_are_bitwise(name):
    module = _module(name, seed=1).double()  # non-zero bias_hh everywhere
    model, params = from_torch(module)
    back = to_torch(model, params, batch_first=module.batch_first, bias=module.bias)
    assert type(back) is type(module)
    assert str(back) == str(module)  # sizes, layers, direction, bias, layout
    original = dict(module.named_parameters())
    for tensor_name, tensor in back.named_parameters():
        assert tensor.dtype == torch.float64
        np.testing.assert_array_equal(tensor.detach(), original[tensor_name].detach())
    again = from_torch(back)[1]
    jax.tree.map(np.testing.assert_array_equal, again, params)


@needs_torch
def test_rnnbptt_to_torch_and_back_is_bitwise_for_every_cell():
    cells = {
        "elman": lambda d, two: rnnbptt.Elman(d, H, "relu", two_biases=two),
        "lstm": lambda d, two: rnnbptt.LSTM(d, H, two_biases=two),
    }
    for kind in ("elman", "lstm", "gru"):
        for two in (True, False):
            layers = [
                rnnbptt.GRU(d, H) if kind == "gru" else cells[kind](d, two)
                for d in (D, H)
            ]
            model = rnnbptt.SequenceModel(tuple(layers), None, head=None)
            params = model.init(jax.random.key(0), jnp.float32)
            params = jax.tree.map(lambda a: a + 0.25, params)  # non-zero biases
            again_model, again = from_torch(to_torch(model, params))
            for layer, back in zip(params.layers, again.layers, strict=True):
                np.testing.assert_array_equal(back.w_ih, layer.w_ih)
                np.testing.assert_array_equal(back.w_hh, layer.w_hh)
                if kind != "gru" and not two:  # b goes to torch as bias_ih
                    np.testing.assert_array_equal(back.b_ih, layer.b)
                    np.testing.assert_array_equal(back.b_hh, 0 * layer.b)
                else:
                    assert again_model == model
                    jax.tree.map(np.testing.assert_array_equal, back, layer)


@needs_torch
def test_a_bfloat16_module_goes_in_and_out_exactly():
    module = torch.nn.GRU(D, H, num_layers=2).to(torch.bfloat16)
    model, params = from_torch(module)
    assert {leaf.dtype for leaf in jax.tree.leaves(params)} == {jnp.dtype(jnp.bfloat16)}
    back = to_torch(model, params, batch_first=False)
    for name, tensor in back.named_parameters():
        assert tensor.dtype == torch.bfloat16
        original = dict(module.named_parameters())[name]
        assert torch.equal(tensor, original), name


@needs_torch
def test_dropout_and_batch_first_carry_over():
    module = torch.nn.LSTM(D, H, num_layers=2, dropout=0.25).eval()
    model, _ = from_torch(module)
    assert model.dropout == 0.25
    assert to_torch(model, from_torch(module)[1], batch_first=False).dropout == 0.25


@needs_torch
@pytest.mark.parametrize(
    "call, error, message",
    [
        (
            lambda: from_torch(torch.nn.Linear(2, 3)),
            TypeError,
            "torch.nn.RNN, torch.nn.LSTM",
        ),
        (
            lambda: from_torch(torch.nn.LSTM(2, 4, proj_size=2)),
            ValueError,
            "proj_size=2",
        ),
        (
            lambda: from_torch(torch.nn.GRU(2, 3, num_layers=2, dropout=0.5)),
            ValueError,
            "call module.eval\\(\\) first",
        ),
        (
            lambda: to_torch(*_built("lstm", 1, head="many_to_many")),
            ValueError,
            "no readout, and this model has head='many_to_many'",
        ),
        (
            lambda: to_torch(*_built("gru", None, reset_after=False)),
            ValueError,
            "reset_after=False",
        ),
        (lambda: to_torch(*_built("feedforward", None)), ValueError, "Feedforward"),
        (
            lambda: to_torch(*_built("elman", None, activation="sigmoid")),
            ValueError,
            "tanh or relu, not 'sigmoid'",
        ),
        (lambda: to_torch(*_mixed()), ValueError, "all one kind and size"),
        (lambda: to_torch(*_mixed_grus()), ValueError, "all one kind and size"),
        (
            lambda: to_torch(*_bidirectional_as_tuple()),
            TypeError,
            r"`params.layers\[0\]` of a bidirectional model must be Bidirectional",
        ),
        (lambda: _float64_without_x64(), ValueError, "jax_enable_x64"),
        (
            lambda: to_torch(*_built("lstm", None, nonzero=True), bias=False),
            ValueError,
            "bias=False makes a module without biases, but this model's bias_l0",
        ),
        (
            lambda: to_torch(_built("gru", None)[0], _built("lstm", None)[1]),
            TypeError,
            "must be GRUParams",
        ),
        (
            lambda: to_torch(*_two_dtypes()),
            TypeError,
            r"share one dtype, got \['float32', 'float64'\]",
        ),
    ],
)
def test_what_torch_cannot_hold_is_refused(call, error, message):
    with pytest.raises(error, match=message):
        call()


def _built(kind, output_size, dtype=jnp.float32, head=None, nonzero=False, **options):
    model = rnnbptt.SequenceModel.build(kind, 2, [3], output_size, head=head, **options)
    params = model.init(jax.random.key(0), dtype)
    return model, jax.tree.map(lambda a: a + 1, params) if nonzero else params


def _two_dtypes():
    model = rnnbptt.SequenceModel.build("gru", 2, [3, 3], None, head=None)
    params = model.init(jax.random.key(0), jnp.float32)
    wide = jax.tree.map(lambda a: a.astype(jnp.float64), params.layers[1])
    return model, params._replace(layers=(params.layers[0], wide))


def _mixed_grus():
    cells = (rnnbptt.GRU(2, 3), rnnbptt.GRU(3, 3, reset_after=False))
    model = rnnbptt.SequenceModel(cells, None, head=None)
    return model, model.init(jax.random.key(0), jnp.float32)


def _bidirectional_as_tuple():
    model = rnnbptt.SequenceModel.build(
        "gru", 2, [3], None, head=None, bidirectional=True
    )
    params = model.init(jax.random.key(0), jnp.float32)
    return model, params._replace(layers=(tuple(params.layers[0]),))


def _float64_without_x64():
    module = torch.nn.GRU(2, 3).double()
    with jax.enable_x64(False):
        return from_torch(module)


def _mixed():
    cells = (rnnbptt.LSTM(2, 3), rnnbptt.GRU(3, 3))
    model = rnnbptt.SequenceModel(cells, None, head=None)
    return model, model.init(jax.random.key(0), jnp.float32)


@needs_torch
def test_the_readme_example_runs_and_matches_torch():
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    (code,) = [
        b
        for b in re.findall(r"```python\n(.*?)```", readme, flags=re.S)
        if "interop.from_torch" in b
    ]
    names = {}
    exec(compile(code, "README.md", "exec"), names)
    want = names["lstm"](names["xs"])[0].detach().numpy()
    np.testing.assert_allclose(names["hs"], want, rtol=0, atol=1e-6)
    assert type(names["back"]) is torch.nn.LSTM
    for name, tensor in names["back"].named_parameters():
        if "weight" in name:
            original = dict(names["lstm"].named_parameters())[name]
            np.testing.assert_array_equal(tensor.detach(), original.detach())


# --- Keras ----------------------------------------------------------------------


def _sigmoid(z):
    return 1 / (1 + np.exp(-z))


def _keras_loop(kind, weights, xs, activation="tanh", reset_after=True):
    """Keras 3's cell equations as written in its source (keras/src/layers/rnn),
    over Keras' own weight layout (the GRU's blocks z, r, h), in NumPy."""
    W, U, b = weights
    H = U.shape[0]
    h = np.zeros((xs.shape[0], H))
    c = np.zeros_like(h)
    act = {"tanh": np.tanh, "relu": lambda z: np.maximum(z, 0), "linear": lambda z: z}[
        activation
    ]
    outputs = []
    for t in range(xs.shape[1]):
        x = xs[:, t]
        if kind == "SimpleRNN":
            h = act(x @ W + h @ U + b)
        elif kind == "LSTM":
            z = x @ W + h @ U + b
            i, f = _sigmoid(z[:, :H]), _sigmoid(z[:, H : 2 * H])
            c = f * c + i * np.tanh(z[:, 2 * H : 3 * H])
            h = _sigmoid(z[:, 3 * H :]) * np.tanh(c)
        else:
            b_in, b_rec = (b[0], b[1]) if reset_after else (b, np.zeros_like(b))
            x_z, x_r, x_h = np.split(x @ W + b_in, 3, axis=1)
            inner = h @ U + b_rec
            z = _sigmoid(x_z + inner[:, :H])
            r = _sigmoid(x_r + inner[:, H : 2 * H])
            if reset_after:
                hh = np.tanh(x_h + r * inner[:, 2 * H :])
            else:
                hh = np.tanh(x_h + (r * h) @ U[:, 2 * H :])
            h = z * h + (1 - z) * hh
        outputs.append(h)
    return np.stack(outputs, 1)


KERAS_CELLS = {
    "simple-tanh": ("SimpleRNN", rnnbptt.Elman(D, H), {}),
    "simple-relu": ("SimpleRNN", rnnbptt.Elman(D, H, "relu"), {"activation": "relu"}),
    "simple-identity": (
        "SimpleRNN",
        rnnbptt.Elman(D, H, "identity"),
        {"activation": "linear"},
    ),
    "lstm": ("LSTM", rnnbptt.LSTM(D, H), {}),
    "gru": ("GRU", rnnbptt.GRU(D, H), {}),
    "gru-reset-before": (
        "GRU",
        rnnbptt.GRU(D, H, reset_after=False),
        {"reset_after": False},
    ),
}


def _keras_weights(cell, seed=0):
    rng = np.random.default_rng(seed)
    GH = cell.gates * H
    bias = (2, GH) if isinstance(cell, rnnbptt.GRU) and cell.reset_after else (GH,)
    return [0.4 * rng.standard_normal(s) for s in [(D, GH), (H, GH), bias]]


@pytest.mark.parametrize("name", list(KERAS_CELLS))
def test_keras_weights_compute_what_keras_computes(name):
    kind, cell, options = KERAS_CELLS[name]
    weights = _keras_weights(cell)
    xs = np.random.default_rng(1).standard_normal((B, T, D))
    params = rnnbptt.interop.from_keras_weights(cell, weights)
    _, hs = rnnbptt.unroll(cell, params, jnp.asarray(xs))
    np.testing.assert_allclose(
        hs, _keras_loop(kind, weights, xs, **options), atol=1e-13
    )
    back = rnnbptt.interop.to_keras_weights(cell, params)  # bitwise
    jax.tree.map(np.testing.assert_array_equal, back, weights)


def test_keras_weights_fill_both_biases_of_a_two_bias_cell():
    one, two = rnnbptt.LSTM(D, H), rnnbptt.LSTM(D, H, two_biases=True)
    weights = _keras_weights(one)
    params = rnnbptt.interop.from_keras_weights(two, weights)
    assert isinstance(params, rnnbptt.TwoBiasParams)
    np.testing.assert_array_equal(params.b_ih, weights[2])
    np.testing.assert_array_equal(params.b_hh, np.zeros(4 * H))
    back = rnnbptt.interop.to_keras_weights(two, params)  # b_ih + 0: bitwise
    jax.tree.map(np.testing.assert_array_equal, back, weights)


def test_keras_weights_of_the_wrong_shape_or_cell_are_refused():
    gru = rnnbptt.GRU(D, H)
    weights = _keras_weights(rnnbptt.GRU(D, H, reset_after=False))  # bias [3H]
    with pytest.raises(ValueError, match=r"\[\(4, 15\), \(5, 15\), \(2, 15\)\].*got"):
        rnnbptt.interop.from_keras_weights(gru, weights)
    with pytest.raises(ValueError, match="got shapes \\[\\(4, 15\\)\\]"):
        rnnbptt.interop.from_keras_weights(gru, weights[:1])
    with pytest.raises(TypeError, match="must be GRUParams"):
        rnnbptt.interop.to_keras_weights(
            gru, rnnbptt.LSTM(D, H).init(jax.random.key(0))
        )
    with pytest.raises(TypeError, match="an Elman, LSTM or GRU, got Feedforward"):
        rnnbptt.interop.from_keras_weights(rnnbptt.Feedforward(D, H), weights)
    no_bias = rnnbptt.interop.from_keras_weights(
        rnnbptt.LSTM(D, H), _keras_weights(rnnbptt.LSTM(D, H))[:2]
    )
    np.testing.assert_array_equal(no_bias.b, np.zeros(4 * H))


@pytest.mark.parametrize("name", list(KERAS_CELLS))
def test_keras_layers_in_and_out(name):
    keras = pytest.importorskip("keras")
    kind, cell, options = KERAS_CELLS[name]
    layer = getattr(keras.layers, kind)(H, return_sequences=True, **options)
    xs = np.random.default_rng(2).standard_normal((B, T, D)).astype(np.float32)
    layer.build((None, None, D))
    layer.set_weights([w.astype(np.float32) for w in _keras_weights(cell, 3)])
    want = np.asarray(layer(xs))
    model, params = rnnbptt.interop.from_keras(layer)
    np.testing.assert_allclose(model.apply(params, xs), want, rtol=0, atol=1e-6)
    back = rnnbptt.interop.to_keras(model, params)
    jax.tree.map(np.testing.assert_array_equal, back.get_weights(), layer.get_weights())


def test_keras_layers_keep_the_dtype_and_use_bias():
    keras = pytest.importorskip("keras")
    model = rnnbptt.SequenceModel.build("gru", D, [H], None, head=None)
    params = model.init(jax.random.key(0), jnp.float64)
    layer = rnnbptt.interop.to_keras(model, params)
    assert {w.dtype for w in layer.get_weights()} == {np.dtype(np.float64)}
    again = rnnbptt.interop.from_keras(layer)[1]
    jax.tree.map(np.testing.assert_array_equal, again, params)
    bare = rnnbptt.interop.to_keras(model, params, use_bias=False)  # zero biases
    assert len(bare.get_weights()) == 2 and not bare.get_config()["use_bias"]
    params = jax.tree.map(lambda a: a + 1, params)
    with pytest.raises(ValueError, match="use_bias=False makes a layer without"):
        rnnbptt.interop.to_keras(model, params, use_bias=False)
    dropping = keras.layers.GRU(H, recurrent_dropout=0.1)
    dropping.build((None, None, D))
    with pytest.raises(ValueError, match=r"recurrent_dropout=0\.1"):
        rnnbptt.interop.from_keras(dropping)
