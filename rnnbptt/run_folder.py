"""The results folder of a run: replaced only whole, never beside what it did not write.

A run of NAME writes into a hidden folder ``OUT/.NAME.rnnbptt-run-XXXXXXXX``
(:func:`start`) and, when it finishes, swaps it in as ``OUT/NAME``
(:func:`finish`). What this guarantees, what it refuses and what a kill leaves
is :class:`rnnbptt.runs.Run`'s docstring; here is how.

* The names: only hidden folders named as rnnbptt names them
  (``.NAME.rnnbptt-run-*`` for a run's, ``.NAME.rnnbptt-old-*`` for results a
  swap moved aside; :data:`_HIDDEN`) are ever cleaned up or put back, so a
  user's ``.NAME.keep`` is never touched, whatever it holds.
* The record: each run folder holds ``.rnnbptt-run.json`` (:data:`RECORD`).
  While the run works it says who writes the folder (:func:`rnnbptt.liveness.
  writer`), so that a later run can tell whether that process is certainly
  gone; once the run is complete it also lists what the folder holds
  (``entries``: path -> ``"file"``, ``"dir"`` or ``"other"``). An entry of
  ``OUT/NAME`` that its record does not list, or that a record of another
  experiment lists, is foreign: never deleted.
* The swap: one ``renameat2(RENAME_EXCHANGE)`` where Linux and the file system
  have it; elsewhere two renames, the record of the new folder naming the old
  one first, so that a run that finds ``OUT/NAME`` missing knows which
  interrupted swap to finish (:func:`_recover`).
* The clean-up: before it starts, a run removes the hidden folders of NAME that
  earlier runs left (:func:`_sweep`), best effort, deleting each one's record
  last (:func:`remove`), so that a kill midway leaves it recognisable.
* The lock: runs into one ``OUT`` take turns to clean up and swap (``flock`` on
  the ``OUT`` folder itself, no lock file; none where the system has no flock).
* Failure: results that cannot be swapped in are kept, visible, as
  ``OUT/NAME.new-TIME`` (:func:`_keep_beside`), never deleted.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import re
import secrets
import stat
import tempfile
import time
import warnings
from pathlib import Path

from . import liveness

# The record in each run folder: who writes it (while "complete" is false) or
# what it holds (its "entries", once complete).
RECORD = ".rnnbptt-run.json"
# The hidden folders of NAME: ".NAME." then one of these and 8 characters
# (mkdtemp's, or 8 hex digits).
_RUN, _OLD = "rnnbptt-run-", "rnnbptt-old-"
_HIDDEN = re.compile(rf"(?:{_RUN}|{_OLD})[a-z0-9_]{{8}}")
# Foreign entries an error lists before it says "and N more".
_SHOWN = 8
# An unfinished run folder of a writer this process cannot tell is gone is
# kept; once nothing in it changed for this long, a warning names it.
_QUIET_SECONDS = 24 * 3600.0


class KeptBeside(FileExistsError):
    """The finished results could not replace ``OUT/NAME`` (entries no run wrote
    appeared there meanwhile): they are in ``folder``, ``OUT/NAME.new-TIME``."""

    def __init__(self, message: str, folder: Path):
        super().__init__(message)
        self.folder = folder


def start(destination: Path) -> Path:
    """Makes the hidden folder a run of ``destination.name`` writes into, with
    its record, once an interrupted swap is finished, what earlier runs left is
    removed, and ``destination`` holds nothing foreign.

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
        folder = Path(tempfile.mkdtemp(prefix=f".{name}.{_RUN}", dir=parent))
        try:
            record = {"name": name, **liveness.writer(), "complete": False}
            _write_record(folder, record)
        except BaseException:
            remove(folder)
            raise
    return folder


