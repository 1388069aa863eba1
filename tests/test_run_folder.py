"""Results folders: a run replaces only its own results, survives kills at any
instant, and cleans up what killed runs of its name left (rnnbptt.run_folder,
through rnnbptt.runs.Run)."""

import json
import os
import re
import subprocess
import sys
import warnings

import pytest

from rnnbptt import liveness, run_folder
from rnnbptt.runs import Run

RECORD_PART = f"{run_folder.RECORD}.part"


def _earlier_run(tmp_path):
    """A finished run of "exp" in ``tmp_path`` (attempt 1, score 1)."""
    with Run(tmp_path, "exp", {"attempt": 1}) as run:
        run.summary({"score": 1})


def _score(folder):
    """The score a run's summary in ``folder`` holds."""
    return json.loads((folder / "summary.json").read_text())["score"]


def _contents(folder):
    """{relative path: bytes} of the files under ``folder``, the run's record
    aside (it holds times and a pid)."""
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != run_folder.RECORD
    }


@pytest.mark.parametrize("exchange", [True, False], ids=["exchange", "two renames"])
def test_a_swap_that_fails_puts_the_old_results_back(tmp_path, monkeypatch, exchange):
    _earlier_run(tmp_path)
    before = _contents(tmp_path / "exp")
    real_rename = os.rename

    def fail_exchange(a, b):
        raise OSError("disk gone")

    def rename(src, dst):  # the old folder moves aside; the new one cannot move in
        if os.path.basename(dst) == "exp" and "rnnbptt-old-" not in str(src):
            raise OSError("disk gone")
        real_rename(src, dst)

    if exchange:
        monkeypatch.setattr(run_folder, "_exchange", fail_exchange)
    else:
        monkeypatch.setattr(run_folder, "_exchange", lambda a, b: False)
        monkeypatch.setattr(run_folder.os, "rename", rename)
    run = Run(tmp_path, "exp", {"attempt": 2})
    with pytest.raises(OSError, match="disk gone") as info, run:
        run.summary({"score": 2})
    assert _contents(tmp_path / "exp") == before
    # the new results are not lost: kept beside, and the error says where
    (kept,) = tmp_path.glob("exp.new-*")
    assert f"this run's results are in {kept}" in info.value.__notes__
    assert _score(kept) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exp", kept.name]


def test_rerun_refuses_a_folder_it_did_not_write_before_any_work(tmp_path):
    dest = tmp_path / "forecast"
    (dest / "sub").mkdir(parents=True)
    (dest / "sub" / "data.csv").write_text("1\n")
    (dest / "my_notes.txt").write_text("important\n")
    worked = []
    with pytest.raises(FileExistsError) as info, Run(tmp_path, "forecast", {}):
        worked.append(True)
    message = str(info.value)
    assert str(dest) in message and "my_notes.txt" in message and "sub/" in message
    assert "data.csv" not in message  # a foreign folder is named, not listed
    assert not worked
    assert (dest / "my_notes.txt").read_text() == "important\n"
    assert (dest / "sub" / "data.csv").read_text() == "1\n"
    assert [p.name for p in tmp_path.iterdir()] == ["forecast"]  # no temporaries


def test_rerun_replaces_its_own_results_but_refuses_what_was_added(tmp_path):
    with Run(tmp_path, "exp", {"attempt": 1}) as run:
        (run.path("plots")).mkdir()
        (run.path("plots") / "a.png").write_bytes(b"png")
        run.summary({"score": 1})
    dest = tmp_path / "exp"
    (dest / "config.json").unlink()  # a file of its own gone: still its own
    with Run(tmp_path, "exp", {"attempt": 2}) as run:
        run.summary({"score": 2})
    assert _score(dest) == 2
    assert not (dest / "plots").exists()  # the old results went whole
    (dest / "notes.txt").write_text("mine\n")
    (dest / "extra").mkdir()
    refused = pytest.raises(FileExistsError, match=r"\(extra/, notes.txt\)")
    with refused, Run(tmp_path, "exp", {"attempt": 3}):
        pass
    assert _score(dest) == 2
    assert (dest / "notes.txt").read_text() == "mine\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exp"]


