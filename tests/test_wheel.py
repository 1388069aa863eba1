"""The wheel carries what the library needs: built from the checkout's files,
installed in a fresh virtual environment outside it, run from another folder, the
command finds the experiments and the library the shipped data.

Offline: the wheel is built with the running environment's setuptools (no build
isolation) and installed without its dependencies, which the fresh environment
reads from the running one through a ``.pth`` file.
"""

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
# The checkout's folders that the wheel installs inside the package (pyproject.toml).
INSTALLED_AS = {"experiments": "rnnbptt/experiments", "data": "rnnbptt/data/shipped"}
TIMEOUT = 300  # seconds for any one command


def _run(command, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [str(c) for c in command],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        **kwargs,
    )
    assert result.returncode == 0, (command, result.stdout[-3000:], result.stderr)
    return result


def _checkout_files() -> list[str]:
    """The files a clone of the checkout would have: tracked or not ignored."""
    listed = _run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT
    ).stdout.splitlines()
    return [name for name in listed if (ROOT / name).is_file()]  # not deleted


def _dependency_paths() -> list[str]:
    """The folders this interpreter imports from, but any that holds an
    ``rnnbptt`` (the checkout): what the fresh environment reads its
    dependencies from."""
    paths = [p for p in sys.path if p and Path(p).is_dir()]
    return [p for p in dict.fromkeys(paths) if not (Path(p) / "rnnbptt").exists()]


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(the wheel's file names, the fresh environment, an empty working folder)."""
    tmp = tmp_path_factory.mktemp("wheel")
    source = tmp / "source"  # a copy: build/ and *.egg-info stay out of the checkout
    for name in _checkout_files():
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, source / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    offline = ["--no-deps", "--no-index"]
    _run([*pip, "wheel", *offline, "--no-build-isolation", "-w", tmp, source])
    (wheel,) = tmp.glob("rnnbptt-*.whl")
    env = tmp / "env"
    _run([sys.executable, "-m", "venv", "--without-pip", env])
    python = env / "bin" / "python"
    purelib = _run(
        [python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"]
    ).stdout.strip()
    (Path(purelib) / "dependencies.pth").write_text("\n".join(_dependency_paths()))
    _run([*pip, "--python", python, "install", *offline, wheel])
    elsewhere = tmp / "elsewhere"
    elsewhere.mkdir()
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    return names, env, elsewhere


def _env_without_the_checkout() -> dict:
    """This process's environment, without a PYTHONPATH that could name the
    checkout (gpu_check.sh sets one)."""
    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


def test_the_wheel_lists_every_experiment_and_data_file(installed):
    names, _, _ = installed
    expected = {
        f"{INSTALLED_AS[folder]}/{rest}"
        for folder, _, rest in (n.partition("/") for n in _checkout_files())
        if folder in INSTALLED_AS
    }
    assert {"rnnbptt/experiments/forecast.py", "rnnbptt/data/shipped/co2.csv"} <= (
        expected
    )
    assert sorted(expected - names) == []


def test_the_installed_command_runs_an_experiment_from_elsewhere(installed):
    _, env, elsewhere = installed
    out = elsewhere / "runs"
    result = _run(
        [env / "bin" / "rnnbptt", "experiment", "forecast", "--quick", "--out", out],
        cwd=elsewhere,
        env=_env_without_the_checkout(),
    )
    assert f"results in {out / 'forecast'}/" in result.stdout
    for name in ("config.json", "metrics.csv", "summary.json"):
        assert (out / "forecast" / name).is_file(), name


LOAD_SHIPPED = """
import rnnbptt, rnnbptt.experiments
from rnnbptt.data import data_path, load_series
series = load_series(data_path("co2.csv"), "date", "co2")
print(rnnbptt.__file__, rnnbptt.experiments.__file__, data_path("co2.csv"))
print(len(series.values), series.filled)
"""


def test_the_installed_library_reads_the_shipped_data_from_elsewhere(installed):
    _, env, elsewhere = installed
    result = _run(
        [env / "bin" / "python", "-c", LOAD_SHIPPED],
        cwd=elsewhere,
        env=_env_without_the_checkout(),
    )
    paths, counts = result.stdout.split("\n")[:2]
    for path in map(Path, paths.split()):
        assert path.is_relative_to(env.resolve()), path
        assert not path.is_relative_to(ROOT.resolve()), path
    weeks, filled = map(int, counts.split())
    assert weeks == 2284 and filled == 59  # data/README.md: rows, missing weeks
