"""rnnbptt.draws gives jax.random's values bitwise, from shared programs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rnnbptt import draws

# below the shared minimum length in two and three dimensions, and above it
SHAPES = [(7, 5), (2, 3, 4), (draws.MIN_LENGTH + 1,)]


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_draws_are_jax_randoms_own(dtype):
    for i, shape in enumerate(SHAPES):
        key = jax.random.key(i)
        got, want = (
            draws.normal(key, shape, dtype),
            jax.random.normal(key, shape, dtype),
        )
        assert got.shape == shape and got.dtype == dtype
        np.testing.assert_array_equal(got, want)
    got = draws.uniform(key, (7, 5), dtype, -0.37, 0.37)
    np.testing.assert_array_equal(
        got, jax.random.uniform(key, (7, 5), dtype, -0.37, 0.37)
    )
    want = jax.nn.initializers.orthogonal()(key, (5, 5), dtype)
    np.testing.assert_array_equal(draws.orthogonal(key, 5, dtype), want)


def test_shapes_up_to_the_minimum_share_one_program():
    draws.normal(jax.random.key(0), (3, 3), jnp.float32)
    before = draws._normal_flat._cache_size()
    for shape in [(2, 9), (5,), (8, 8, 8)]:
        draws.normal(jax.random.key(1), shape, jnp.float32)
    assert draws._normal_flat._cache_size() == before


def test_under_jit_the_draw_is_jax_randoms_own():
    key = jax.random.key(3)
    got = jax.jit(lambda k: draws.normal(k, (6, 2)))(key)
    np.testing.assert_array_equal(got, jax.random.normal(key, (6, 2)))
    assert got.dtype == jnp.float64  # the default float (x64 is on in the suite)
