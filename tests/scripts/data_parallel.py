"""Data-parallel training on 4 virtual CPU devices against 1 device, as JSON.

Run with XLA_FLAGS=--xla_force_host_platform_device_count=4 (set before JAX is
imported, so it has to be a separate process). Prints one JSON object: the
largest relative parameter difference per case, whether the 4-device steps
really were partitioned (an all-reduce in the compiled program, parameters
replicated on 4 devices) and the errors that bad input produced.
"""

import json
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh

import rnnbptt
from rnnbptt.parallel import batch_sharding

jax.config.update("jax_enable_x64", True)


def max_rel(a, b):
    """max|a - b| / max|b| over all leaves (b's zero leaves: absolute)."""
    worst = 0.0
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        x, y = np.asarray(x), np.asarray(y)
        worst = max(worst, float(np.max(np.abs(x - y)) / max(np.max(np.abs(y)), 1)))
    return worst


def draw_params(rng, init):
    """Parameters with the structure, shapes and dtype of ``init(key)``, drawn
    with NumPy (weights uniform in +-1/sqrt(fan-in), biases non-zero): jax.random
    would compile a sampler for every new shape."""

    def leaf(shape):
        if len(shape.shape) == 1:
            return jnp.asarray(0.3 * rng.standard_normal(shape.shape), shape.dtype)
        bound = 1 / np.sqrt(shape.shape[0])
        return jnp.asarray(rng.uniform(-bound, bound, shape.shape), shape.dtype)

    return jax.tree.map(leaf, jax.eval_shape(init, jax.random.key(0)))


def problem(kind, batch=8, steps=7):
    model = rnnbptt.SequenceModel.build(kind, 3, (5,), 2)
    rng = np.random.default_rng(0)
    params = draw_params(rng, lambda key: model.init(key, jnp.float64))
    xs = jnp.asarray(rng.standard_normal((batch, steps, 3)))
    ys = jnp.asarray(rng.standard_normal((batch, steps, 2)))
    lengths = np.array([7, 3, 5, 7, 1, 6, 2, 4])[:batch]
    mask = jnp.asarray(np.arange(steps)[None] < lengths[:, None])
    return model, params, xs, ys, mask


# Train-step cases: a pairwise covering set of kind x backward x masked x tbptt
# (every pair of option values in some case; truncated BPTT, as before, only on
# the masked LSTM, so with both engines).
CASES = [
    ("elman", "manual", False, None),
    ("elman", "autodiff", True, None),
    ("lstm", "autodiff", False, None),
    ("lstm", "manual", True, rnnbptt.TBPTT(3)),
    ("lstm", "autodiff", True, rnnbptt.TBPTT(3)),
]


def main():
    out = {"devices": len(jax.devices()), "steps": {}, "errors": {}}
    tx = optax.adam(0.05)
    for kind, backward, masked, tbptt in CASES:
        model, params, xs, ys, mask = problem(kind)
        mask = mask if masked else None
        args = (params, tx.init(params), xs, ys, mask, None)
        make = rnnbptt.make_train_step
        one = make(model, "mse", tx, backward=backward, tbptt=tbptt)
        four = make(
            model,
            "mse",
            tx,
            backward=backward,
            tbptt=tbptt,
            data_parallel=True,
        )
        p1, _, m1 = one(*args)
        p4, _, m4 = four(*args)
        # the compiled 4-device step (the one just run: nothing new compiles)
        # reduces gradients across devices
        hlo = four.lower(*args).compile().as_text()
        name = f"{kind}-{backward}-{'mask' if masked else 'full'}"
        name += "-tbptt" if tbptt else ""
        leaf = jax.tree.leaves(p4)[0]
        out["steps"][name] = {
            "max_rel": max_rel(p4, p1),
            "loss_rel": abs(float(m4["loss"]) / float(m1["loss"]) - 1),
            "moved": max_rel(p1, params),
            "replicated_on": len(leaf.sharding.device_set),
            "fully_replicated": bool(leaf.sharding.is_fully_replicated),
            "all_reduce": "all-reduce" in hlo,
        }
    out["all_reduce"] = all(case["all_reduce"] for case in out["steps"].values())
    model, params, xs, ys, mask = problem("lstm")

    # fit, sharded and not, ends at the same parameters
    results = [
        rnnbptt.fit(
            model,
            params,
            xs,
            ys,
            mask=mask,
            batch_size=4,
            epochs=2,
            optimizer="adam",
            learning_rate=0.05,
            data_parallel=parallel,
            progress=False,
        ).params
        for parallel in (None, True)
    ]
    out["fit_max_rel"] = max_rel(results[1], results[0])
    out["fit_moved"] = max_rel(results[0], params)

    # inference: unroll on a batch-sharded input stays sharded and equal
    cell = rnnbptt.LSTM(3, 5)
    cell_params = draw_params(
        np.random.default_rng(1), lambda key: cell.init(key, jnp.float64)
    )
    mesh = Mesh(np.asarray(jax.devices()), ("batch",))
    sharded_xs = jax.device_put(xs, batch_sharding(mesh))
    _, hs_sharded = rnnbptt.unroll(cell, cell_params, sharded_xs, mask=mask)
    _, hs = rnnbptt.unroll(cell, cell_params, xs, mask=mask)
    out["unroll_max_rel"] = max_rel(hs_sharded, hs)
    out["unroll_shards"] = len(hs_sharded.sharding.device_set)
    out["unroll_fully_replicated"] = bool(hs_sharded.sharding.is_fully_replicated)

    # bad input: a batch that does not divide, a mesh without the batch axis
    four = rnnbptt.make_train_step(model, "mse", tx, data_parallel=True)
    bad_cases = {
        "indivisible_step": lambda: four(
            params, tx.init(params), xs[:6], ys[:6], mask[:6], None
        ),
        "indivisible_fit": lambda: rnnbptt.fit(
            model, params, xs, ys, batch_size=6, data_parallel=True, progress=False
        ),
        "no_batch_axis": lambda: rnnbptt.make_train_step(
            model, "mse", tx, data_parallel=Mesh(np.asarray(jax.devices()), ("x",))
        ),
        "not_a_mesh": lambda: rnnbptt.fit(
            model, params, xs, ys, data_parallel="all", progress=False
        ),
    }
    for name, call in bad_cases.items():
        try:
            call()
            out["errors"][name] = None
        except (ValueError, TypeError) as error:
            out["errors"][name] = [type(error).__name__, str(error)]
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
