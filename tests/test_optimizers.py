"""What ``optimizers.describe`` records of optimizers, schedules and values: what
a resumed run compares (no jit, nothing compiled)."""

import functools

import optax

from rnnbptt import optimizers
from rnnbptt.optimizers import describe


def test_a_function_is_described_by_its_code_too():
    """Two lambdas of one name that compute otherwise described the same, so a
    resumed run did not notice a changed schedule."""
    assert describe(lambda s: 0.1) != describe(lambda s: 0.2)
    assert describe(lambda s: 0.1) != describe(lambda s: 0.1 * s)
    # the same code built again (another function object, other code objects)
    # describes the same; constants of nested functions count
    source = "lambda s: (lambda t: t * {})(s)"
    again = [eval(source.format(c)) for c in ("0.1", "0.1", "0.2")]
    assert describe(again[0]) == describe(again[1]) != describe(again[2])
    setting = functools.partial(optimizers.learning_rate_setting, "sgd")
    assert setting(again[0]) == setting(again[1]) != setting(again[2])
    # what a function closes over is part of it too
    scaled = lambda c: lambda s: c * s  # noqa: E731
    assert describe(scaled(0.1)) == describe(scaled(0.1)) != describe(scaled(0.2))
    # an optax schedule is a closure over its arguments
    schedule = functools.partial(optax.linear_schedule, 1e-2, transition_steps=6)
    assert describe(schedule(1e-3)) == describe(schedule(1e-3))
    assert describe(schedule(1e-3)) != describe(schedule(1e-4))
    assert "0x" not in describe(again[0]) + describe(optax.adam(0.1))
