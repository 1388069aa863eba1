"""The results folder of a run: replaced only whole, never beside what it did not write.

A run of NAME writes into a hidden folder ``OUT/.NAME.XXXXXXXX`` (:func:`start`)
and, when it finishes, swaps it in as ``OUT/NAME`` (:func:`finish`). What this
guarantees, what it refuses and what a kill leaves is :class:`rnnbptt.runs.Run`'s
docstring; here is how.

* The record: each run folder holds ``.rnnbptt-run.json`` (:data:`RECORD`).
  While the run works it says who writes the folder (host, boot, pid namespace,
  pid and the pid's start time), so that a later run can tell whether that
  process is certainly gone; once the run is complete it also lists what the
  folder holds (``entries``: path -> ``"file"``, ``"dir"`` or ``"other"``). An
  entry of ``OUT/NAME`` that its record does not list is foreign: never deleted.
* The swap: one ``renameat2(RENAME_EXCHANGE)`` where Linux and the file system
  have it; elsewhere two renames, after which a run that finds ``OUT/NAME``
  missing puts back the newest complete copy (:func:`_recover`).
* The clean-up: before it starts, a run removes the hidden folders of NAME that
  earlier runs left (:func:`_sweep`), deleting each one's record last
  (:func:`remove`), so that a kill midway leaves it recognisable.
* The lock: runs into one ``OUT`` take turns to clean up and swap (``flock`` on
  the ``OUT`` folder itself, no lock file; none where the system has no flock).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import secrets
import socket
import stat
import tempfile
import time
from pathlib import Path

# The record in each run folder: who writes it (while "complete" is false) or
# what it holds (its "entries", once complete).
RECORD = ".rnnbptt-run.json"
# Foreign entries an error lists before it says "and N more".
_SHOWN = 8


class KeptBeside(FileExistsError):
    """The finished results could not replace ``OUT/NAME`` (entries no run wrote
    appeared there meanwhile): they are in ``folder``, ``OUT/NAME.new-TIME``."""

    def __init__(self, message: str, folder: Path):
        super().__init__(message)
        self.folder = folder


def start(destination: Path) -> Path:
    """Makes the hidden folder a run of ``destination.name`` writes into, with
    its record, once results an interrupted swap took away are back, what
    earlier runs left is removed, and ``destination`` holds nothing foreign.

    Raises:
        FileExistsError: if ``destination`` holds what no earlier run wrote (the
            message names the path and those entries); nothing is written then.
    """
    parent, name = destination.parent, destination.name
    parent.mkdir(parents=True, exist_ok=True)
    with _locked(parent) as locked:
        _recover(destination)
        _sweep(destination, locked)
        _refuse_foreign(destination)
        folder = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=parent))
        try:
            _write_record(folder, {"name": name, **_process(), "complete": False})
        except BaseException:
            remove(folder)
            raise
    return folder


def finish(folder: Path, destination: Path) -> Path | None:
    """Records what ``folder`` holds, marks it complete and swaps it in as
    ``destination``; a folder that cannot be swapped in is removed.

    Returns:
        The hidden folder the old results went to (for the caller to remove),
        or None if there were none.

    Raises:
        KeptBeside: if ``destination`` now holds what no run wrote; the results
            are then kept beside it, and ``destination`` is left as it is.
    """
    try:
        with _locked(destination.parent):
            record = _read_record(folder) or {"name": destination.name}
            record = {**record, "complete": True, "finished": time.time()}
            record["entries"] = _entries(folder)
            _write_record(folder, record)
            foreign = _foreign(destination)
            if foreign:
                kept = _keep_beside(folder, destination)
                raise KeptBeside(
                    f"{_refusal(destination, foreign)}; this run's results are in "
                    f"{kept}",
                    kept,
                )
            return _swap(folder, destination)
    except BaseException:
        if os.path.lexists(folder):  # neither swapped in nor kept beside
            remove(folder)
        raise


def remove(folder: Path) -> None:
    """Deletes a run folder, its record last: a kill midway leaves it still
    recognisably a run's, for the next run to finish."""
    for top, dirs, files in os.walk(folder, topdown=False):
        for entry in files + dirs:
            path = Path(top, entry)
            if path == folder / RECORD:
                continue
            with contextlib.suppress(FileNotFoundError):
                if entry in dirs and not path.is_symlink():
                    path.rmdir()
                else:
                    path.unlink()
    with contextlib.suppress(FileNotFoundError):
        (folder / RECORD).unlink()
    with contextlib.suppress(FileNotFoundError):
        folder.rmdir()


