"""The Forecaster: predictions with dates and ordered intervals, backtests, bitwise
save/load in a new process, compile once per shape, covariates, and bad input."""

import dataclasses
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

import rnnbptt
from rnnbptt.checkpoint import CheckpointError, save_checkpoint
from rnnbptt.forecast.forecaster import Forecaster
from rnnbptt.forecast.network import Network

H = 6
SMALL = dict(
    input_size=24,
    hidden_sizes=[8],
    head_size=16,
    epochs=3,
    steps_per_epoch=4,
    batch_size=16,
    n_models=2,
)


def _frame(lengths, seed=0, offset_hours=5, covariate=False):
    rng = np.random.default_rng(seed)
    parts = []
    for i, n in enumerate(lengths):
        t = np.arange(n)
        x = rng.normal(size=n)
        y = 10 * (i + 1) + 2 * np.sin(2 * np.pi * t / 24) + rng.normal(0, 0.3, n)
        if covariate:
            y = y + 3 * x
        ds = pd.date_range("2021-03-01", periods=n, freq="h")
        part = {"unique_id": f"s{i}", "ds": ds + pd.Timedelta(hours=offset_hours * i)}
        part.update(y=y, x=x)
        parts.append(pd.DataFrame(part))
    return pd.concat(parts, ignore_index=True)


@pytest.fixture(scope="module")
def fitted():
    df = _frame([120, 90, 40])
    return df, Forecaster(H, **SMALL).fit(df)


def test_predict_continues_each_series_with_ordered_intervals(fitted):
    df, model = fitted
    out = model.predict()
    assert list(out.columns) == [
        "unique_id", "ds", "forecast", "lo-80", "hi-80", "lo-95", "hi-95"
    ]  # fmt: skip
    for name, group in out.groupby("unique_id"):
        last = df[df.unique_id == name].ds.max()
        expected = pd.date_range(last, periods=H + 1, freq="h")[1:]
        np.testing.assert_array_equal(group.ds.to_numpy(), expected.to_numpy())
    cols = ["lo-95", "lo-80", "forecast", "hi-80", "hi-95"]
    assert (np.diff(out[cols].to_numpy(), axis=1) >= 0).all()
    assert np.isfinite(out[cols].to_numpy()).all()
    assert model.predict(h=2).groupby("unique_id").size().tolist() == [2, 2, 2]


