"""Non-crossing quantile outputs and the pinball loss, against hand computations."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rnnbptt.forecast.quantiles import (
    monotone_quantiles,
    pinball_loss,
    quantile_levels,
)


def test_quantile_levels_by_hand():
    assert quantile_levels((80, 95)) == (0.025, 0.1, 0.5, 0.9, 0.975)
    assert quantile_levels((50,)) == (0.25, 0.5, 0.75)
    assert quantile_levels(()) == (0.5,)
    for bad, error in [
        ((100,), ValueError),
        ((80, 80), ValueError),
        (("80",), TypeError),
    ]:
        with pytest.raises(error, match="quantile_levels"):
            quantile_levels(bad)


def test_monotone_quantiles_by_hand_and_never_crossing():
    softplus = lambda v: np.log1p(np.exp(v))  # noqa: E731
    raw = jnp.array([0.3, -2.0, 5.0, 1.0, -40.0])
    want = [
        5.0 - softplus(-2.0) - softplus(0.3),
        5.0 - softplus(-2.0),
        5.0,
        5.0 + softplus(1.0),
        5.0 + softplus(1.0) + softplus(-40.0),
    ]
    np.testing.assert_allclose(monotone_quantiles(raw), want, rtol=1e-14)
    wild = 30 * jax.random.normal(jax.random.key(0), (64, 7, 5), jnp.float64)
    assert not bool(jnp.all(jnp.diff(wild, axis=-1) >= 0))  # raw outputs cross
    # never below the one before (in floating point, a tiny increment may round
    # away against a large median: equal, never crossed)
    assert bool(jnp.all(jnp.diff(monotone_quantiles(wild), axis=-1) >= 0))
    with pytest.raises(ValueError, match="odd number"):
        monotone_quantiles(jnp.zeros(4))


def test_pinball_loss_by_hand():
    # y = 1 against q = 0, 1, 3 at 0.1, 0.5, 0.9: 0.1 * 1, 0, 0.1 * 2; mean 0.1
    got = pinball_loss(jnp.array([[0.0, 1.0, 3.0]]), jnp.array([1.0]), (0.1, 0.5, 0.9))
    assert float(got) == pytest.approx(0.1, rel=1e-14)


def test_pinball_loss_is_least_at_the_sample_quantile():
    # y = 0 .. 99: the 0.9 pinball loss of a constant q is flat on [89, 90] and
    # larger anywhere else on the grid
    y = jnp.arange(100.0)
    grid = jnp.arange(80.0, 100.0)
    losses = np.array(
        [float(pinball_loss(jnp.full((100, 1), q), y, (0.9,))) for q in grid]
    )
    best = grid[losses <= losses.min() + 1e-12]
    assert best.tolist() == [89.0, 90.0]


def test_a_masked_entry_counts_for_nothing():
    quantiles = jnp.array([[0.0, 1.0, 2.0], [5.0, 6.0, 7.0]])
    mask = jnp.array([True, False])
    got = pinball_loss(quantiles, jnp.array([1.0, jnp.nan]), (0.1, 0.5, 0.9), mask)
    alone = pinball_loss(quantiles[:1], jnp.array([1.0]), (0.1, 0.5, 0.9))
    assert float(got) == float(alone)


@pytest.mark.parametrize(
    "args, words",
    [
        ((jnp.zeros((2, 3)), jnp.zeros(2), (0.5,)), ["`levels`", "3 numbers"]),
        ((jnp.zeros((2, 3)), jnp.zeros(3), (0.1, 0.5, 0.9)), ["`targets`", "(2,)"]),
        (
            (jnp.zeros((2, 3)), jnp.zeros(2), (0.1, 0.5, 0.9), jnp.ones(2)),
            ["`mask`", "bool"],
        ),
    ],
)
def test_bad_input_gets_a_clear_error(args, words):
    with pytest.raises(ValueError) as info:
        pinball_loss(*args)
    for word in ["pinball_loss", *words]:
        assert word in str(info.value)
