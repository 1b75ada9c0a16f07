"""`.ci/run` and the README agree: the torch install is the README's CPU command with
the index from TORCH_INDEX_URL (else the mirror's pinned CPU wheel), only when torch is
missing, and the tests run with the README's test command verbatim. `pip` and `python`
are stand-ins that record their arguments: nothing is installed or downloaded."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
CI_RUN = ROOT / ".ci" / "run"
TEST_COMMAND = 'pip install -e ".[test]" && python -m pytest'

STAND_IN = """#!/bin/sh
echo "$(basename "$0") $*" >> "$CALLS"
if [ "$(basename "$0")" = python ] && [ "$1" = -c ]; then exit "$TORCH_IMPORT_RC"; fi
exit 0
"""


def readme_cpu_command() -> list[str]:
    (line,) = re.findall(r"^pip install torch --index-url \S+$", README, re.M)
    return shlex.split(line)


def run_ci(tmp_path, *, torch_installed: bool, index_url: str | None) -> list[str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("pip", "python"):
        (bin_dir / name).write_text(STAND_IN)
        (bin_dir / name).chmod(0o755)
    calls = tmp_path / "calls"
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "CALLS": str(calls),
           "TORCH_IMPORT_RC": "0" if torch_installed else "1"}
    if index_url is not None:
        env["TORCH_INDEX_URL"] = index_url
    proc = subprocess.run(["bash", str(CI_RUN)], env=env, capture_output=True, text=True,
                          timeout=30)
    assert proc.returncode == 0, proc.stderr
    return calls.read_text().splitlines()


def test_readme_states_the_cpu_command_and_the_test_command():
    assert readme_cpu_command() == ["pip", "install", "torch", "--index-url",
                                    "https://download.pytorch.org/whl/cpu"]
    assert TEST_COMMAND in README
    script = CI_RUN.read_text()
    assert script.rstrip().splitlines()[-1] == TEST_COMMAND
    assert " ".join(readme_cpu_command()) in script  # the same command, in the comment
    assert os.access(CI_RUN, os.X_OK)


@pytest.mark.parametrize("torch_installed, index_url, torch_install", [
    (False, "https://download.pytorch.org/whl/cpu", "readme"),
    (False, None, "pip install torch==2.13.0"),
    (False, "", "pip install torch==2.13.0"),
    (True, "https://download.pytorch.org/whl/cpu", None),
])
def test_ci_installs_torch_as_the_readme_says_then_runs_the_tests(
        tmp_path, torch_installed, index_url, torch_install):
    calls = run_ci(tmp_path, torch_installed=torch_installed, index_url=index_url)
    expected = ["python -c import torch"]
    if torch_install == "readme":
        expected.append(" ".join(readme_cpu_command()))
    elif torch_install:
        expected.append(torch_install)
    expected += ["pip install -e .[test]", "python -m pytest"]
    assert calls == expected
