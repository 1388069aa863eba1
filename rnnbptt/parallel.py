"""Data parallelism with JAX's own sharding.

A minibatch's batch axis is split across the devices of a ``jax.sharding.Mesh``
(its axis named ``"batch"``); parameters and optimizer state are replicated. The
train step is one ``jax.jit`` with those input shardings: XLA partitions the
computation and reduces the gradients across devices itself (an all-reduce it
inserts because the replicated parameters depend on every shard), so the code
is the same on one device or many, and on one host or several.

``data_parallel`` (in ``make_train_step`` and ``fit``):

* ``None``/``False``: no sharding; the default, as fast as it always was.
* ``True``: every device JAX sees (``jax.devices()``: all local devices, or all
  devices of all processes after ``rnnbptt.distributed.initialize``).
* a ``Mesh`` with an axis named ``"batch"``: the batch is split along that axis
  (and replicated along any others).

A batch must divide evenly across the ``"batch"`` axis: anything else is refused
with an error naming both numbers (no silent padding or dropping).
"""

from __future__ import annotations

import zlib
from typing import Any, NamedTuple

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

BATCH_AXIS = "batch"


def resolve_mesh(fn: str, data_parallel: Any) -> Mesh | None:
    """The mesh ``data_parallel`` asks for, or None for no sharding."""
    if data_parallel is None or data_parallel is False:
        return None
    if data_parallel is True:
        return Mesh(np.asarray(jax.devices()), (BATCH_AXIS,))
    if isinstance(data_parallel, Mesh):
        if BATCH_AXIS not in data_parallel.axis_names:
            raise ValueError(
                f"{fn}: the `data_parallel` mesh needs an axis named {BATCH_AXIS!r} "
                f"to split the batch over, got axes {tuple(data_parallel.axis_names)}"
            )
        return data_parallel
    raise TypeError(
        f"{fn}: `data_parallel` must be None, True (all devices) or a "
        f"jax.sharding.Mesh with a {BATCH_AXIS!r} axis, got "
        f"{type(data_parallel).__name__}"
    )


def shards(mesh: Mesh) -> int:
    """How many pieces the batch axis is cut into."""
    return mesh.shape[BATCH_AXIS]


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (batch) axis split over the mesh's batch axis, the rest whole."""
    return NamedSharding(mesh, PartitionSpec(BATCH_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def check_divisible(fn: str, what: str, batch: int, mesh: Mesh) -> None:
    n = shards(mesh)
    if batch % n:
        raise ValueError(
            f"{fn}: {what} of {batch} sequences does not divide evenly across the "
            f"{n} devices of the {BATCH_AXIS!r} mesh axis; use a multiple of {n}"
        )


def global_batch(mesh: Mesh, local):
    """A global array from this process's rows of a batch (a pytree; None stays).

    With one process the local rows are the whole batch. With several, each
    process passes its own rows and the global batch is their concatenation in
    process order.
    """
    sharding = batch_sharding(mesh)
    if jax.process_count() == 1:
        return jax.device_put(local, sharding)
    return jax.tree.map(
        lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)),
        local,
    )


def replicate(mesh: Mesh, tree):
    """A copy of ``tree`` (identical in every process) on every device of ``mesh``."""
    sharding = replicated(mesh)
    if jax.process_count() == 1:
        return jax.device_put(tree, sharding)

    def put(x):
        x = np.asarray(x)
        return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])

    return jax.tree.map(put, tree)


def local_copy(tree):
    """This process's copy of replicated arrays (all of them, on one process)."""

    def local(x):
        if isinstance(x, jax.Array) and not x.is_fully_addressable:
            return x.addressable_data(0)
        return x

    return jax.tree.map(local, tree)


def check_processes_agree(settings: dict[str, tuple[Any, bool]]) -> None:
    """Raises in every process if the processes passed different ``settings``.

    ``settings`` maps a name to ``(value, shown)``: a shown value is an int (or
    bool) reported per process; any other value is compared by a digest of its
    ``repr``. Processes that disagree on the number of steps would otherwise
    wait for each other's collectives forever, or abort in them.
    """
    from jax.experimental import multihost_utils

    def fits(value, shown):  # int32 on the wire: x64 may be off
        return shown and -(2**31) < int(value) < 2**31

    def code(value, shown):
        if fits(value, shown):
            return int(value)
        return zlib.crc32(repr(value).encode()) & 0x7FFFFFFF

    values = list(settings.values())
    mine = np.array([[code(*v) for v in values], [fits(*v) for v in values]], np.int32)
    every = np.asarray(multihost_utils.process_allgather(mine))  # [P, 2, S]
    differ = []
    for column, all_fit, (name, (value, shown)) in zip(
        every[:, 0].T, every[:, 1].T, settings.items(), strict=True
    ):
        if len(set(column.tolist())) == 1:
            continue
        if not shown or not all_fit.all():  # digests: say that, not the codes
            differ.append(f"{name} (differs)")
        elif isinstance(value, bool):
            differ.append(f"{name} {[bool(x) for x in column]}")
        else:
            differ.append(f"{name} {column.tolist()}")
    if differ:
        raise ValueError(
            "fit: every process must call fit with the same settings and as many "
            "training sequences (and resume from the same checkpoint); they differ "
            f"in: {'; '.join(differ)} (values in process order)"
        )


class Placement(NamedTuple):
    """Where a training run's minibatches and state live (``plan_placement``).

    Attributes:
        mesh: the devices a minibatch is split over, or None (one device).
        processes: how many processes train together (``jax.process_count``).
        local_batch: this process's rows of each minibatch.
        main_process: whether this process writes checkpoints and shows progress.
    """

    mesh: Mesh | None
    processes: int
    local_batch: int
    main_process: bool

    def state(self, tree):
        """Parameters and optimizer state where the train step expects them."""
        return tree if self.mesh is None else replicate(self.mesh, tree)

    def batch(self, local):
        """This process's rows of a minibatch, as the train step takes them."""
        return local if self.mesh is None else global_batch(self.mesh, local)


def plan_placement(fn: str, mesh: Mesh | None, batch_size: int, n: int) -> Placement:
    """Checks that minibatches of ``batch_size`` (global) split evenly over the
    processes and the mesh, given this process's ``n`` sequences."""
    processes = jax.process_count()
    if batch_size % processes:
        raise ValueError(
            f"{fn}: `batch_size` {batch_size} must be a multiple of the {processes} "
            "processes (each contributes an equal part of every minibatch)"
        )
    local_batch = batch_size // processes
    if local_batch > n:
        raise ValueError(
            f"{fn}: `batch_size` {batch_size} is larger than the training data "
            f"({n * processes} sequences)"
        )
    if mesh is not None:
        check_divisible(fn, "`batch_size`", batch_size, mesh)
        last = (n % local_batch) * processes
        if last:
            check_divisible(
                fn,
                f"the last minibatch ({n * processes} sequences in minibatches of "
                f"{batch_size})",
                last,
                mesh,
            )
    return Placement(mesh, processes, local_batch, jax.process_index() == 0)


def sum_over_processes(values: np.ndarray) -> np.ndarray:
    """``values`` summed over all processes (itself, with one process)."""
    if jax.process_count() == 1:
        return values
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.process_allgather(values)).sum(0)
