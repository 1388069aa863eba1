"""Jitted training steps: full BPTT and truncated BPTT(k1, k2), either engine.

Truncated BPTT in the general form of Williams and Peng (1990): the forward pass
runs continuously through the whole sequence, carrying the state; every k1 steps
the loss on those k1 outputs is backpropagated k2 steps into the past (k2 >= k1)
and the parameters are updated. k1 = k2 is the common chunked form (the carry is
cut, ``stop_gradient``, at each chunk boundary); k1 = k2 = T is full BPTT.

How it runs: the sequence is padded on the left with k2 - k1 masked steps (they
leave the initial carry unchanged) and on the right up to a multiple of k1. Chunk
j then reads the window ``[j*k1, j*k1 + k2)`` of the padded sequence: its first
k1 steps carry the state forward to the next window's start, its last k1 outputs
are chunk j's loss. One ``lax.scan`` over the chunks, so the compiled program
does not grow with the number of chunks.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax

from ._checks import DEFAULT_BACKWARD, check_backward, check_checkpoint_every
from ._scalars import positive_int
from .data_checks import check_target_shape
from .losses import get_loss
from .parallel import batch_sharding, check_divisible, replicated, resolve_mesh

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class TBPTT:
    """Truncated BPTT(k1, k2): update every ``k1`` steps, backpropagate ``k2`` steps.

    Args:
        k1: steps between parameter updates (the chunk of outputs in each loss).
        k2: steps the gradient flows back, ``k2 >= k1``; defaults to ``k1``.
    """

    k1: int
    k2: int | None = None

    def __post_init__(self):
        if self.k2 is None:
            object.__setattr__(self, "k2", self.k1)
        for name in ("k1", "k2"):
            object.__setattr__(
                self, name, positive_int("TBPTT", name, getattr(self, name))
            )
        if self.k2 < self.k1:
            raise ValueError(
                f"TBPTT: `k2` (steps backpropagated) must be >= `k1` (steps between "
                f"updates), got k1={self.k1}, k2={self.k2}"
            )

    def chunks(self, steps: int) -> int:
        return -(-steps // self.k1)


def as_tbptt(fn: str, tbptt) -> TBPTT | None:
    """None (full BPTT), ``k``, ``(k1, k2)`` or a ``TBPTT``, as a ``TBPTT``."""
    if tbptt is None or isinstance(tbptt, TBPTT):
        return tbptt
    if isinstance(tbptt, int) and not isinstance(tbptt, bool):
        return TBPTT(tbptt)
    if isinstance(tbptt, tuple) and len(tbptt) == 2:
        return TBPTT(*tbptt)
    raise TypeError(f"{fn}: `tbptt` must be None, k, (k1, k2) or TBPTT, got {tbptt!r}")


def _all_finite(tree) -> Array:
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]
    return jnp.all(jnp.stack(leaves))


def _apply_update(optimizer, params, opt_state, grads, ok):
    """One optimizer update, applied only if ``ok`` and the result is finite."""
    updates, new_state = optimizer.update(grads, opt_state, params)
    new_params = optax.apply_updates(params, updates)
    ok = ok & _all_finite(new_params)
    keep = lambda new, old: jnp.where(ok, new, old)  # noqa: E731
    return (
        jax.tree.map(keep, new_params, params),
        jax.tree.map(keep, new_state, opt_state),
        ok,
    )


def _check_batch_targets(fn: str, model, loss, xs, ys) -> None:
    """A named loss's targets against the batch (shapes only: trace time); a
    loss function of one's own takes whatever targets it was written for."""
    if not callable(loss):
        check_target_shape(fn, model, loss, ys, *xs.shape[:2], name="batch")


def valid_count(model, xs, mask) -> Array:
    """How many outputs a batch's loss averages over (for weighting batch means):
    one per sequence, or one per valid step; read from the inputs, so that a
    loss of one's own may take targets of any form."""
    if model.head == "many_to_one":
        return jnp.asarray(xs.shape[0])
    return jnp.asarray(xs.shape[0] * xs.shape[1]) if mask is None else jnp.sum(mask)


def make_objective(
    model, loss, backward: str = DEFAULT_BACKWARD, checkpoint_every=None
) -> Callable:
    """``objective(params, xs, ys, mask, key, carry0) -> (loss, final carries)``."""
    loss_fn = get_loss(loss)

    def objective(params, xs, ys, mask, key, carry0=None):
        out, finals = model.apply(
            params,
            xs,
            mask,
            carry0=carry0,
            key=key,
            backward=backward,
            checkpoint_every=checkpoint_every,
            return_carry=True,
        )
        loss_mask = mask if model.head == "many_to_many" else None
        return loss_fn(out, ys, loss_mask), finals

    return objective


