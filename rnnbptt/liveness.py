"""Whether the process that left a file behind is certainly gone.

Checkpoint temporaries and run folders record who wrote them, so that a later
process can clean up what a killed one left without ever deleting what a
process still running writes. A pid names one process only within one pid
namespace of one running system, so a writer is:

* ``tag()``: this host, machine, boot and pid namespace, as a short string that
  fits in a file name (``HOST-DIGEST``);
* ``writer()``: that tag with the pid and the pid's start time, as a record
  stores it.

``gone(tag, pid, started)`` is True only when the writer is certainly not
running: the same tag as this process, and its pid free or taken by a process
that started at another time; or the same host and machine booted again since
the record was written.
Any other difference (another host, container or pid namespace, or what cannot
be read) is unsure, which means no: the caller keeps the file, or falls back to
its age where a write is known to be short.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import re
import socket
import time
from pathlib import Path


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text().strip() or None
    except OSError:
        return None


@functools.cache
def _system() -> dict:
    """What names this running system: host name, machine id (stable across
    boots), boot id and pid namespace; None for what this system lacks."""
    namespace, own_proc = None, False
    with contextlib.suppress(OSError):
        namespace = str(os.stat("/proc/self/ns/pid").st_ino)
        # a /proc mounted for another pid namespace describes other processes
        own_proc = os.readlink("/proc/self") == str(os.getpid())
    booted = re.search(r"^btime (\d+)$", _read("/proc/stat") or "", re.MULTILINE)
    return {
        "host": socket.gethostname(),
        "machine": _read("/etc/machine-id"),
        "boot": _read("/proc/sys/kernel/random/boot_id"),
        "booted": int(booted[1]) if booted else None,
        "pid_namespace": namespace,
        "own_proc": own_proc,
    }


@functools.cache
def tag() -> str:
    """This host, machine, boot and pid namespace: ``HOST-DIGEST`` (the host
    name's letters, digits and dashes, at most 24, then 8 hex digits)."""
    system = _system()
    ids = [system[k] or "" for k in ("host", "machine", "boot", "pid_namespace")]
    digest = hashlib.sha256("\0".join(ids).encode()).hexdigest()[:8]
    return f"{re.sub(r'[^A-Za-z0-9-]', '-', system['host'])[:24]}-{digest}"


def started(pid: int) -> str | None:
    """When process ``pid`` started (clock ticks since boot, from /proc), or
    None where it is not running or the system has no /proc of this pid
    namespace."""
    if not _system()["own_proc"]:
        return None
    text = _read(f"/proc/{pid}/stat")
    if text is None:
        return None
    return text.rpartition(")")[2].split()[19]  # field 22 of proc(5)


def writer() -> dict:
    """This process as a record stores it: :func:`tag`, the host, machine and
    boot it names and the time (to tell a reboot), the pid and the pid's start
    time."""
    system = _system()
    return {
        "writer": tag(),
        "host": system["host"],
        "machine": system["machine"],
        "boot": system["boot"],
        "time": time.time(),
        "pid": os.getpid(),
        "pid_started": started(os.getpid()),
    }


def gone(record: dict) -> bool:
    """Whether the process a :func:`writer` record names is certainly not
    running. Unsure (another system, a record of another form) means no."""
    here = _system()
    if not isinstance(record, dict):
        return False
    if _rebooted(record, here):
        return True
    pid = record.get("pid")
    if record.get("writer") != tag() or isinstance(pid, bool):
        return False
    if not isinstance(pid, int) or pid <= 0:
        return False
    return _pid_gone(pid, record.get("pid_started"))


def _rebooted(record: dict, here: dict) -> bool:
    """The same host and machine (a machine id, which a reboot keeps) booted
    again since the record was written: no process of before runs. The record
    must be older than this boot, for a clone of the machine (the same host
    name and machine id, its own boot) that writes now is no reboot."""
    same = record.get("host") == here["host"]
    same = same and here["machine"] is not None
    same = same and record.get("machine") == here["machine"]
    written = record.get("time")
    return (
        same
        and None not in (record.get("boot"), here["boot"], here["booted"])
        and record["boot"] != here["boot"]
        and isinstance(written, int | float)
        and not isinstance(written, bool)
        and written < here["booted"]
    )


def _pid_gone(pid: int, when: str | None) -> bool:
    """Whether process ``pid`` of this pid namespace, started at ``when`` (or
    at an unknown time), is gone: its pid free, or taken by a process that
    started at another time. This process itself is not gone."""
    if os.name == "nt":  # there, os.kill would terminate the process
        return False
    if pid == os.getpid():
        return when is not None and started(pid) not in (None, when)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # it exists, as another user's process
        pass
    now = started(pid)
    return when is not None and now is not None and now != when
