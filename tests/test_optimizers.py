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
    "number, text",
    [
        (np.float64(0.1), "float64(0.1)"),
        (np.array(0.1), "float64(0.1)"),
        (np.float32(0.5), "float32(0.5)"),
        (np.int64(3), "int64(3)"),
        (np.array(3, np.int32), "int32(3)"),
        (np.bool_(True), "bool(True)"),
        (jax.numpy.asarray(0.25), f"weak {jax.numpy.asarray(0.25).dtype}(0.25)"),
        (jax.numpy.asarray(0.5, jax.numpy.bfloat16), "bfloat16(0.5)"),
    ],
)
def test_a_numpy_or_jax_number_is_described_with_its_dtype(number, text):
    """JAX computes with np.float32(0.5) otherwise than with 0.5 (a Python
    number is typed weakly: bfloat16 parameters stay bfloat16), so a resumed
    run must not take one for the other; a NumPy scalar and a 0-d array of one
    dtype compute alike and describe alike."""
    assert describe(number) == text
    assert describe((number, [number])) == f"({text}, [{text}])"


def test_numbers_of_another_type_describe_another_optimizer():
    setting = optimizers.optimizer_setting
    assert setting(optax.sgd(np.float64(0.1))) == setting(optax.sgd(np.array(0.1)))
    assert setting(optax.sgd(np.float64(0.1))) != setting(optax.sgd(0.1))
    assert setting(optax.sgd(np.float32(0.5))) != setting(optax.sgd(0.5))
    params = {"w": jax.numpy.ones(3, jax.numpy.bfloat16) / 3}
    grads = {"w": jax.numpy.full(3, 0.3, jax.numpy.bfloat16)}

    def updates(tx):
        return tx.update(grads, tx.init(params), params)[0]["w"]

    # the two compute otherwise, which is why they describe otherwise
    assert updates(optax.sgd(0.5)).dtype == jax.numpy.bfloat16
    assert updates(optax.sgd(np.float32(0.5))).dtype == np.float32
    assert describe(np.int64(3)) != describe(3) != describe(3.0) != describe(True)
    assert describe({1: 0.1}) != describe({"1": 0.1})


RATE = 0.1


def test_module_level_values_a_function_reads_are_part_of_it():
    """``lambda s: RATE * s`` with RATE changed from 0.1 to 0.2 between two
    runs described the same, so a resumed run did not notice."""
    schedule = lambda s: RATE * s  # noqa: E731
    before = describe(schedule)
    assert "RATE=0.1" in before
    globals()["RATE"] = 0.2
    try:
        assert describe(schedule) != before
    finally:
        globals()["RATE"] = 0.1
    assert describe(schedule) == before
    # functions and modules it reads by name are not described
    assert "np=" not in describe(lambda s: np.exp(s) * RATE)


class _Schedule:
    def __init__(self, rate):
        self.rate = rate

    def __call__(self, step):
        return self.rate * step


def test_a_callable_object_is_described_by_its_methods_too():
    """A schedule object was described by its attributes alone: another
    ``__call__`` of the same attributes went unnoticed."""
    other = type(
        "_Schedule",
        (),
        {"__init__": _Schedule.__init__, "__call__": lambda self, step: self.rate},
    )
    other.__qualname__ = _Schedule.__qualname__
    assert describe(_Schedule(0.1)) == describe(_Schedule(0.1))
    assert describe(_Schedule(0.1)) != describe(_Schedule(0.2))
    assert describe(_Schedule(0.1)) != describe(other(0.1))
    assert describe(_Schedule(0.1)).startswith("_Schedule(rate=0.1)<code ")


class _Slots:
    __slots__ = ("rate",)

    def __init__(self, rate):
        self.rate = rate


def test_what_cannot_be_described_is_marked_as_such():
    """An object whose state describe cannot read was written as its type's
    name alone, as if it were all there was to compare; one of ``__slots__``
    is read (it was marked unreadable, and two rates compared equal)."""
    assert describe(_Slots(0.1)) == "_Slots(rate=0.1)" != describe(_Slots(0.2))
    assert describe(jax.random.key(0)) == "<unrepresentable PRNGKeyArray>"
    tx = optax.chain(optax.scale(0.5), optax.scale(jax.random.key(0)))
    assert "scale(step_size=<unrepresentable PRNGKeyArray>)" in describe(tx)
    assert "scale(step_size=0.5)" in describe(tx)


def test_a_named_optimizers_rate_computes_as_recorded():
    """fit recorded learning_rate=0.5 for np.float32(0.5) too, and optax
    computed with each as given (bfloat16 updates for 0.5, float32 ones for
    np.float32(0.5)): a resume with the other went unnoticed."""
    params = {"w": jax.numpy.ones(3, jax.numpy.bfloat16)}
    for rate in (0.5, np.float32(0.5), np.array(0.5), jax.numpy.asarray(0.5)):
        tx, _ = optimizers.make_optimizer("sgd", rate, None)
        updates, _ = tx.update(params, tx.init(params), params)
        assert updates["w"].dtype == jax.numpy.bfloat16, type(rate)
        assert optimizers.learning_rate_setting("sgd", rate) == 0.5


def test_a_schedule_describes_the_same_before_and_after_its_first_call():
    """optax's cosine schedule turns its int decay_steps into a float when first
    called (by fit, or by a plot), so a resumed run was refused."""
    schedule = optax.cosine_decay_schedule(1e-3, 100)
    before = describe(schedule)
    schedule(0)
    assert describe(schedule) == before
    assert describe(optax.cosine_decay_schedule(1e-3, 200)) != before


class _Config:
    def __init__(self, rate, epochs):
        self.rate, self.epochs = rate, epochs


ARGS = _Config(0.01, 10)
CONFIG = {"rate": 0.1, "epochs": 3}
BASE = optax.linear_schedule(0.1, 0.0, 10)


def test_of_a_module_level_object_only_what_a_function_reads_counts():
    by_attribute = lambda s: ARGS.rate * s  # noqa: E731
    by_key = lambda s: CONFIG["rate"] * s  # noqa: E731
    by_schedule = lambda s: 2 * BASE(s)  # noqa: E731
    described = [describe(f) for f in (by_attribute, by_key, by_schedule)]
    assert "ARGS.rate=0.01" in described[0] and "CONFIG['rate']=0.1" in described[1]
    assert "BASE=polynomial_schedule(" in described[2]  # linear_schedule's maker
    ARGS.epochs, CONFIG["epochs"] = 20, 6  # what they do not read
    assert [describe(f) for f in (by_attribute, by_key)] == described[:2]
    ARGS.rate, CONFIG["rate"] = 0.02, 0.2  # what they read
    try:
        assert describe(by_attribute) != described[0]
        assert describe(by_key) != described[1]
    finally:
        ARGS.rate, CONFIG["rate"] = 0.01, 0.1
    # another signature is another function
    assert describe(lambda s: 0.1) != describe(lambda *s: 0.1)


class _Factor:
    factor = 0.1

    def __call__(self, step):
        return self.factor * step


def test_class_level_values_a_callable_object_reads_count():
    before = describe(_Factor())
    _Factor.factor = 0.2
    try:
        assert describe(_Factor()) != before
    finally:
        _Factor.factor = 0.1
    assert describe(_Factor()) == before
