"""Training on a stream, online: ``make_online_step``.

A model of one recurrent layer and a per-step readout consumes a stream a chunk
at a time (a chunk of one step is the fully online case). Each call runs the
chunk forward carrying the state and the engine's influence (``online.py``),
takes the loss of the chunk's predictions, forms the gradient of the readout
directly and that of the recurrent layer from the influence, and applies one
optimizer update. The influence is carried from chunk to chunk, so the gradient
sees dependencies across chunk boundaries, without truncation (for RTRL,
exactly, as if the parameters had not changed since the stream began: the usual
online approximation).
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from . import online
from ._scalars import positive_int
from .forward import keep_rows
from .losses import get_loss
from .step import all_finite, apply_update

Array = jax.Array


class OnlineState(NamedTuple):
    """What a stream carries from one chunk to the next: the recurrent layer's
    ``carry``, the engine's ``influence`` state, and the ``key`` of UORO's
    random signs."""

    carry: Any
    influence: Any
    key: Array


class OnlineStep:
    """``step(params, opt_state, state, xs, ys, mask=None)`` returns ``(params,
    opt_state, state, metrics)``; ``metrics`` holds ``loss`` (the chunk's mean
    over valid targets), ``grad_norm`` and ``finite`` (False where the loss, the
    gradient or the new parameters are not finite; the update is then not
    applied). ``xs`` [B, C, D], ``ys`` [B, C, K] (or [B, C] integer labels for
    ``"cross_entropy"``), ``mask`` [B, C] bool.

    ``step.init(params, batch_size, key=None)`` is the state of fresh streams;
    ``step.reset(state, done)`` restarts the streams (rows) where ``done`` [B]
    is True. A step whose update is skipped (``finite`` False) still carries
    the new state on, as ``make_train_step`` does: reset a stream that went
    non-finite. Each call runs the chunk forward twice, once for the loss's
    cotangent and once carrying the influence.
    """

    def __init__(self, model, loss, optimizer, engine: str, max_bytes: int):
        self.model, self.loss, self.optimizer = model, loss, optimizer
        self.engine, self.max_bytes = engine, max_bytes
        self.cell = model.cells[0]
        self._step = jax.jit(functools.partial(_online_update, self))
        self._run = jax.jit(functools.partial(_online_run, self), static_argnums=6)

    def init(self, params, batch_size: int, key=None) -> OnlineState:
        fn = "OnlineStep.init"
        batch = positive_int(fn, "batch_size", batch_size)
        layer = params.layers[0]
        online.check_size(fn, self.cell, layer, batch, self.engine, self.max_bytes)
        key = online.check_key(fn, self.engine, key)
        dtype = layer.w_ih.dtype
        return OnlineState(
            self.cell.initial_carry(batch, dtype),
            online.init_influence(self.cell, self.engine, layer, batch, dtype),
            key,
        )

    def reset(self, state: OnlineState, done) -> OnlineState:
        streams = jax.tree.leaves(state.carry)[0].shape[0]
        done = jnp.asarray(done)
        if done.dtype != bool or done.shape != (streams,):
            raise ValueError(
                f"OnlineStep.reset: `done` must be bool [{streams}] (True where a "
                f"stream starts afresh), got {done.dtype} {done.shape}"
            )
        fresh = jax.tree.map(jnp.zeros_like, state)
        carry = keep_rows(~done, state.carry, fresh.carry)
        influence = online._keep_influence(
            self.engine, ~done, state.influence, fresh.influence
        )
        return state._replace(carry=carry, influence=influence)

    def __call__(self, params, opt_state, state, xs, ys, mask=None):
        xs, ys, mask = self._check_chunk("OnlineStep", state, xs, ys, mask)
        return self._step(params, opt_state, state, xs, ys, mask)

    def _check_chunk(self, fn, state, xs, ys, mask):
        """``xs`` [B, C, D] for the state's B streams, ``ys`` [B, C, ...],
        ``mask`` [B, C] bool (None: all valid), or a clear error."""
        from ._checks import check_mask, check_xs

        carry = jax.tree.leaves(state.carry)[0]
        xs, ys = check_xs(fn, self.cell, xs, carry.dtype), jnp.asarray(ys)
        streams, D = carry.shape[0], self.cell.input_size
        if xs.shape[0] != streams:
            raise ValueError(
                f"{fn}: `xs` must be [B, C, D] = [{streams}, C, {D}] (the state's "
                f"streams, a chunk of C steps, the cell's inputs), got {xs.shape}"
            )
        if ys.shape[:2] != xs.shape[:2]:
            raise ValueError(
                f"{fn}: `ys` must start with xs' [B, C] = {xs.shape[:2]}, got "
                f"{ys.shape}"
            )
        mask = check_mask(fn, mask, *xs.shape[:2])
        return xs, ys, jnp.ones(xs.shape[:2], bool) if mask is None else mask

    def run(self, params, opt_state, state, xs, ys, mask=None, *, chunk: int = 1):
        """Consecutive calls on the chunks of ``chunk`` steps of ``xs`` [B, N,
        D] (N a multiple of ``chunk``), in one compiled loop: the same result as
        calling the step chunk by chunk. Returns ``(params, opt_state, state,
        metrics)``, each metric stacked [N / chunk]."""
        fn = "OnlineStep.run"
        chunk = positive_int(fn, "chunk", chunk)
        xs, ys, mask = self._check_chunk(fn, state, xs, ys, mask)
        if xs.shape[1] % chunk:
            raise ValueError(
                f"{fn}: `xs` must be [B, N, D] with N a multiple of chunk {chunk}, "
                f"got shape {xs.shape}"
            )
        return self._run(params, opt_state, state, xs, ys, mask, chunk)


def _online_run(step: OnlineStep, params, opt_state, state, xs, ys, mask, chunk):
    """``step`` on each chunk of ``chunk`` steps, in one ``lax.scan``."""

    def chunks(a):  # [B, N, ...] -> [N / chunk, B, chunk, ...]
        split = a.reshape(a.shape[0], -1, chunk, *a.shape[2:])
        return jnp.swapaxes(split, 0, 1)

    def one(carried, inputs):
        *new, metrics = _online_update(step, *carried, *inputs)
        return tuple(new), metrics

    start = (params, opt_state, state)
    (params, opt_state, state), metrics = jax.lax.scan(
        one, start, (chunks(xs), chunks(ys), chunks(mask))
    )
    return params, opt_state, state, metrics


def _online_update(step: OnlineStep, params, opt_state, state, xs, ys, mask):
    cell, layer, readout = step.cell, params.layers[0], params.readout
    key, signs = jax.random.split(state.key)
    _, hs = _forward(cell, layer, xs, state.carry, mask)
    loss_fn = get_loss(step.loss)

    def chunk_loss(readout, hs):
        return loss_fn(hs @ readout.w + readout.b, ys, mask)

    loss, (d_readout, d_hs) = jax.value_and_grad(chunk_loss, argnums=(0, 1))(
        readout, hs
    )
    total, carry, influence = online.run(
        cell, step.engine, layer, xs, state.carry, state.influence, mask, d_hs, signs
    )
    grads = params._replace(
        layers=(online._as_params(layer, total),), readout=d_readout
    )
    ok = jnp.isfinite(loss) & all_finite(grads)
    params, opt_state, finite = apply_update(
        step.optimizer, params, opt_state, grads, ok
    )
    metrics = {"loss": loss, "grad_norm": optax.tree.norm(grads), "finite": finite}
    return params, opt_state, OnlineState(carry, influence, key), metrics


def _forward(cell, layer, xs, carry0, mask):
    from .unroll import unroll

    return unroll(cell, layer, xs, carry0, mask=mask)


def make_online_step(
    model, loss, optimizer, *, engine: str = "rtrl", max_bytes: int = 2**31
) -> OnlineStep:
    """An ``OnlineStep`` (its docstring) training ``model`` on streams with the
    online gradient ``engine`` (``"rtrl"``, ``"uoro"`` or ``"snap1"``; see
    ``rnnbptt.online``).

    ``model``: a ``SequenceModel`` of one recurrent layer (Elman, LSTM or GRU,
    not bidirectional) with a readout at every step (``head="many_to_many"``);
    ``loss``: a name in ``rnnbptt.losses.LOSSES`` or ``loss(pred, target,
    mask)``; ``optimizer``: an optax GradientTransformation; ``max_bytes``: the
    largest influence state ``init`` accepts.
    """
    from .models import SequenceModel

    fn = "make_online_step"
    if not isinstance(model, SequenceModel):
        raise TypeError(f"{fn}: `model` must be a SequenceModel, got {type(model)}")
    online.check_engine(fn, model.cells[0], engine)
    if len(model.cells) != 1 or model.bidirectional or model.head != "many_to_many":
        raise ValueError(
            f"{fn}: `model` must have one recurrent layer, not bidirectional, and a "
            "readout at every step (head='many_to_many'); got "
            f"{len(model.cells)} layer(s), bidirectional={model.bidirectional}, "
            f"head={model.head!r}"
        )
    if not all(callable(getattr(optimizer, f, None)) for f in ("init", "update")):
        raise TypeError(f"{fn}: `optimizer` must be an optax GradientTransformation")
    get_loss(loss, fn)
    limit = positive_int(fn, "max_bytes", max_bytes)
    return OnlineStep(model, loss, optimizer, engine, limit)
