"""Several processes: two local processes, launched with the example script
``experiments/_distributed_fit.py`` on loopback, train like one process on the
same global minibatches; an unreachable coordinator, another server on its
port and bad arguments give clear errors quickly.
"""

import argparse
import contextlib
import importlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import jax
import numpy as np
import pytest

import rnnbptt
from rnnbptt import distributed

ROOT = Path(__file__).parent.parent
EXAMPLE = ROOT / "experiments" / "_distributed_fit.py"
ENV_VARS = ("RNNBPTT_COORDINATOR", "RNNBPTT_NUM_PROCESSES", "RNNBPTT_PROCESS_ID")
TRAIN_WINDOWS, VALIDATION_WINDOWS, BATCH, EPOCHS = 36, 16, 8, 3
LAUNCH_TIMEOUT = 240  # seconds for both processes together


def free_port() -> int:
    """A loopback port nobody listens on (bound, read, released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def child_env(devices: int = 1, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ENV_VARS}
    env["JAX_PLATFORMS"] = "cpu"
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    return {**env, **extra}


def load_example():
    return importlib.import_module("rnnbptt.experiments._distributed_fit")


def max_rel(a: dict, b: dict) -> float:
    assert sorted(a) == sorted(b)
    return max(
        float(np.max(np.abs(a[k] - b[k])) / max(np.max(np.abs(b[k])), 1e-300))
        for k in b
    )


def flat(params) -> dict:
    leaves = jax.tree_util.tree_flatten_with_path(params)[0]
    return {jax.tree_util.keystr(k): np.asarray(x) for k, x in leaves}


def wait_all(procs, deadline: float) -> None:
    """Waits for every process; a failed one or the deadline stops the wait."""
    while any(p.poll() is None for p in procs):
        if time.monotonic() > deadline:
            raise TimeoutError(f"the processes ran past {LAUNCH_TIMEOUT} s")
        if any(p.poll() not in (None, 0) for p in procs):
            return  # one failed: the other would wait for it in vain
        time.sleep(0.1)


@pytest.fixture(scope="module")
def launch(tmp_path_factory):
    """Runs the example as processes 0 and 1 (2 CPU devices each).

    Process 1 is started first and takes its settings from the environment;
    process 0, started a second later, from the command line. Both are given
    an --out and a --checkpoint path of their own, to see which one writes.
    """
    tmp = tmp_path_factory.mktemp("distributed")
    address = f"127.0.0.1:{free_port()}"
    common = [
        f"--train-windows={TRAIN_WINDOWS}",
        f"--validation-windows={VALIDATION_WINDOWS}",
        f"--batch-size={BATCH}",
        f"--epochs={EPOCHS}",
        "--timeout=60",
    ]
    flags = {
        0: ["--coordinator", address, "--num-processes", "2", "--process-id", "0"],
        1: [],
    }
    envs = {
        0: child_env(2),
        1: child_env(
            2,
            RNNBPTT_COORDINATOR=address,
            RNNBPTT_NUM_PROCESSES="2",
            RNNBPTT_PROCESS_ID="1",
        ),
    }
    procs, logs = {}, {}
    started = time.monotonic()
    try:
        for pid in (1, 0):
            logs[pid] = (tmp / f"stdout-{pid}.txt", tmp / f"stderr-{pid}.txt")
            with open(logs[pid][0], "w") as out, open(logs[pid][1], "w") as err:
                outputs = [
                    f"--out={tmp / f'params-{pid}.npz'}",
                    f"--checkpoint={tmp / f'checkpoint-{pid}.npz'}",
                ]
                procs[pid] = subprocess.Popen(
                    [sys.executable, str(EXAMPLE), *flags[pid], *common, *outputs],
                    stdout=out,
                    stderr=err,
                    env=envs[pid],
                    cwd=tmp,
                )
            if pid == 1:
                time.sleep(1.0)  # process 1 waits for the coordinator to appear
        wait_all(list(procs.values()), started + LAUNCH_TIMEOUT)
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
            p.wait()
    for pid, p in procs.items():
        assert p.returncode == 0, (
            f"process {pid} exited with {p.returncode}:\n"
            + logs[pid][1].read_text()[-3000:]
        )
    summaries = {
        pid: json.loads(logs[pid][0].read_text().strip().splitlines()[-1])
        for pid in procs
    }
    return {"tmp": tmp, "summaries": summaries}


def global_order(shares, k: int):
    """Minibatch b of the global run: every process's rows [b*k, (b+1)*k)."""
    n = shares[0][0].shape[0]
    return tuple(
        np.concatenate(
            [share[i][b : b + k] for b in range(0, n, k) for share in shares]
        )
        for i in range(len(shares[0]))
    )


