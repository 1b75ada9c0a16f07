"""Shared fixtures: every test runs with its own config, cache and runs folders (so
nothing touches the real user directories), and can find the repository, the shipped
sample data and the shared instruction data."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
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
