"""Losses against NumPy formulas, with and without masks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rnnbptt import losses

RNG = np.random.default_rng(0)
PRED = RNG.normal(size=(3, 5, 4))
TARGET = RNG.normal(size=(3, 5, 4))
LABELS = RNG.integers(0, 4, size=(3, 5))
MASK = np.arange(5)[None, :] < np.array([[5], [2], [3]])

# Each loss, and its value and gradient, as one jitted program per argument
# shapes, shared by the tests (eagerly, every operation of a loss and of its
# gradient compiles a program of its own).
VALUE = {name: jax.jit(fn) for name, fn in losses.LOSSES.items()}
VALUE_AND_GRAD = {
    name: jax.jit(jax.value_and_grad(fn)) for name, fn in losses.LOSSES.items()
}


def _log_softmax(z):
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def _per_step(name):
    if name == "mse":
        return ((PRED - TARGET) ** 2).mean(-1), TARGET
    if name == "mae":
        return np.abs(PRED - TARGET).mean(-1), TARGET
    if name == "cross_entropy":
        return -np.take_along_axis(_log_softmax(PRED), LABELS[..., None], -1)[
            ..., 0
        ], LABELS
    probs = 1 / (1 + np.exp(-PRED))
    target01 = (TARGET > 0).astype(float)
    bce = -(target01 * np.log(probs) + (1 - target01) * np.log(1 - probs))
    return bce.mean(-1), target01


@pytest.mark.parametrize("name", sorted(losses.LOSSES))
def test_loss_is_mean_over_valid_steps(name):
    per_step, target = _per_step(name)
    fn = VALUE[name]
    np.testing.assert_allclose(fn(PRED, target), per_step.mean(), rtol=1e-12)
    np.testing.assert_allclose(
        fn(PRED, target, MASK), per_step[MASK].mean(), rtol=1e-12
    )
    # many-to-one: [B, K] predictions with a [B] mask
    np.testing.assert_allclose(
        fn(PRED[:, 0], target[:, 0], MASK[:, 1]),
        per_step[:, 0][MASK[:, 1]].mean(),
        rtol=1e-12,
    )


@pytest.mark.parametrize("name", sorted(losses.LOSSES))
def test_padding_gets_no_gradient_and_empty_mask_gives_zero(name):
    _, target = _per_step(name)
    _, grad = VALUE_AND_GRAD[name](PRED, target, MASK)  # with respect to PRED
    assert np.all(np.asarray(grad)[~MASK] == 0)
    assert np.all(np.any(np.asarray(grad)[MASK] != 0, axis=-1))
    assert float(VALUE[name](PRED, target, np.zeros_like(MASK))) == 0.0


@pytest.mark.parametrize("name", sorted(losses.LOSSES))
def test_whatever_fills_the_padding_stays_out(name):
    _, target = _per_step(name)
    dirty = target.copy()
    dirty[~MASK] = -100 if name == "cross_entropy" else np.nan
    value_and_grad = VALUE_AND_GRAD[name]
    for args in ((PRED, MASK), (PRED[:, 0], MASK[:, 1])):
        pred, mask = args
        clean_t, dirty_t = (
            (target, dirty) if mask.ndim == 2 else (target[:, 0], dirty[:, 0])
        )
        value, grad = value_and_grad(pred, clean_t, mask)
        dirty_value, dirty_grad = value_and_grad(pred, dirty_t, mask)
        assert np.isfinite(dirty_value) and np.all(np.isfinite(dirty_grad))
        np.testing.assert_array_equal(dirty_value, value)
        np.testing.assert_array_equal(dirty_grad, grad)


def test_unknown_loss_name():
    with pytest.raises(ValueError, match="`loss` must be one of"):
        losses.get_loss("hinge")


@pytest.mark.parametrize("name", sorted(losses.LOSSES))
def test_shapes_must_match_without_broadcasting(name):
    fn = losses.LOSSES[name]
    _, target = _per_step(name)
    with pytest.raises(ValueError, match="must have shape"):  # [B, 1] against [B]
        fn(PRED[:, 0, :1], target[:, 0, 0] if name != "cross_entropy" else LABELS)
    with pytest.raises(ValueError, match="`mask` must have shape"):  # K == T = 5
        fn(
            PRED[:, :, 0],
            target[:, :, 0] if name != "cross_entropy" else LABELS[:, 0],
            MASK,
        )
    if name != "cross_entropy":  # one value per sequence, masked per sequence
        np.testing.assert_allclose(
            VALUE[name](PRED[:, 0, 0], target[:, 0, 0], MASK[:, 1]),
            VALUE[name](PRED[:, 0, :1], target[:, 0, :1], MASK[:, 1]),
            rtol=1e-15,
        )


@pytest.mark.parametrize("name", sorted(losses.LOSSES))
@pytest.mark.parametrize("weights", [np.float64(0.5), 2, 1.0])
def test_a_mask_is_bool_not_a_weight(name, weights):
    """A float or int mask used to weight the sum and the count differently (a
    mask of 0.5s gave twice the mean squared error): refused, like unroll."""
    _, target = _per_step(name)
    with pytest.raises(TypeError, match="`mask` must have dtype bool"):
        losses.LOSSES[name](PRED, target, np.full(MASK.shape, weights))


@pytest.mark.parametrize(
    "name, bad, words",
    [
        ("cross_entropy", -1, "label at (1, 1) is -1; labels must be in [0, 4)"),
        ("cross_entropy", 4, "label at (1, 1) is 4; labels must be in [0, 4)"),
        ("binary_cross_entropy", 2.0, "target at (1, 1, 0) is 2.0"),
        ("binary_cross_entropy", -0.5, "targets must be in [0, 1]"),
    ],
)
def test_out_of_range_targets_are_refused_or_nan_under_jit(name, bad, words):
    """Outside jit, as fit does; under jit, where values are unknown, the loss is
    NaN rather than a wrong number (label -1 read the last class, 2.0 gave a
    negative binary cross-entropy). At a masked entry the value is padding."""
    _, target = _per_step(name)
    target = target.copy()
    target[1, 1] = bad
    with pytest.raises(ValueError) as error:
        losses.LOSSES[name](PRED, target, MASK)
    assert words in str(error.value)
    assert np.isnan(VALUE[name](PRED, target, MASK))
    target[1, 4] = bad  # masked out (row 1 has 2 valid steps), and [1, 1] fixed
    target[1, 1] = 0
    assert np.isfinite(losses.LOSSES[name](PRED, target, MASK))


@pytest.mark.parametrize("labels", [LABELS.astype(np.float64), LABELS > 1])
def test_labels_must_be_integers(labels):
    with pytest.raises(TypeError, match="labels must be integers"):
        losses.softmax_cross_entropy(PRED, labels)


@pytest.mark.parametrize("name", sorted(losses.LOSSES))
def test_arguments_that_are_not_arrays_are_named(name):
    _, target = _per_step(name)
    fn = losses.LOSSES[name]
    with pytest.raises(TypeError, match="`predictions` must be an array, got NoneType"):
        fn(None, target)
    with pytest.raises(TypeError, match="`mask` must be None or a bool array"):
        fn(PRED, target, "yes")


@pytest.mark.parametrize("many_to_one", [False, True])
def test_a_bfloat16_mean_counts_its_valid_entries_exactly(many_to_one):
    """In bfloat16 (8 bits of mantissa) 257 rounds to 256: a count in the
    values' dtype gave 1/256 for one error of 1 among 257 valid entries."""
    valid = np.arange(300) < 257
    target = np.zeros(300)
    target[0] = 1.0
    shape = (300, 1) if many_to_one else (1, 300, 1)
    pred = jnp.zeros(shape, jnp.bfloat16)
    target = jnp.asarray(target.reshape(shape), jnp.bfloat16)
    mask = valid if many_to_one else valid[None]
    got = VALUE["mse"](pred, target, mask)
    assert got.dtype == jnp.bfloat16
    assert (
        got == jnp.asarray(1 / 257, jnp.bfloat16) != jnp.asarray(1 / 256, jnp.bfloat16)
    )
