"""Shared fixtures: every test runs with its own config, cache and runs folders (so
nothing touches the real user directories), and can find the repository, the shipped
sample data and the shared instruction data."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]

# More workers than this gain little: the slow tests start processes of their own
# (torchrun ranks, the worker), and on a big machine each worker still imports torch.
MAX_WORKERS = 4


def _usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def pytest_xdist_auto_num_workers(config) -> int:
    """How many pytest-xdist workers `-n auto` (pyproject's addopts) starts: one per
    usable CPU, at most MAX_WORKERS, and none for one test file, where starting workers
    would only add their start-up. PYTEST_XDIST_AUTO_NUM_WORKERS still decides when set;
    `-n 0` on the command line runs everything in this process."""
    forced = os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS")
    if forced:
        return int(forced)
    files = {str(arg).split("::")[0] for arg in config.args}
    if len(files) == 1 and next(iter(files)).endswith(".py"):
        return 0
    cpus = _usable_cpus()
    return min(cpus, MAX_WORKERS) if cpus > 1 else 0


def pytest_collection_modifyitems(config, items) -> None:
    """In xdist workers, the files with the most slow tests come first (addopts turns
    off xdist's own order, fewest files with the most tests first): a file of one long
    test, such as the end-to-end training, handed out last kept one worker busy alone
    for minutes at the end. Many small files last even out the two workers."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return
    slow = Counter(item.path for item in items if item.get_closest_marker("slow"))
    first_seen = {path: i for i, path in enumerate(dict.fromkeys(i.path for i in items))}
    items.sort(key=lambda item: (-slow[item.path], first_seen[item.path]))


def pytest_configure(config) -> None:
    """In an xdist worker, give torch (here and in the processes a test starts) its
    share of the CPUs. Two workers on two cores with torch's default of a thread per
    core spin against each other: six training-heavy files took 414 s (361 s of CPU)
    against 149-201 s (137-175 s of CPU) with one thread each. Not when the person
    running the tests has set OMP_NUM_THREADS."""
    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if workers and "OMP_NUM_THREADS" not in os.environ:
        os.environ["OMP_NUM_THREADS"] = str(max(1, _usable_cpus() // int(workers)))
SHARED_DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "data"
SHARED_INSTRUCTIONS = SHARED_DATA_DIR / "instruction-data.json"


@pytest.fixture(autouse=True)
def isolated_dirs(tmp_path_factory, monkeypatch):
    """Point TUI_FT_CONFIG_DIR / TUI_FT_CACHE_DIR / TUI_FT_RUNS_DIR at fresh tmp folders.
    Subprocesses started by a test inherit them through os.environ."""
    base = tmp_path_factory.mktemp("tui-ft-home")
    dirs = {}
    for var, name in (("TUI_FT_CONFIG_DIR", "config"), ("TUI_FT_CACHE_DIR", "cache"),
                      ("TUI_FT_RUNS_DIR", "runs")):
        folder = base / name
        folder.mkdir()
        monkeypatch.setenv(var, str(folder))
        dirs[name] = folder
    return dirs


@pytest.fixture
def config_dir(isolated_dirs) -> Path:
    return isolated_dirs["config"]


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def sample_data_dir(repo_root) -> Path:
    return repo_root / "sample_data"


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    if not SHARED_DATA_DIR.is_dir():
        pytest.skip(f"shared data folder {SHARED_DATA_DIR} is absent")
    return SHARED_DATA_DIR


@pytest.fixture(scope="session")
def shared_instructions(shared_data_dir) -> Path:
    """The 1100-record Alpaca file (a JSON list)."""
    if not SHARED_INSTRUCTIONS.is_file():
        pytest.skip(f"shared instruction data {SHARED_INSTRUCTIONS} is absent")
    return SHARED_INSTRUCTIONS


def _run_cli(*args: str, cwd: Path | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.pop("PYTHONWARNINGS", None)
    env["PYTHONIOENCODING"] = "utf-8"
    return subprocess.run([sys.executable, "-m", "tui_ft.cli", *map(str, args)],
                          capture_output=True, text=True, encoding="utf-8", cwd=cwd,
                          env=env, timeout=timeout)


@pytest.fixture
def run_cli():
    """Run `tui-ft ARGS...` for real in a subprocess (stdout and stderr are pipes)."""
    return _run_cli


@pytest.fixture
def run_cli_json(run_cli):
    """Run a `--json` command that must succeed; return the parsed stdout object."""

    def run(*args: str) -> dict:
        proc = run_cli(*args, "--json")
        assert proc.returncode == 0, proc.stderr
        assert "Traceback" not in proc.stderr
        return json.loads(proc.stdout)

    return run
