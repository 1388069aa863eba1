"""A training run for the crash-and-resume test: ``train_run.py MODE CKPT OUT``.

MODE: ``slow`` (checkpoint, 0.3 s pause after every epoch so the test can kill
it part-way) or ``resume`` (continue from CKPT, then run the same training
uninterrupted from the start, without a checkpoint, for comparison). Writes the
final parameters' leaves to OUT (.npz), and the uninterrupted run's to OUT with
``-plain`` added to its stem; prints each run's stop reason and epoch count.
"""

import sys
import time
from pathlib import Path

import jax
import numpy as np

import rnnbptt

mode, ckpt, out = sys.argv[1:4]
rng = np.random.default_rng(0)
t = np.arange(21)[None, :]
series = np.sin(rng.uniform(0.2, 0.5, (96, 1)) * t + rng.uniform(0, 6, (96, 1)))
xs, ys = series[:, :-1, None], series[:, 1:, None]
model = rnnbptt.SequenceModel.build("lstm", 1, [8], 1, dropout=0.0)
# drawn in NumPy with model.init's shapes (jax.random compiles a sampler a shape)
initial = jax.tree.map(
    lambda leaf: np.asarray(rng.uniform(-0.3, 0.3, leaf.shape), leaf.dtype),
    jax.eval_shape(model.init, jax.random.key(0)),
)


def train(checkpoint, resume, on_epoch_end, out):
    result = rnnbptt.fit(
        model,
        initial,
        xs[:64],
        ys[:64],
        validation=(xs[64:], ys[64:]),
        epochs=8,
        batch_size=16,
        learning_rate=1e-2,
        tbptt=(5, 8),
        checkpoint=checkpoint,
        resume=resume,
        progress=False,
        on_epoch_end=on_epoch_end,
    )
    np.savez(out, *[np.asarray(leaf) for leaf in jax.tree.leaves(result.params)])
    print(result.stop_reason, len(result.history), flush=True)


if mode == "slow":
    train(ckpt, False, lambda row: time.sleep(0.3), out)
else:
    train(ckpt, True, None, out)
    # the uninterrupted run, in the same process: the same compiled programs, so
    # it starts and compiles once for both
    plain = Path(out)
    train(None, False, None, plain.with_stem(plain.stem + "-plain"))
