"""Shared fixtures. Gradient identities are checked in float64, so x64 is on for
the whole suite; float32 tests ask for float32 explicitly."""

import contextlib
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

CELLS = {
    "elman-tanh": rnnbptt.Elman(3, 4),
    "elman-relu": rnnbptt.Elman(3, 4, activation="relu"),
    "lstm": rnnbptt.LSTM(3, 4),
    "feedforward": rnnbptt.Feedforward(3, 4),
}
RECURRENT = ["elman-tanh", "elman-relu", "lstm"]


def random_carry(cell, key, batch, dtype):
    """A non-zero initial carry, so gradients into it are not trivially zero."""
    carry = cell.initial_carry(batch, dtype)
    leaves, treedef = jax.tree.flatten(carry)
    return jax.tree.unflatten(
        treedef,
        [
            0.5 * jax.random.normal(jax.random.fold_in(key, i), x.shape, dtype)
            for i, x in enumerate(leaves)
        ],
    )


def right_padded_mask(lengths, steps):
    """[B, T] bool, True for the first lengths[b] steps of row b."""
    return np.arange(steps)[None, :] < np.asarray(lengths)[:, None]


def make_problem(cell, seed=0, batch=3, steps=6, dtype=jnp.float64):
    """(params, xs, carry0) drawn from ``seed``, with non-zero biases."""
    k_p, k_b, k_x, k_c = jax.random.split(jax.random.key(seed), 4)
    params = cell.init(k_p, dtype)
    params = params._replace(
        b=params.b + 0.3 * jax.random.normal(k_b, params.b.shape, dtype)
    )
    xs = jax.random.normal(k_x, (batch, steps, cell.input_size), dtype)
    return params, xs, random_carry(cell, k_c, batch, dtype)


def probe_loss_fn(seed, hs_shape, carry, dtype=jnp.float64):
    """A loss using every output and every part of the final carry."""
    return rnnbptt.gradcheck.probe_loss(jax.random.key(seed), hs_shape, carry)


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


@pytest.fixture(params=list(CELLS))
def cell(request):
    return CELLS[request.param]


@pytest.fixture(params=RECURRENT)
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
