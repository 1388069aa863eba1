"""fit's settings and loop: validated up front, compiled once, read back in groups.

The oracle for the loop is a plain loop over ``make_train_step`` that reads
every step's metrics back and stops at the first non-finite one, with the
shuffling and dropout keys ``fit`` documents.
"""

import dataclasses
import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import rnnbptt
from rnnbptt._checks import NOT_GIVEN

N, T, BATCH = 40, 6, 16  # 3 minibatches an epoch, the last of 8 sequences


@pytest.fixture(scope="module")
def problem():
    rng = np.random.default_rng(0)
    xs = rng.normal(size=(N, T, 2)).astype(np.float32)
    ys = rng.normal(size=(N, 1)).astype(np.float32)
    model = rnnbptt.SequenceModel.build(
        "lstm", 2, [5], 1, head="many_to_one", dropout=0.0
    )
    return model, model.init(jax.random.key(0), jnp.float32), xs, ys


def _fit(problem, **kwargs):
    model, params, xs, ys = problem
    kwargs = {"epochs": 3, "batch_size": BATCH, "progress": False, **kwargs}
    return rnnbptt.fit(model, params, xs, ys, **kwargs)


def _reference_loop(problem, optimizer, epochs, seed=0):
    """Each step's metrics read at once; stops at the first non-finite step."""
    model, params, xs, ys = problem
    step = rnnbptt.make_train_step(model, "mse", optimizer)
    opt_state = optimizer.init(params)
    k_shuffle, k_dropout = jax.random.split(jax.random.key(seed))
    batches = math.ceil(N / BATCH)
    for epoch in range(epochs):
        order = jax.random.permutation(jax.random.fold_in(k_shuffle, epoch), N)
        for b in range(batches):
            rows = order[b * BATCH : (b + 1) * BATCH]
            key = jax.random.fold_in(k_dropout, epoch * batches + b)
            params, opt_state, metrics = step(
                params, opt_state, xs[rows], ys[rows], None, key
            )
            if not metrics["finite"]:
                return params, (epoch, b)
    return params, None


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
    want = _fit(problem, optimizer=optax.adam(1e-2))
    got = _fit(problem, optimizer=optax.adam(1e-2), sync_every=sync_every)
    assert _same(got.params, want.params)
    columns = ["train_loss", "grad_norm"]
    assert got.history[columns].equals(want.history[columns])
    oracle, stopped = _reference_loop(problem, optax.adam(1e-2), epochs=3)
    assert stopped is None
    assert _same(want.params, oracle)


@pytest.mark.parametrize("sync_every", [None, 1, 2])
def test_a_non_finite_step_is_undone_exactly(problem, sync_every):
    """Steps dispatched after the failing one are taken back: the parameters are
    those of a loop that stopped there."""
    _, _, xs, ys = problem
    model = rnnbptt.SequenceModel.build(
        "elman", 2, [5], 1, head="many_to_one", activation="relu"
    )
    blown = (model, model.init(jax.random.key(0), jnp.float32), 10 * xs, 10 * ys)
    sgd = optax.sgd(3.0)  # diverges in the second step
    oracle, stopped = _reference_loop(blown, sgd, epochs=3)
    assert stopped == (0, 1)  # the third minibatch is dispatched after it
    with pytest.warns(RuntimeWarning, match="non-finite") as caught:
        result = _fit(blown, optimizer=sgd, sync_every=sync_every)
    epoch, batch = stopped
    assert f"(epoch {epoch + 1}, batch {batch + 1})" in str(caught[0].message)
    assert result.stop_reason == "non_finite"
    assert len(result.history) == epoch
    assert _same(result.params, oracle)


def _unwritable_checkpoints(tmp_path):
    a_file = tmp_path / "a_file"
    a_file.write_text("not a folder")
    folder = tmp_path / "a_folder"
    folder.mkdir()
    return [
        (a_file / "run.ckpt", "is not a writable folder"),
        (a_file / "deeper" / "run.ckpt", "is not a writable folder"),
        (folder, "is a directory"),
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
    with pytest.raises(TypeError, match="`checkpoint` must be a file path"):
        _fit(problem, checkpoint=3)


@pytest.mark.parametrize(
    "setting, error, text",
    [
        ({"on_epoch_end": "print"}, TypeError, "`on_epoch_end` must be a function"),
        ({"sync_every": 0}, ValueError, "`sync_every` must be a positive int"),
        ({"sync_every": 1.5}, TypeError, "`sync_every`"),
        ({"seed": "0"}, TypeError, "`seed` must be an int"),
        ({"seed": True}, TypeError, "`seed` must be an int"),
        ({"shuffle": "yes"}, TypeError, "`shuffle` must be True or False"),
        ({"progress": None}, TypeError, "`progress` must be True or False"),
        ({"resume": 1, "checkpoint": "x.ckpt"}, TypeError, "`resume` must be True or"),
    ],
)
def test_settings_are_checked_before_training(problem, setting, error, text):
    with pytest.raises(error, match=f"fit: {text}"):
        _fit(problem, **setting)


def test_config_records_what_a_resume_compares(problem):
    model, _, xs, _ = problem
    config = rnnbptt.FitConfig.create(
        {
            **_DEFAULTS,
            "batch_size": 8,
            "tbptt": None,
            "clip_norm": 1,
            "validation": None,
        }
    )
    record = config.record(model, len(xs))
    assert record["batch_size"] == 8 and record["train_size"] == N
    assert record["clip_norm"] == 1.0 and record["learning_rate"] == 1e-3
    assert record["model"] == repr(model)
    with pytest.raises(ValueError, match=r"batch_size: 16 -> 8"):
        config.check_resumable({**record, "batch_size": 16}, record)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.batch_size = 4


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