@pytest.fixture(scope="module")
def reference():
    """One process, one device, the same global minibatches; and natural order."""
    example = load_example()
    full = example.sine_windows(TRAIN_WINDOWS, 0)
    shares = [example.local_share(full, pid, 2) for pid in (0, 1)]
    arranged = global_order(shares, BATCH // 2)
    validation = example.sine_windows(VALIDATION_WINDOWS, 1)
    model = example.make_model()
    runs = {
        name: example.train(
            data, validation, epochs=EPOCHS, batch_size=BATCH, data_parallel=None
        )
        for name, data in (("arranged", arranged), ("natural", full))
    }
    initial = model.init(jax.random.key(0), jax.numpy.float64)
    return {
        "params": flat(runs["arranged"].params),
        "history": runs["arranged"].history,
        "natural": flat(runs["natural"].params),
        "initial": flat(initial),
        "reordered": not np.array_equal(arranged[0], full[0]),
    }


def test_two_processes_see_four_devices(launch):
    for pid, summary in launch["summaries"].items():
        assert summary["process_id"] == pid
        assert summary["processes"] == 2
        assert (summary["devices"], summary["local_devices"]) == (4, 2)


def test_two_processes_end_like_one_on_the_same_minibatches(launch, reference):
    got = dict(np.load(launch["tmp"] / "params-0.npz"))
    assert max_rel(got, reference["params"]) < 1e-10
    assert max_rel(got, reference["initial"]) > 1e-3  # training moved them
    # the global minibatch order matters, so the comparison would see a wrong one
    assert reference["reordered"]
    assert max_rel(got, reference["natural"]) > 1e-6


def test_losses_are_global_and_the_same_in_every_process(launch, reference):
    history = reference["history"]
    for summary in launch["summaries"].values():
        for column in ("train_loss", "val_loss"):
            np.testing.assert_allclose(summary[column], history[column], rtol=1e-10)
        assert summary["best_epoch"] == EPOCHS


def test_only_process_0_writes(launch):
    tmp = launch["tmp"]
    assert (tmp / "params-0.npz").exists() and (tmp / "checkpoint-0.npz").exists()
    assert not (tmp / "params-1.npz").exists()
    assert not (tmp / "checkpoint-1.npz").exists()
    stored = rnnbptt.peek_metadata(tmp / "checkpoint-0.npz")
    assert stored["epoch"] == EPOCHS


FAILURES = """
import http.server, json, socket, sys, threading, time
import jax
import rnnbptt
out = {"initialized_on_import": jax.distributed.is_initialized()}
started = time.monotonic()
try:
    rnnbptt.distributed.initialize("127.0.0.1:%d", 2, 1, timeout=3)
except Exception as error:
    out["unreachable"] = [type(error).__name__, str(error)]
out["seconds"] = time.monotonic() - started

class Web(http.server.HTTPServer):  # on [::]:PORT, as the coordinator binds
    address_family = socket.AF_INET6

    def server_bind(self):
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()

class Quiet(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

web = Web(("::", 0), Quiet)
threading.Thread(target=web.serve_forever, daemon=True).start()
out["web_port"] = web.server_address[1]
for name, process in (("web", 1), ("busy", 0)):
    started = time.monotonic()
    try:
        rnnbptt.distributed.initialize(
            "127.0.0.1:%%d" %% out["web_port"], 2, process, timeout=3
        )
    except Exception as error:
        out[name] = [type(error).__name__, str(error), time.monotonic() - started]
json.dump(out, sys.stdout)
"""


ALONE = """
import rnnbptt
rnnbptt.distributed.initialize("127.0.0.1:%d", 2, 0, timeout=2)
print("initialized without process 1")
"""


@pytest.fixture(scope="module")
def failed_starts():
    """The FAILURES and ALONE scripts, run at the same time (both mostly wait out
    their timeouts): {name: (completed process, its port, its seconds)}."""
    procs = {}
    for name, script in (("failures", FAILURES), ("alone", ALONE)):
        port = free_port()
        proc = subprocess.Popen(
            [sys.executable, "-c", script % port],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=child_env(),
        )
        procs[name] = (proc, port, time.monotonic())
    results = {}
    try:
        for name, (proc, port, started) in procs.items():
            # a hang fails the test instead of blocking it
            stdout, stderr = proc.communicate(timeout=60)
            results[name] = (
                subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr),
                port,
                time.monotonic() - started,
            )
    finally:
        for proc, _, _ in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return results