@pytest.mark.parametrize("what", ["file", "symlink"])
def test_a_file_or_link_at_the_destination_is_refused(tmp_path, what):
    target = tmp_path / "elsewhere"
    target.mkdir()
    dest = tmp_path / "exp"
    if what == "file":
        dest.write_text("x")
    else:
        dest.symlink_to(target)
    refused = pytest.raises(FileExistsError, match="exp holds what no earlier run")
    with refused, Run(tmp_path, "exp", {}):
        pass
    assert dest.is_symlink() if what == "symlink" else dest.read_text() == "x"


def test_an_empty_folder_at_the_destination_is_replaced(tmp_path):
    (tmp_path / "exp").mkdir()
    with Run(tmp_path, "exp", {}) as run:
        run.summary({"score": 1})
    assert (tmp_path / "exp" / "summary.json").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["exp"]


def test_entries_added_during_the_run_are_kept_and_the_results_go_beside(tmp_path):
    _earlier_run(tmp_path)
    dest = tmp_path / "exp"
    kept_beside = pytest.raises(FileExistsError, match=r"results are in .*exp\.new-")
    with kept_beside, Run(tmp_path, "exp", {"attempt": 2}) as run:
        run.summary({"score": 2})
        (dest / "notes.txt").write_text("written meanwhile\n")
    assert _score(dest) == 1
    assert (dest / "notes.txt").read_text() == "written meanwhile\n"
    (kept,) = tmp_path.glob("exp.new-*")
    assert run.dir == kept
    assert _score(kept) == 2
    assert json.loads((kept / run_folder.RECORD).read_text())["complete"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exp", kept.name]


def _killed(tmp_path, body):
    """Runs a Run of "exp" (attempt 2) in a child process that ``body`` (code with
    ``run_folder``, ``Run`` and ``os`` in scope) kills; returns the exit status."""
    code = (
        "import os, signal, sys\n"
        "from rnnbptt import run_folder\n"
        "from rnnbptt.runs import Run\n"
        f"{body}\n"
    )
    child = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)], timeout=120, capture_output=True
    )
    assert child.returncode != 0, child.stderr.decode()
    return child.returncode


def test_a_kill_between_the_two_renames_is_repaired_by_the_next_run(tmp_path):
    _earlier_run(tmp_path)
    # no atomic exchange: dest moves aside, and the kill comes before the new
    # folder moves in
    _killed(
        tmp_path,
        "run_folder._exchange = lambda a, b: False\n"
        "real = os.rename\n"
        "def rename(src, dst):\n"
        "    if os.path.basename(dst) == 'exp': os._exit(9)\n"
        "    real(src, dst)\n"
        "os.rename = rename\n"
        "with Run(sys.argv[1], 'exp', {'attempt': 2}) as run:\n"
        "    run.summary({'score': 2})\n",
    )
    assert not (tmp_path / "exp").exists()
    hidden = sorted(p.name for p in tmp_path.iterdir())
    assert len(hidden) == 2 and any(".exp.rnnbptt-old-" in name for name in hidden)
    seen = []
    with Run(tmp_path, "exp", {"attempt": 3}) as run:
        # before any work, the newest complete results are back, the rest gone
        summary = json.loads((tmp_path / "exp" / "summary.json").read_text())
        seen.append(summary["score"])
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
            ["exp", run.dir.name]
        )
        run.summary({"score": 3})
    assert seen == [2]
    assert _score(tmp_path / "exp") == 3
    assert [p.name for p in tmp_path.iterdir()] == ["exp"]


def test_a_kill_after_the_exchange_leaves_the_new_results(tmp_path):
    _earlier_run(tmp_path)
    _killed(
        tmp_path,
        "run_folder.remove = lambda folder: os._exit(9)\n"
        "with Run(sys.argv[1], 'exp', {'attempt': 2}) as run:\n"
        "    run.summary({'score': 2})\n",
    )
    assert _score(tmp_path / "exp") == 2
    (hidden,) = [p.name for p in tmp_path.iterdir() if p.name != "exp"]
    assert hidden.startswith(".exp.rnnbptt-old-")  # the old copy, set aside
    with Run(tmp_path, "exp", {"attempt": 3}) as run:
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
            ["exp", run.dir.name]
        )
    assert [p.name for p in tmp_path.iterdir()] == ["exp"]


