"""fit's settings and loop: validated up front, compiled once, read back in groups.

The oracle for the loop is a plain loop over ``make_train_step`` that reads
every step's metrics back and stops at the first non-finite one, with the
shuffling and dropout keys ``fit`` documents.
"""

import dataclasses
import errno
import math
import os
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import draw_params

import rnnbptt
from rnnbptt._checks import NOT_GIVEN

N, T, BATCH = 40, 6, 16  # 3 minibatches an epoch, the last of 8 sequences

# One object each: optax transformations are compared by identity, so the fits
# and the plain loops that use the same one share their compiled steps.
ADAM = optax.adam(1e-2)
SGD_DIVERGES = optax.sgd(3.0)  # diverges in the second step of the blown-up data
SGD = optax.sgd(1e-2)


@pytest.fixture(scope="module")
def problem():
    rng = np.random.default_rng(0)
    xs = rng.normal(size=(N, T, 2)).astype(np.float32)
    ys = rng.normal(size=(N, 1)).astype(np.float32)
    model = rnnbptt.SequenceModel.build(
        "lstm", 2, [5], 1, head="many_to_one", dropout=0.0
    )
    # drawn in NumPy: init's samplers and QR compile about 25 programs for this
    # model (init itself is tested in test_models.py)
    return model, draw_params(rng, model, jnp.float32), xs, ys


def _fit(problem, **kwargs):
    model, params, xs, ys = problem
    kwargs = {"epochs": 3, "batch_size": BATCH, "progress": False, **kwargs}
    return rnnbptt.fit(model, params, xs, ys, **kwargs)


def _reference_loop(problem, optimizer, epochs, shuffle=True, tbptt=None):
    """Each step's metrics read at once; stops at the first non-finite step."""
    model, params, xs, ys = problem
    n = len(xs)
    step = rnnbptt.make_train_step(model, "mse", optimizer, tbptt=tbptt)
    opt_state = optimizer.init(params)
    k_shuffle, k_dropout = jax.random.split(jax.random.key(0))
    batches = math.ceil(n / BATCH)
    for epoch in range(epochs):
        order = jax.random.permutation(jax.random.fold_in(k_shuffle, epoch), n)
        order = order if shuffle else np.arange(n)
        for b in range(batches):
            rows = order[b * BATCH : (b + 1) * BATCH]
            key = jax.random.fold_in(k_dropout, epoch * batches + b)
            params, opt_state, metrics = step(
                params, opt_state, xs[rows], ys[rows], None, key
            )
            if not metrics["finite"]:
                return (params, opt_state), (epoch, b)
    return (params, opt_state), None


def _same(a, b) -> bool:
    leaves = zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    return all(np.array_equal(x, y) for x, y in leaves)


def test_a_second_fit_compiles_nothing_and_gives_the_same_result(problem):
    first = _fit(problem, validation=problem[2:], learning_rate=3e-3)
    with rnnbptt.count_compilations() as compiled:
        again = _fit(problem, validation=problem[2:], learning_rate=3e-3)
    assert compiled.count == 0, compiled.names
    assert _same(again.params, first.params)
    # another setting is another program, compiled once
    with rnnbptt.count_compilations() as compiled:
        _fit(problem, learning_rate=1e-2)
    assert compiled.count >= 1


@pytest.mark.parametrize("sync_every", [1, 2])
def test_reading_back_in_groups_changes_nothing(problem, sync_every):
    """The default reads once an epoch; any group size gives the same bits, and
    the same parameters as the plain loop."""
    want = _fit(problem, optimizer=ADAM)
    got = _fit(problem, optimizer=ADAM, sync_every=sync_every)
    assert _same(got.params, want.params)
    columns = ["train_loss", "grad_norm"]
    assert got.history[columns].equals(want.history[columns])
    (oracle, _), stopped = _reference_loop(problem, ADAM, epochs=3)
    assert stopped is None
    assert _same(want.params, oracle)


def _relu_elman(head="many_to_one"):
    model = rnnbptt.SequenceModel.build(
        "elman", 2, [5], 1, head=head, activation="relu"
    )
    return model, model.init(jax.random.key(0), jnp.float32)


