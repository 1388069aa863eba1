"""Example: one LSTM trained by several processes together (data parallelism).

Every process runs this script with its own ``--process-id``. Each makes the same
synthetic data set (sine windows drawn from ``--seed``; the task: the value that
follows each window) and keeps only its own contiguous share of the windows
(process p of P: the p-th of P equal blocks), as it would read only its own
files on a real cluster. ``rnnbptt.fit(..., data_parallel=True)`` then splits
every global minibatch of ``--batch-size`` windows over the devices of all
processes: each contributes ``batch_size / P`` of its rows per step, the
gradients are summed across processes (gloo on CPUs), and every process ends
with the same parameters. Process 0 writes them to ``--out`` (and the
checkpoint, if ``--checkpoint``).

Two processes on one machine (two shells, or ``&`` as here)::

    python experiments/_distributed_fit.py --coordinator 127.0.0.1:12355 \\
        --num-processes 2 --process-id 0 --out params.npz &
    python experiments/_distributed_fit.py --coordinator 127.0.0.1:12355 \\
        --num-processes 2 --process-id 1

On several hosts, replace 127.0.0.1 by process 0's host address and run one
command per host. The three options can also come from the environment
(``RNNBPTT_COORDINATOR``, ``RNNBPTT_NUM_PROCESSES``, ``RNNBPTT_PROCESS_ID``).
With ``shuffle=False``, global minibatch b is process 0's rows
``[b*k, (b+1)*k)`` followed by process 1's (k = batch_size / 2), so a single
process trained on the data in that order ends at the same parameters
(``tests/test_distributed.py`` checks it). The leading underscore keeps this
script out of ``rnnbptt experiment``'s list: it needs a launch of its own.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import rnnbptt
from rnnbptt.experiment import positive_int_option

STEPS = 12  # inputs per window


def sine_windows(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``count`` windows of random sines: inputs [count, STEPS, 1], targets [count, 1].

    Each window has its own frequency, phase and amplitude; the target is the
    sine's next value.
    """
    rng = np.random.default_rng(seed)
    freq = rng.uniform(0.2, 0.8, (count, 1))
    phase = rng.uniform(0, 2 * np.pi, (count, 1))
    amp = rng.uniform(0.5, 1.5, (count, 1))
    t = np.arange(STEPS + 1)[None, :]
    wave = amp * np.sin(freq * t + phase)
    return wave[:, :STEPS, None], wave[:, STEPS:]


def local_share(arrays, process_id: int, num_processes: int):
    """This process's block of rows: the ``process_id``-th of ``num_processes``."""
    n = arrays[0].shape[0]
    if n % num_processes:
        raise ValueError(
            f"{n} windows do not split into {num_processes} equal shares; use a "
            f"multiple of {num_processes}"
        )
    part = slice(process_id * n // num_processes, (process_id + 1) * n // num_processes)
    return tuple(a[part] for a in arrays)


def make_model():
    """A one-layer LSTM (8 units) reading a window and forecasting one value."""
    return rnnbptt.SequenceModel.build("lstm", 1, (8,), 1, head="many_to_one")


def train(
    train_data,
    validation_data,
    *,
    epochs: int,
    batch_size: int,
    data_parallel=True,
    checkpoint=None,
):
    """``rnnbptt.fit`` from fixed initial parameters (float64), no shuffling."""
    model = make_model()
    params = model.init(jax.random.key(0), jnp.float64)
    return rnnbptt.fit(
        model,
        params,
        *train_data,
        validation=validation_data,
        optimizer="adam",
        learning_rate=0.02,
        epochs=epochs,
        batch_size=batch_size,
        shuffle=False,
        data_parallel=data_parallel,
        checkpoint=checkpoint,
        progress=False,
    )


def save_params(path, params) -> None:
    """The parameters as an .npz, one array per leaf, named by its tree path."""
    leaves = jax.tree_util.tree_flatten_with_path(params)[0]
    np.savez(path, **{jax.tree_util.keystr(key): np.asarray(x) for key, x in leaves})


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Train an LSTM on sine windows with several processes."
    )
    rnnbptt.distributed.add_arguments(p)
    p.add_argument("--out", type=Path, help="process 0 writes the parameters here")
    p.add_argument("--checkpoint", type=Path, help="fit's checkpoint (process 0)")
    p.add_argument("--epochs", type=positive_int_option, default=3)
    p.add_argument(
        "--batch-size", type=positive_int_option, default=8, help="global minibatch"
    )
    p.add_argument(
        "--train-windows", type=positive_int_option, default=32, help="in all"
    )
    p.add_argument(
        "--validation-windows", type=positive_int_option, default=16, help="in all"
    )
    p.add_argument("--seed", type=int, default=0, help="seeds the data")
    p.add_argument("--timeout", type=float, default=60, help="seconds to connect")
    return p


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    jax.config.update("jax_enable_x64", True)
    cluster = rnnbptt.distributed.from_args(args, timeout=args.timeout)
    where = (cluster.process_id, cluster.num_processes)
    train_data = local_share(sine_windows(args.train_windows, args.seed), *where)
    validation_data = local_share(
        sine_windows(args.validation_windows, args.seed + 1), *where
    )
    result = train(
        train_data,
        validation_data,
        epochs=args.epochs,
        batch_size=args.batch_size,
        checkpoint=args.checkpoint,
    )
    if cluster.process_id == 0 and args.out is not None:
        save_params(args.out, result.params)
    summary = {
        "process_id": jax.process_index(),
        "processes": jax.process_count(),
        "devices": jax.device_count(),
        "local_devices": jax.local_device_count(),
        "train_loss": result.history["train_loss"].tolist(),
        "val_loss": result.history["val_loss"].tolist(),
        "best_epoch": result.best_epoch,
    }
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
