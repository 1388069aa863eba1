"""Checks of scalar arguments: random keys (no jit, nothing compiled)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rnnbptt._scalars import prng_key


def test_typed_keys_of_any_implementation_and_default_raw_data_are_keys():
    threefry = jax.random.PRNGKey(3)  # the default implementation's raw data
    np.testing.assert_array_equal(prng_key("f", "key", threefry), threefry)
    for impl in ("threefry2x32", "rbg", "unsafe_rbg"):  # typed keys as they are
        typed = jax.random.key(0, impl=impl)
        assert prng_key("f", "key", typed) is typed


def test_a_raw_key_of_the_default_implementation_is_read_by_it():
    previous = jax.config.jax_default_prng_impl
    jax.config.update("jax_default_prng_impl", "rbg")
    try:
        # uint32[4] was refused whatever the default: under rbg it is a key,
        # read by rbg as JAX reads it; threefry's uint32[2] is not any more
        raw = jnp.arange(4, dtype=jnp.uint32)
        assert prng_key("f", "key", raw) is raw
        with pytest.raises(TypeError, match=r"rbg, is uint32 of shape \(4,\)"):
            prng_key("f", "key", np.arange(2, dtype=np.uint32))
    finally:
        jax.config.update("jax_default_prng_impl", previous)


@pytest.mark.parametrize(
    "bad, got",
    [
        (np.zeros(3, np.uint32), r"an array of shape \(3,\) and dtype uint32"),
        (np.zeros((2, 2), np.uint32), r"an array of shape \(2, 2\)"),
        (np.zeros(2, np.int32), r"an array of shape \(2,\) and dtype int32"),
        (np.zeros(4, np.float32), "dtype float32"),
        (np.zeros(4, np.uint32), r"an array of shape \(4,\)"),  # not threefry's
        (0, "int 0"),
        (jax.random.split(jax.random.key(0)), r"shape \(2,\) and dtype key<fry>"),
    ],
)
def test_what_is_not_one_key_is_refused(bad, got):
    with pytest.raises(TypeError, match=r"f: `key` must be one JAX random key") as e:
        prng_key("f", "key", bad)
    assert e.match(got)
    if not isinstance(bad, int):
        assert e.match(r"threefry2x32, is uint32 of shape \(2,\); wrap other data")