@pytest.mark.parametrize("sync_every", [None, 1, 2])
def test_a_non_finite_step_is_undone_exactly(problem, sync_every):
    """Steps dispatched after the failing one are taken back: the parameters are
    those of a loop that stopped there."""
    _, _, xs, ys = problem
    blown = (*_relu_elman(), 10 * xs, 10 * ys)
    sgd = SGD_DIVERGES  # diverges in the second step
    oracle, stopped = _reference_loop(blown, sgd, epochs=3)
    assert stopped == (0, 1)  # the third minibatch is dispatched after it
    with pytest.warns(RuntimeWarning, match="non-finite") as caught:
        result = _fit(blown, optimizer=sgd, sync_every=sync_every)
    assert "(epoch 1, batch 2)" in str(caught[0].message)
    assert result.stop_reason == "non_finite"
    assert len(result.history) == 0
    assert _same((result.params, result.opt_state), oracle)


@pytest.mark.parametrize("sync_every", [None, 2, 3])
def test_a_non_finite_step_in_a_later_group_is_undone_exactly(sync_every):
    """Five minibatches, not shuffled; the fourth holds values that overflow
    float32: the parameters of the first three steps come back."""
    model, params = _relu_elman()
    rng = np.random.default_rng(1)
    xs = rng.normal(size=(5 * BATCH, T, 2)).astype(np.float32)
    xs[3 * BATCH : 4 * BATCH] *= 1e30
    ys = rng.normal(size=(5 * BATCH, 1)).astype(np.float32)
    sgd = SGD
    oracle, stopped = _reference_loop((model, params, xs, ys), sgd, 2, shuffle=False)
    assert stopped == (0, 3)
    with pytest.warns(RuntimeWarning, match=r"\(epoch 1, batch 4\)"):
        result = rnnbptt.fit(
            model,
            params,
            xs,
            ys,
            optimizer=sgd,
            epochs=2,
            batch_size=BATCH,
            shuffle=False,
            sync_every=sync_every,
            progress=False,
        )
    assert _same((result.params, result.opt_state), oracle)
    assert not _same(result.params, params)  # three updates were kept


def test_a_non_finite_chunk_under_tbptt_keeps_the_chunks_before_it(problem):
    """Truncated BPTT updates once per chunk: the failing minibatch's chunks
    before the non-finite one were applied, and stay."""
    _, _, xs, _ = problem
    model, params = _relu_elman("many_to_many")
    ys = np.cumsum(xs[..., :1], axis=1)
    blown = (model, params, 10 * xs, 10 * ys)
    sgd = SGD_DIVERGES
    oracle, stopped = _reference_loop(blown, sgd, epochs=2, tbptt=2)
    assert stopped is not None
    with pytest.warns(RuntimeWarning, match="non-finite"):
        result = _fit(blown, optimizer=sgd, tbptt=2, epochs=2)
    assert _same((result.params, result.opt_state), oracle)


def _unwritable_checkpoints(tmp_path):
    a_file = tmp_path / "a_file"
    a_file.write_text("not a folder")
    folder = tmp_path / "a_folder"
    folder.mkdir()
    return [
        (a_file / "run.ckpt", "is not a writable folder"),
        (a_file / "deeper" / "run.ckpt", "is not a writable folder"),
        (folder, "is a directory"),
        (f"{tmp_path / 'new'}{os.sep}", "names a directory"),
    ]


def test_a_checkpoint_that_cannot_be_written_is_refused_before_training(
    problem, tmp_path
):
    epochs = []
    for path, text in _unwritable_checkpoints(tmp_path):
        with pytest.raises(ValueError, match=f"fit: `checkpoint` .*{text}"):
            _fit(problem, checkpoint=path, on_epoch_end=epochs.append)
    assert epochs == []  # refused before the first step
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file", "a_folder"]
    assert list((tmp_path / "a_folder").iterdir()) == []
    with pytest.raises(TypeError, match="`checkpoint` must be a file path"):
        _fit(problem, checkpoint=3)


def test_a_read_only_folder_is_refused_before_training(problem, tmp_path):
    folder = tmp_path / "read_only"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        if os.access(folder, os.W_OK):
            pytest.skip("this user (root) may write into a read-only folder")
        epochs = []
        for path in (folder / "run.ckpt", folder / "missing" / "run.ckpt"):
            with pytest.raises(ValueError, match="is not a writable folder"):
                _fit(problem, checkpoint=path, on_epoch_end=epochs.append)
        assert epochs == []
    finally:
        folder.chmod(0o755)
    assert list(folder.iterdir()) == []


