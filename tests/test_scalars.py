"""Checks of scalar arguments: random keys (no jit, nothing compiled)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rnnbptt._scalars import prng_key


def test_a_raw_key_of_any_implementation_is_a_key():
    """Raw ``uint32[4]`` key data (the shape of the "rbg" and "unsafe_rbg"
    implementations) was refused: only threefry's ``uint32[2]`` was a key."""
    raw = np.arange(4, dtype=np.uint32)
    key = prng_key("f", "key", raw)
    assert jax.random.key_impl(key) == "rbg"  # raw data does not say which
    np.testing.assert_array_equal(jax.random.key_data(key), raw)
    # the default implementation's shape stays raw data, as JAX reads it
    threefry = jax.random.PRNGKey(3)
    assert prng_key("f", "key", threefry) is not None
    np.testing.assert_array_equal(prng_key("f", "key", threefry), threefry)
    for impl in ("threefry2x32", "rbg", "unsafe_rbg"):  # typed keys as they are
        typed = jax.random.key(0, impl=impl)
        assert prng_key("f", "key", typed) is typed


def test_a_raw_key_of_the_default_implementation_is_read_by_it():
    previous = jax.config.jax_default_prng_impl
    jax.config.update("jax_default_prng_impl", "rbg")
    try:
        raw = jnp.arange(4, dtype=jnp.uint32)
        assert prng_key("f", "key", raw) is raw  # as JAX reads it: with rbg
        two = prng_key("f", "key", np.arange(2, dtype=np.uint32))
        assert jax.random.key_impl(two) == "threefry2x32"
    finally:
        jax.config.update("jax_default_prng_impl", previous)


@pytest.mark.parametrize(
    "bad, got",
    [
        (np.zeros(3, np.uint32), r"an array of shape \(3,\) and dtype uint32"),
        (np.zeros((2, 2), np.uint32), r"an array of shape \(2, 2\)"),
        (np.zeros(2, np.int32), r"an array of shape \(2,\) and dtype int32"),
        (np.zeros(4, np.float32), "dtype float32"),
        (0, "int 0"),
        (jax.random.split(jax.random.key(0)), r"shape \(2,\) and dtype key<fry>"),
    ],
)
def test_what_is_not_one_key_is_refused(bad, got):
    with pytest.raises(TypeError, match=r"f: `key` must be one JAX random key") as e:
        prng_key("f", "key", bad)
    assert e.match(got)
    if not isinstance(bad, int):
        assert e.match(r"\(raw key data is uint32 of shape \(2,\)(,| or) \(4,\)")
