"""Counting what XLA compiles: where a run spends its first seconds.

``with count_compilations() as compiled: ...`` counts the programs compiled in
the block (every ``jax.jit`` cache miss, and every first use of an operation at
new shapes) and the seconds spent compiling them. A second ``fit`` of the same
model, loss and optimizer on the same shapes compiles nothing::

    >>> import jax, rnnbptt
    >>> with rnnbptt.count_compilations() as compiled:
    ...     _ = jax.jit(lambda x: x + 1)(1.0)
    >>> compiled.count
    1
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
from collections.abc import Iterator

import jax

# The event JAX records once per program it hands to the backend compiler.
COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"


@dataclasses.dataclass
class Compilations:
    """Programs compiled so far in a ``count_compilations`` block."""

    count: int = 0
    seconds: float = 0.0
    names: list = dataclasses.field(default_factory=list)  # the functions' names


@contextlib.contextmanager
def count_compilations() -> Iterator[Compilations]:
    """Counts the XLA compilations in the block (this process, every thread)."""
    record = Compilations()

    def listen(event: str, seconds: float, **kwargs) -> None:
        if event == COMPILE_EVENT:
            record.count += 1
            record.seconds += seconds
            record.names.append(kwargs.get("fun_name", "?"))

    jax.monitoring.register_event_duration_secs_listener(listen)
    try:
        yield record
    finally:
        jax.monitoring.unregister_event_duration_listener(listen)


class CompileAhead:
    """Programs compiled in a background thread, in the order given, while the
    caller does other work (``fit``: the first epoch's shuffling, the first
    steps, while the last minibatch's and the validation's programs compile).

    ``jobs`` maps a name to ``(jitted function, example arguments)``; the
    arguments may be ``jax.ShapeDtypeStruct``s. Compiling fills the function's
    own cache, so its first call with such arguments compiles nothing. Call
    ``wait(name)`` before that first call (a program still compiling is waited
    for; one not compiled yet because its compilation failed is compiled, and
    its error raised, by the call itself) and ``close()`` when done.
    """

    def __init__(self, jobs: dict):
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="rnnbptt-compile"
        )
        self._futures = {
            name: self._pool.submit(_compile, fn, args)
            for name, (fn, args) in jobs.items()
        }

    def wait(self, name) -> None:
        future = self._futures.pop(name, None)
        if future is not None:
            concurrent.futures.wait([future])

    def close(self) -> None:
        """Drops the programs not started yet; waits for the one compiling."""
        self._pool.shutdown(wait=True, cancel_futures=True)


def _compile(fn, args) -> None:
    fn.lower(*args).compile()
