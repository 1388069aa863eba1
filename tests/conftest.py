"""Shared fixtures. Gradient identities are checked in float64, so x64 is on for
the whole suite; float32 tests ask for float32 explicitly."""

import contextlib
import functools
import io
import json

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

import rnnbptt
from rnnbptt import cli

jax.config.update("jax_enable_x64", True)

# The order in which xdist hands the modules to the workers (pyproject.toml:
# --dist loadscope --no-loadscope-reorder): the slowest first, so that no long
# module starts last and keeps one worker busy alone at the end. From the
# per-module times of a run on 2 cores (--durations); modules not named here
# follow in file order.
SLOWEST_FIRST = (
    "test_bptt.py",
    "test_train.py",
    "test_models.py",
    "test_cli.py",
    "test_parallel.py",
    "test_recompute_every.py",
    "test_distributed.py",
    "test_fit.py",
    "test_settle.py",
    "test_experiment_recurrent_backprop.py",
    "test_forecast_forecaster.py",
    "test_forecast_command.py",
    "test_experiment_gradients.py",
    "test_fit_config.py",
    "test_readme.py",
    "test_gradcheck.py",
    "test_experiment_benchmark.py",
    "test_unroll.py",
    "test_wheel.py",
    "test_experiment_vanishing.py",
    "test_experiment_autocorrect.py",
    "test_experiment_ocr.py",
    "test_experiment_scaling.py",
    "test_experiment_memory.py",
    "test_experiment_m4.py",
    "test_experiment_forecast.py",
    "test_draws.py",
    "test_docs.py",
    "test_cells.py",
    "test_runs.py",
    "test_experiment_throughput.py",
    "test_losses.py",
    "test_checkpoint.py",
)


