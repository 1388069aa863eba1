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
  (``entries``: path -> ``"dir"``, ``"other"`` or a file's size and
  modification time). An entry of ``OUT/NAME`` that its record does not list
  as it is (a file changed in place too), or that a record of another
  experiment lists, is foreign: never deleted.
* The swap: one ``renameat2(RENAME_EXCHANGE)`` where Linux and the file system
  have it, after which the old results are renamed ``.NAME.rnnbptt-old-*``;
  elsewhere two renames, the record of the new folder naming the old one
  first, so that a run that finds ``OUT/NAME`` missing knows which
  interrupted swap to finish (:func:`_recover`).
* The clean-up: before it starts, a run removes the hidden folders of NAME that
  earlier runs left (:func:`_sweep`), best effort, deleting each one's record
  last (:func:`remove`), so that a kill midway leaves it recognisably a run's.
  A run folder goes only once its writer is certainly gone, complete or not;
  old results moved aside go while the lock is held. What cannot be read or
  removed is logged (``logging``, logger ``rnnbptt.run_folder``), never raised.
* The lock: runs into one ``OUT`` take turns to clean up and swap (``flock`` on
  the ``OUT`` folder itself, no lock file; none where the system has no flock,
  and none between hosts on some network file systems, which the writer rule
  above covers).
* Failure: results that cannot be swapped in are kept, visible, as
  ``OUT/NAME.new-TIME`` (:func:`_keep_beside`), never deleted; if even that
  move fails, their record is marked ``kept`` and no sweep removes them.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import logging
import os
import re
import secrets
import stat
import tempfile
import time
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
# A run folder of a writer this process cannot tell is gone is kept; once
# nothing in it changed for this long, a warning names it.
_QUIET_SECONDS = 24 * 3600.0
# A folder without a record (killed before it was written) is removed once
# this old.
_UNRECORDED_SECONDS = 3600.0
_log = logging.getLogger(__name__)


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
    run's sweep does), all while holding the lock.

    Raises:
        KeptBeside: if ``destination`` now holds what no run wrote; the results
            are then kept beside it, and ``destination`` is left as it is.
        OSError: if the swap failed; ``destination`` is as it was, and the
            results are kept beside it where they can be moved (the error's
            note says where, its ``rnnbptt_results`` attribute too).
    """
    with _locked(destination.parent):
        try:
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
        except KeptBeside:
            raise
        except BaseException as error:
            if os.path.lexists(folder):  # neither swapped in nor kept beside
                error.rnnbptt_results, note = _kept(folder, destination)
                error.add_note(note)
            raise
        if old is not None:
            _discard_old(old, destination)


def _kept(folder: Path, destination: Path) -> tuple[Path, str]:
    """Keeps results that failed to swap in beside ``destination``: where they
    are, and a note that says so. If they cannot be moved, their record is
    marked ``kept``, which no sweep removes."""
    try:
        kept = _keep_beside(folder, destination)
        return kept, f"this run's results are in {kept}"
    except OSError as error:
        with contextlib.suppress(OSError):
            _write_record(folder, {**(_read_record(folder) or {}), "kept": True})
        note = f"this run's results are in {folder} (could not move them: {error})"
        return folder, note


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
    """Writes the record whole or not at all (a new file, flushed to disk,
    then a rename)."""
    part = folder / f"{RECORD}.part"
    with open(part, "w") as file:
        file.write(json.dumps(record, indent=1) + "\n")
        file.flush()
        os.fsync(file.fileno())
    os.replace(part, folder / RECORD)


def _kind(info: os.stat_result):
    """What an entry is, as a record lists it: ``"dir"``, ``"other"`` (a link,
    ...), or for a file ``["file", size, mtime_ns]``, so that a file changed in
    place after the run counts as no longer the run's."""
    if stat.S_ISDIR(info.st_mode):
        return "dir"
    if stat.S_ISREG(info.st_mode):
        return ["file", info.st_size, info.st_mtime_ns]
    return "other"


def _same(listed, kind) -> bool:
    """Whether an entry of kind ``kind`` is the one a record ``listed``: a file
    of the same size and modification second (an archive such as tar keeps
    whole seconds); a bare ``"file"`` (a record written before files' sizes
    and times were kept) stands for any file."""
    if isinstance(listed, list) and isinstance(kind, list) and len(listed) == 3:
        second = 1_000_000_000
        return listed[:2] == kind[:2] and listed[2] // second == kind[2] // second
    return listed == kind or (listed == "file" and isinstance(kind, list))


def _entries(folder: Path) -> dict:
    """{relative path: what it is (:func:`_kind`)} of everything in ``folder``
    but its record, without following links."""
    entries = {}
    for top, dirs, files in os.walk(folder):
        for entry in dirs + files:
            path = Path(top, entry)
            relative = path.relative_to(folder).as_posix()
            if relative not in (RECORD, f"{RECORD}.part"):
                entries[relative] = _kind(path.lstat())
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
                kind = _kind(entry.stat(follow_symlinks=False))
                if not _same(listed.get(relative), kind):
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
        f"{destination} holds what no earlier run of {destination.name} wrote, "
        f"or changed since ({what}){why}; rnnbptt replaces only its own results "
        "and deletes "
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
        try:
            record = _ours(folder, destination.name) or {}
        except OSError:  # unreadable: not one to put back
            continue
        wanted = name in old or record.get("replacing") in old
        if record.get("complete") and wanted:
            when = record.get("finished")
            when = when if isinstance(when, int | float) and when is not True else 0
            finished = (float(when), folder)
            (aside if name in old else new).append(finished)
    if new or aside:
        os.rename(max(new or aside)[1], destination)