def test_a_read_only_file_system_is_refused_before_training(
    problem, tmp_path, monkeypatch
):
    """Where permissions allow a write that the file system refuses (a
    read-only mount; simulated: creating a file in the folder fails with
    EROFS, as the kernel's does), the folder is tried before training."""
    folder = tmp_path / "mounted_read_only"
    folder.mkdir()
    real_open = os.open

    def read_only_open(path, flags, *args, **kwargs):
        if os.path.dirname(os.path.abspath(path)) == str(folder):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), path)
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", read_only_open)
    epochs = []
    with pytest.raises(
        ValueError, match=r"refuses a new file \(Read-only file system\)"
    ):
        _fit(problem, checkpoint=folder / "run.ckpt", on_epoch_end=epochs.append)
    assert epochs == []
    monkeypatch.undo()
    assert list(folder.iterdir()) == []


@pytest.mark.parametrize(
    "setting, error, text",
    [
        ({"on_epoch_end": "print"}, TypeError, "`on_epoch_end` must be a function"),
        ({"sync_every": 0}, ValueError, "`sync_every` must be a positive int"),
        ({"sync_every": 1.5}, TypeError, "`sync_every`"),
        ({"seed": "0"}, TypeError, "`seed` must be an int"),
        ({"seed": True}, TypeError, "`seed` must be an int"),
        (
            {"seed": 2**70},
            ValueError,
            r"`seed` must be an int from -2\*\*63 to 2\*\*63 - 1",
        ),
        ({"seed": -(2**63) - 1}, ValueError, r"`seed` must be an int from -2\*\*63"),
        ({"shuffle": "yes"}, TypeError, "`shuffle` must be True or False"),
        ({"progress": None}, TypeError, "`progress` must be True or False"),
        ({"resume": "yes"}, TypeError, "`resume` must be True or False"),
    ],
)
def test_settings_are_checked_before_training(problem, setting, error, text, tmp_path):
    path = tmp_path / "never.ckpt"
    with pytest.raises(error, match=f"fit: {text}"):
        _fit(problem, **setting, checkpoint=path)
    assert not path.exists()


def test_flags_take_numpy_bools_and_0_or_1_as_before(problem):
    want = _fit(problem, epochs=1, optimizer=ADAM)
    for flag in (np.True_, 1):
        got = _fit(problem, epochs=1, optimizer=ADAM, shuffle=flag, progress=0 * flag)
        assert _same(got.params, want.params)


def test_config_records_what_a_resume_compares(problem):
    model, _, xs, ys = problem
    config = _config(batch_size=8, clip_norm=1, patience=2, validation=(xs, ys))
    train = (xs, ys, None)
    record = config.record(model, train, (xs[:8], ys[:8], None))
    assert record["batch_size"] == 8 and record["train_size"] == N
    assert record["clip_norm"] == 1.0 and record["learning_rate"] == 1e-3
    assert record["model"] == repr(model)
    assert record["patience"] == 2 and record["min_delta"] == 0.0
    assert record["train_data"].startswith("float32[40, 6, 2], float32[40, 1], none")
    assert record["validation_data"].startswith("float32[8, 6, 2]")
    with pytest.raises(ValueError, match=r"batch_size: 16 -> 8"):
        config.check_resumable({**record, "batch_size": 16}, record)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.batch_size = 4
    # the data by its bytes: one value changed is other data
    changed = xs.copy()
    changed[3, 2, 1] += 1
    other = config.record(model, (changed, ys, None), None)
    assert other["train_data"] != record["train_data"]
    assert other["validation_data"] is None
    again = config.record(model, (xs.copy(), ys, None), None)
    assert again["train_data"] == record["train_data"]


def _config(**settings):
    return rnnbptt.FitConfig.create(
        {
            **_DEFAULTS,
            "batch_size": 16,
            "tbptt": None,
            "clip_norm": None,
            "validation": None,
            **settings,
        }
    )


def _optimizer_record(optimizer="adam", learning_rate=None):
    return _config(optimizer=optimizer, learning_rate=learning_rate).record(
        None, (np.zeros((2, 1, 1)), np.zeros((2, 1)), None), None
    )


