"""Several processes (on one host or many) training one model together.

Every process runs the same script; ``initialize`` connects them through a
coordinator (process 0, which serves it at ``coordinator_address``) before any
other JAX call. After it, ``jax.devices()`` lists the devices of all processes,
so ``fit(..., data_parallel=True)`` splits each minibatch across all of them:
each process passes its own equal share of the data, ``batch_size`` is the
global minibatch, and only process 0 writes checkpoints.

Two processes on one machine (two shells, or ``&``), with the example script::

    python experiments/_distributed_fit.py --coordinator 127.0.0.1:12355 \\
        --num-processes 2 --process-id 0 --out params.npz &
    python experiments/_distributed_fit.py --coordinator 127.0.0.1:12355 \\
        --num-processes 2 --process-id 1

On several hosts, use process 0's host address (reachable from every host) and
a free port; the arguments can also come from the environment variables
``RNNBPTT_COORDINATOR``, ``RNNBPTT_NUM_PROCESSES`` and ``RNNBPTT_PROCESS_ID``.
On CPUs, JAX exchanges the gradients with gloo; on GPUs, with NCCL.

Nothing here runs on import: importing ``rnnbptt`` starts no process group.
"""

from __future__ import annotations

import argparse
import errno
import math
import operator
import os
import socket
import sys
import threading
import time
from typing import Any, NamedTuple

import jax

ENV_COORDINATOR = "RNNBPTT_COORDINATOR"
ENV_NUM_PROCESSES = "RNNBPTT_NUM_PROCESSES"
ENV_PROCESS_ID = "RNNBPTT_PROCESS_ID"
_FN = "rnnbptt.distributed.initialize"


class Cluster(NamedTuple):
    """Where this process stands: what ``initialize`` connected it to."""

    coordinator_address: str
    num_processes: int
    process_id: int


def _from_env(value: Any, variable: str) -> tuple[Any, str | None]:
    """``value``, or the environment variable's text when ``value`` is None."""
    if value is not None:
        return value, None
    text = os.environ.get(variable)
    if text is None or not text.strip():
        return None, variable
    return text.strip(), variable


def _integer(name: str, value: Any, variable: str | None) -> int:
    """``value`` as an int: an int argument, or the integer text of ``variable``."""
    if variable is not None:  # text from the environment
        try:
            return int(value)
        except ValueError:
            raise ValueError(
                f"{_FN}: `{name}` from the environment variable {variable} must be "
                f"an integer, got {value!r}"
            ) from None
    if isinstance(value, bool):
        raise TypeError(f"{_FN}: `{name}` must be an int, got bool {value!r}")
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(
            f"{_FN}: `{name}` must be an int, got {type(value).__name__} {value!r}"
        ) from None


def _missing(name: str, flag: str, variable: str, example: str) -> ValueError:
    return ValueError(
        f"{_FN}: `{name}` is missing: pass it (the {flag} option of the example "
        f"scripts) or set the environment variable {variable}, e.g. {example}"
    )


def parse_address(address: Any, variable: str | None = None) -> tuple[str, int]:
    """``"HOST:PORT"`` (``"[IPv6]:PORT"`` too) as ``(host, port)``.

    Raises:
        TypeError: if ``address`` is not a string.
        ValueError: if it has no host, no port, or a port outside 1..65535.
    """
    source = f" (from {variable})" if variable else ""
    if not isinstance(address, str):
        raise TypeError(
            f"{_FN}: `coordinator_address`{source} must be a string "
            f"'HOST:PORT', got {type(address).__name__} {address!r}"
        )
    host, colon, port = address.strip().rpartition(":")
    bracketed = host.startswith("[") and host.endswith("]")
    host = host[1:-1] if bracketed else host
    if ":" in host and not bracketed:
        raise ValueError(
            f"{_FN}: `coordinator_address`{source} must be 'HOST:PORT', with an IPv6 "
            f"host in brackets (e.g. '[::1]:12355'), got {address!r}"
        )
    if not colon or not host:
        raise ValueError(
            f"{_FN}: `coordinator_address`{source} must be 'HOST:PORT' (e.g. "
            f"'127.0.0.1:12355'), got {address!r}: no "
            f"{'port' if not colon else 'host'}"
        )
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(
            f"{_FN}: `coordinator_address`{source} needs a port between 1 and "
            f"65535 after the last ':', got {port!r} in {address!r}"
        )
    return host, int(port)


