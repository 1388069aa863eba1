"""The ``rnnbptt`` command line.

``rnnbptt gradcheck`` compares the hand-written BPTT with autodiff and float64
finite differences on a demo problem for every cell, in float32 and float64, and
prints one table. It exits with status 1 if any difference exceeds its tolerance.
"""

from __future__ import annotations

import argparse
import sys

import jax
import pandas as pd

from .cells import LSTM, Elman, Feedforward
from .gradcheck import compare_gradients, format_table

# Largest max-norm relative difference accepted, per dtype: between the engines,
# and between an engine and float64 central differences.
ENGINE_TOL = {"float64": 1e-10, "float32": 1e-5}
FD_TOL = {"float64": 1e-6, "float32": 1e-3}


def demo_cells(input_size: int, hidden_size: int) -> dict:
    return {
        "elman-tanh": Elman(input_size, hidden_size),
        "elman-relu": Elman(input_size, hidden_size, activation="relu"),
        "lstm": LSTM(input_size, hidden_size),
        "feedforward": Feedforward(input_size, hidden_size),
    }


def gradcheck_table(
    steps, batch, input_size, hidden_size, dtypes, seed
) -> pd.DataFrame:
    """One ``compare_gradients`` table per cell and dtype, stacked, with a verdict."""
    tables = []
    for dtype in dtypes:
        for name, cell in demo_cells(input_size, hidden_size).items():
            k_p, k_x, k_m = jax.random.split(jax.random.key(seed), 3)
            params = cell.init(k_p, dtype)
            xs = jax.random.normal(k_x, (batch, steps, input_size), dtype)
            # right-padded sequences of random lengths, the full length included
            lengths = jax.random.randint(k_m, (batch,), 1, steps + 1).at[0].set(steps)
            mask = jax.numpy.arange(steps)[None, :] < lengths[:, None]
            table = compare_gradients(
                cell, params, xs, mask=mask, key=jax.random.key(seed)
            )
            table.insert(0, "dtype", dtype)
            table.insert(0, "cell", name)
            tables.append(table)
    table = pd.concat(tables)
    engine_ok = table["manual_autodiff_rel"] <= table["dtype"].map(ENGINE_TOL)
    fd_tol = table["dtype"].map(FD_TOL)
    fd_ok = (table["manual_fd_rel"] <= fd_tol) & (table["autodiff_fd_rel"] <= fd_tol)
    table["ok"] = engine_ok & fd_ok
    return table


def _gradcheck(args) -> int:
    jax.config.update("jax_enable_x64", True)  # float64 runs beside float32
    table = gradcheck_table(
        args.steps, args.batch, args.input_size, args.hidden_size, args.dtype, args.seed
    )
    print(
        f"Manual BPTT vs autodiff vs float64 central differences "
        f"(T={args.steps}, B={args.batch}, D={args.input_size}, H={args.hidden_size}, "
        f"random right padding, {jax.devices()[0].platform})"
    )
    print(format_table(table.drop(columns=["fd_coords"])))
    bad = int((~table["ok"]).sum())
    print(
        f"\n{len(table) - bad}/{len(table)} gradients agree within tolerance "
        f"(engines: {ENGINE_TOL}; finite differences: {FD_TOL})"
    )
    return 1 if bad else 0


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rnnbptt", description=__doc__.splitlines()[0]
    )
    commands = parser.add_subparsers(dest="command", required=True)
    grad = commands.add_parser(
        "gradcheck", help="compare manual BPTT, autodiff and finite differences"
    )
    grad.add_argument("--steps", "-T", type=_positive_int, default=50)
    grad.add_argument("--batch", "-B", type=_positive_int, default=8)
    grad.add_argument("--input-size", "-D", type=_positive_int, default=4)
    grad.add_argument("--hidden-size", "-H", type=_positive_int, default=16)
    grad.add_argument(
        "--dtype", nargs="+", choices=sorted(ENGINE_TOL), default=["float32", "float64"]
    )
    grad.add_argument("--seed", type=int, default=0)
    grad.set_defaults(run=_gradcheck)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