def test_save_and_load_predict_bitwise_in_a_new_process(fitted, tmp_path):
    _, model = fitted
    path, expected = tmp_path / "model.ckpt", tmp_path / "expected.pkl"
    model.save(path)
    model.predict().to_pickle(expected)
    code = (
        "import pandas as pd\n"
        "from rnnbptt.forecast.forecaster import Forecaster\n"
        f"got = Forecaster.load({str(path)!r}).predict()\n"
        f"want = pd.read_pickle({str(expected)!r})\n"
        "assert got.equals(want), (got, want)\n"
        "print('bitwise')\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0 and "bitwise" in run.stdout, run.stderr[-2000:]


def test_same_shapes_compile_nothing_new(fitted):
    _, model = fitted
    other = _frame([120, 90, 40], seed=1)  # other values, the same window shapes
    model.predict()
    with rnnbptt.count_compilations() as counts:
        again = Forecaster(H, **SMALL).fit(other)
        again.predict()
    assert counts.count == 0, counts


def test_cross_validation_cutoffs_and_actuals(fitted):
    df, model = fitted
    cv = model.cross_validation(df, n_windows=2, step_size=3, refit=False)
    assert list(cv.columns[:3]) == ["unique_id", "ds", "cutoff"] and "y" in cv
    assert len(cv) == 2 * 3 * H
    for (name, cutoff), group in cv.groupby(["unique_id", "cutoff"]):
        series = df[df.unique_id == name].set_index("ds").y
        np.testing.assert_array_equal(group.y, series.loc[group.ds].to_numpy())
        assert (group.ds > cutoff).all() and group.ds.min() - cutoff == pd.Timedelta(
            hours=1
        )
    ends = cv.groupby("unique_id").ds.max()
    assert (ends.to_numpy() == df.groupby("unique_id").ds.max().to_numpy()).all()


def test_backtest_forecasts_each_cutoff_as_predict_on_the_history_before_it(fitted):
    df, model = fitted
    bt = model.backtest(df, n_windows=2, step_size=3)
    position = df.groupby("unique_id").cumcount()
    size = df.groupby("unique_id").ds.transform("size")
    for k, after in enumerate((H + 3, H)):
        want = model.predict(df=df[position < size - after])
        got = bt.iloc[k * 3 * H : (k + 1) * 3 * H].reset_index(drop=True)
        pd.testing.assert_frame_equal(got[want.columns], want)
    with pytest.raises(ValueError, match=r"`Forecaster.backtest`: call `fit` first"):
        Forecaster(H, **SMALL).backtest(df)
    with pytest.raises(ValueError, match=r"`Forecaster.backtest`: series \['new'\]"):
        model.backtest(df.replace({"s0": "new"}))
    with pytest.raises(ValueError, match="before the start of every series"):
        model.backtest(df, n_windows=30)  # 6 + 6 * 29 steps back: before all 120


def test_a_longer_validation_span_trains_on_what_precedes_it(fitted):
    df, model = fitted
    held = 2 * H + 3  # val_size: 10 validation windows per series
    one = {**SMALL, "epochs": 1}  # after one epoch the best is the last: no choice
    longer = Forecaster(H, **one, val_size=held).fit(df)
    # the oracle: the default (h held out) on each series without its last held - h
    keep = df.groupby("unique_id").cumcount() < df.groupby("unique_id").ds.transform(
        "size"
    ) - (held - H)
    default = Forecaster(H, **one).fit(df[keep])
    for a, b in zip(
        jax.tree.leaves(longer.fitted.params),
        jax.tree.leaves(default.fitted.params),
        strict=True,
    ):
        np.testing.assert_array_equal(a, b)
    assert longer.fitted.validation_windows == 3 * (held - H + 1)
    assert model.fitted.validation_windows == 3
    with pytest.raises(ValueError, match=r"`val_size` \(5\) must be at least `h`"):
        Forecaster(H, **SMALL, val_size=H - 1)
    with pytest.raises(ValueError, match=r"series 's2' has 40 values.*val_size \+ h"):
        Forecaster(H, **SMALL, val_size=34).fit(df)


def test_future_covariates_move_the_forecast():
    df = _frame([100, 80], covariate=True)
    model = Forecaster(H, **SMALL, futr_exog=["x"]).fit(df)
    future = model.predict(futr_df=_future(model, df, 0.0))
    shifted = model.predict(futr_df=_future(model, df, 2.0))
    assert not np.allclose(future.forecast, shifted.forecast)
    with pytest.raises(ValueError, match="pass `futr_df`"):
        model.predict()
    gap = _future(model, df, 0.0).iloc[1:]
    with pytest.raises(ValueError, match="no row for series 's0'"):
        model.predict(futr_df=gap)
    bad = _future(model, df, 0.0)
    bad.loc[2, "x"] = np.nan
    with pytest.raises(ValueError, match="'x' must be finite; series 's0'"):
        model.predict(futr_df=bad)


def _future(model, df, value):
    rows = []
    for name, group in df.groupby("unique_id"):
        ds = pd.date_range(group.ds.max(), periods=H + 1, freq="h")[1:]
        rows.append(pd.DataFrame({"unique_id": name, "ds": ds, "x": value}))
    return pd.concat(rows, ignore_index=True)


def test_bad_input_is_refused_clearly(fitted, tmp_path):
    df, model = fitted
    with pytest.raises(ValueError, match=r"`h` \(7\) is larger than the horizon"):
        model.predict(h=7)
    with pytest.raises(ValueError, match="series 'short' has 12 values"):
        Forecaster(H, **SMALL).fit(_frame([12]).replace({"s0": "short"}))
    with pytest.raises(ValueError, match=r"series \['new'\]"):
        model.predict(df=df.replace({"s0": "new"}))
    with pytest.raises(ValueError, match="call `fit` first"):
        Forecaster(H, **SMALL).predict()
    with pytest.raises(ValueError, match="`cell` must be one of"):
        Forecaster(H, **SMALL, cell="rnn")
    with pytest.raises(ValueError, match="multiple of `step_size`"):
        Forecaster(H, **{**SMALL, "input_size": 25}, step_size=2)
    other = tmp_path / "other.ckpt"
    save_checkpoint(other, {"w": jnp.zeros(2)}, {"format": "something else"})
    with pytest.raises(CheckpointError, match="not a Forecaster"):
        Forecaster.load(other)


def test_a_failed_save_leaves_the_saved_file(fitted, tmp_path):
    _, model = fitted
    path = tmp_path / "model.ckpt"
    model.save(path)
    before = path.read_bytes()
    bad = Forecaster(H, **SMALL)
    bad.fitted = model.fitted._replace(
        tails=model.fitted.tails._replace(ids=[(1,)] * 3)
    )
    with pytest.raises(TypeError, match="series ids must be strings or integers"):
        bad.save(path)
    assert path.read_bytes() == before


def test_truncation_changes_the_gradient_not_the_forecast():
    net = Network("lstm", 3, 2, (5,), 5, 8, 4, (0.1, 0.5, 0.9))
    cut = net.__class__(**{**net.__dict__, "truncate": 3})
    params = net.init(jax.random.key(0), jnp.float64)
    keys = jax.random.split(jax.random.key(1), 3)
    past = jax.random.normal(keys[0], (4, 8, 3), jnp.float64)
    mask = jnp.ones((4, 8), bool).at[0, :6].set(False)
    future = jax.random.normal(keys[1], (4, 4, 2), jnp.float64)
    targets = jax.random.normal(keys[2], (4, 4), jnp.float64)
    args = (past, mask, future)
    np.testing.assert_allclose(
        jax.jit(cut.quantiles_of)(params, *args),
        jax.jit(net.quantiles_of)(params, *args),
        atol=1e-12,
    )
    full = jax.jit(jax.grad(net.loss))(params, *args, targets)
    part = jax.jit(jax.grad(cut.loss))(params, *args, targets)
    w_full, w_part = full.encoder.layers[0].w_ih, part.encoder.layers[0].w_ih
    assert not np.allclose(w_full, w_part)

    # the truncated gradient is the full one with the early steps' inputs cut
    # off from the loss: recomputed with those inputs under stop_gradient
    def held(p):
        early = jax.lax.stop_gradient(p.encoder)
        model = net.encoder
        many = dataclasses.replace(model, head="many_to_many")
        _, carry = many.apply(early, past[:, :5], mask[:, :5], return_carry=True)
        enc = model.apply(p.encoder, past[:, 5:], mask[:, 5:], carry0=carry)
        return _head_loss(net, p, enc, future, targets)

    got = jax.jit(jax.grad(held))(params).encoder.layers[0].w_ih
    np.testing.assert_allclose(got, w_part, atol=1e-14)


def _head_loss(net, p, enc, future, targets):
    from rnnbptt.forecast.quantiles import monotone_quantiles, pinball_loss

    u = jax.nn.relu(
        jnp.concatenate([enc, future.reshape(4, -1)], -1) @ p.hidden.w + p.hidden.b
    )
    q = monotone_quantiles((u @ p.output.w + p.output.b).reshape(4, 4, 3))
    return pinball_loss(q, targets, net.quantiles)


def test_intervals_cover_known_noise():
    """40 series: a daily pattern plus N(0, 1) noise. On the next H steps (new
    noise), the calibrated 80% and 95% intervals cover about 80% and 95% of the
    240 values (binomial sd 0.026 and 0.014; tolerance 0.1 and 0.05; seeds 0-3
    gave 0.75-0.84 and 0.94-0.96)."""
    rng = np.random.default_rng(0)
    n, count = 150, 40
    t = np.arange(n + H)
    pattern = 5 * np.sin(2 * np.pi * t / 24)
    ys = pattern + rng.normal(size=(count, n + H))
    ds = pd.date_range("2022-01-01", periods=n, freq="h")
    df = pd.DataFrame(
        {
            "unique_id": np.repeat(np.arange(count), n),
            "ds": np.tile(ds, count),
            "y": ys[:, :n].reshape(-1),
        }
    )
    settings = {**SMALL, "epochs": 60, "steps_per_epoch": 20, "n_models": 1}
    settings.update(hidden_sizes=[16], learning_rate=3e-3, batch_size=32)
    out = Forecaster(H, **settings).fit(df).predict()
    actual = ys[:, n:].reshape(-1)
    for level, tolerance in ((80, 0.1), (95, 0.05)):
        inside = (out[f"lo-{level}"] <= actual) & (actual <= out[f"hi-{level}"])
        assert abs(inside.mean() - level / 100) <= tolerance, (level, inside.mean())


def test_a_file_of_another_version_or_shape_is_refused(fitted, tmp_path):
    from rnnbptt.checkpoint import peek_metadata

    _, model = fitted
    path = tmp_path / "model.ckpt"
    model.save(path)
    meta = peek_metadata(path)
    newer = tmp_path / "newer.ckpt"
    save_checkpoint(
        newer, {"params": model.fitted.params}, {**meta, "format_version": 99}
    )
    with pytest.raises(CheckpointError, match="format version 99"):
        Forecaster.load(newer)
    wider = {**meta, "config": {**meta["config"], "hidden_sizes": [9]}}
    other = tmp_path / "other_shape.ckpt"
    save_checkpoint(other, {"params": model.fitted.params}, wider)
    with pytest.raises(CheckpointError, match=r"other_shape\.ckpt"):
        Forecaster.load(other)
