"""Random draws that share their compiled programs across shapes.

Called eagerly, each ``jax.random`` sampler compiles a program for every new
shape, and on CPU that costs 0.3-0.6 s a shape: the threefry generator is a
large program. Under JAX's default counter-based threefry
(``jax_threefry_partitionable``, on since JAX 0.5), the value at flat position
``i`` of a draw depends on the key and ``i`` alone, not on the shape, so a
draw of any shape is the first values of a longer draw of the same key. These
functions draw a power-of-two length (at least ``MIN_LENGTH``) and keep the
first ones: one program serves every shape up to that length, and the values
are bitwise those of ``jax.random`` (``tests/test_draws.py`` compares them).
Under a tracer (inside ``jit``), another generator (``rbg``) or the older
threefry they call ``jax.random`` itself.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp

MIN_LENGTH = 4096


def _shared(key) -> bool:
    """Whether a longer draw cut to size reproduces ``jax.random``'s own: a
    concrete threefry key under the counter-based threefry."""
    if isinstance(key, jax.core.Tracer) or not jax.config.jax_threefry_partitionable:
        return False
    return str(jax.random.key_impl(key)) == "threefry2x32"


def _length(size: int) -> int:
    return max(MIN_LENGTH, 1 << max(size - 1, 0).bit_length())


@functools.partial(jax.jit, static_argnums=(1, 2))
def _normal_flat(key, length: int, dtype) -> jax.Array:
    return jax.random.normal(key, (length,), dtype)


@functools.partial(jax.jit, static_argnums=(1, 2))
def _uniform_flat(key, length: int, dtype, minval, maxval) -> jax.Array:
    return jax.random.uniform(key, (length,), dtype, minval, maxval)


@functools.partial(jax.jit, static_argnums=1)
def _cut(flat: jax.Array, shape: tuple) -> jax.Array:
    return flat[: math.prod(shape)].reshape(shape)


def _float(dtype) -> jnp.dtype:
    """``dtype``, or JAX's default float (float64 under x64, else float32)."""
    return jnp.dtype(jax.dtypes.canonicalize_dtype(float if dtype is None else dtype))


def normal(key: jax.Array, shape: tuple, dtype=None) -> jax.Array:
    """``jax.random.normal(key, shape, dtype)``, bitwise."""
    shape, dtype = tuple(shape), _float(dtype)
    if not _shared(key):
        return jax.random.normal(key, shape, dtype)
    return _cut(_normal_flat(key, _length(math.prod(shape)), dtype), shape)


def uniform(key: jax.Array, shape: tuple, dtype=None, minval=0.0, maxval=1.0):
    """``jax.random.uniform(key, shape, dtype, minval, maxval)``, bitwise."""
    shape, dtype = tuple(shape), _float(dtype)
    if not _shared(key):
        return jax.random.uniform(key, shape, dtype, minval, maxval)
    flat = _uniform_flat(key, _length(math.prod(shape)), dtype, minval, maxval)
    return _cut(flat, shape)


@jax.jit
def _orthonormalised(z: jax.Array) -> jax.Array:
    """``jax.random.orthogonal``'s arithmetic on its normal draws ``z``."""
    q, r = jnp.linalg.qr(z)
    return q * jnp.expand_dims(jnp.sign(jnp.diagonal(r, axis1=-2, axis2=-1)), -2)


def orthogonal(key: jax.Array, n: int, dtype=None) -> jax.Array:
    """``jax.nn.initializers.orthogonal()(key, (n, n), dtype)``, bitwise: an
    [n, n] orthogonal matrix, uniformly distributed."""
    dtype = _float(dtype)
    if not _shared(key):
        return jax.nn.initializers.orthogonal()(key, (n, n), dtype)
    return _orthonormalised(normal(key, (n, n), dtype))
