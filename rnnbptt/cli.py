"""The ``rnnbptt`` command line.

``rnnbptt gradcheck`` compares the hand-written BPTT with autodiff and float64
finite differences on a demo problem for every cell, in float32 and float64, and
prints one table. It exits with status 1 if any difference exceeds its tolerance.

``rnnbptt devices`` prints what JAX sees: the backend, this process's index and
the process count, the local and global device counts, one line per device (id,
platform, kind, process) and ``JAX_PLATFORMS`` and ``XLA_FLAGS`` when set. JAX
reads both itself, e.g. ``JAX_PLATFORMS=cpu
XLA_FLAGS=--xla_force_host_platform_device_count=4 rnnbptt devices`` shows four
virtual CPU devices.

``rnnbptt forecast --data FILE.csv --date-column D --value-column Y
[--id-column ID] [--h N] [--backtest K] [--load MODEL] [--out DIR]`` fits the
Forecaster on the series of a CSV and writes their forecasts with dates and
intervals, the model file, a plot and a backtest beside the baselines (see
``rnnbptt.forecast.command``).

``rnnbptt bench [options]`` is ``rnnbptt experiment benchmark``: one gradient
through time timed side by side with torch.nn and Flax (see that script).

``rnnbptt experiment NAME [--quick] [--backward manual|autodiff] [--seed N]
[--out DIR]`` imports the module ``rnnbptt.experiments.NAME`` (the repository's
``experiments/NAME.py``, installed with the package; each script is also runnable
on its own, with the same options) and writes ``DIR/NAME/``. An experiment that
runs both engines takes no ``--backward`` (gradients, benchmark), one whose
problems are fixed no ``--seed`` (benchmark).

A mistake ends with one line on stderr and exit status 2, no usage lines and no
traceback: an unknown command or option, a bad value, an experiment's bad data,
and a backend JAX cannot start (``JAX_PLATFORMS=cuda`` on a machine without a GPU,
for every command). ``rnnbptt`` alone prints the help (the commands, one line
each) on stdout with status 2, as a missing command is a mistake; ``rnnbptt
--help`` prints it with status 0.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys

import jax
import pandas as pd

from . import draws, experiment
from .cells import GRU, LSTM, Elman, Feedforward
from .experiment import OneLineErrors, positive_int_option, require_backend
from .forecast import command as forecast_command
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
        "gru": GRU(input_size, hidden_size),
        "gru-reset-before": GRU(input_size, hidden_size, reset_after=False),
        "feedforward": Feedforward(input_size, hidden_size),
    }


def gradcheck_table(
    steps, batch, input_size, hidden_size, dtypes, seed, cells=None
) -> pd.DataFrame:
    """One ``compare_gradients`` table per cell (``cells``: names of
    ``demo_cells``, default all) and dtype, stacked, with a verdict."""
    tables = []
    demo = demo_cells(input_size, hidden_size)
    for dtype in dtypes:
        for name in cells or demo:
            cell = demo[name]
            k_p, k_x, k_m = jax.random.split(jax.random.key(seed), 3)
            params = cell.init(k_p, dtype)
            xs = draws.normal(k_x, (batch, steps, input_size), dtype)
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
    require_backend("rnnbptt gradcheck")
    sizes = (args.steps, args.batch, args.input_size, args.hidden_size)
    table = gradcheck_table(*sizes, args.dtype, args.seed, args.cell)
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


# Environment variables JAX reads when it starts that decide which devices it sees.
DEVICE_ENV = ("JAX_PLATFORMS", "XLA_FLAGS")


def device_report() -> dict:
    """What JAX sees: backend, processes, device counts, each device, environment."""
    return {
        "jax": jax.__version__,
        "backend": jax.default_backend(),
        "process_index": jax.process_index(),
        "process_count": jax.process_count(),
        "local_device_count": jax.local_device_count(),
        "device_count": jax.device_count(),
        "devices": [
            {
                "id": d.id,
                "platform": d.platform,
                "device_kind": d.device_kind,
                "process_index": d.process_index,
            }
            for d in jax.devices()
        ],
        "environment": {k: os.environ[k] for k in DEVICE_ENV if k in os.environ},
    }


def format_devices(report: dict) -> str:
    """``device_report()`` as the text ``rnnbptt devices`` prints."""
    lines = [
        f"backend: {report['backend']} (jax {report['jax']})",
        f"process: {report['process_index']} of {report['process_count']}",
        f"devices: {report['local_device_count']} local, "
        f"{report['device_count']} global",
    ]
    lines += [f"{name}={value}" for name, value in report["environment"].items()]
    table = pd.DataFrame(report["devices"], columns=list(report["devices"][0]))
    lines += ["", table.to_string(index=False)]
    return "\n".join(lines)


def _forecast(args) -> int:
    require_backend(forecast_command.PROG)
    try:
        return forecast_command.run(args)
    except (ValueError, TypeError) as error:  # the data or the settings
        _fail(f"{forecast_command.PROG}: {' '.join(str(error).split())}")


def _devices(args) -> int:
    require_backend("rnnbptt devices")
    print(format_devices(device_report()))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrors(  # its subcommands' parsers too
        prog="rnnbptt", description=__doc__.splitlines()[0].replace("``", "")
    )
    commands = parser.add_subparsers(dest="command", required=True)
    grad = commands.add_parser(
        "gradcheck", help="compare manual BPTT, autodiff and finite differences"
    )
    grad.add_argument("--steps", "-T", type=positive_int_option, default=50)
    grad.add_argument("--batch", "-B", type=positive_int_option, default=8)
    grad.add_argument("--input-size", "-D", type=positive_int_option, default=4)
    grad.add_argument("--hidden-size", "-H", type=positive_int_option, default=16)
    grad.add_argument(
        "--dtype", nargs="+", choices=sorted(ENGINE_TOL), default=["float32", "float64"]
    )
    grad.add_argument("--seed", type=int, default=0)
    grad.add_argument(
        "--cell", nargs="+", choices=list(demo_cells(1, 1)), help="default: all"
    )
    grad.set_defaults(run=_gradcheck)
    devices = commands.add_parser(
        "devices", help="the backend, processes and devices JAX sees"
    )
    devices.set_defaults(run=_devices)
    forecast = commands.add_parser(
        "forecast", help="fit on a CSV of series, forecast with dates and intervals"
    )
    forecast_command.add_arguments(forecast)
    forecast.set_defaults(run=_forecast)
    commands.add_parser(
        "bench",
        help="time one gradient beside torch.nn and Flax: rnnbptt bench --help",
        add_help=False,
    )
    commands.add_parser(
        "experiment",
        help="run an experiment: rnnbptt experiment NAME --help",
        add_help=False,
    )
    return parser


# The repository's experiments/ folder, installed under this name (pyproject.toml).
EXPERIMENTS = "rnnbptt.experiments"


def experiment_names() -> list[str]:
    """The modules of ``rnnbptt.experiments`` whose names do not start with ``_``."""
    try:
        package = importlib.import_module(EXPERIMENTS)
    except ModuleNotFoundError as error:
        if error.name != EXPERIMENTS:
            raise
        return []
    return sorted(
        m.name for m in pkgutil.iter_modules(package.__path__) if m.name[0] != "_"
    )


def _fail(message: str):
    """A one-line error for a user's mistake: no traceback, exit status 2."""
    sys.stderr.write(message + "\n")
    raise SystemExit(2)


def _load_experiment(name: str):
    """The experiment module ``rnnbptt.experiments.NAME``."""
    names = experiment_names()
    if name not in names:
        none = f"(none: {EXPERIMENTS} is not in this install)"
        _fail(
            f"rnnbptt experiment: unknown experiment {name!r}; choose one of "
            f"{', '.join(names) or none}"
        )
    return importlib.import_module(f"{EXPERIMENTS}.{name}")


def run_experiment(name: str, argv: list[str]) -> int:
    """``rnnbptt experiment NAME [options]``: see ``rnnbptt.experiment``."""
    return experiment.run_experiment(name, _load_experiment(name), argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv:  # no command: what there is to run, on stdout, status 2
        build_parser().print_help()
        return 2
    if argv[:1] == ["bench"]:
        return run_experiment("benchmark", argv[1:])
    if argv[:1] == ["experiment"]:
        if len(argv) < 2 or argv[1].startswith("-"):
            _fail(
                "usage: rnnbptt experiment NAME [options]; experiments: "
                + ", ".join(experiment_names())
            )
        return run_experiment(argv[1], argv[2:])
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
