"""Running an experiment: its options, its ``Run`` folder, its one-line errors.

An experiment is a module with a docstring (its first line is the ``--help``
description), ``run(args, run) -> pandas.DataFrame`` and, optionally,
``add_arguments(parser)`` and ``COMMON_OPTIONS``. The shipped ones are the
modules ``rnnbptt.experiments.NAME`` (the repository's ``experiments/NAME.py``,
which pyproject.toml installs under that name). Both ways of running one come
here: ``rnnbptt experiment NAME`` imports the module by name and calls
:func:`run_experiment`; the script itself ends with
``sys.exit(rnnbptt.experiment.main(sys.modules[__name__]))``, so
``python experiments/NAME.py ...`` takes the same options, writes the same
results and exits with the same status. The experiments import this module, not
the CLI.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import signal
import sys
import threading
from pathlib import Path

from ._checks import BACKWARDS, DEFAULT_BACKWARD


def positive_int_option(text: str) -> int:
    """An ``argparse`` type: an integer >= 1 (``0`` is refused, not a default)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be a positive integer, got {text!r}"
        ) from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


class OneLineErrors(argparse.ArgumentParser):
    """A bad option is one line (``PROG: error: ...``), status 2, like bad data:
    no usage lines before it (``PROG --help`` prints those). Its subcommands'
    parsers (``add_subparsers``) are of this class too."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())}\n")


# JAX's own advice, which backend_error replaces with its own.
_JAX_ADVICE = re.compile(r"\s*\(set JAX_PLATFORMS=.*?\)\s*$")


def backend_error(prog: str, error: BaseException) -> str:
    """The one line saying that JAX could not start the backend it was asked
    for (``error``, from ``jax.devices()``), and how to choose another."""
    import jax

    platforms = jax.config.jax_platforms  # JAX_PLATFORMS, as JAX read it
    detail = _JAX_ADVICE.sub("", " ".join(str(error).split()))
    if platforms:
        # jax 0.10 asserts, with no message, when JAX_PLATFORMS=cuda finds no GPU
        detail = detail or f"JAX sees no {platforms} device"
        return (
            f"{prog}: JAX_PLATFORMS={platforms} asks for a backend JAX cannot "
            f"start on this machine ({detail}); unset JAX_PLATFORMS or set it to cpu"
        )
    detail = detail or type(error).__name__
    return (
        f"{prog}: JAX could not start a backend ({detail}); set JAX_PLATFORMS=cpu "
        "to use the CPU"
    )


def require_backend(prog: str) -> None:
    """Starts JAX's backend now, so that a missing one (``JAX_PLATFORMS=cuda``
    on a machine without a GPU, say) is one line and exit status 2 instead of a
    traceback from the middle of a computation.

    It initializes the backend: a command that calls
    ``jax.distributed.initialize`` must do so before this.
    """
    import jax

    try:
        jax.devices()
    except (RuntimeError, AssertionError) as error:
        sys.stderr.write(backend_error(prog, error) + "\n")
        raise SystemExit(2) from None


def experiment_parser(name: str, module) -> argparse.ArgumentParser:
    """The options of experiment ``name``: ``--quick``, ``--backward``, ``--seed``
    and ``--out``, then the module's own (``add_arguments``)."""
    parser = OneLineErrors(
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


def run_experiment(name: str, module, argv: list[str]) -> int:
    """Parses ``argv``, runs ``module`` in a ``Run`` of ``name``, prints its table.

    Returns:
        0 once the results are in ``OUT/NAME/``.

    Raises:
        SystemExit: status 2, one line, for a bad option or data (``ValueError``
            or ``OSError`` from the experiment) or a backend JAX cannot start
            (``require_backend``); after SIGTERM or Ctrl-C the
            process exits at once with 128 + the signal's number.
    """
    from .runs import Run

    parser = experiment_parser(name, module)
    args = parser.parse_args(argv)
    require_backend(parser.prog)  # before the Run: nothing written without one
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


def main(module, argv: list[str] | None = None) -> int:
    """``python experiments/NAME.py [options]``: runs the script's own module
    (``sys.modules[__name__]``) as ``rnnbptt experiment NAME [options]`` does.

    Args:
        module: the experiment's module, already loaded; its file names it.
        argv: the options; ``None`` means ``sys.argv[1:]``.
    """
    name = Path(module.__file__).stem
    return run_experiment(name, module, sys.argv[1:] if argv is None else list(argv))