def test_a_kill_between_the_exchange_and_setting_aside_is_cleaned_up(tmp_path):
    """The old results, at the run folder's name after the exchange, belong to
    a live writer (this process wrote them); marked superseded, they go."""
    _earlier_run(tmp_path)
    _killed(
        tmp_path,
        "real = os.rename\n"
        "def rename(src, dst):\n"
        "    if 'rnnbptt-old-' in os.path.basename(dst): os._exit(9)\n"
        "    real(src, dst)\n"
        "os.rename = rename\n"
        "with Run(sys.argv[1], 'exp', {'attempt': 2}) as run:\n"
        "    run.summary({'score': 2})\n",
    )
    assert _score(tmp_path / "exp") == 2
    (hidden,) = [p for p in tmp_path.iterdir() if p.name != "exp"]
    assert _score(hidden) == 1
    with Run(tmp_path, "exp", {"attempt": 3}):
        assert not hidden.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["exp"]


def test_results_finished_but_killed_before_the_swap_are_kept(tmp_path):
    """The next run deleted them: complete, their writer gone."""
    _earlier_run(tmp_path)
    _killed(
        tmp_path,
        "run_folder._swap = lambda *args: os._exit(9)\n"
        "with Run(sys.argv[1], 'exp', {'attempt': 2}) as run:\n"
        "    run.summary({'score': 2})\n",
    )
    with Run(tmp_path, "exp", {"attempt": 3}):
        pass
    (kept,) = tmp_path.glob("exp.new-*")
    assert _score(kept) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exp", kept.name]


def test_what_a_user_adds_while_the_swap_runs_is_kept(tmp_path, monkeypatch):
    """Added after the check for foreign entries, a user's file went with the
    old results, which were deleted whole."""
    _earlier_run(tmp_path)
    real_swap = run_folder._swap

    def swap(new, destination, record):
        (destination / "notes.txt").write_text("mine\n")
        return real_swap(new, destination, record)

    monkeypatch.setattr(run_folder, "_swap", swap)
    with Run(tmp_path, "exp", {"attempt": 2}) as run:
        run.summary({"score": 2})
    (old,) = tmp_path.glob("exp.old-*")
    assert (old / "notes.txt").read_text() == "mine\n"
    assert _score(old) == 1
    assert _score(tmp_path / "exp") == 2


def test_a_failed_exchange_leaves_the_old_record_unmarked(tmp_path, monkeypatch):
    _earlier_run(tmp_path)
    before = json.loads((tmp_path / "exp" / run_folder.RECORD).read_text())

    def busy(a, b):
        raise OSError(16, "Device or resource busy")

    monkeypatch.setattr(run_folder, "_exchange", busy)
    with pytest.raises(OSError, match="busy"), Run(tmp_path, "exp", {}) as run:
        run.summary({"score": 2})
    after = json.loads((tmp_path / "exp" / run_folder.RECORD).read_text())
    assert after == before and "superseded" not in after


def test_a_record_with_a_bad_finish_time_does_not_block_runs(tmp_path):
    done = {"name": "exp", **liveness.writer(), "complete": True, "entries": {}}
    _hidden(tmp_path, ".exp.rnnbptt-old-0123abcd", {**done, "finished": None}, ())
    with Run(tmp_path, "exp", {}) as run:
        run.summary({"score": 1})
    assert _score(tmp_path / "exp") == 1


def test_results_that_fail_to_swap_in_are_kept_under_the_lock(tmp_path, monkeypatch):
    """Kept beside after the lock was released, another run's sweep could
    delete them first; and if they could not be moved, the next sweep did."""
    import fcntl

    _earlier_run(tmp_path)

    def fail(*args):
        raise OSError(5, "simulated swap failure")

    real_keep, locked = run_folder._keep_beside, []

    def keep_beside(new, destination):
        fd = os.open(tmp_path, os.O_RDONLY)
        try:  # another open of OUT cannot take the lock meanwhile
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            locked.append(False)
        except BlockingIOError:
            locked.append(True)
        finally:
            os.close(fd)
        return real_keep(new, destination)

    monkeypatch.setattr(run_folder, "_swap", fail)
    monkeypatch.setattr(run_folder, "_keep_beside", keep_beside)
    with pytest.raises(OSError, match="simulated"), Run(tmp_path, "exp", {}) as run:
        run.summary({"score": 2})
    assert locked == [True]
    (kept,) = tmp_path.glob("exp.new-*")
    assert run.dir == kept  # where the results are, not where they were
    # the move fails too: the results stay hidden, marked kept, and stay
    monkeypatch.setattr(run_folder, "_keep_beside", fail)
    with pytest.raises(OSError) as info, Run(tmp_path, "exp", {}) as run:
        run.summary({"score": 3})
        hidden = run.dir
    assert f"this run's results are in {hidden} (could not" in info.value.__notes__[0]
    monkeypatch.undo()
    with Run(tmp_path, "exp", {"attempt": 4}):
        pass
    assert _score(hidden) == 3
    assert _score(kept) == 2
    assert json.loads((tmp_path / "exp" / "config.json").read_text())["attempt"] == 4