def test_unreachable_coordinator_and_busy_port_fail_clearly(failed_starts):
    result, port, _ = failed_starts["failures"]
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout)
    assert out["initialized_on_import"] is False
    kind, message = out["unreachable"]
    assert kind == "TimeoutError"
    for words in (f"127.0.0.1:{port}", "within 3 s", "is process 0 running"):
        assert words in message
    assert 2.5 < out["seconds"] < 10  # retried until the timeout, then gave up
    # a web server where the coordinator should be: said so at once, no SIGABRT
    kind, message, seconds = out["web"]
    assert kind == "RuntimeError" and seconds < 2
    address = f"127.0.0.1:{out['web_port']}"
    for words in (f"no coordinator at {address}", "an HTTP server answers", "gRPC"):
        assert words in message
    kind, message, seconds = out["busy"]
    assert kind == "RuntimeError" and seconds < 2
    assert f"process 0 could not serve the coordinator at {address}" in message
    assert "in use (an HTTP server answers there" in message


def test_coordinator_alone_ends_with_a_clear_line(failed_starts):
    """Process 0 with nobody joining: JAX ends it after the timeout; it says why."""
    result, port, seconds = failed_starts["alone"]
    assert seconds < 30
    assert result.returncode != 0
    assert "initialized without process 1" not in result.stdout
    line = "process 0 of 2: not every process connected to the coordinator at "
    assert line + f"127.0.0.1:{port} within 2 s" in result.stderr


SETTINGS_FRAME = bytes(3) + b"\x04" + bytes(5)  # what a gRPC server says first