def _positive_seconds(timeout: Any) -> float:
    if isinstance(timeout, bool) or not isinstance(timeout, int | float):
        raise TypeError(
            f"{_FN}: `timeout` must be a number of seconds, got "
            f"{type(timeout).__name__} {timeout!r}"
        )
    if not (math.isfinite(timeout) and timeout > 0):
        raise ValueError(f"{_FN}: `timeout` must be > 0 seconds, got {timeout!r}")
    return float(timeout)


def resolve(
    coordinator_address: Any = None,
    num_processes: Any = None,
    process_id: Any = None,
) -> Cluster:
    """The checked arguments of ``initialize``, environment fallbacks applied.

    Raises:
        ValueError: for a missing argument, an address without host or port, a
            process count below 1 or a process id outside ``0..num_processes-1``.
        TypeError: for an argument of the wrong type.
    """
    address, address_var = _from_env(coordinator_address, ENV_COORDINATOR)
    if address is None:
        raise _missing(
            "coordinator_address",
            "--coordinator",
            ENV_COORDINATOR,
            "'127.0.0.1:12355' (process 0's host and a free port)",
        )
    parse_address(address, address_var)
    count, count_var = _from_env(num_processes, ENV_NUM_PROCESSES)
    if count is None:
        raise _missing("num_processes", "--num-processes", ENV_NUM_PROCESSES, "2")
    count = _integer("num_processes", count, count_var)
    if count < 1:
        raise ValueError(f"{_FN}: `num_processes` must be >= 1, got {count}")
    index, index_var = _from_env(process_id, ENV_PROCESS_ID)
    if index is None:
        raise _missing("process_id", "--process-id", ENV_PROCESS_ID, "0")
    index = _integer("process_id", index, index_var)
    if not 0 <= index < count:
        raise ValueError(
            f"{_FN}: `process_id` must be in 0..{count - 1} for {count} "
            f"processes, got {index}"
        )
    return Cluster(address.strip(), count, index)


def wait_for_coordinator(address: str, timeout: float) -> None:
    """Returns once a TCP connection to ``address`` succeeds; retries until then.

    Raises:
        TimeoutError: if none succeeded within ``timeout`` seconds.
    """
    host, port = parse_address(address)
    deadline = time.monotonic() + timeout
    last = None
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        try:
            with socket.create_connection((host, port), timeout=min(remaining, 1.0)):
                return
        except OSError as error:  # refused, unreachable, unresolvable: retry
            last = error
        time.sleep(min(0.2, max(deadline - time.monotonic(), 0)))
    raise TimeoutError(
        f"{_FN}: could not reach the coordinator at {address} within {timeout:g} s; "
        "is process 0 running (started with process id 0 and this coordinator "
        f"address)? Last error: {last}"
    )


def check_port_free(address: str) -> None:
    """Raises if the coordinator's port is taken on this host (process 0 only).

    JAX would fail to start its server there, and may crash doing so
    (a segmentation fault, seen with jax 0.10), so the port is tried first:
    bound on every address, as JAX binds it, and released at once.

    Raises:
        RuntimeError: if the port is already in use.
    """
    _, port = parse_address(address)
    for family, host in ((socket.AF_INET6, "::"), (socket.AF_INET, "0.0.0.0")):
        try:
            probe = socket.socket(family, socket.SOCK_STREAM)
        except OSError:
            continue  # no IPv6 here: try IPv4
        with probe:
            try:
                probe.bind((host, port))
                return
            except OSError as error:
                if error.errno != errno.EADDRINUSE:
                    continue  # e.g. IPv6 disabled: let the next family decide
                raise RuntimeError(
                    f"{_FN}: process 0 could not serve the coordinator at {address}: "
                    f"port {port} is already in use (by another program, or an "
                    "earlier run still going?); give every process another port"
                ) from None