def test_a_result_changed_in_place_is_no_longer_the_runs(tmp_path):
    """A file of OUT/exp edited after the run was still listed as the run's,
    so the next run replaced it and the edit was lost."""
    _earlier_run(tmp_path)
    # restored from an archive that keeps whole seconds (tar): still the run's
    for path in (tmp_path / "exp").iterdir():
        whole = path.stat().st_mtime_ns // 10**9 * 10**9
        os.utime(path, ns=(whole, whole))
    with Run(tmp_path, "exp", {"attempt": 2}) as run:
        run.summary({"score": 2})
    summary = tmp_path / "exp" / "summary.json"
    summary.write_text(summary.read_text() + "\n")  # an edit, kept in place
    refused = pytest.raises(FileExistsError, match=r"or changed since \(summary\.json")
    with refused, Run(tmp_path, "exp", {"attempt": 3}):
        pass
    assert summary.read_text().endswith("\n\n")


def test_sigkill_mid_run_leaves_a_temporary_folder_the_next_run_removes(tmp_path):
    _earlier_run(tmp_path)
    before = _contents(tmp_path / "exp")
    status = _killed(
        tmp_path,
        "with Run(sys.argv[1], 'exp', {'attempt': 2}) as run:\n"
        "    run.summary({'score': 2})\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n",
    )
    assert status == -9
    assert _contents(tmp_path / "exp") == before
    (stale,) = [p for p in tmp_path.iterdir() if p.name != "exp"]
    assert (stale / "summary.json").exists()
    with Run(tmp_path, "exp", {"attempt": 3}) as run:
        assert not stale.exists()
        run.summary({"score": 3})
    assert [p.name for p in tmp_path.iterdir()] == ["exp"]


