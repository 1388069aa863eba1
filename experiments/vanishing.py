"""Vanishing and exploding gradients: dL/dh_t against the distance from the loss.

For Elman (tanh), Elman (relu) and the LSTM, every [H, H] gate block of an
initialised (orthogonal) ``w_hh`` is rescaled to a spectral radius rho (largest
absolute eigenvalue, computed with numpy on the host). On random sequences (inputs
N(0, 1), biases 0, the LSTM forget bias kept at its default 1.0) the loss is a
random unit-norm linear probe of the LAST output only, L_b = v . h_{T-1}, so the
gradient norm is exactly 1 at distance 0 and ||dL/dh_t|| for t = T-1-k shows how
much of the error signal survives k steps back. dL/dh_t for every t comes from one
``jax.grad``: the recurrence is a ``jax.lax.scan`` over ``cell.step`` with an
additive zero perturbation delta_t on each h_t, and dL/ddelta_t = dL/dh_t. Every
run checks this against the library's hand-written BPTT: dL/dh_{-1} equals the
``d_carry0`` returned by ``rnnbptt.bptt`` (``bptt_rel_diff`` in summary.json).

Gradient clipping by global norm (``--clip-norm``, default 1.0) is applied to the
gradient of the batch-mean loss w.r.t. the parameters (computed by
``rnnbptt.unroll`` with ``--backward``). The table shows that norm before and after
clipping, and the part of it that comes from the distant half of the sequence
(distance >= T/2, ``far_grad_norm``): clipping caps an exploding gradient, but it
rescales every contribution by the same factor, so a vanished distant contribution
stays vanished.

The run is in float64 by default (scoped with ``jax.enable_x64``; ``--dtype
float32`` is available): gradient norms here span ~1e-50 to ~1e15, and float32
flushes everything below ~1e-38 to zero.

Command:  rnnbptt experiment vanishing         (or: python experiments/vanishing.py)
Expected (found, full run, seed 0; growth = per-step factor, ratio over 99 steps):
          Elman-tanh vanishes for every rho <= 1.5 (growth 0.34 at rho 0.5, 0.64
          at 1.0, 0.87 at 1.5: the input drive keeps tanh partly saturated, so
          even rho 1.5 contracts) and at rho 2.0 grows only slowly (1.05, ratio
          1.2e2). Saturation damps the growth but does not bound it: ``--radii 3 4
          8`` gives 1.30, 1.48, 1.96 against relu's 1.95, 2.60, 5.21. Elman-relu
          vanishes for rho <= 1.25 (0.67 at 1.0: about half the units are off, so
          the critical radius is near sqrt(2), not 1), is neutral at 1.5 (0.98)
          and explodes at 2.0 (1.30, ratio 1.4e11). The LSTM (forget bias 1.0)
          decays much more slowly: 0.75 at rho 0.5 (ratio 2.5e-13 against the tanh
          Elman's 2e-47), 0.93 at rho 2.0. Clipping to 1.0 takes the exploding
          relu gradient from 1.3e12 to 1 (its distant part from 7e11 to 0.56) but
          leaves the distant part of the tanh rho-0.5 gradient at 2e-24. The
          delta gradients agree with ``rnnbptt.bptt`` to 4e-13 (relative).
          About 7 seconds on 2 quiet CPU cores (30 s on busy ones), nearly all of
          it compilation.
Quick:    --quick uses T = 50, H = 32 (seconds), for the tests.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

import rnnbptt
from rnnbptt import draws
from rnnbptt.experiment import positive_int_option

RADII = [0.5, 0.8, 0.9, 1.0, 1.1, 1.25, 1.5, 2.0]
FULL = {"radii": RADII, "batch": 32, "steps": 100, "input": 8, "hidden": 64}
QUICK = {"radii": RADII, "batch": 32, "steps": 50, "input": 8, "hidden": 32}
VANISH, EXPLODE = 1e-3, 1e3  # ratio over the whole distance that names the regime
CLIP_NORM = 1.0


def make_cells(input_size: int, hidden_size: int) -> dict:
    return {
        "elman-tanh": rnnbptt.Elman(input_size, hidden_size, activation="tanh"),
        "elman-relu": rnnbptt.Elman(input_size, hidden_size, activation="relu"),
        "lstm": rnnbptt.LSTM(input_size, hidden_size),
        "gru": rnnbptt.GRU(input_size, hidden_size),
    }


def scale_spectral_radius(cell, params, radius: float):
    """``params`` with every [H, H] block of ``w_hh`` at spectral radius ``radius``.

    Runs on the host with numpy (an eigen-decomposition per block), outside any jit.
    """
    w_hh = np.asarray(params.w_hh)
    H = cell.hidden_size
    blocks = []
    for k in range(cell.gates):
        block = w_hh[:, k * H : (k + 1) * H]
        rho = np.max(np.abs(np.linalg.eigvals(block)))
        blocks.append(block * (radius / rho))
    w_hh = jnp.asarray(np.concatenate(blocks, axis=1), dtype=params.w_hh.dtype)
    return params._replace(w_hh=w_hh)


def _with_h(cell, carry, h):
    """The carry with its hidden state replaced by ``h``."""
    return carry._replace(h=h) if isinstance(cell, rnnbptt.LSTM) else h


def _hidden_state(cell, carry):
    return carry.h if isinstance(cell, rnnbptt.LSTM) else carry


def hidden_gradients(cell, params, xs, carry0, probe):
    """dL/dh for every hidden state, L = sum_b probe . h_{T-1}^b (last output only).

    Each h_t (and the initial h_{-1}) gets an additive zero perturbation delta_t
    that feeds both the output and the next step; dL/ddelta_t at zero is dL/dh_t
    (for the LSTM: with the memory cell c_t held fixed).

    Args:
        cell: an ``Elman``, ``LSTM`` or ``GRU``.
        params: the cell's parameters.
        xs: [B, T, D] inputs.
        carry0: the initial carry.
        probe: [H] the linear read-out of the last output.

    Returns:
        ``(d_h0, d_hs)``: dL/dh_{-1} [B, H] and dL/dh_t for t = 0..T-1 [T, B, H].
    """
    xs_t = jnp.swapaxes(xs, 0, 1)  # [T, B, D]

    def loss(delta0, deltas):
        carry = _with_h(cell, carry0, _hidden_state(cell, carry0) + delta0)

        def step(carry, inputs):
            x, delta = inputs
            carry, h = cell.step(params, carry, x)
            h = h + delta
            return _with_h(cell, carry, h), h

        _, hs = jax.lax.scan(step, carry, (xs_t, deltas))
        return jnp.sum(hs[-1] @ probe)

    h0 = _hidden_state(cell, carry0)
    deltas = jnp.zeros((xs.shape[1], *h0.shape), h0.dtype)
    return jax.grad(loss, argnums=(0, 1))(jnp.zeros_like(h0), deltas)


def far_param_gradient(cell, params, xs, carry0, probe, far_steps: int):
    """The part of d(mean_b probe . h_{T-1}^b)/dparams from the first ``far_steps``
    steps: those at distance >= T - far_steps from the loss."""
    xs_t = jnp.swapaxes(xs, 0, 1)
    is_far = jnp.arange(xs.shape[1]) < far_steps

    def loss(far):
        def step(carry, inputs):
            x, far_t = inputs
            p = jax.tree.map(
                lambda f, n: jnp.where(far_t, f, jax.lax.stop_gradient(n)), far, params
            )
            return cell.step(p, carry, x)

        _, hs = jax.lax.scan(step, carry0, (xs_t, is_far))
        return jnp.mean(hs[-1] @ probe)

    return jax.grad(loss)(params)


def param_gradient(cell, params, xs, carry0, probe, backward: str):
    """d(mean_b probe . h_{T-1}^b)/dparams through ``rnnbptt.unroll``."""

    def loss(params):
        _, hs = rnnbptt.unroll(cell, params, xs, carry0, backward=backward)
        return jnp.mean(hs[:, -1] @ probe)

    return jax.grad(loss)(params)


@functools.partial(jax.jit, static_argnums=(0, 4, 5))
def _gradients(cell, params, xs, probe, backward: str, far_steps: int) -> dict:
    """Everything ``measure`` needs, in one compiled function per cell."""
    carry0 = cell.initial_carry(xs.shape[0], xs.dtype)
    d_h0, d_hs = hidden_gradients(cell, params, xs, carry0, probe)
    # the library's hand-written BPTT, with the cotangent at the last output only
    d_out = jnp.zeros((*xs.shape[:2], cell.hidden_size), xs.dtype).at[:, -1].set(probe)
    _, _, d_carry0 = rnnbptt.bptt(cell, params, xs, carry0, d_out)
    return {
        "d_h0": d_h0,
        "d_hs": d_hs,
        "bptt_d_h0": _hidden_state(cell, d_carry0),
        "params": param_gradient(cell, params, xs, carry0, probe, backward),
        "far": far_param_gradient(cell, params, xs, carry0, probe, far_steps),
    }


def global_norm(tree) -> float:
    return float(np.sqrt(sum(np.sum(np.square(x)) for x in jax.tree.leaves(tree))))


def max_rel_diff(a, b) -> float:
    """max|a - b| / max|b| over all leaves."""
    err = max(float(np.max(np.abs(x - y))) for x, y in zip(a, b, strict=True))
    scale = max(float(np.max(np.abs(y))) for y in b)
    if scale == 0:
        return 0.0 if err == 0 else np.inf
    return err / scale


def growth_factor(norms: np.ndarray) -> float:
    """Geometric mean of the per-step ratios, from distance 0 to the largest
    distance with a non-zero norm (norms [T], indexed by distance)."""
    positive = np.flatnonzero(norms > 0)
    last = positive[-1] if positive.size else 0
    return float((norms[last] / norms[0]) ** (1.0 / last)) if last > 0 else 0.0


def regime(ratio: float) -> str:
    if ratio < VANISH:
        return "vanishes"
    return "explodes" if ratio > EXPLODE else "neither"


def measure(cell, params, xs, probe, clip_norm: float, backward: str) -> dict:
    """Gradient norms per distance, the BPTT consistency check, clipping."""
    B, T, _ = xs.shape
    grads = jax.device_get(_gradients(cell, params, xs, probe, backward, T // 2))
    # per-sequence RMS norm; reversed so that index k is distance k = T-1-t
    norms = np.sqrt(np.sum(np.square(grads["d_hs"]), axis=(1, 2)) / B)[::-1]
    bptt_diff = max_rel_diff([grads["d_h0"]], [grads["bptt_d_h0"]])
    norm, far_norm = global_norm(grads["params"]), global_norm(grads["far"])
    scale = min(1.0, clip_norm / norm) if norm > 0 else 1.0  # clip by global norm
    ratio = float(norms[-1] / norms[0])
    return {
        "norms": norms,
        "summary": {
            "growth_factor": growth_factor(norms),
            "ratio": ratio,
            "regime": regime(ratio),
            "param_grad_norm": norm,
            "param_grad_norm_clipped": scale * norm,
            "far_grad_norm": far_norm,
            "far_grad_norm_clipped": scale * far_norm,
            "bptt_rel_diff": bptt_diff,
        },
    }


def add_arguments(parser) -> None:
    parser.add_argument("--radii", type=float, nargs="+", help="spectral radii")
    parser.add_argument("--steps", type=positive_int_option, help="sequence length T")
    parser.add_argument("--hidden", type=positive_int_option, help="hidden units H")
    parser.add_argument("--clip-norm", type=float, default=CLIP_NORM)
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float64")


def _config(args) -> dict:
    size = dict(QUICK if args.quick else FULL)
    size["radii"] = args.radii or size["radii"]
    size["steps"] = args.steps or size["steps"]
    size["hidden"] = args.hidden or size["hidden"]
    if any(not r > 0 for r in size["radii"]):
        raise ValueError(f"--radii must all be > 0, got {size['radii']}")
    if size["steps"] < 2:
        raise ValueError(f"--steps must be >= 2, got {size['steps']}")
    if not args.clip_norm > 0:
        raise ValueError(f"--clip-norm must be > 0, got {args.clip_norm}")
    return size


def run(args, run) -> pd.DataFrame:
    size = _config(args)
    with jax.enable_x64(args.dtype == "float64"):
        rows, results = _measure_all(args, size)
    table = pd.DataFrame(results)
    metrics = run.metrics(rows)
    run.summary(
        {
            "dtype": args.dtype,
            "steps": size["steps"],
            "hidden": size["hidden"],
            "clip_norm": args.clip_norm,
            "results": results,
        }
    )
    _plot_heatmap(run, metrics)
    _plot_lines(run, metrics)
    return table.drop(columns=["bptt_rel_diff"])


def _measure_all(args, size):
    dtype = jnp.dtype(args.dtype)
    B, T, D, H = size["batch"], size["steps"], size["input"], size["hidden"]
    k_x, k_v, k_p = jax.random.split(jax.random.key(args.seed), 3)
    xs = draws.normal(k_x, (B, T, D), dtype)
    probe = draws.normal(k_v, (H,), dtype)
    probe = probe / jnp.linalg.norm(probe)  # unit norm: dL/dh at distance 0 is 1
    rows, results = [], []
    for name, cell in make_cells(D, H).items():
        base = cell.init(k_p, dtype)
        for radius in sorted(size["radii"]):
            params = scale_spectral_radius(cell, base, radius)
            result = measure(cell, params, xs, probe, args.clip_norm, args.backward)
            rows += [
                {"cell": name, "radius": radius, "distance": k, "grad_norm": float(n)}
                for k, n in enumerate(result["norms"])
            ]
            results.append({"cell": name, "radius": radius, **result["summary"]})
    return rows, results


def _log10(values: np.ndarray) -> np.ndarray:
    """log10, with NaN (drawn blank) where a norm underflowed to zero."""
    with np.errstate(divide="ignore"):
        logs = np.log10(values)
    return np.where(np.isfinite(logs), logs, np.nan)


def _plot_heatmap(run, metrics: pd.DataFrame) -> None:
    plt = rnnbptt.runs.pyplot()
    from matplotlib.colors import TwoSlopeNorm

    cells = list(dict.fromkeys(metrics["cell"]))
    logs = _log10(metrics["grad_norm"].to_numpy())
    low, high = min(np.nanmin(logs), -1.0), max(np.nanmax(logs), 1.0)
    colours = TwoSlopeNorm(vcenter=0.0, vmin=low, vmax=high)
    fig, axes = plt.subplots(1, len(cells), figsize=(5 * len(cells), 3.6), sharey=True)
    for ax, name in zip(np.atleast_1d(axes), cells, strict=True):
        grid = metrics[metrics["cell"] == name].pivot(
            index="radius", columns="distance", values="grad_norm"
        )
        image = ax.imshow(
            _log10(grid.to_numpy()),
            aspect="auto",
            origin="lower",
            cmap="RdBu_r",
            norm=colours,
            interpolation="nearest",
        )
        ax.set_yticks(range(len(grid.index)), [f"{r:g}" for r in grid.index])
        ax.set(title=name, xlabel="distance from the loss, T-1-t")
    np.atleast_1d(axes)[0].set_ylabel("spectral radius of w_hh")
    fig.colorbar(image, ax=axes, label="log10 ||dL/dh_t||")
    run.figure(fig, "heatmap.png")


def _plot_lines(run, metrics: pd.DataFrame) -> None:
    plt = rnnbptt.runs.pyplot()

    cells = list(dict.fromkeys(metrics["cell"]))
    radii = sorted(metrics["radius"].unique())
    colour = plt.get_cmap("viridis")
    fig, axes = plt.subplots(1, len(cells), figsize=(5 * len(cells), 3.6), sharey=True)
    for ax, name in zip(np.atleast_1d(axes), cells, strict=True):
        for i, radius in enumerate(radii):
            part = metrics[(metrics["cell"] == name) & (metrics["radius"] == radius)]
            norms = part["grad_norm"].to_numpy()
            ax.plot(
                part["distance"],
                np.where(norms > 0, norms, np.nan),
                color=colour(i / max(1, len(radii) - 1)),
                label=f"rho={radius:g}",
            )
        ax.axhline(VANISH, color="grey", linestyle=":", linewidth=1)
        ax.axhline(EXPLODE, color="grey", linestyle=":", linewidth=1)
        ax.set(yscale="log", title=name, xlabel="distance from the loss, T-1-t")
    np.atleast_1d(axes)[0].set_ylabel("||dL/dh_t||")
    np.atleast_1d(axes)[-1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1, 1))
    run.figure(fig, "grad_norm_vs_distance.png")


if __name__ == "__main__":
    import sys

    from rnnbptt.experiment import main

    sys.exit(main(sys.modules[__name__]))