def make_train_step(
    model,
    loss,
    optimizer: optax.GradientTransformation,
    *,
    backward=DEFAULT_BACKWARD,
    checkpoint_every=None,
    tbptt=None,
    data_parallel=None,
) -> Callable:
    """A jitted ``step(params, opt_state, xs, ys, mask, key, carry0=None)``.

    Returns ``(params, opt_state, metrics)``; ``metrics`` holds ``loss`` (mean over
    the batch's valid targets), ``grad_norm`` (global norm before any clipping,
    averaged over chunks), ``updates`` (optimizer updates applied), ``finite``
    (False if the loss, the gradients or the new parameters were not finite: the
    offending update is then not applied, nor any after it), ``count`` (the
    valid targets the loss averages over) and ``carry``, every layer's state at
    the end of the batch.

    Stateful streams: pass ``metrics["carry"]`` as the next batch's ``carry0`` to
    continue the same sequences (the gradient stops at the batch boundary); pass
    None, or ``model.reset_carry``, to start streams afresh. ``key`` seeds dropout
    (None: no dropout). ``backward`` and ``checkpoint_every`` choose the gradient
    engine and checkpointing through time (see ``unroll``); neither changes the
    result.

    ``data_parallel`` (None, True or a ``Mesh`` with a ``"batch"`` axis; see
    ``rnnbptt.parallel``) splits each batch across devices with the parameters
    and optimizer state replicated; the batch must divide evenly across the
    ``"batch"`` axis (a ValueError says so otherwise). With several processes,
    pass global arrays (``rnnbptt.parallel.global_batch``).
    """
    fn = "make_train_step"
    check_backward(fn, backward)
    mesh = resolve_mesh(fn, data_parallel)
    every = check_checkpoint_every(fn, checkpoint_every)
    tbptt = as_tbptt(fn, tbptt)
    if not (
        callable(getattr(optimizer, "init", None))
        and callable(getattr(optimizer, "update", None))
    ):
        raise TypeError(
            f"{fn}: `optimizer` must be an optax GradientTransformation (e.g. "
            f"optax.adam(1e-3)), got {type(optimizer).__name__}"
        )
    loss_fn = get_loss(loss, fn)
    objective = make_objective(model, loss, backward, every)
    grad_fn = jax.value_and_grad(objective, has_aux=True)

    def full_step(params, opt_state, xs, ys, mask, key, carry0=None):
        _check_batch_targets(fn, model, loss, xs, ys)
        (value, finals), grads = grad_fn(params, xs, ys, mask, key, carry0)
        norm = optax.tree.norm(grads)
        count = valid_count(model, xs, mask)
        # a batch of padding only has nothing to learn: no update, as in tbptt_step
        ok = jnp.isfinite(value) & jnp.isfinite(norm) & (count > 0)
        params, opt_state, ok = _apply_update(optimizer, params, opt_state, grads, ok)
        metrics = {
            "loss": value,
            "grad_norm": norm,
            "updates": ok.astype(jnp.int32),
            "finite": ok | (count == 0),
            "count": count,
            "carry": jax.lax.stop_gradient(finals),
        }
        return params, opt_state, metrics

    if tbptt is None:
        return _compile(full_step, mesh)
    if model.bidirectional:
        raise ValueError(
            "make_train_step: truncated BPTT needs a causal model; a bidirectional "
            "layer reads the future"
        )
    if model.head == "many_to_one":
        raise ValueError(
            "make_train_step: truncated BPTT needs an output at every step "
            "(head='many_to_many'); a many-to-one model has one loss per sequence"
        )
    k1, k2 = tbptt.k1, tbptt.k2

    def tbptt_step(params, opt_state, xs, ys, mask, key, carry0=None):
        _check_batch_targets(fn, model, loss, xs, ys)
        B, T, _ = xs.shape
        n = tbptt.chunks(T)
        right = n * k1 - T
        valid = jnp.ones((B, T), bool) if mask is None else mask
        xs_p = jnp.pad(xs, ((0, 0), (k2 - k1, right), (0, 0)))
        mask_p = jnp.pad(valid, ((0, 0), (k2 - k1, right)))
        ys_p = jnp.pad(ys, ((0, 0), (0, right)) + ((0, 0),) * (ys.ndim - 2))
        loss_mask_p = jnp.pad(valid, ((0, 0), (0, right)))

        def chunk_loss(params, carry, j, key):
            xw = jax.lax.dynamic_slice_in_dim(xs_p, j * k1, k2, axis=1)
            mw = jax.lax.dynamic_slice_in_dim(mask_p, j * k1, k2, axis=1)
            yc = jax.lax.dynamic_slice_in_dim(ys_p, j * k1, k1, axis=1)
            mc = jax.lax.dynamic_slice_in_dim(loss_mask_p, j * k1, k1, axis=1)
            apply = lambda x, m, c, k: model.apply(  # noqa: E731
                params,
                x,
                m,
                carry0=c,
                key=k,
                backward=backward,
                checkpoint_every=every,
                return_carry=True,
            )
            out, carry_next = apply(xw[:, :k1], mw[:, :k1], carry, key)
            carry_end = carry_next  # the state at the window's end
            if k2 > k1:
                # a key of its own: with k2 = 2 k1 the shapes are the same, and
                # one key would draw the same dropout masks for both halves
                key_b = None if key is None else jax.random.fold_in(key, 1)
                out_b, carry_end = apply(xw[:, k1:], mw[:, k1:], carry_next, key_b)
                out = jnp.concatenate([out, out_b], axis=1)
            value = loss_fn(out[:, -k1:], yc, mc)
            aux = jax.lax.stop_gradient((carry_next, carry_end))
            return value, (*aux, jnp.sum(mc))

        chunk_grad = jax.value_and_grad(chunk_loss, has_aux=True)

        def one_chunk(state, j):
            params, opt_state, carry, ok, _ = state
            chunk_key = None if key is None else jax.random.fold_in(key, j)
            (value, (carry_next, carry_end, count)), grads = chunk_grad(
                params, carry, j, chunk_key
            )
            norm = optax.tree.norm(grads)
            chunk_ok = ok & jnp.isfinite(value) & jnp.isfinite(norm)
            has_targets = count > 0  # a chunk of padding only: nothing to learn
            new_params, new_opt, applied = _apply_update(
                optimizer, params, opt_state, grads, chunk_ok & has_targets
            )
            ok = chunk_ok & (applied | ~has_targets)
            state = (new_params, new_opt, carry_next, ok, carry_end)
            return state, (value, norm, count, applied)

        if carry0 is None:
            carry0 = model.initial_carry(B, xs.dtype)
        state = (params, opt_state, carry0, jnp.array(True), carry0)
        (params, opt_state, _, ok, carry_end), (values, norms, counts, applied) = (
            jax.lax.scan(one_chunk, state, jnp.arange(n))
        )
        weights = counts.astype(values.dtype)
        metrics = {
            "loss": jnp.sum(values * weights) / jnp.maximum(jnp.sum(weights), 1),
            "grad_norm": jnp.sum(norms * (counts > 0))
            / jnp.maximum(jnp.sum(counts > 0), 1),
            "updates": jnp.sum(applied.astype(jnp.int32)),
            "finite": ok,
            "count": valid_count(model, xs, mask),
            "carry": carry_end,
        }
        return params, opt_state, metrics

    return _compile(tbptt_step, mesh)


def _compile(step, mesh):
    """``step`` jitted; with a mesh, the batch split and the state replicated."""
    if mesh is None:
        return jax.jit(step)
    data, same = batch_sharding(mesh), replicated(mesh)
    # (params, opt_state, xs, ys, mask, key, carry0)
    jitted = jax.jit(step, in_shardings=(same, same, data, data, data, same, data))

    def sharded_step(params, opt_state, xs, ys, mask, key, carry0=None):
        check_divisible("make_train_step", "a batch", xs.shape[0], mesh)
        return jitted(params, opt_state, xs, ys, mask, key, carry0)

    return sharded_step


def make_eval_step(model, loss) -> Callable:
    """A jitted ``evaluate(params, xs, ys, mask) -> (mean loss, valid count)``."""
    get_loss(loss, "make_eval_step")
    objective = make_objective(model, loss)

    @jax.jit
    def evaluate(params, xs, ys, mask):
        _check_batch_targets("make_eval_step", model, loss, xs, ys)
        value, _ = objective(params, xs, ys, mask, None)
        return value, valid_count(model, xs, mask)

    return evaluate
