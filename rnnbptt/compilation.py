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
