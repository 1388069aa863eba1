"""rnnbptt.interop: torch.nn.RNN, LSTM and GRU weights in and out, exactly."""

import functools

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
    # rnnbptt's gradients in torch's layout: the weights' and the input biases'
    # directly; a cell with one bias b = bias_ih + bias_hh has d bias_hh = d b
    mapped = dict(to_torch(model, grads).named_parameters())
    for tensor_name, want_grad in torch_grads.items():
        source = tensor_name
        if "bias_hh" in tensor_name and "GRU" not in type(module).__name__:
            source = tensor_name.replace("bias_hh", "bias_ih")
        got_grad = mapped[source].detach().numpy()
        scale = np.max(np.abs(want_grad))
        assert np.max(np.abs(got_grad - want_grad)) <= 1e-5 * max(scale, 1), tensor_name


@needs_torch
@pytest.mark.parametrize("name", list(MODULES))
def test_round_trips_are_bitwise(name):
    module = _module(name, seed=1).double()
    if "GRU" not in type(module).__name__:  # one bias: bias_hh comes back as zero
        with torch.no_grad():
            for tensor_name, p in module.named_parameters():
                if "bias_hh" in tensor_name:
                    p.zero_()
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
    for kind in ("elman", "lstm", "gru"):
        model = rnnbptt.SequenceModel.build(kind, D, [H, H], None, head=None)
        params = model.init(jax.random.key(0), jnp.float32)
        params = jax.tree.map(lambda a: a + 0.25, params)  # non-zero biases
        again = from_torch(to_torch(model, params))
        assert again[0] == model
        jax.tree.map(np.testing.assert_array_equal, again[1], params)


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
            lambda: to_torch(*_built("gru", None, dtype=jnp.bfloat16)),
            TypeError,
            "float32 or float64",
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


def _mixed():
    cells = (rnnbptt.LSTM(2, 3), rnnbptt.GRU(3, 3))
    model = rnnbptt.SequenceModel(cells, None, head=None)
    return model, model.init(jax.random.key(0), jnp.float32)