def _watchdog(cluster: Cluster, seconds: float) -> threading.Event:
    """Says on stderr why JAX is about to end the process, unless set in time.

    JAX does not raise when the processes fail to meet within its timeout: it
    terminates the process (SIGABRT) a few seconds later with a terse C++
    message. This says what went wrong first, in words.
    """
    done = threading.Event()

    def warn():
        if not done.wait(seconds):
            sys.stderr.write(
                f"{_FN}: process {cluster.process_id} of {cluster.num_processes}: "
                f"not every process connected to the coordinator at "
                f"{cluster.coordinator_address} within {seconds:g} s; is every "
                f"process started, with num_processes={cluster.num_processes} and "
                "the same coordinator address? JAX now ends this process.\n"
            )
            sys.stderr.flush()

    threading.Thread(
        target=warn, name="rnnbptt-distributed-watchdog", daemon=True
    ).start()
    return done


def initialize(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    *,
    timeout: float = 60,
) -> Cluster:
    """Connects this process to the others (``jax.distributed.initialize``).

    Call it once per process, before any other JAX call (JAX refuses it after
    the first computation). Process 0 serves the coordinator; the others wait up
    to ``timeout`` seconds for it to answer, then all wait (within the same
    ``timeout``) until every process has connected.

    Args:
        coordinator_address: ``"HOST:PORT"`` of process 0 (its host as the
            others reach it, and a free port); default: ``$RNNBPTT_COORDINATOR``.
        num_processes: how many processes take part; default:
            ``$RNNBPTT_NUM_PROCESSES``.
        process_id: this process's number, ``0..num_processes-1``; default:
            ``$RNNBPTT_PROCESS_ID``.
        timeout: seconds to wait for the coordinator and the other processes.

    Returns:
        A ``Cluster`` (address, number of processes, this process's id).

    Raises:
        ValueError, TypeError: for missing or malformed arguments, before any
            connection is attempted.
        RuntimeError: if this process is already initialized, or process 0
            cannot serve the coordinator (its port in use, say).
        TimeoutError: if a process other than 0 cannot reach the coordinator
            within ``timeout``.

    If the coordinator answers but the other processes do not all connect in
    time, JAX itself ends every waiting process shortly after ``timeout``
    (it does not raise); a line on stderr says why just before.
    """
    cluster = resolve(coordinator_address, num_processes, process_id)
    seconds = _positive_seconds(timeout)
    if jax.distributed.is_initialized():
        raise RuntimeError(
            f"{_FN}: this process is already initialized (call it once per process)"
        )
    started = time.monotonic()
    if cluster.process_id == 0:
        if not os.environ.get("JAX_COORDINATOR_BIND_ADDRESS"):  # JAX binds there
            check_port_free(cluster.coordinator_address)
    else:
        wait_for_coordinator(cluster.coordinator_address, seconds)
    left = max(1, math.ceil(seconds - (time.monotonic() - started)))
    done = _watchdog(cluster, left)
    try:
        jax.distributed.initialize(
            cluster.coordinator_address,
            cluster.num_processes,
            cluster.process_id,
            initialization_timeout=left,
        )
    except jax.errors.JaxRuntimeError as error:
        role = "serve" if cluster.process_id == 0 else "connect to"
        raise RuntimeError(
            f"{_FN}: process {cluster.process_id} could not {role} the coordinator "
            f"at {cluster.coordinator_address}: JAX says {error}"
        ) from error
    finally:
        done.set()
    return cluster


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Adds ``--coordinator``, ``--num-processes`` and ``--process-id``.

    Each defaults to None, so ``from_args`` falls back to the environment
    variables.
    """
    group = parser.add_argument_group("several processes (rnnbptt.distributed)")
    group.add_argument(
        "--coordinator",
        metavar="HOST:PORT",
        help=f"process 0's address and a free port (default: ${ENV_COORDINATOR})",
    )
    group.add_argument(
        "--num-processes",
        type=int,
        metavar="N",
        help=f"how many processes take part (default: ${ENV_NUM_PROCESSES})",
    )
    group.add_argument(
        "--process-id",
        type=int,
        metavar="I",
        help=f"this process's number, 0..N-1 (default: ${ENV_PROCESS_ID})",
    )
    return parser


def from_args(args: argparse.Namespace, *, timeout: float = 60) -> Cluster:
    """``initialize`` with the options ``add_arguments`` added."""
    return initialize(
        args.coordinator, args.num_processes, args.process_id, timeout=timeout
    )
