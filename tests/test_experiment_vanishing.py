"""experiments/vanishing.py: gradient norms against distance, per spectral radius."""

import importlib
import json

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

import rnnbptt
from rnnbptt import cli

NAME = "vanishing"
BPTT_TOL = 1e-10  # delta gradients vs the hand-written BPTT, float64


@pytest.fixture(scope="module")
def vanishing():
    return importlib.import_module(f"rnnbptt.experiments.{NAME}")


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    code = cli.main(["experiment", NAME, "--quick", "--out", str(out)])
    return code, out / NAME


def test_quick_run_writes_its_files(quick_run):
    code, folder = quick_run
    assert code == 0
    for name in [
        "config.json",
        "metrics.csv",
        "summary.json",
        "heatmap.png",
        "grad_norm_vs_distance.png",
    ]:
        assert (folder / name).is_file(), name
    metrics = pd.read_csv(folder / "metrics.csv")
    assert list(metrics.columns) == ["cell", "radius", "distance", "grad_norm"]
    assert set(metrics["cell"]) == {"elman-tanh", "elman-relu", "lstm", "gru"}
    assert np.isfinite(metrics["grad_norm"]).all() and (metrics["grad_norm"] > 0).all()
    # the probe has unit norm, so at distance 0 the gradient is the probe itself
    at_loss = metrics.loc[metrics["distance"] == 0, "grad_norm"]
    np.testing.assert_allclose(at_loss, 1.0, rtol=1e-12)


def test_quick_run_shows_vanishing_and_exploding(quick_run):
    _, folder = quick_run
    summary = json.loads((folder / "summary.json").read_text())
    table = pd.DataFrame(summary["results"]).set_index(["cell", "radius"])
    tanh = table.loc["elman-tanh"].sort_index()
    relu = table.loc["elman-relu"].sort_index()
    assert np.all(np.diff(tanh["growth_factor"]) > 0)
    assert tanh.loc[0.5, "regime"] == "vanishes" and tanh.loc[0.5, "ratio"] < 1e-3
    assert relu.iloc[-1]["regime"] == "explodes" and relu.iloc[-1]["ratio"] > 1e3
    # the forget gate keeps the LSTM's error signal alive far longer
    assert (
        table.loc[("lstm", 0.5), "growth_factor"] > 1.5 * tanh.loc[0.5, "growth_factor"]
    )
    # the growth factor is the geometric mean of the per-step ratios
    steps = summary["steps"] - 1
    np.testing.assert_allclose(
        table["growth_factor"] ** steps, table["ratio"], rtol=1e-8
    )
    assert (table["bptt_rel_diff"] < BPTT_TOL).all()


def test_clipping_caps_explosion_but_keeps_vanished_parts(quick_run):
    _, folder = quick_run
    summary = json.loads((folder / "summary.json").read_text())
    table = pd.DataFrame(summary["results"])
    clip = summary["clip_norm"]
    assert (table["param_grad_norm_clipped"] <= clip * (1 + 1e-12)).all()
    small = table["param_grad_norm"] <= clip
    assert np.allclose(
        table.loc[small, "param_grad_norm_clipped"], table.loc[small, "param_grad_norm"]
    )
    # clipping scales every contribution alike: the distant share is unchanged
    np.testing.assert_allclose(
        table["far_grad_norm_clipped"] / table["param_grad_norm_clipped"],
        table["far_grad_norm"] / table["param_grad_norm"],
        rtol=1e-10,
    )
    explode = table[table["regime"] == "explodes"]
    assert len(explode) and (explode["param_grad_norm"] > 1e3 * clip).all()
    tanh_small = table[(table["cell"] == "elman-tanh") & (table["radius"] == 0.5)]
    assert (tanh_small["far_grad_norm_clipped"] < 1e-6).all()


@pytest.mark.parametrize("kind", ["elman-tanh", "elman-relu", "lstm", "gru"])
def test_delta_gradients_match_hand_written_bptt(vanishing, kind):
    """dL/dh_t from the zero perturbations equals rnnbptt.bptt's d_carry0 run from
    h_t (float64): at the initial state h_{-1} and in the middle of the sequence."""
    B, T, D, H, t = 3, 9, 2, 5, 4
    cell = vanishing.make_cells(D, H)[kind]
    k_p, k_x, k_c, k_v = jax.random.split(jax.random.key(1), 4)
    params = vanishing.scale_spectral_radius(cell, cell.init(k_p, jnp.float64), 1.25)
    xs = jax.random.normal(k_x, (B, T, D), jnp.float64)
    carry0 = jax.tree.map(
        lambda z: 0.5 * jax.random.normal(k_c, z.shape, z.dtype),
        cell.initial_carry(B, jnp.float64),
    )
    probe = jax.random.normal(k_v, (H,), jnp.float64)

    def bptt_dh(xs, carry):
        """dL/dh of ``carry``, the state before ``xs``, by the hand-written BPTT."""
        d_out = jnp.zeros((*xs.shape[:2], H), xs.dtype).at[:, -1].set(probe)
        _, _, d_carry = rnnbptt.bptt(cell, params, xs, carry, d_out)
        return d_carry.h if isinstance(cell, rnnbptt.LSTM) else d_carry

    @jax.jit  # one compilation instead of four
    def both():
        d_h0, d_hs = vanishing.hidden_gradients(cell, params, xs, carry0, probe)
        carry_t, _ = rnnbptt.unroll(cell, params, xs[:, : t + 1], carry0)
        return d_h0, d_hs, bptt_dh(xs, carry0), bptt_dh(xs[:, t + 1 :], carry_t)

    d_h0, d_hs, bptt_h0, bptt_ht = both()
    np.testing.assert_array_equal(d_hs[-1], jnp.broadcast_to(probe, (B, H)))
    for delta, bptt in [(d_h0, bptt_h0), (d_hs[t], bptt_ht)]:
        scale = float(jnp.max(jnp.abs(bptt)))
        assert scale > 0
        assert float(jnp.max(jnp.abs(delta - bptt))) < BPTT_TOL * scale


def test_spectral_radius_of_every_gate_block(vanishing):
    """A random (not orthogonal) w_hh: each of the LSTM's four blocks is rescaled."""
    cell = rnnbptt.LSTM(2, 6)
    rng = np.random.default_rng(0)
    params = rnnbptt.LSTMParams(
        w_ih=rng.normal(size=(2, 24)), w_hh=rng.normal(size=(6, 24)), b=np.zeros(24)
    )
    w_hh = np.asarray(vanishing.scale_spectral_radius(cell, params, 1.7).w_hh)
    for k in range(4):
        block = w_hh[:, 6 * k : 6 * (k + 1)]
        assert np.max(np.abs(np.linalg.eigvals(block))) == pytest.approx(1.7, 1e-12)
        # a rescaling, not a new matrix
        ratio = block / params.w_hh[:, 6 * k : 6 * (k + 1)]
        np.testing.assert_allclose(ratio, ratio[0, 0], rtol=1e-12)


def test_bad_radius_is_a_one_line_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["experiment", NAME, "--radii", "0", "--out", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "--radii must all be > 0" in capsys.readouterr().err