def test_optax_optimizers_and_schedules_are_recorded_by_what_they_are():
    """Built again (as a new process would), an optimizer or schedule records
    the same; another kind or another hyper-parameter records otherwise."""
    adam = _optimizer_record(optax.adam(0.05))
    assert adam == _optimizer_record(optax.adam(0.05))
    assert adam["optimizer"].startswith("chain(update_fns=(scale_by_adam(b1=0.9,")
    assert "scale(step_size=-0.05)" in adam["optimizer"]
    others = [
        optax.adam(0.01),
        optax.adam(0.05, b1=0.5),
        optax.nadam(0.05),
        optax.adamw(0.05),
        optax.chain(optax.clip_by_global_norm(1.0), optax.adam(0.05)),
        optax.inject_hyperparams(optax.adam)(learning_rate=0.05),
    ]
    records = [_optimizer_record(tx)["optimizer"] for tx in others]
    assert len({adam["optimizer"], *records}) == 1 + len(others)
    assert "nesterov=True" in records[2] and "add_decayed_weights" in records[3]
    # inject_hyperparams keeps its numeric hyper-parameters in the state; its
    # init function holds their starting values, recorded too
    injected = lambda b1: optax.inject_hyperparams(optax.adam)(0.05, b1=b1)  # noqa: E731
    assert _optimizer_record(injected(0.9)) == _optimizer_record(injected(0.9))
    assert _optimizer_record(injected(0.9)) != _optimizer_record(injected(0.5))
    # a schedule beside a named optimizer
    schedule = lambda end: optax.linear_schedule(1e-2, end, 6)  # noqa: E731
    first = _optimizer_record(learning_rate=schedule(1e-3))["learning_rate"]
    assert first == _optimizer_record(learning_rate=schedule(1e-3))["learning_rate"]
    assert first != _optimizer_record(learning_rate=schedule(1e-4))["learning_rate"]
    assert "transition_steps=6" in first


def test_a_numpy_integer_is_a_tbptt_size():
    model = rnnbptt.SequenceModel.build("elman", 2, [5], 1)
    for tbptt, want in [(np.int64(3), (3, 3)), ((np.int32(2), np.int64(4)), (2, 4))]:
        config = _config(model=model, tbptt=tbptt)
        assert config.tbptt == rnnbptt.tbptt.TBPTT(*want)
        assert type(config.tbptt.k1) is int
    for bad in (np.True_, 3.0):
        with pytest.raises(TypeError, match="`tbptt` must be"):
            _config(model=model, tbptt=bad)


_DEFAULTS = {
    "loss": "mse",
    "optimizer": "adam",
    "learning_rate": None,
    "epochs": 2,
    "shuffle": True,
    "backward": "manual",
    "recompute_every": None,
    "checkpoint_every": NOT_GIVEN,
    "data_parallel": None,
    "patience": None,
    "min_delta": 0.0,
    "seed": 0,
    "checkpoint": None,
    "resume": False,
    "progress": False,
    "on_epoch_end": None,
    "sync_every": None,
}


def test_fit_module_is_the_fitting_module_with_a_warning():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        module = rnnbptt.fit_module
    assert module is rnnbptt.fitting and module.fit is rnnbptt.fit
    assert caught[0].category is DeprecationWarning
    # what the old module held
    assert "adam" in module.OPTIMIZERS and module.DEFAULT_LEARNING_RATE == 1e-3
    assert callable(module.make_optimizer) and module.FitResult is rnnbptt.FitResult


class _ScaledMSE:
    """A loss object whose attribute a user may change between fits."""

    def __init__(self, scale):
        self.scale = scale

    def __call__(self, pred, target, mask):
        return self.scale * jnp.mean((pred - target) ** 2)


def test_a_loss_object_is_traced_again_for_each_fit(problem):
    # full minibatches and a shorter last one: both programs must be traced again
    loss = _ScaledMSE(1.0)
    _fit(problem, loss=loss, epochs=1)
    loss.scale = 100.0
    changed = _fit(problem, loss=loss, epochs=1)
    fresh = _fit(problem, loss=_ScaledMSE(100.0), epochs=1)
    assert changed.history["train_loss"].equals(fresh.history["train_loss"])


def test_clear_cache_forgets_the_compiled_steps(problem):
    _fit(problem, epochs=1, optimizer=ADAM)  # compiled now, or kept from before
    rnnbptt.clear_cache()
    with rnnbptt.count_compilations() as compiled:
        _fit(problem, epochs=1, optimizer=ADAM)
    assert "jit(train_step)" in compiled.names


def test_a_learning_rate_is_its_value_as_a_python_float():
    """A named optimizer's rate is made the Python float the checkpoint records
    (optax computed with np.float64(0.1) as a typed number, otherwise than with
    0.1); np.float32(0.1) is another value, so another optimizer."""
    make = rnnbptt.optimizers.make_optimizer
    assert make("sgd", 0.1, None)[0] is make("sgd", 0.1, None)[0]
    assert make("sgd", np.float64(0.1), None)[0] is make("sgd", 0.1, None)[0]
    assert make("sgd", np.float32(0.1), None)[0] is not make("sgd", 0.1, None)[0]