def _process() -> dict:
    """This process, as a record tells later whether it still runs: host, boot,
    pid namespace, pid and start time (the last three from /proc, on Linux)."""

    def read(path: str) -> str | None:
        try:
            return Path(path).read_text().strip()
        except OSError:
            return None

    try:
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        namespace = None
    return {
        "host": socket.gethostname(),
        "boot": read("/proc/sys/kernel/random/boot_id"),
        "pid_namespace": namespace,
        "pid": os.getpid(),
        "pid_started": _started(os.getpid()),
    }


def _started(pid: int) -> str | None:
    """When process ``pid`` started (clock ticks since boot), or None."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rpartition(")")[2].split()[19]  # field 22 of proc(5)


def _certainly_dead(record: dict) -> bool:
    """Whether the process that wrote ``record`` is certainly not running: on
    this host, and a reboot since, or in this pid namespace and its pid free or
    taken by a process that started at another time. Unsure means no."""
    here = _process()
    if record.get("host") != here["host"]:
        return False
    if record.get("boot") and here["boot"] and record["boot"] != here["boot"]:
        return True
    if record.get("pid_namespace") != here["pid_namespace"]:
        return False
    pid = record.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # it exists, as another user's process
        pass
    started = _started(pid)
    return bool(record.get("pid_started")) and started not in (
        None,
        record["pid_started"],
    )


def _read_record(folder: Path) -> dict | None:
    """The record in ``folder`` if it holds a readable one, else None."""
    try:
        record = json.loads((folder / RECORD).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def _write_record(folder: Path, record: dict) -> None:
    """Writes the record whole or not at all (a new file, then a rename)."""
    part = folder / f"{RECORD}.part"
    part.write_text(json.dumps(record, indent=1) + "\n")
    os.replace(part, folder / RECORD)


def _kind(mode: int) -> str:
    return "dir" if stat.S_ISDIR(mode) else "file" if stat.S_ISREG(mode) else "other"


def _entries(folder: Path) -> dict:
    """{relative path: "file" | "dir" | "other"} of everything in ``folder``
    but its record, without following links."""
    entries = {}
    for top, dirs, files in os.walk(folder):
        for entry in dirs + files:
            path = Path(top, entry)
            relative = path.relative_to(folder).as_posix()
            if relative not in (RECORD, f"{RECORD}.part"):
                entries[relative] = _kind(path.lstat().st_mode)
    return dict(sorted(entries.items()))


def _unlisted(folder: Path, listed: dict, limit: int | None = None) -> list[str]:
    """The entries of ``folder`` that ``listed`` ({path: kind}) does not name as
    they are, without descending into them (a folder ends in "/")."""
    found = []

    def visit(directory: Path) -> None:
        with os.scandir(directory) as scan:
            for entry in sorted(scan, key=lambda e: e.name):
                relative = Path(entry.path).relative_to(folder).as_posix()
                if relative in (RECORD, f"{RECORD}.part"):
                    continue
                kind = _kind(entry.stat(follow_symlinks=False).st_mode)
                if listed.get(relative) != kind:
                    found.append(relative + ("/" if kind == "dir" else ""))
                elif kind == "dir":
                    visit(Path(entry.path))
                if limit is not None and len(found) >= limit:
                    return

    visit(folder)
    return found[:limit]


def _ours(folder: Path, name: str) -> dict | None:
    """The record of ``folder`` if a run of ``name`` wrote it and, once the
    record is complete, nothing else has been put in it; else None."""
    record = _read_record(folder)
    if record is None or record.get("name") != name:
        return None
    if record.get("complete"):
        entries = record.get("entries")
        if not isinstance(entries, dict) or _unlisted(folder, entries, 1):
            return None
    return record


def _foreign(destination: Path) -> list[str] | None:
    """What in ``destination`` no earlier run wrote (None if nothing): all of it
    without a record, or the entries its record does not list."""
    if not os.path.lexists(destination):
        return None
    if destination.is_symlink() or not destination.is_dir():
        return ["(a symbolic link)" if destination.is_symlink() else "(a file)"]
    record = _read_record(destination)
    entries = record.get("entries") if record and record.get("complete") else None
    found = _unlisted(destination, entries if isinstance(entries, dict) else {})
    return found or None


def _refusal(destination: Path, foreign: list[str]) -> str:
    what = ", ".join(foreign[:_SHOWN])
    if len(foreign) > _SHOWN:
        what += f" and {len(foreign) - _SHOWN} more"
    unrecorded = destination.is_dir() and not destination.is_symlink()
    unrecorded = unrecorded and _read_record(destination) is None
    why = (
        f" (it has no {RECORD}: not a run's folder, or one written before rnnbptt "
        "kept records)"
        if unrecorded
        else ""
    )
    return (
        f"{destination} holds what no earlier run of {destination.name} wrote "
        f"({what}){why}; rnnbptt replaces only its own results and deletes "
        "nothing else: move those elsewhere, or write to another --out"
    )


def _refuse_foreign(destination: Path) -> None:
    foreign = _foreign(destination)
    if foreign:
        raise FileExistsError(_refusal(destination, foreign))


def _hidden(destination: Path) -> list[Path]:
    """The hidden folders ``OUT/.NAME.*`` beside ``destination`` (no links)."""
    prefix = f".{destination.name}."
    try:
        scan = list(os.scandir(destination.parent))
    except OSError:
        return []
    return [
        Path(e.path)
        for e in scan
        if e.name.startswith(prefix) and e.is_dir(follow_symlinks=False)
    ]


def _recover(destination: Path) -> None:
    """If ``destination`` is missing (a swap of two renames was interrupted),
    moves the newest complete run of its name there from its hidden copies."""
    if os.path.lexists(destination):
        return
    complete = []
    for folder in _hidden(destination):
        record = _ours(folder, destination.name)
        if record and record.get("complete"):
            complete.append((float(record.get("finished", 0)), folder))
    if complete:
        os.rename(max(complete)[1], destination)


def _sweep(destination: Path, locked: bool) -> None:
    """Removes what runs of ``destination.name`` left in hidden folders: temporary
    folders of processes that are certainly gone, and complete copies (while
    ``locked``, no swap is under way; else only those of gone processes)."""
    for folder in _hidden(destination):
        record = _ours(folder, destination.name)
        if record is None:
            continue
        if (record.get("complete") and locked) or _certainly_dead(record):
            remove(folder)


def _swap(new: Path, destination: Path) -> Path | None:
    """Puts ``new`` at ``destination``; returns where the old folder went."""
    if not os.path.lexists(destination):
        os.rename(new, destination)
        return None
    if _exchange(new, destination):
        return new
    # two renames: a kill between them leaves destination missing, which the
    # next run repairs (_recover)
    old = destination.with_name(f".{destination.name}.old-{secrets.token_hex(4)}")
    os.rename(destination, old)
    try:
        os.rename(new, destination)
    except BaseException:
        os.rename(old, destination)
        raise
    return old


def _exchange(a: Path, b: Path) -> bool:
    """Swaps two existing paths in one step (Linux ``renameat2`` with
    ``RENAME_EXCHANGE``); False where the system or file system has no such
    call."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return False
    at_cwd, exchange = -100, 2
    if renameat2(at_cwd, os.fsencode(a), at_cwd, os.fsencode(b), exchange) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP):
        return False
    raise OSError(code, os.strerror(code), str(b))


def _keep_beside(new: Path, destination: Path) -> Path:
    """Moves finished results that may not replace ``destination`` to a visible
    folder beside it, ``NAME.new-TIME``."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    kept = destination.with_name(f"{destination.name}.new-{stamp}")
    while os.path.lexists(kept):
        kept = destination.with_name(f"{kept.name}-{secrets.token_hex(2)}")
    os.rename(new, kept)
    return kept


@contextlib.contextmanager
def _locked(folder: Path):
    """Holds an exclusive lock on ``folder`` (``flock`` on the folder itself, no
    lock file), so that runs into one OUT clean up and swap one at a time;
    yields whether it holds it (not on systems or file systems without flock)."""
    try:
        import fcntl
    except ImportError:
        yield False
        return
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        yield False
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            held = True
        except OSError:
            held = False
        yield held
    finally:
        os.close(fd)