def _sweep(destination: Path, locked: bool) -> None:
    """Removes what runs of ``destination.name`` left in hidden folders, best
    effort (what cannot be read or removed is logged): the folders of
    processes that are certainly gone; old results a swap moved aside (while
    ``locked``, no swap is under way; else only those of gone processes); and,
    while ``locked``, folders a kill left before their record was written, once
    an hour old. Results a failed swap left, marked ``kept``, stay; finished
    results of a run killed before it swapped them in are moved, visible,
    beside ``destination`` (:func:`_keep_unplaced`)."""
    for folder in _hidden(destination):
        try:
            record = _ours(folder, destination.name)
        except OSError as error:
            _log.warning("left alone: %s, which cannot be read: %s", folder, error)
            continue
        if record is None:
            stale = locked and _unrecorded(folder)
        elif record.get("kept"):
            stale = False
        elif record.get("complete") and (
            folder.name.startswith(f".{destination.name}.{_OLD}")
            or record.get("superseded")
        ):
            stale = locked or liveness.gone(record)
        elif record.get("complete"):  # finished, not yet in place
            if locked and liveness.gone(record):
                _keep_unplaced(folder, destination)
            else:
                _warn_if_quiet(folder, record)
            stale = False
        else:
            stale = liveness.gone(record)
            if not stale:
                _warn_if_quiet(folder, record)
        if stale:
            try:
                remove(folder)
            except OSError as error:
                _log.warning(
                    "could not remove %s, what an earlier run of %s left: %s",
                    folder,
                    destination.name,
                    error,
                )


def _keep_unplaced(folder: Path, destination: Path) -> None:
    """Keeps the finished results of a run killed before it could swap them in
    as ``NAME.new-TIME`` and says so (a log warning); where they cannot be
    moved, they are marked ``kept``."""
    _, note = _kept(folder, destination)
    _log.warning(
        "a run of %s was stopped after it finished but before its results "
        "replaced %s; %s",
        destination.name,
        destination,
        note,
    )


def _discard_old(old: Path, destination: Path) -> None:
    """Removes the old results a swap set aside, best effort, unless something
    was added to them meanwhile (the swap is not one instant for a user):
    then they are kept, visible, as ``NAME.old-TIME``, and a warning says so."""
    record = _read_record(old) or {}
    entries = record.get("entries") if record.get("complete") else None
    try:
        added = _unlisted(old, entries if isinstance(entries, dict) else {}, 1)
    except OSError:
        added = ["(unreadable)"]
    if not added:
        with contextlib.suppress(OSError):
            remove(old)
        return
    try:
        kept = _keep_beside(old, destination, "old")
    except OSError as error:
        kept = f"{old} (could not move them: {error})"
    _log.warning(
        "%s held %s, which its run did not write, when new results replaced "
        "it; the old results are kept in %s",
        destination,
        added[0],
        kept,
    )


def _changed(folder: Path) -> float | None:
    """When anything in ``folder`` last changed (None if it cannot be read)."""
    try:
        return max(p.lstat().st_mtime for p in [folder, *folder.rglob("*")])
    except OSError:
        return None


def _unrecorded(folder: Path) -> bool:
    """Whether ``folder`` is empty but for a part-written record and unchanged
    for an hour: what a kill between ``mkdtemp`` and the record's rename
    leaves (not a run on another host that has just begun, which the lock may
    not hold off on a network file system)."""
    try:
        empty = {p.name for p in folder.iterdir()} <= {f"{RECORD}.part"}
    except OSError:
        return False
    changed = _changed(folder)
    return empty and changed is not None and time.time() - changed > _UNRECORDED_SECONDS


def _warn_if_quiet(folder: Path, record: dict) -> None:
    """Logs a warning about a run folder kept because its writer may run
    (another host, container or boot) once nothing in it changed for a day."""
    changed = _changed(folder)
    if changed is not None and time.time() - changed > _QUIET_SECONDS:
        _log.warning(
            "left alone: %s, %s run of %s (pid %s) unchanged for %.0f hours, "
            "which this process cannot tell is gone; delete it if no run writes it",
            folder,
            "a finished" if record.get("complete") else "an unfinished",
            record.get("host"),
            record.get("pid"),
            (time.time() - changed) / 3600,
        )


def _swap(new: Path, destination: Path, record: dict) -> Path | None:
    """Puts ``new`` (whose complete ``record`` it holds) at ``destination``;
    returns where the old folder went."""
    if not os.path.lexists(destination):
        os.rename(new, destination)
        return None
    before = _read_record(destination)
    if before is not None:  # so that a kill before the rename below is told
        _write_record(destination, {**before, "superseded": True})
    try:
        return _swap_marked(new, destination, record)
    except BaseException:
        if before is not None:  # destination holds the old results still
            with contextlib.suppress(OSError):
                _write_record(destination, before)
        raise


def _swap_marked(new: Path, destination: Path, record: dict) -> Path:
    """:func:`_swap` once the old results' record is marked superseded."""
    if _exchange(new, destination):  # the old results are at ``new`` now
        aside = destination.with_name(
            f".{destination.name}.{_OLD}{secrets.token_hex(4)}"
        )
        try:
            os.rename(new, aside)
        except OSError:  # left as it is, marked superseded: the sweep removes it
            return new
        return aside
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


def _keep_beside(new: Path, destination: Path, kind: str = "new") -> Path:
    """Moves results that may not replace ``destination`` (or old ones that may
    not be deleted, ``kind="old"``) to a visible folder beside it,
    ``NAME.KIND-TIME``."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    kept = destination.with_name(f"{destination.name}.{kind}-{stamp}")
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
