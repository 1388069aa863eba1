"""The forecasting network: a recurrent encoder and a direct multi-step quantile head.

    e = encoder([z_t, f_t]_{t < origin})                  (any cell, many-to-one)
    u = relu([e; g] W_1 + b_1)                            g: the future's known features
    q = monotone_quantiles(reshape(u W_2 + b_2, [h, Q]))  no crossing, by construction

``z_t`` are the window's normalised values, ``f_t`` the features known at each past
step (calendar, covariates), ``g`` those known for the ``h`` steps forecast
(calendar, future covariates), flattened. The encoder is a
:class:`~rnnbptt.SequenceModel`, so every cell and both gradient engines apply;
``truncate=k`` backpropagates through the last ``k`` steps only (the earlier ones
run forward and hand on their state under ``stop_gradient``). ``n_models``
networks are trained side by side: their parameters are stacked along a leading
axis and every function here is mapped over it with ``jax.vmap``, so all of them
train in one compiled program.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp

from ..cells import lecun_uniform
from ..models import DenseParams, ModelParams, SequenceModel
from .quantiles import monotone_quantiles, pinball_loss


class NetworkParams(NamedTuple):
    encoder: ModelParams
    hidden: DenseParams  # [E + h * G, head_size]
    output: DenseParams  # [head_size, h * Q]


@dataclasses.dataclass(frozen=True)
class Network:
    """The architecture; hashable, so jitted functions take it as a static argument.

    Args:
        cell: ``"lstm"``, ``"gru"``, ``"elman"`` or ``"feedforward"``.
        past_features: features per recurrent step: ``step_size`` times (1 for
            the value, plus the features of each step).
        future_features: G, known features per forecast step (0 for none).
        hidden_sizes: the encoder's hidden units per layer.
        encoding: E, the size of the encoder's output.
        head_size: the head's hidden units.
        h: the steps forecast.
        quantiles: the quantile levels, odd in number, the median in the middle.
        truncate: backpropagate through the last ``truncate`` recurrent steps
            only (None: all).
        step_size: window steps read per recurrent step (``tables``' gather
            reshapes them into one).
    """

    cell: str
    past_features: int
    future_features: int
    hidden_sizes: tuple[int, ...]
    encoding: int
    head_size: int
    h: int
    quantiles: tuple[float, ...]
    truncate: int | None = None
    step_size: int = 1

    @property
    def encoder(self) -> SequenceModel:
        return SequenceModel.build(
            self.cell,
            self.past_features,
            list(self.hidden_sizes),
            self.encoding,
            head="many_to_one",
        )

    def init(self, key: jax.Array, dtype=jnp.float32) -> NetworkParams:
        k_enc, k_hid, k_out = jax.random.split(key, 3)
        width = self.encoding + self.h * self.future_features
        outputs = self.h * len(self.quantiles)
        return NetworkParams(
            self.encoder.init(k_enc, dtype),
            DenseParams(
                lecun_uniform(k_hid, (width, self.head_size), 1.0, dtype),
                jnp.zeros(self.head_size, dtype),
            ),
            DenseParams(
                lecun_uniform(k_out, (self.head_size, outputs), 0.1, dtype),
                jnp.zeros(outputs, dtype),
            ),
        )

    def quantiles_of(
        self, params: NetworkParams, past, mask, future, backward: str = "manual"
    ) -> jax.Array:
        """Normalised quantiles [B, h, Q] of windows ``past`` [B, T, past_features]
        (``mask`` [B, T]) with the future's features ``future`` [B, h, G]."""
        encoding = self._encode(params.encoder, past, mask, backward)
        head_in = jnp.concatenate(
            [encoding, future.reshape(future.shape[0], -1)], axis=-1
        )
        u = jax.nn.relu(head_in @ params.hidden.w + params.hidden.b)
        raw = u @ params.output.w + params.output.b
        return monotone_quantiles(raw.reshape(-1, self.h, len(self.quantiles)))

    def _encode(self, params: ModelParams, past, mask, backward: str) -> jax.Array:
        model, steps = self.encoder, past.shape[1]
        if self.truncate is None or self.truncate >= steps:
            return model.apply(params, past, mask, backward=backward)
        cut = steps - self.truncate
        # many-to-many: the early part may hold no valid step of a row
        early = dataclasses.replace(model, head="many_to_many")
        _, carry = early.apply(
            params, past[:, :cut], mask[:, :cut], backward=backward, return_carry=True
        )
        carry = jax.lax.stop_gradient(carry)
        # a row whose valid steps all lie in the last part starts from zeros, as
        # it would untruncated (the padding leaves the carry at zero)
        return model.apply(
            params, past[:, cut:], mask[:, cut:], carry0=carry, backward=backward
        )

    def loss(self, params, past, mask, future, targets, backward="manual"):
        """The pinball loss on normalised ``targets`` [B, h] (NaN where absent)."""
        q = self.quantiles_of(params, past, mask, future, backward)
        present = ~jnp.isnan(targets)
        return pinball_loss(
            q, jnp.where(present, targets, 0.0), self.quantiles, present
        )
