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
import contextlib
import errno
import math
import os
import socket
import sys
import threading
import time
from typing import Any, NamedTuple

import jax

from ._scalars import whole_number

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
    number = whole_number(value)
    if number is None:
        raise TypeError(
            f"{_FN}: `{name}` must be an int, got {type(value).__name__} {value!r}"
        )
    return number


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


# JAX's coordinator is a gRPC server, and gRPC is HTTP/2: sent the client's
# connection preface (its magic line and an empty SETTINGS frame), such a server
# answers with a SETTINGS frame (a 9-byte header: 3 bytes of length, type 4, its
# flags, stream 0). JAX's sends its SETTINGS without waiting for the client's;
# the preface is for servers that wait, and draws an answer from HTTP/1 ones.
_SETTINGS = 4
_EMPTY_SETTINGS = bytes(3) + bytes([_SETTINGS]) + bytes(5)
_HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + _EMPTY_SETTINGS


def _first_line(data: bytes) -> str:
    """The start of a reply as text, for a message: its first line, shortened."""
    line = data.split(b"\n", 1)[0].rstrip(b"\r")
    text = line.decode("ascii", "replace")
    if not text.isprintable() or not text.strip():
        return repr(data[:24])
    return repr(text if len(text) <= 80 else text[:77] + "...")


def _undecided(data: bytes) -> bool:
    """Whether more of a reply is needed to tell what answered: a SETTINGS
    frame's whole header, or a text reply's whole first line."""
    if len(data) < 4 or (len(data) < 9 and data[3] == _SETTINGS):
        return True
    if len(data) >= 9 and data[3] == _SETTINGS:
        return False
    text = data.decode("ascii", "replace")
    return b"\n" not in data and len(data) < 80 and text.isprintable()


def _ask(host: str, port: int, connect_timeout: float, deadline: float):
    """Connects to ``host:port`` and says what answers: ``("grpc", "")``;
    ``("other", what)`` for a server that is not gRPC; ``("silent", what)``
    for one that says nothing before ``deadline`` (``time.monotonic()``) or
    closes the connection without a word.

    Raises:
        OSError: if the connection fails (refused, unreachable, unresolvable).
    """
    data, closed = b"", False
    with socket.create_connection((host, port), timeout=connect_timeout) as conn:
        with contextlib.suppress(OSError):  # some servers close before reading
            conn.sendall(_HTTP2_PREFACE)
        while _undecided(data):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            conn.settimeout(remaining)
            try:
                chunk = conn.recv(256)
            except TimeoutError:
                break
            except OSError:  # reset
                chunk = b""
            if not chunk:
                closed = True
                break
            data += chunk
    if not data:
        return "silent", (
            "a program there accepts connections but closes them without a word"
            if closed
            else "a program there accepts connections but says nothing"
        )
    if len(data) >= 9 and data[3] == _SETTINGS and data[5:9] == bytes(4):
        return "grpc", ""
    # an HTTP/1 status line, or a bare HTML page (Python's http.server answers
    # the preface's "HTTP/2.0" that way)
    if data[:5] == b"HTTP/" or data.lstrip()[:5].lower() in (b"<!doc", b"<html"):
        return "other", f"an HTTP server answers there ({_first_line(data)})"
    return "other", (
        f"a server that does not speak HTTP/2 answers there ({_first_line(data)})"
    )


def wait_for_coordinator(address: str, timeout: float) -> None:
    """Returns once a gRPC server answers at ``address``; retries until then.

    A connection is not enough: another program on that port (a web server,
    say) would accept it, and JAX would then end the process (SIGABRT), so the
    server is asked to speak HTTP/2 first, as JAX's coordinator does.

    Raises:
        TimeoutError: if nothing answered as a gRPC server within ``timeout``
            seconds.
        RuntimeError: if a server that is not gRPC (HTTP/1, say) answered.
    """
    host, port = parse_address(address)
    deadline = time.monotonic() + timeout
    last = silent = None
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        try:
            kind, what = _ask(host, port, min(remaining, 1.0), deadline)
        except OSError as error:  # refused, unreachable, unresolvable: retry
            last = error
        else:
            if kind == "grpc":
                return
            if kind == "other":
                raise RuntimeError(
                    f"{_FN}: no coordinator at {address}: {what}, not JAX's "
                    "coordinator (a gRPC server); is that process 0's host, and "
                    "the port process 0 serves the coordinator on?"
                )
            silent = what  # closed at once (retry), or silent until the deadline
        time.sleep(min(0.2, max(deadline - time.monotonic(), 0)))
    if silent is not None:
        raise TimeoutError(
            f"{_FN}: no coordinator at {address} within {timeout:g} s: {silent}, "
            "where JAX's coordinator (a gRPC server) would answer; is that "
            "process 0's address, and is process 0 running?"
        )
    raise TimeoutError(
        f"{_FN}: could not reach the coordinator at {address} within {timeout:g} s; "
        "is process 0 running (started with process id 0 and this coordinator "
        f"address)? Last error: {last}"
    )


def _who_holds(host: str, port: int, seconds: float) -> str:
    """What answers at a port that is taken here, in words, for a message."""
    for where in dict.fromkeys((host, "127.0.0.1", "::1")):
        try:
            kind, what = _ask(where, port, seconds, time.monotonic() + seconds)
        except OSError:
            continue  # not listening on that address: try the next
        if kind == "grpc":
            return (
                "a gRPC server answers there: the coordinator of an earlier run "
                "still going?"
            )
        return what
    return "by another program, or an earlier run still going?"


def check_port_free(address: str, probe_seconds: float = 1.0) -> None:
    """Raises if the coordinator's port is taken on this host (process 0 only).

    JAX would fail to start its server there, and may crash doing so
    (a segmentation fault, seen with jax 0.10), so the port is tried first:
    bound on every address, as JAX binds it, and released at once. If it is
    taken, whatever listens there is asked what it is (for up to
    ``probe_seconds``), for the message.

    Raises:
        RuntimeError: if the port is already in use.
    """
    host, port = parse_address(address)
    for family, anywhere in ((socket.AF_INET6, "::"), (socket.AF_INET, "0.0.0.0")):
        try:
            probe = socket.socket(family, socket.SOCK_STREAM)
        except OSError:
            continue  # no IPv6 here: try IPv4
        with probe:
            try:
                probe.bind((anywhere, port))
                return
            except OSError as error:
                if error.errno != errno.EADDRINUSE:
                    continue  # e.g. IPv6 disabled: let the next family decide
        raise RuntimeError(
            f"{_FN}: process 0 could not serve the coordinator at {address}: "
            f"port {port} is already in use ({_who_holds(host, port, probe_seconds)}); "
            "give every process another port"
        )


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
        RuntimeError: if this process is already initialized, process 0
            cannot serve the coordinator (its port in use, say), or a process
            other than 0 finds a server there that is not a gRPC server (a
            web server, say: JAX would abort the process).
        TimeoutError: if a process other than 0 cannot reach the coordinator
            within ``timeout``, or what answers there says nothing.

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
