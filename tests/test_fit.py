"""fit: history, determinism, early stopping, non-finite stops, checkpoints, errors."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import init_params
from test_train import sine_task

import rnnbptt

SCRIPT = Path(__file__).parent / "scripts" / "train_run.py"
# One object: optax transformations are compared by identity, so the fits that
# use it share their compiled steps.
SGD = optax.sgd(0.05)


@pytest.fixture(scope="module")
def task():
    xs, ys = sine_task(n=96, steps=12)
    model = rnnbptt.SequenceModel.build("elman", 1, [8], 1)
    return model, init_params(model, 0), xs, ys


def _fit(task, **kwargs):
    model, params, xs, ys = task
    kwargs = {"epochs": 3, "batch_size": 32, "progress": False, **kwargs}
    return rnnbptt.fit(model, params, xs, ys, **kwargs)


def test_history_and_schedule(task):
    schedule = optax.linear_schedule(1e-2, 1e-3, transition_steps=6)
    result = _fit(task, learning_rate=schedule, validation=task[2:], epochs=3)
    h = result.history
    assert list(h.columns) == rnnbptt.fitting.HISTORY_COLUMNS
    assert list(h["epoch"]) == [1, 2, 3]
    # 3 batches an epoch: the rate of updates 3, 6 and 9 (steps 2, 5 and 8)
    np.testing.assert_allclose(
        h["learning_rate"], [schedule(2), schedule(5), schedule(8)]
    )
    # the same column from an optax optimizer that exposes its rate, in a chain
    injected = _fit(
        task,
        optimizer=optax.inject_hyperparams(optax.adam)(learning_rate=schedule),
        clip_norm=1.0,
        validation=task[2:],
        epochs=3,
    )
    np.testing.assert_allclose(
        injected.history["learning_rate"], h["learning_rate"], rtol=1e-6
    )
    assert (h["seconds"] > 0).all() and (h["grad_norm"] > 0).all()
    assert h["train_loss"].iloc[-1] < h["train_loss"].iloc[0]
    assert result.stop_reason == "completed"


def test_same_seed_same_result_other_seed_other_order(task):
    a = _fit(task, seed=4, epochs=2)
    b = _fit(task, seed=4, epochs=2)
    c = _fit(task, seed=5, epochs=2)
    jax.tree.map(np.testing.assert_array_equal, a.params, b.params)
    assert not np.array_equal(a.params.readout.w, c.params.readout.w)


def test_clipping_bounds_each_update(task):
    before = task[1]
    result = _fit(
        task,
        optimizer="sgd",
        learning_rate=1.0,
        clip_norm=0.01,
        epochs=1,
        batch_size=96,
        shuffle=False,
    )
    # the norm of the update, in NumPy (eagerly, each operation at each shape
    # would compile a program)
    moved = jax.tree.leaves(
        jax.tree.map(lambda a, b: np.asarray(a) - np.asarray(b), result.params, before)
    )
    step = np.sqrt(sum(np.sum(d**2) for d in moved))
    assert result.history["grad_norm"].iloc[0] > 0.01  # reported before clipping
    np.testing.assert_allclose(step, 0.01, rtol=1e-9)


def test_early_stopping_restores_best_epoch(task):
    model, _, xs, ys = task
    # validation targets are the negated training targets: fitting one ruins the other
    result = _fit(
        task, validation=(xs[:32], -ys[:32]), patience=2, epochs=30, learning_rate=1e-2
    )
    h = result.history
    assert result.stop_reason == "early_stopping"
    best = result.best_epoch
    assert len(h) == best + 2 and best < 30
    assert h["val_loss"].iloc[-1] > h["val_loss"].iloc[best - 1]
    evaluate = rnnbptt.make_eval_step(model, "mse")
    restored, _ = evaluate(
        result.params, jnp.asarray(xs[:32]), jnp.asarray(-ys[:32]), None
    )
    np.testing.assert_allclose(restored, h["val_loss"].min(), rtol=1e-10)


def test_resuming_an_early_stopped_run_stops_again_at_once(task, tmp_path):
    _, _, xs, ys = task
    ckpt = tmp_path / "early.ckpt"
    settings = dict(
        validation=(xs[:32], -ys[:32]),
        patience=1,
        epochs=30,
        learning_rate=1e-2,
        checkpoint=ckpt,
        resume=True,
    )
    first = _fit(task, **settings)
    assert first.stop_reason == "early_stopping" and len(first.history) < 30
    epochs_seen = []
    again = _fit(task, **settings, on_epoch_end=epochs_seen.append)
    assert epochs_seen == []  # nothing trained
    assert again.stop_reason == "early_stopping"
    assert again.best_epoch == first.best_epoch
    assert again.history.drop(columns="seconds").equals(
        first.history.drop(columns="seconds")
    )
    jax.tree.map(np.testing.assert_array_equal, again.params, first.params)


def test_optax_transformation_brings_its_own_learning_rate(task):
    plain = _fit(task, optimizer=SGD, epochs=1)
    assert np.isnan(plain.history["learning_rate"]).all()
    injected = _fit(
        task,
        optimizer=optax.inject_hyperparams(optax.sgd)(learning_rate=0.05),
        epochs=1,
    )
    assert list(injected.history["learning_rate"]) == [np.float32(0.05)]
    named = _fit(task, optimizer="sgd", learning_rate=0.05, epochs=1)
    jax.tree.map(np.testing.assert_array_equal, named.params, plain.params)
    jax.tree.map(np.testing.assert_array_equal, named.params, injected.params)


def test_overflow_stops_with_message_and_finite_params():
    rng = np.random.default_rng(0)
    # as many sequences as the task's: the same shuffle program
    xs = 1e3 * rng.normal(size=(96, 30, 2)).astype(np.float32)
    ys = 1e3 * rng.normal(size=(96, 30, 1)).astype(np.float32)
    model = rnnbptt.SequenceModel.build("elman", 2, [16], 1, activation="relu")
    params = jax.tree.map(
        lambda a: jnp.asarray(np.asarray(a, np.float32)), init_params(model, 0)
    )
    with pytest.warns(RuntimeWarning, match="non-finite at step") as caught:
        result = rnnbptt.fit(
            model,
            params,
            xs,
            ys,
            optimizer="sgd",
            learning_rate=1e3,
            epochs=20,
            batch_size=16,
            progress=False,
        )
    assert "clip" in str(caught[0].message) and "learning rate" in str(
        caught[0].message
    )
    assert result.stop_reason == "non_finite"
    assert len(result.history) < 20
    assert all(np.all(np.isfinite(leaf)) for leaf in jax.tree.leaves(result.params))


def test_crash_and_resume_is_bitwise_equal_to_uninterrupted(tmp_path):
    """A run killed part-way (SIGKILL) and resumed in a new process ends where an
    uninterrupted run ends (run by the resuming process after the resumed one)."""
    ckpt = tmp_path / "run.ckpt"
    # the two processes share one persistent compilation cache: the resuming one
    # loads the programs the killed one compiled (in its first epoch, before the
    # kill) instead of compiling them again; the same programs, the same bits
    env = {
        **os.environ,
        "JAX_COMPILATION_CACHE_DIR": str(tmp_path / "jax_cache"),
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
        "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0",
    }
    proc = subprocess.Popen(
        [sys.executable, str(SCRIPT), "slow", str(ckpt), str(tmp_path / "x.npz")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if ckpt.exists() and rnnbptt.peek_metadata(ckpt)["epoch"] >= 3:
                break
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    killed_at = rnnbptt.peek_metadata(ckpt)["epoch"]
    assert 3 <= killed_at < 8
    resumed = subprocess.run(
        [sys.executable, str(SCRIPT), "resume", str(ckpt), str(tmp_path / "r.npz")],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert resumed.returncode == 0, resumed.stderr
    resumed_line, plain_line = resumed.stdout.splitlines()
    assert resumed_line.split() == plain_line.split() == ["completed", "8"]
    a, b = np.load(tmp_path / "r-plain.npz"), np.load(tmp_path / "r.npz")
    assert len(a.files) == len(b.files) > 0
    for name in a.files:
        np.testing.assert_array_equal(a[name], b[name])


def test_corrupt_or_foreign_checkpoint_is_refused(task, tmp_path):
    ckpt = tmp_path / "c.ckpt"
    _fit(task, epochs=1, checkpoint=ckpt)
    good = ckpt.read_bytes()
    ckpt.write_bytes(good[: len(good) // 2])
    with pytest.raises(rnnbptt.CheckpointError, match="truncated") as info:
        _fit(task, epochs=2, checkpoint=ckpt, resume=True)
    assert str(ckpt) in str(info.value)
    ckpt.write_bytes(good)
    other = rnnbptt.SequenceModel.build("elman", 1, [9], 1)
    with pytest.raises(rnnbptt.CheckpointError, match="different model"):
        rnnbptt.fit(
            other,
            init_params(other, 0),
            task[2],
            task[3],
            epochs=2,
            checkpoint=ckpt,
            resume=True,
            progress=False,
        )
    with pytest.raises(ValueError, match="configuration"):
        _fit(task, epochs=2, checkpoint=ckpt, resume=True, learning_rate=0.5)


def test_checkpoint_of_an_optax_optimizer_from_before_still_resumes(task, tmp_path):
    """Older checkpoints recorded an optax optimizer by its type, beside the
    unused default learning rate, and no data digests: what they lack is not
    compared, with a warning."""
    ckpt = tmp_path / "old.ckpt"
    first = _fit(task, optimizer=SGD, epochs=1, checkpoint=ckpt)
    params = task[1]
    template = {
        "params": params,
        "opt_state": SGD.init(params),
        "best_params": params,
        "key": jax.random.key(0),
    }
    state, meta = rnnbptt.load_checkpoint(ckpt, template)
    old = meta["config"]
    old.update(learning_rate=0.001, optimizer="GradientTransformationExtraArgs")
    for key in ("train_data", "validation_data", "patience", "min_delta"):
        del old[key]
    rnnbptt.save_checkpoint(ckpt, state, meta)
    # an equal optimizer built afresh, as a resumed run in a new process has
    fresh = optax.sgd(0.05)
    with pytest.warns(UserWarning, match="older rnnbptt") as caught:
        again = _fit(task, optimizer=fresh, epochs=1, checkpoint=ckpt, resume=True)
    assert caught[0].filename == __file__  # fit's caller
    unrecorded = "min_delta, optimizer, patience, train_data, validation_data"
    assert unrecorded in str(caught[0].message)
    jax.tree.map(np.testing.assert_array_equal, again.params, first.params)


def test_resuming_refuses_another_optax_optimizer(task, tmp_path):
    ckpt = tmp_path / "adam.ckpt"
    _fit(task, optimizer=optax.adam(0.05), epochs=1, checkpoint=ckpt)
    for other, differs in [
        (optax.nadam(0.05), "nesterov=True"),
        (optax.adamw(0.05), "add_decayed_weights"),
        (optax.adam(0.01), "step_size=-0.01"),
    ]:
        with pytest.raises(ValueError, match="different run configuration") as info:
            _fit(task, optimizer=other, epochs=2, checkpoint=ckpt, resume=True)
        message = str(info.value)
        assert "optimizer: 'chain(update_fns=(scale_by_adam(" in message
        assert "nesterov=False" in message and differs in message  # both named


def test_resuming_refuses_other_data_patience_or_min_delta(task, tmp_path):
    """What decides the best epoch and when to stop, and the data, are part of
    the run; epochs are not (more may be asked for, or fewer)."""
    _, _, xs, ys = task
    ckpt = tmp_path / "run.ckpt"
    settings = dict(validation=(xs[:32], -ys[:32]), patience=5, checkpoint=ckpt)
    first = _fit(task, epochs=2, **settings)
    changed_ys = ys.copy()
    changed_ys[0, 0, 0] += 1e-3
    for change, text in [
        ({"validation": (xs[:32], ys[:32])}, "validation_data: 'float64[32, 12, 1]"),
        ({"validation": None, "patience": None}, "-> None"),
        ({"patience": 6}, "patience: 5 -> 6"),
        ({"min_delta": 0.1}, "min_delta: 0.0 -> 0.1"),
    ]:
        with pytest.raises(ValueError, match="different run configuration") as info:
            _fit(task, epochs=3, **{**settings, **change}, resume=True)
        assert text in str(info.value)
    with pytest.raises(ValueError, match="train_data: 'float64"):
        rnnbptt.fit(
            task[0],
            task[1],
            xs,
            changed_ys,
            epochs=3,
            batch_size=32,
            progress=False,
            **settings,
            resume=True,
        )
    # fewer epochs than the checkpoint holds: nothing to train, and it says so
    seen = []
    fewer = _fit(task, epochs=1, **settings, resume=True, on_epoch_end=seen.append)
    assert seen == [] and len(fewer.history) == 2
    assert fewer.stop_reason == "completed"
    assert "holds 2 epochs already, epochs=1 asks for no more" in fewer.message
    jax.tree.map(np.testing.assert_array_equal, fewer.params, first.params)
    more = _fit(task, epochs=3, **settings, resume=True)
    assert more.message == "trained 3 epochs (resumed from the checkpoint after 2)"
    assert first.message == "trained 2 epochs"


def test_progress_bar_shows_loss(task, capsys):
    _fit(task, epochs=1, progress=True)
    err = capsys.readouterr().err
    assert "fit" in err and "loss=" in err


def _bad_calls():
    model = rnnbptt.SequenceModel.build("lstm", 2, [4], 3)
    clf = rnnbptt.SequenceModel.build("lstm", 2, [4], 3, head="many_to_one")
    params, clf_params = init_params(model, 0), init_params(clf, 0)
    xs = np.zeros((8, 5, 2))
    ys = np.zeros((8, 5, 3))
    labels = np.zeros(8, int)
    nan_xs = xs.copy()
    nan_xs[6, 2, 1] = np.nan
    w_hh = np.array(params.layers[0].w_hh)
    w_hh[1, 2] = np.inf
    inf_params = params._replace(layers=(params.layers[0]._replace(w_hh=w_hh),))

    def fit(m=model, p=params, x=xs, y=ys, **kw):
        kw = {"batch_size": 4, "progress": False, **kw}
        return lambda: rnnbptt.fit(m, p, x, y, **kw)

    return [
        ("fewer targets", fit(y=ys[:7]), ValueError, "same number of sequences"),
        ("shorter targets", fit(y=ys[:, :4]), ValueError, "and steps"),
        ("wrong outputs", fit(y=ys[..., :2]), ValueError, "output_size is 3"),
        ("wrong features", fit(x=xs[..., :1]), ValueError, "input_size is 2"),
        ("empty", fit(x=xs[:0], y=ys[:0]), ValueError, "empty"),
        ("nan in xs", fit(x=nan_xs), ValueError, "row 6, step 2"),
        ("no params", fit(p=None), TypeError, "`params` must be the model's"),
        (
            "inf in params",
            fit(p=inf_params),
            ValueError,
            r"`params\.layers\[0\]\.w_hh` holds inf at index \(1, 2\); initial",
        ),
        (
            "integer params",
            fit(p=params._replace(readout=params.readout._replace(b=np.zeros(3, int)))),
            TypeError,
            r"`params\.readout\.b` must be a floating array",
        ),
        (
            "inf in ys",
            fit(y=np.where(np.arange(3) == 1, np.inf, ys)),
            ValueError,
            "row 0, step 0",
        ),
        ("batch too big", fit(batch_size=9), ValueError, "larger than the training"),
        (
            "label range",
            fit(
                m=clf,
                p=clf_params,
                y=np.array([0, 1, 2, 3, 0, 1, 2, 0]),
                loss="cross_entropy",
            ),
            ValueError,
            "label 3 at row 3",
        ),
        (
            "negative label",
            fit(m=clf, p=clf_params, y=labels - 1, loss="cross_entropy"),
            ValueError,
            "out of range",
        ),
        (
            "float labels",
            fit(m=clf, p=clf_params, y=labels * 1.0, loss="cross_entropy"),
            TypeError,
            "integers",
        ),
        ("unknown loss", fit(loss="hinge"), ValueError, "`loss` must be one of"),
        ("unknown optimizer", fit(optimizer="adamax2"), ValueError, "`optimizer`"),
        ("tbptt k1", fit(tbptt=0), ValueError, "k1"),
        ("tbptt k2 < k1", fit(tbptt=(4, 2)), ValueError, "k2"),
        ("unknown backward", fit(backward="numeric"), ValueError, "backward"),
        ("patience without validation", fit(patience=2), ValueError, "validation"),
        ("patience 0", fit(patience=0, validation=(xs, ys)), ValueError, "`patience`"),
        (
            "patience as text",
            fit(patience="3", validation=(xs, ys)),
            TypeError,
            "`patience`",
        ),
        (
            "min_delta nan",
            fit(patience=2, min_delta=np.nan, validation=(xs, ys)),
            ValueError,
            "`min_delta`",
        ),
        ("learning rate text", fit(learning_rate="1e-3"), ValueError, "learning_rate"),
        ("learning rate inf", fit(learning_rate=np.inf), ValueError, "learning_rate"),
        ("learning rate 0", fit(learning_rate=0.0), ValueError, "learning_rate"),
        (
            "learning rate beside an optax optimizer",
            fit(optimizer=optax.adam(1e-2), learning_rate=1e-2),
            ValueError,
            "its own",
        ),
        ("clip_norm nan", fit(clip_norm=np.nan), ValueError, "`clip_norm`"),
        (
            "min_delta nan without patience",
            fit(min_delta=np.nan, validation=(xs, ys)),
            ValueError,
            "`min_delta`",
        ),
        ("mask shape", fit(mask=np.ones((8, 4), bool)), ValueError, "mask"),
        ("resume without path", fit(resume=True), ValueError, "checkpoint"),
        (
            "binary targets outside [0, 1]",
            fit(y=np.where(np.arange(3) == 2, 255.0, ys), loss="binary_cross_entropy"),
            ValueError,
            r"target 255.0 at row 0, step 0 is outside \[0, 1\]",
        ),
        (
            "many-to-one row without a valid step",
            fit(
                m=clf,
                p=clf_params,
                y=labels,
                loss="cross_entropy",
                mask=np.arange(5) < np.array([5, 5, 5, 0, 5, 5, 5, 5])[:, None],
            ),
            ValueError,
            "row 3 has no valid step",
        ),
        (
            "readout of another output size",
            fit(
                p=clf_params._replace(
                    readout=clf_params.readout._replace(b=np.zeros(2))
                )
            ),
            ValueError,
            "params.readout.b",
        ),
    ]


@pytest.mark.parametrize("case", _bad_calls(), ids=lambda c: c[0])
def test_bad_input(case):
    _, call, error, text = case
    with pytest.raises(error, match=text):
        call()
