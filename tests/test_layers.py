"""The layering of docs/ARCHITECTURE.md holds: import-linter checks the contracts in
pyproject.toml against the package as it is (the real tool, the real import graph)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def lint_imports(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).parent / "lint-imports"
    if not exe.exists():
        found = shutil.which("lint-imports")
        if found is None:
            pytest.fail("lint-imports is not installed: pip install -e '.[test]'")
        exe = Path(found)
    return subprocess.run([str(exe), "--no-cache", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=300)


def test_the_layers_hold():
    proc = lint_imports()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "3 kept, 0 broken" in proc.stdout, proc.stdout


def test_a_layer_importing_one_above_it_is_caught(tmp_path):
    """The check can fail: the same graph against a contract that puts the UI below
    the data layer is reported broken, naming an import that breaks it."""
    config = tmp_path / "upside-down.toml"
    config.write_text('[tool.importlinter]\nroot_package = "tui_ft"\n\n'
                      '[[tool.importlinter.contracts]]\nname = "upside down"\n'
                      'type = "layers"\nlayers = ["tui_ft.data", "tui_ft.ui"]\n',
                      encoding="utf-8")
    proc = lint_imports(str(config))
    assert proc.returncode != 0
    assert "BROKEN" in proc.stdout and "tui_ft.ui" in proc.stdout, proc.stdout
