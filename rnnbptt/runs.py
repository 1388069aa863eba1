"""Experiment runs: one folder per run, written completely or not at all.

A run writes ``config.json``, ``metrics.csv``, ``summary.json`` and its plots into
a temporary folder beside the destination; only when the experiment finishes is
it swapped in as ``OUT/NAME`` (see :class:`Run` for what it replaces, what it
refuses and what a kill leaves; :mod:`rnnbptt.run_folder` for how). A run that
fails leaves whatever was in ``OUT/NAME`` before untouched.

For the timing experiments: ``interleaved_medians`` of calls, and the host they
ran on (``machine_line``, with ``cpu_line``; ``gemm_peak``).
"""

from __future__ import annotations

import json
import math
import os
import platform
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from . import run_folder


def _jsonable(value: Any) -> Any:
    """Plain JSON types for config and summary values: arrays become lists,
    NaN and infinities null (JSON has neither), anything else unknown a string."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if hasattr(value, "tolist") and getattr(value, "ndim", 0) > 0:
        return _jsonable(np.asarray(value).tolist())
    if hasattr(value, "item") and getattr(value, "ndim", None) == 0:
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, bool | int | float | str) or value is None:
        return value
    return str(value)


def machine() -> dict:
    """What the run ran on: platform, device kind and count, CPU count."""
    devices = jax.devices()
    return {
        "platform": devices[0].platform,
        "device_kind": devices[0].device_kind,
        "device_count": len(devices),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "jax": jax.__version__,
    }


def interleaved_medians(calls: dict, repeats: int, warmup: int = 2) -> dict:
    """Median seconds per call of each ``calls[name]()`` (which must block until
    its result is ready): ``warmup`` untimed calls each, then ``repeats`` rounds of
    one call each, in alternating order, so drifting load hits all alike."""
    for call in calls.values():
        for _ in range(warmup):
            call()
    names = list(calls)
    times = {name: [] for name in names}
    for round_ in range(repeats):
        for name in names if round_ % 2 == 0 else names[::-1]:
            started = time.perf_counter()
            calls[name]()
            times[name].append(time.perf_counter() - started)
    return {name: float(np.median(t)) for name, t in times.items()}


def scratch_bytes(compiled) -> float:
    """Scratch memory of a compiled program (``temp_size_in_bytes`` of its
    ``memory_analysis()``), or NaN where the backend says nothing."""
    stats = compiled.memory_analysis()
    value = getattr(stats, "temp_size_in_bytes", None) if stats is not None else None
    return float("nan") if value is None else float(value)


def cpu_line(cpuinfo: str = "/proc/cpuinfo") -> str:
    """The CPU as ``cpuinfo`` names it, with family, model and clock: hosts of one
    VM type differ (the same "AMD EPYC" name covered GEMM peaks of 190 and 390
    GFLOP/s), so a table must say which one it ran on."""
    fields = {}
    try:
        with open(cpuinfo) as f:
            for line in f:
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    name = fields.get("model name") or platform.processor() or platform.machine()
    details = [
        f"{key.split()[-1]} {fields[key]}"
        for key in ("cpu family", "model", "stepping")
        if key in fields
    ]
    if "cpu MHz" in fields:
        details.append(f"{float(fields['cpu MHz']):.0f} MHz")
    if "avx512f" in fields.get("flags", "").split():
        details.append("AVX-512")
    return f"{name} ({', '.join(details)})" if details else name


def machine_line(frameworks: dict) -> str:
    """One line for a results table: the CPU (``cpu_line``), its cores, JAX's
    device and version, then each of ``frameworks`` (name -> version)."""
    device = jax.devices()[0]
    versions = ", ".join(f"{k} {v}" for k, v in frameworks.items())
    return (
        f"{cpu_line()}, {os.cpu_count()} cores, {device.platform} "
        f"({device.device_kind}); jax {jax.__version__}"
        + (f", {versions}" if versions else "")
    )


def gemm_peak(n: int, repeats: int, torch_device: str = "cpu") -> dict:
    """Best GFLOP/s of an n x n float32 matrix product, by XLA and, when it is
    installed, by torch on ``torch_device`` (``"cpu"`` or ``"cuda"``): what the
    host reaches at all, beside which a benchmark's rates are read."""
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    matmul = jax.jit(jnp.matmul)
    calls = {"xla": lambda: jax.block_until_ready(matmul(a, a))}
    try:
        import torch

        t = torch.randn(n, n, device=torch_device)
        ready = torch.cuda.synchronize if torch_device == "cuda" else lambda: None
        calls["torch"] = lambda: (torch.matmul(t, t), ready())
    except ImportError:
        pass
    times = interleaved_medians(calls, repeats)
    return {name: 2 * n**3 / seconds / 1e9 for name, seconds in times.items()}


