"""The ``rnnbptt`` command line.

``rnnbptt gradcheck`` compares the hand-written BPTT with autodiff and float64
finite differences on a demo problem for every cell, in float32 and float64, and
prints one table. It exits with status 1 if any difference exceeds its tolerance.

``rnnbptt devices`` prints what JAX sees: the backend, this process's index and
the process count, the local and global device counts, one line per device (id,
platform, kind, process) and ``JAX_PLATFORMS`` and ``XLA_FLAGS`` when set. JAX
reads both itself, e.g. ``JAX_PLATFORMS=cpu
XLA_FLAGS=--xla_force_host_platform_device_count=4 rnnbptt devices`` shows four
virtual CPU devices; a backend JAX cannot start is a one-line error (status 2).

``rnnbptt bench [options]`` is ``rnnbptt experiment benchmark``: one gradient
through time timed side by side with torch.nn and Flax (see that script).

``rnnbptt experiment NAME [--quick] [--backward manual|autodiff] [--seed N]
[--out DIR]`` runs the script ``experiments/NAME.py`` of this checkout (each
script is also runnable on its own) and writes ``DIR/NAME/``. An experiment that
runs both engines takes no ``--backward`` (gradients, benchmark), one whose
problems are fixed no ``--seed`` (benchmark). Mistakes in the command or the data
end with a one-line error and exit status 2.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import signal
import sys
import threading
from pathlib import Path

import jax
import pandas as pd

from ._checks import BACKWARDS, DEFAULT_BACKWARD
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


def _devices(args) -> int:
    try:
        report = device_report()
    except RuntimeError as error:  # e.g. JAX_PLATFORMS names a missing backend
        setting = ", ".join(
            f"{k}={os.environ[k]!r}" for k in DEVICE_ENV if k in os.environ
        )
        _fail(
            f"rnnbptt devices: JAX found no usable backend"
            f"{f' ({setting})' if setting else ''}: "
            + " ".join(str(error).split())  # one line
        )
    print(format_devices(report))
    return 0


def positive_int_option(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
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
    grad.set_defaults(run=_gradcheck)
    devices = commands.add_parser(
        "devices", help="the backend, processes and devices JAX sees"
    )
    devices.set_defaults(run=_devices)
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


EXPERIMENTS = Path(__file__).resolve().parent.parent / "experiments"


def experiment_names() -> list[str]:
    if not EXPERIMENTS.is_dir():
        return []
    return sorted(
        p.stem for p in EXPERIMENTS.glob("*.py") if not p.stem.startswith("_")
    )


def _fail(message: str):
    """A one-line error for a user's mistake: no traceback, exit status 2."""
    sys.stderr.write(message + "\n")
    raise SystemExit(2)


def _load_experiment(name: str):
    """The experiment script ``experiments/NAME.py`` as a module."""
    names = experiment_names()
    if name not in names:
        _fail(
            f"rnnbptt experiment: unknown experiment {name!r}; choose one of "
            f"{', '.join(names) or '(none: experiments/ is not in this install)'}"
        )
    spec = importlib.util.spec_from_file_location(
        f"rnnbptt_experiment_{name}", EXPERIMENTS / f"{name}.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # as for any import (dataclasses need it)
    spec.loader.exec_module(module)
    return module


class _OneLineErrors(argparse.ArgumentParser):
    """An experiment's bad option is one line (``PROG: error: ...``), status 2,
    like its bad data."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}\n")


def experiment_parser(name: str, module) -> argparse.ArgumentParser:
    parser = _OneLineErrors(
        prog=f"rnnbptt experiment {name}",
        description=(module.__doc__ or "").strip().splitlines()[0],
    )
    parser.add_argument("--quick", action="store_true", help="a run of seconds")
    # An experiment that runs both engines, or whose problems are fixed, says so
    # with COMMON_OPTIONS, so that an option it would ignore is refused instead.
    common = getattr(module, "COMMON_OPTIONS", ("backward", "seed"))
    if "backward" in common:
        parser.add_argument("--backward", choices=BACKWARDS, default=DEFAULT_BACKWARD)
    if "seed" in common:
        parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="runs", help="results go to OUT/NAME/")
    if hasattr(module, "add_arguments"):
        module.add_arguments(parser)
    return parser


class _Terminated(Exception):
    """SIGTERM arrived during an experiment."""


@contextlib.contextmanager
def _terminate_as_exception():
    """SIGTERM (``timeout``, a job scheduler) raises ``_Terminated`` meanwhile, so
    the run's temporary folder is removed as after Ctrl-C; the earlier results in
    OUT/NAME stay as they were either way."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(signum, frame):
        raise _Terminated

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _stop_now(status: int, message: str) -> None:
    """Exits at once, once the run's folder is cleaned up: an interpreter shut
    down while XLA's threads still run can crash (a segfault after Ctrl-C or
    SIGTERM mid-computation), which would hide the right exit status."""
    print(message, file=sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


def run_experiment(name: str, argv: list[str]) -> int:
    """Parses the options, runs the experiment in a ``Run``, prints its table."""
    from .runs import Run

    module = _load_experiment(name)
    parser = experiment_parser(name, module)
    args = parser.parse_args(argv)
    config = {"experiment": name, **vars(args)}
    try:
        with _terminate_as_exception(), Run(args.out, name, config) as run:
            table = module.run(args, run)
    except (ValueError, OSError) as error:  # a user's data or option, not a bug
        parser.exit(2, f"rnnbptt experiment {name}: error: {error}\n")
    except _Terminated:
        _stop_now(128 + signal.SIGTERM, f"rnnbptt experiment {name}: terminated")
    except KeyboardInterrupt:
        _stop_now(128 + signal.SIGINT, f"rnnbptt experiment {name}: interrupted")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    print(f"\nresults in {run.destination}/ ({run.seconds:.1f} s)")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
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