def finish(folder: Path, destination: Path) -> None:
    """Records what ``folder`` holds, marks it complete, swaps it in as
    ``destination`` and removes the old results (best effort: else the next
    run's sweep does).

    Raises:
        KeptBeside: if ``destination`` now holds what no run wrote; the results
            are then kept beside it, and ``destination`` is left as it is.
        OSError: if the swap failed; ``destination`` is as it was, and the
            results are kept beside it where they can be moved (the error's
            note says where).
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
                message = f"{_refusal(destination, foreign)}; this run's results"
                raise KeptBeside(f"{message} are in {kept}", kept)
            old = _swap(folder, destination, record)
            if old is not None:
                with contextlib.suppress(OSError):
                    remove(old)
    except KeptBeside:
        raise
    except BaseException as error:
        if os.path.lexists(folder):  # neither swapped in nor kept beside
            error.add_note(_kept_note(folder, destination))
        raise


def _kept_note(folder: Path, destination: Path) -> str:
    """Keeps results that failed to swap in beside ``destination``; says where."""
    try:
        return f"this run's results are in {_keep_beside(folder, destination)}"
    except OSError as error:
        return f"this run's results are in {folder} (could not move them: {error})"


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
    """What in ``destination`` no earlier run of its name wrote (None if
    nothing): all of it without a complete record of that name, or the entries
    its record does not list."""
    if not os.path.lexists(destination):
        return None
    if destination.is_symlink() or not destination.is_dir():
        return ["(a symbolic link)" if destination.is_symlink() else "(a file)"]
    record = _read_record(destination) or {}
    ours = record.get("complete") and record.get("name") == destination.name
    entries = record.get("entries") if ours else None
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
    """The hidden folders rnnbptt names ``OUT/.NAME.rnnbptt-*`` beside
    ``destination`` (no links)."""
    prefix = f".{destination.name}."
    try:
        scan = list(os.scandir(destination.parent))
    except OSError:
        return []
    return [
        Path(e.path)
        for e in scan
        if e.name.startswith(prefix)
        and _HIDDEN.fullmatch(e.name[len(prefix) :])
        and e.is_dir(follow_symlinks=False)
    ]


def _recover(destination: Path) -> None:
    """If ``destination`` is missing because a swap of two renames was
    interrupted, finishes it: moves the new results in (their record names the
    old folder they replace, which is still there); failing that, puts back
    the newest complete results a swap moved aside."""
    if os.path.lexists(destination):
        return
    folders = {p.name: p for p in _hidden(destination)}
    aside_prefix = f".{destination.name}.{_OLD}"
    old = {name for name in folders if name.startswith(aside_prefix)}
    new, aside = [], []
    for name, folder in folders.items():
        record = _ours(folder, destination.name) or {}
        wanted = name in old or record.get("replacing") in old
        if record.get("complete") and wanted:
            finished = (float(record.get("finished", 0)), folder)
            (aside if name in old else new).append(finished)
    if new or aside:
        os.rename(max(new or aside)[1], destination)


def _sweep(destination: Path, locked: bool) -> None:
    """Removes what runs of ``destination.name`` left in hidden folders, best
    effort (what cannot be removed is named in a warning): temporary folders
    of processes that are certainly gone; complete copies (while ``locked``,
    no swap is under way; else only those of gone processes); and, while
    ``locked``, folders a kill left before their record was written."""
    for folder in _hidden(destination):
        record = _ours(folder, destination.name)
        if record is None:
            stale = locked and _unrecorded(folder)
        else:
            stale = (record.get("complete") and locked) or liveness.gone(record)
            if not stale and not record.get("complete"):
                _warn_if_quiet(folder, record)
        if stale:
            try:
                remove(folder)
            except OSError as error:
                warnings.warn(
                    f"could not remove {folder}, what an earlier run of "
                    f"{destination.name} left: {error}",
                    stacklevel=4,
                )


def _unrecorded(folder: Path) -> bool:
    """Whether ``folder`` is empty but for a part-written record: what a kill
    between ``mkdtemp`` and the record's rename leaves."""
    try:
        return {p.name for p in folder.iterdir()} <= {f"{RECORD}.part"}
    except OSError:
        return False


def _warn_if_quiet(folder: Path, record: dict) -> None:
    """Warns about an unfinished run folder kept because its writer may run
    (another host, container or boot) once nothing in it changed for a day."""
    try:
        changed = max(p.lstat().st_mtime for p in [folder, *folder.rglob("*")])
    except OSError:
        return
    if time.time() - changed > _QUIET_SECONDS:
        warnings.warn(
            f"left alone: {folder}, an unfinished run of {record.get('host')} "
            f"(pid {record.get('pid')}) unchanged for "
            f"{(time.time() - changed) / 3600:.0f} hours, which this process "
            "cannot tell is gone; delete it if no run writes it",
            stacklevel=4,
        )


def _swap(new: Path, destination: Path, record: dict) -> Path | None:
    """Puts ``new`` (whose complete ``record`` it holds) at ``destination``;
    returns where the old folder went."""
    if not os.path.lexists(destination):
        os.rename(new, destination)
        return None
    if _exchange(new, destination):
        return new
    # two renames: the record names the old folder first, so that a kill
    # between them, which leaves destination missing, is finished by the next
    # run (_recover)
    old = destination.with_name(f".{destination.name}.{_OLD}{secrets.token_hex(4)}")
    _write_record(new, {**record, "replacing": old.name})
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