def pyplot():
    """``matplotlib.pyplot`` on the non-interactive Agg backend (files, no screen)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


class Run:
    """A context manager for one experiment run.

    The run writes into a new hidden folder ``OUT/.NAME.rnnbptt-run-XXXXXXXX``;
    when the experiment finishes, that folder, with a record of what the run
    wrote (``.rnnbptt-run.json``: its files and folders), becomes ``OUT/NAME``.

    * What it replaces: an ``OUT/NAME`` holding nothing but an earlier run's
      results (what its record lists, files unchanged since; files of it
      deleted since do not matter), or an empty folder. Anything else there (a
      file or folder the record does not list, or a listed file changed in
      place; any entry of a folder without a record; a symbolic link or a file
      at ``OUT/NAME``) is never deleted: the run refuses to start, with a
      ``FileExistsError`` that names the path and those entries. Should such
      entries appear while it works, its results go to ``OUT/NAME.new-TIME``
      instead, and the error says so.
    * What a kill leaves: at every instant, ``OUT/NAME`` holds the old results
      or the new ones where the file system has an atomic exchange (Linux
      ``renameat2``). Elsewhere the swap is two renames; a kill between them
      leaves ``OUT/NAME`` missing, and the next run first finishes that swap.
    * What it cleans up: the next run of NAME removes the hidden folders that
      runs of NAME left behind, ``.NAME.rnnbptt-run-*`` and
      ``.NAME.rnnbptt-old-*`` whose record says so: the temporary folder of a
      killed run, once its process is certainly gone (see
      :mod:`rnnbptt.liveness`: this host, container and boot, and that pid not
      running, or running a process started at another time; or this machine
      booted again since the record was written), and the old results a swap
      set aside. Results a run finished but was killed before swapping in are
      kept, visible, as ``OUT/NAME.new-TIME``; old results to which something
      was added while the swap ran, as ``OUT/NAME.old-TIME``. A folder of
      a run in progress, or of a writer it cannot tell is gone (another host
      or container), is left alone (a logged warning names it once nothing in
      it changed for a day); anything else, whatever its name, is never
      touched. Clean-up is best effort: what cannot be read or removed is
      named in a logged warning (logger ``rnnbptt.run_folder``), which never
      stops the run. Runs into one ``OUT`` take turns (a lock on the ``OUT``
      folder) to clean up and swap.
    * What a failure leaves: results that could not be swapped in are kept in
      ``OUT/NAME.new-TIME`` (``Run.dir`` then says where), and the error says
      so; if even that move fails, they stay in their hidden folder, which the
      error names and no later run removes.

    Example:
        >>> import tempfile
        >>> out = tempfile.mkdtemp()
        >>> with Run(out, "demo", {"seed": 0}) as run:
        ...     table = run.metrics([{"epoch": 1, "loss": 0.5}])
        ...     summary = run.summary({"loss": 0.5})
        >>> sorted(p.name for p in (Path(out) / "demo").iterdir())
        ['.rnnbptt-run.json', 'config.json', 'metrics.csv', 'summary.json']
    """

    def __init__(self, out: str | os.PathLike, name: str, config: dict):
        self.destination = Path(out) / name
        self.config = {**config, "machine": machine()}
        self.dir: Path | None = None
        self._started = 0.0

    def __enter__(self) -> Run:
        self.dir = run_folder.start(self.destination)
        try:
            # mkdtemp makes it private (0o700); a results folder gets mkdir's mode
            umask = os.umask(0)
            os.umask(umask)
            self.dir.chmod(0o777 & ~umask)
            self._started = time.perf_counter()
            self.write_json("config.json", self.config)
        except BaseException as error:
            self._discard(error)
            raise
        return self

    def __exit__(self, kind, error, trace) -> None:
        if kind is not None:
            self._discard(error)
            return
        try:
            run_folder.finish(self.dir, self.destination)
        except run_folder.KeptBeside as kept:
            self.dir = kept.folder
            raise
        except BaseException as error:  # the results are where its note says
            self.dir = getattr(error, "rnnbptt_results", self.dir)
            raise
        self.dir = self.destination

    def _discard(self, error: BaseException) -> None:
        """Removes the temporary folder of a run that failed with ``error``;
        where that fails too, a note on ``error`` says so (the next run's sweep
        removes it), so that the run's own error is the one raised."""
        try:
            run_folder.remove(self.dir)
        except OSError as failure:
            error.add_note(f"its temporary folder {self.dir} is left: {failure}")

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self._started

    def path(self, name: str) -> Path:
        """Where to write a file of this run (inside the temporary folder)."""
        return self.dir / name

    def write_json(self, name: str, data: dict) -> None:
        self.path(name).write_text(json.dumps(_jsonable(data), indent=2) + "\n")

    def metrics(self, rows: list[dict] | pd.DataFrame) -> pd.DataFrame:
        """Writes ``metrics.csv``; returns the table."""
        table = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(rows)
        table.to_csv(self.path("metrics.csv"), index=False)
        return table

    def summary(self, data: dict) -> dict:
        """Writes ``summary.json`` (with the run's wall time); returns it."""
        data = {**data, "seconds": round(self.seconds, 2)}
        self.write_json("summary.json", data)
        return data

    def figure(self, fig, name: str) -> Path:
        """Saves a matplotlib figure as PNG and closes it."""
        path = self.path(name)
        fig.savefig(path, dpi=110, bbox_inches="tight")
        pyplot().close(fig)
        return path