@contextlib.contextmanager
def fake_server(reply):
    """A loopback server that sends ``reply`` to every connection and keeps it
    open (``None``: says nothing; ``b""``: closes it at once); yields its
    address."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.05)
    stop, held = threading.Event(), []

    def serve():
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            if reply == b"":
                conn.close()
                continue
            if reply is not None:
                conn.sendall(reply)
            held.append(conn)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join()
        for conn in held:
            conn.close()
        listener.close()


@pytest.mark.parametrize(
    "reply, kind, words",
    [
        (SETTINGS_FRAME + b"\x00\x00\x00\x04\x01" + bytes(4), None, []),
        (
            b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n",
            RuntimeError,
            ["an HTTP server answers there ('HTTP/1.1 400 Bad Request')", "gRPC"],
        ),
        (
            b"SSH-2.0-OpenSSH_9.6\r\n",
            RuntimeError,
            ["does not speak HTTP/2", "'SSH-2.0-OpenSSH_9.6'"],
        ),
        (b"\x15\x03\x01\x00\x02\x02\x46", RuntimeError, ["b'\\x15\\x03"]),
        (None, TimeoutError, ["within 0.5 s", "says nothing", "process 0 running"]),
        (b"", TimeoutError, ["within 0.5 s", "closes them without a word"]),
    ],
    ids=["grpc", "http", "ssh", "tls", "silent", "closes"],
)
def test_what_answers_at_the_coordinator_address_is_named(reply, kind, words):
    """A process other than 0 hands JAX only a server that speaks HTTP/2 (as
    gRPC does); what else answers is named, in-process (no JAX involved)."""
    with fake_server(reply) as address:
        started = time.monotonic()
        if kind is None:
            distributed.wait_for_coordinator(address, 5)
            assert time.monotonic() - started < 2
            return
        with pytest.raises(kind) as error:
            distributed.wait_for_coordinator(address, 0.5)
    assert time.monotonic() - started < (2 if kind is RuntimeError else 3)
    assert f"at {address}" in str(error.value)
    for word in words:
        assert word in str(error.value)


@pytest.mark.parametrize(
    "reply, words",
    [
        (SETTINGS_FRAME, "gRPC server answers there: the coordinator of an earlier"),
        (None, "in use (a program there accepts connections but says nothing)"),
    ],
    ids=["grpc", "silent"],
)
def test_a_taken_port_names_what_holds_it(reply, words):
    with (
        fake_server(reply) as address,
        pytest.raises(RuntimeError, match="already in use") as error,
    ):
        distributed.check_port_free(address, probe_seconds=0.3)
    assert words in str(error.value)


@pytest.fixture
def no_connection(monkeypatch):
    """Fails the test if initialize got as far as connecting; clears the env."""
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)

    def reached(*args, **kwargs):
        raise AssertionError("the arguments were accepted")

    monkeypatch.setattr(jax.distributed, "initialize", reached)
    monkeypatch.setattr(distributed, "wait_for_coordinator", reached)
    return monkeypatch


@pytest.mark.parametrize(
    "args, env, kind, words",
    [
        (
            (None, 2, 0),
            {},
            ValueError,
            ["`coordinator_address`", "RNNBPTT_COORDINATOR"],
        ),
        (("127.0.0.1", 2, 0), {}, ValueError, ["'HOST:PORT'", "'127.0.0.1'", "port"]),
        ((":12355", 2, 0), {}, ValueError, ["'HOST:PORT'", "no host"]),
        (("::1", 2, 0), {}, ValueError, ["IPv6 host in brackets", "'::1'"]),
        (("fe80::1:8000", 2, 0), {}, ValueError, ["IPv6 host in brackets"]),
        (("host:http", 2, 0), {}, ValueError, ["between 1 and 65535", "'http'"]),
        (("host:70000", 2, 0), {}, ValueError, ["between 1 and 65535", "'70000'"]),
        ((12355, 2, 0), {}, TypeError, ["`coordinator_address`", "int 12355"]),
        (("h:1", None, 0), {}, ValueError, ["`num_processes`", "RNNBPTT_NUM"]),
        (("h:1", "2", 0), {}, TypeError, ["`num_processes`", "an int", "str '2'"]),
        (("h:1", 2.0, 0), {}, TypeError, ["`num_processes`", "float 2.0"]),
        (("h:1", True, 0), {}, TypeError, ["`num_processes`", "bool"]),
        (("h:1", 0, 0), {}, ValueError, ["`num_processes`", ">= 1", "got 0"]),
        (("h:1", 2, None), {}, ValueError, ["`process_id`", "RNNBPTT_PROCESS_ID"]),
        (("h:1", 2, 2), {}, ValueError, ["`process_id`", "0..1", "got 2"]),
        (("h:1", 2, -1), {}, ValueError, ["`process_id`", "0..1", "got -1"]),
        (
            (None, None, None),
            {
                "RNNBPTT_COORDINATOR": "h:1",
                "RNNBPTT_NUM_PROCESSES": "two",
                "RNNBPTT_PROCESS_ID": "0",
            },
            ValueError,
            ["`num_processes`", "RNNBPTT_NUM_PROCESSES", "integer", "'two'"],
        ),
        (
            (None, 2, 0),
            {"RNNBPTT_COORDINATOR": "localhost"},
            ValueError,
            ["(from RNNBPTT_COORDINATOR)", "'localhost'", "port"],
        ),
    ],
)
def test_bad_arguments_are_refused_before_connecting(
    no_connection, args, env, kind, words
):
    for name, value in env.items():
        no_connection.setenv(name, value)
    with pytest.raises(kind) as error:
        distributed.initialize(*args, timeout=5)
    for word in words:
        assert word in str(error.value)


def test_addresses_parse():
    assert distributed.parse_address("[::1]:12355") == ("::1", 12355)
    assert distributed.parse_address(" node-3:80 ") == ("node-3", 80)


def test_processes_that_disagree_are_named_with_their_values(monkeypatch):
    """Two processes simulated by a fake all-gather: small ints are shown per
    process; ints beyond int32 and other values travel as digests, and are
    reported as differing rather than by their digests."""
    from jax.experimental import multihost_utils

    from rnnbptt.parallel import check_processes_agree

    sent = []

    def gather(mine):
        sent.append(mine)
        return np.stack([sent[0], mine])

    monkeypatch.setattr(multihost_utils, "process_allgather", gather)
    other = {"steps": (7, True), "big": (2**40, True), "seed": (1, False)}
    check_processes_agree(other)  # "process 0"
    with pytest.raises(ValueError) as error:
        check_processes_agree(
            {"steps": (8, True), "big": (2**40 + 1, True), "seed": (2, False)}
        )
    text = str(error.value)
    assert "steps [7, 8]" in text
    assert "big (differs)" in text and "seed (differs)" in text


@pytest.mark.parametrize(
    "timeout, kind", [(0, ValueError), (-1, ValueError), ("5", TypeError)]
)
def test_bad_timeout_is_refused(no_connection, timeout, kind):
    with pytest.raises(kind, match="`timeout`"):
        distributed.initialize("h:1", 2, 1, timeout=timeout)


def test_flags_and_environment_reach_jax(monkeypatch):
    """The options (or the environment variables) and the timeout get to JAX."""
    calls = []
    monkeypatch.setattr(
        jax.distributed, "initialize", lambda *a, **k: calls.append((a, k))
    )
    monkeypatch.setattr(
        distributed, "wait_for_coordinator", lambda *a: calls.append(("wait", a))
    )
    parser = distributed.add_arguments(argparse.ArgumentParser())
    args = parser.parse_args(
        ["--coordinator", "[::1]:9", "--num-processes", "3", "--process-id", "2"]
    )
    cluster = distributed.from_args(args, timeout=7)
    assert cluster == distributed.Cluster("[::1]:9", 3, 2)
    assert calls[0] == ("wait", ("[::1]:9", 7.0))
    (address, count, index), options = calls[1]
    assert (address, count, index) == ("[::1]:9", 3, 2)
    assert 1 <= options["initialization_timeout"] <= 7

    calls.clear()
    for name, value in zip(ENV_VARS, ("10.0.0.1:1234", "2", "0"), strict=True):
        monkeypatch.setenv(name, value)
    args = parser.parse_args([])
    assert distributed.from_args(args) == ("10.0.0.1:1234", 2, 0)
    assert [a for a, _ in calls] == [("10.0.0.1:1234", 2, 0)]  # process 0 serves