def pytest_collection_modifyitems(items):
    """Sorts the tests by module, the modules in SLOWEST_FIRST's order (a stable
    sort: the order within a module stays)."""
    rank = {name: i for i, name in enumerate(SLOWEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


CELLS = {
    "elman-tanh": rnnbptt.Elman(3, 4),
    "elman-relu": rnnbptt.Elman(3, 4, activation="relu"),
    "lstm": rnnbptt.LSTM(3, 4),
    "gru": rnnbptt.GRU(3, 4),
    "gru-reset-before": rnnbptt.GRU(3, 4, reset_after=False),
    "feedforward": rnnbptt.Feedforward(3, 4),
}
RECURRENT = ["elman-tanh", "elman-relu", "lstm", "gru", "gru-reset-before"]


def right_padded_mask(lengths, steps):
    """[B, T] bool, True for the first lengths[b] steps of row b."""
    return np.arange(steps)[None, :] < np.asarray(lengths)[:, None]


def normal(rng, shape, dtype, scale=1.0):
    """``scale`` times standard normal draws from the NumPy generator ``rng``, as
    a JAX array of ``dtype`` (jax.random would compile a sampler per shape, and
    jnp.asarray a conversion per shape: device_put copies)."""
    return jax.device_put((scale * rng.standard_normal(shape)).astype(dtype))


def draw_params(rng, owner, dtype=None):
    """Parameters with the structure, shapes and dtype of ``owner.init(key,
    dtype)`` (a cell or a model), drawn from the NumPy generator ``rng``:
    weights uniform in +-1/sqrt(fan-in), biases normal (scale 0.3), so no
    gradient is trivially zero.

    jax.random and ``init`` compile a sampler (and a QR) for every new shape,
    about a second per model, which was a large part of the suite's time;
    ``init`` itself is tested in test_cells.py and test_models.py."""

    def draw(leaf):
        if leaf.ndim == 1:  # a bias
            return normal(rng, leaf.shape, leaf.dtype, 0.3)
        bound = 1 / np.sqrt(leaf.shape[0])
        return jax.device_put(rng.uniform(-bound, bound, leaf.shape).astype(leaf.dtype))

    shapes = jax.eval_shape(lambda key: owner.init(key, dtype), jax.random.key(0))
    return jax.tree.map(draw, shapes)


def init_params(model, seed):
    """``draw_params`` of ``model`` (float64) from seed ``seed``."""
    return draw_params(np.random.default_rng(seed), model, jnp.float64)


def make_problem(cell, seed=0, batch=3, steps=6, dtype=jnp.float64):
    """(params, xs, carry0) drawn from ``seed`` in NumPy: ``draw_params`` of
    ``cell``, normal inputs and a non-zero initial carry."""
    rng = np.random.default_rng(seed)
    params = draw_params(rng, cell, dtype)
    xs = normal(rng, (batch, steps, cell.input_size), dtype)
    carry_shapes = jax.eval_shape(lambda: cell.initial_carry(batch, dtype))
    carry = jax.tree.map(lambda leaf: normal(rng, leaf.shape, dtype, 0.5), carry_shapes)
    return params, xs, carry


def value_and_grads(cell, params, xs, carry0, mask, backward, every):
    """A random linear probe of every output and every part of the final carry
    of ``unroll``, and its gradient with respect to (params, xs, carry0), by
    engine ``backward`` with ``recompute_every=every``. The probes are drawn in
    NumPy (the final carry has carry0's shapes), the same for every call of the
    same shapes; a JAX draw would compile a sampler per shape, and the whole
    gradient is one compiled program per cell, engine, chunk length and shapes."""
    rng = np.random.default_rng(1)
    probe = normal(rng, (*xs.shape[:2], cell.hidden_size), xs.dtype)
    carry_probe = [normal(rng, c.shape, c.dtype) for c in jax.tree.leaves(carry0)]
    return _value_and_grads(
        cell, backward, every, params, xs, carry0, mask, probe, carry_probe
    )


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _value_and_grads(cell, backward, every, params, xs, carry0, mask, *probes):
    def loss(params, xs, carry0):
        final, hs = rnnbptt.unroll(
            cell,
            params,
            xs,
            carry0,
            mask=mask,
            backward=backward,
            recompute_every=every,
        )
        probe, carry_probe = probes
        total = jnp.sum(probe * hs)
        for p, c in zip(carry_probe, jax.tree.leaves(final), strict=True):
            total = total + jnp.sum(p * c)
        return total

    return jax.value_and_grad(loss, argnums=(0, 1, 2))(params, xs, carry0)


def max_rel(a, b):
    """max|a - b| / max|b| over all leaves of two pytrees (0 when both are 0)."""
    worst = 0.0
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
        assert x.shape == y.shape
        scale = np.max(np.abs(y), initial=0.0)
        err = np.max(np.abs(x - y), initial=0.0)
        worst = max(worst, err / scale if scale > 0 else (0.0 if err == 0 else np.inf))
    return worst


# The generic fixtures run one GRU convention; the oracle tests (the NumPy loop,
# finite differences, the gradient table, the property tests) run both.
ONE_GRU = [name for name in CELLS if name != "gru-reset-before"]


@pytest.fixture(params=list(CELLS))
def any_cell(request):
    return CELLS[request.param]


@pytest.fixture(params=ONE_GRU)
def cell(request):
    return CELLS[request.param]


@pytest.fixture(params=[name for name in RECURRENT if name in ONE_GRU])
def recurrent_cell(request):
    return CELLS[request.param]


def quick_experiment(tmp_path_factory, name, command=None):
    """(exit code, printed output, results folder) of one ``--quick`` run of the
    experiment ``name`` through the CLI (``command`` replaces ``experiment NAME``)."""
    out = tmp_path_factory.mktemp("runs")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = cli.main(
            [*(command or ["experiment", name]), "--quick", "--out", str(out)]
        )
    return code, printed.getvalue(), out / name


@pytest.fixture(scope="module")
def metrics(quick_run):
    """metrics.csv of the module's ``quick_run``."""
    return pd.read_csv(quick_run[2] / "metrics.csv")


@pytest.fixture(scope="module")
def summary(quick_run):
    """summary.json of the module's ``quick_run``."""
    return json.loads((quick_run[2] / "summary.json").read_text())
