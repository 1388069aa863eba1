"""What ``optimizers.describe`` records of optimizers, schedules and values: what
a resumed run compares (no jit, nothing compiled)."""

import functools

import jax
import numpy as np
import optax
import pytest

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


@pytest.mark.parametrize(
    "numpy, python",
    [
        (np.float64(0.1), 0.1),
        (np.float32(0.5), 0.5),
        (np.int64(3), 3),
        (np.int8(-2), -2),
        (np.bool_(True), True),
        (np.array(0.1), 0.1),
        (np.array(3, np.int32), 3),
        (jax.numpy.asarray(0.25), 0.25),
    ],
)
def test_a_numpy_number_is_described_as_the_python_number(numpy, python):
    assert describe(numpy) == describe(python) == repr(python)
    assert describe((numpy, [numpy])) == describe((python, [python]))


def test_numbers_equal_in_value_describe_the_same_optimizer():
    same = [optax.sgd(0.1), optax.sgd(np.float64(0.1)), optax.sgd(np.array(0.1))]
    assert len({optimizers.optimizer_setting(tx) for tx in same}) == 1
    # another number, or another kind of number, is another setting
    assert describe(np.float32(0.1)) != describe(0.1)
    assert describe(np.int64(3)) != describe(3.0) != describe(True)


class _Slots:
    __slots__ = ("rate",)

    def __init__(self, rate):
        self.rate = rate


def test_what_cannot_be_described_is_marked_as_such():
    """An object whose state describe cannot read was written as its type's
    name alone, as if it were all there was to compare."""
    assert describe(_Slots(0.1)) == "<unrepresentable _Slots>"
    assert describe(jax.random.key(0)) == "<unrepresentable PRNGKeyArray>"
    tx = optax.chain(optax.scale(0.5), optax.scale(_Slots(0.2)))
    assert "scale(step_size=<unrepresentable _Slots>)" in describe(tx)
    assert "scale(step_size=0.5)" in describe(tx)