def _gone_pid():
    """A pid no process has any more (a child that has exited)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _hidden(parent, name, record=None, files=("part.csv",)):
    """A folder ``parent/name`` holding ``files`` and, if given, ``record``."""
    folder = parent / name
    folder.mkdir()
    for file in files:
        (folder / file).write_text("x\n")
    if record is not None:
        (folder / run_folder.RECORD).write_text(json.dumps(record))
    return folder


def _age(folder, seconds):
    """Sets the times of ``folder`` and what it holds ``seconds`` back."""
    for path in [folder, *folder.rglob("*")]:
        then = path.lstat().st_mtime - seconds
        os.utime(path, (then, then), follow_symlinks=False)


def test_the_sweep_removes_only_folders_certainly_ours_and_dead(tmp_path):
    me, gone = liveness.writer(), _gone_pid()
    run = {"name": "exp", "complete": False, **me}
    done = {**run, "complete": True, "entries": {"part.csv": "file"}}
    twin = {"writer": "twin-00000000", "machine": "another-machine", "boot": "b"}
    old_form = {"name": "exp", "complete": False, "host": me["host"], "pid": gone}
    keep = {
        "rnnbptt-run-live0000": run,  # this very process
        "rnnbptt-run-remote00": {**run, "writer": "elsewhere-1", "pid": gone},
        "rnnbptt-run-twin0000": {**run, **twin, "pid": gone},  # same host name
        # a clone of this machine (same host name and machine id, its own
        # boot) writing now: not a reboot
        "rnnbptt-run-clone000": {**run, "writer": "vm-clone", "boot": "another"},
        "rnnbptt-run-oldform0": old_form,  # a record without a writer: unsure
        "rnnbptt-run-norecord": None,
        "v2.rnnbptt-run-abcdefgh": {**run, "name": "exp.v2", "pid": gone},
        "rnnbptt-old-added000": {**done, "entries": {}},  # holds an unlisted file
        "keep": done,  # the user's copy of the results: not a name rnnbptt uses
        "rnnbptt-run-toolong00": {**run, "pid": gone},  # not mkdtemp's 8
        # complete, about to be swapped in by a live run (perhaps on another
        # host, where the lock may not reach)
        "rnnbptt-run-finished": done,
        "rnnbptt-run-remotefi": {**done, "writer": "elsewhere-1", "pid": gone},
        # results a failed swap could not even move beside OUT/exp
        "rnnbptt-run-kept0000": {**done, "pid": gone, "kept": True},
    }
    removed = {
        "rnnbptt-run-dead0000": {**run, "pid": gone},
        "rnnbptt-run-reused00": {**run, "pid_started": "1"},  # pid reused
        # this machine, booted again since the record was written
        "rnnbptt-run-rebooted": {**run, "boot": "another-boot", "time": 0.0},
        "rnnbptt-old-copy0000": done,  # old results a swap moved aside
    }
    # finished, but killed before its results were swapped in: kept, visible
    unplaced = _hidden(tmp_path, ".exp.rnnbptt-run-donedead", {**done, "pid": gone})
    folders = {n: _hidden(tmp_path, f".exp.{n}", r) for n, r in keep.items()}
    broken = _hidden(tmp_path, ".exp.rnnbptt-run-broken00", files=[RECORD_PART])
    other = _hidden(tmp_path, ".other.rnnbptt-run-dead0000", {**run, "name": "other"})
    empty = tmp_path / ".exp.rnnbptt-run-empty000"
    empty.mkdir()  # killed before its record was written, two hours ago
    _age(empty, 7200)
    _age(broken, 7200)
    fresh = tmp_path / ".exp.rnnbptt-run-fresh000"
    fresh.mkdir()  # a run (on another host?) that has just begun
    doomed = [_hidden(tmp_path, f".exp.{n}", r) for n, r in removed.items()]
    with Run(tmp_path, "exp", {}):
        pass
    for name, folder in [*folders.items(), ("other", other)]:
        assert (folder / "part.csv").exists(), name
    assert fresh.exists()
    for folder in [*doomed, empty, broken, unplaced]:
        assert not folder.exists(), folder.name
    (kept,) = tmp_path.glob("exp.new-*")
    assert (kept / "part.csv").exists()


def test_a_proc_of_another_pid_namespace_is_not_read(monkeypatch):
    """In a pid namespace that sees its parent's /proc, /proc/PID is another
    process: its start time made a live writer look like a reused pid."""
    assert liveness.started(os.getpid()) is not None
    foreign = {**liveness._system(), "own_proc": False}
    monkeypatch.setattr(liveness, "_system", lambda: foreign)
    assert liveness.started(os.getpid()) is None
    me = liveness.writer()
    assert not liveness.gone({**me, "pid": os.getppid(), "pid_started": "1"})


def test_a_reboot_counts_only_for_records_older_than_this_boot():
    me = liveness.writer()
    here = liveness._system()
    assert here["booted"] is not None  # Linux: /proc/stat has btime
    other_boot = {**me, "writer": "vm-before", "boot": "another-boot"}
    assert liveness.gone({**other_boot, "time": here["booted"] - 60.0})
    assert not liveness.gone({**other_boot, "time": here["booted"] + 60.0})
    assert not liveness.gone({k: v for k, v in other_boot.items() if k != "time"})
    assert not liveness.gone({**other_boot, "time": True})
    assert not liveness.gone({**other_boot, "machine": "another", "time": 0.0})


def test_a_missing_destination_is_never_refilled_from_a_users_copy(tmp_path):
    _earlier_run(tmp_path)
    copy = tmp_path / ".exp.keep"
    (tmp_path / "exp").rename(copy)  # what `mv o/exp o/.exp.keep` does
    with Run(tmp_path, "exp", {"attempt": 2}) as run:
        assert not (tmp_path / "exp").exists()
        run.summary({"score": 2})
    assert _score(copy) == 1
    assert _score(tmp_path / "exp") == 2


def test_a_leftover_that_cannot_be_removed_is_named_and_the_run_goes_on(
    tmp_path, monkeypatch, caplog
):
    dead = {"name": "exp", **liveness.writer(), "pid": _gone_pid()}
    stuck = _hidden(tmp_path, ".exp.rnnbptt-run-stuck000", dead)
    real_remove = run_folder.remove

    def remove(folder):
        if folder == stuck:
            raise PermissionError(13, "Permission denied", str(folder))
        real_remove(folder)

    monkeypatch.setattr(run_folder, "remove", remove)
    caplog.set_level("WARNING", logger="rnnbptt.run_folder")
    with Run(tmp_path, "exp", {}) as run:
        run.summary({"score": 1})
    assert re.search(r"could not remove .*stuck000", caplog.text)
    assert (tmp_path / "exp" / "summary.json").exists() and stuck.exists()


def test_an_unreadable_leftover_is_named_and_the_run_goes_on(
    tmp_path, monkeypatch, caplog
):
    """A hidden folder that cannot be read made every start fail."""
    done = {"name": "exp", **liveness.writer(), "complete": True, "entries": {}}
    locked = _hidden(tmp_path, ".exp.rnnbptt-old-0123abcd", done)
    real_unlisted = run_folder._unlisted

    def unlisted(folder, listed, limit=None):  # what a folder mode 0 gives
        if folder == locked:
            raise PermissionError(13, "Permission denied", str(folder / "private"))
        return real_unlisted(folder, listed, limit)

    monkeypatch.setattr(run_folder, "_unlisted", unlisted)
    caplog.set_level("WARNING", logger="rnnbptt.run_folder")
    with Run(tmp_path, "exp", {}) as run:
        run.summary({"score": 1})
    assert re.search(r"left alone: .*0123abcd, which cannot be read", caplog.text)
    assert (tmp_path / "exp" / "summary.json").exists()
    assert (locked / "part.csv").exists()
    # and with OUT/exp missing, it is not put back
    os.rename(tmp_path / "exp", tmp_path / "moved")
    with Run(tmp_path, "exp", {}) as run:
        assert not (tmp_path / "exp").exists()


def test_an_unfinished_folder_of_an_unknown_writer_is_named_once_quiet(
    tmp_path, caplog
):
    record = {"name": "exp", **liveness.writer(), "writer": "elsewhere-1"}
    quiet = _hidden(tmp_path, ".exp.rnnbptt-run-quiet000", record)
    _age(quiet, 2 * 86400.0)
    caplog.set_level("WARNING", logger="rnnbptt.run_folder")
    with Run(tmp_path, "exp", {}):
        pass
    assert re.search(
        r"left alone: .*quiet000, an unfinished run.*delete it", caplog.text
    )
    assert (quiet / "part.csv").exists()
    # a notice, not a warning: it does not stop a run under -W error either
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with Run(tmp_path, "exp", {}):
            pass


def test_a_failing_run_whose_folder_cannot_be_removed_raises_its_own_error(
    tmp_path, monkeypatch
):
    def remove(folder):
        raise PermissionError(13, "Permission denied", str(folder))

    monkeypatch.setattr(run_folder, "remove", remove)
    failed = pytest.raises(RuntimeError, match="the experiment's own")
    with failed as info, Run(tmp_path, "exp", {}):
        raise RuntimeError("the experiment's own error")
    assert "is left: [Errno 13] Permission denied" in info.value.__notes__[0]


def test_results_another_experiment_wrote_are_foreign(tmp_path):
    with Run(tmp_path, "ocr", {}) as run:
        run.summary({"score": 1})
    (tmp_path / "ocr").rename(tmp_path / "forecast")  # moved by hand
    refused = pytest.raises(FileExistsError, match=r"config.json, summary.json")
    with refused, Run(tmp_path, "forecast", {}):
        pass
    assert (tmp_path / "forecast" / "summary.json").exists()


def test_the_cli_refuses_to_overwrite_foreign_files(tmp_path, capsys):
    from rnnbptt import cli

    dest = tmp_path / "vanishing"
    (dest / "sub").mkdir(parents=True)
    (dest / "my_notes.txt").write_text("important\n")
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["experiment", "vanishing", "--quick", "--out", str(tmp_path)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "my_notes.txt" in err and "sub/" in err and str(dest) in err
    assert (dest / "my_notes.txt").read_text() == "important\n"
    assert sorted(p.name for p in dest.iterdir()) == ["my_notes.txt", "sub"]
    assert [p.name for p in tmp_path.iterdir()] == ["vanishing"]
