"""Independent oracles: the cell equations as plain NumPy loops over time, float64.

Written from the textbook equations, sharing no code with rnnbptt.
"""

import numpy as np

import rnnbptt


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


_ACT = {
    "tanh": np.tanh,
    "relu": lambda z: np.maximum(z, 0.0),
    "sigmoid": _sigmoid,
    "identity": lambda z: z,
}


def _gru_step(reset_after, p, x, h, H):
    """Cho et al. 2014 (reset_after=False) or PyTorch's GRU (True), blocks r, z, n."""
    w_ir, w_iz, w_in = p["w_ih"][:, :H], p["w_ih"][:, H : 2 * H], p["w_ih"][:, 2 * H :]
    w_hr, w_hz, w_hn = p["w_hh"][:, :H], p["w_hh"][:, H : 2 * H], p["w_hh"][:, 2 * H :]
    b_ir, b_iz, b_in = p["b_ih"][:H], p["b_ih"][H : 2 * H], p["b_ih"][2 * H :]
    b_hr, b_hz, b_hn = p["b_hh"][:H], p["b_hh"][H : 2 * H], p["b_hh"][2 * H :]
    r = _sigmoid(x @ w_ir + b_ir + h @ w_hr + b_hr)
    z = _sigmoid(x @ w_iz + b_iz + h @ w_hz + b_hz)
    if reset_after:
        n = np.tanh(x @ w_in + b_in + r * (h @ w_hn + b_hn))
    else:
        n = np.tanh(x @ w_in + b_in + (r * h) @ w_hn + b_hn)
    return (1 - z) * n + z * h


def loop(cell, params, xs, carry0, mask=None):
    """Returns (final carry as a tuple of arrays, hs [B, T, H]) by a Python loop."""
    p = {k: np.asarray(v, np.float64) for k, v in params._asdict().items()}
    if "b_hh" in p and not isinstance(cell, rnnbptt.GRU):  # two_biases: summed
        p["b"] = p["b_ih"] + p["b_hh"]
    xs = np.asarray(xs, np.float64)
    B, T, _ = xs.shape
    H = cell.hidden_size
    mask = np.ones((B, T), bool) if mask is None else np.asarray(mask)
    if isinstance(cell, rnnbptt.LSTM):
        h, c = (np.asarray(a, np.float64).copy() for a in carry0)
    elif cell.recurrent:
        h, c = np.asarray(carry0, np.float64).copy(), None
    hs = np.zeros((B, T, H))
    for t in range(T):
        for b in range(B):
            if not mask[b, t]:
                continue  # a padded step: carry unchanged, output zero
            x = xs[b, t]
            if isinstance(cell, rnnbptt.GRU):
                h[b] = _gru_step(cell.reset_after, p, x, h[b], H)
                hs[b, t] = h[b]
            elif isinstance(cell, rnnbptt.LSTM):
                z = x @ p["w_ih"] + h[b] @ p["w_hh"] + p["b"]
                i, f = _sigmoid(z[:H]), _sigmoid(z[H : 2 * H])
                g, o = np.tanh(z[2 * H : 3 * H]), _sigmoid(z[3 * H :])
                c[b] = f * c[b] + i * g
                h[b] = o * np.tanh(c[b])
                hs[b, t] = h[b]
            elif cell.recurrent:
                h[b] = _ACT[cell.activation](x @ p["w_ih"] + h[b] @ p["w_hh"] + p["b"])
                hs[b, t] = h[b]
            else:
                hs[b, t] = _ACT[cell.activation](x @ p["w_ih"] + p["b"])
    if isinstance(cell, rnnbptt.LSTM):
        return (h, c), hs
    return ((h,) if cell.recurrent else ()), hs
