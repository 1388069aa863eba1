"""Losses against NumPy formulas, with and without masks."""

import jax
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
