"""Startup cost: `--help` answers without importing torch, and the data modules import
neither torch nor textual. Each check runs in a fresh interpreter."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import pytest

HELP_COMMANDS = [
    [],
    ["data"],
    ["data", "inspect"],
    ["data", "preview"],
    ["styles"],
]

# Runs `tui-ft ARGS --help` in-process, then reports which heavy modules got imported.
HELP_PROBE = """
import json, runpy, sys
args = json.loads(sys.argv[1])
sys.argv = ["tui-ft", *args, "--help"]
code = None
try:
    runpy.run_module("tui_ft.cli", run_name="__main__", alter_sys=True)
except SystemExit as exc:
    code = exc.code
heavy = sorted(m for m in ("torch", "textual", "plotext", "tiktoken", "yaml", "numpy")
               if m in sys.modules)
sys.stderr.write("\\nPROBE " + json.dumps({"code": code, "heavy": heavy}) + "\\n")
"""

DATA_MODULES = ["tui_ft.data.records", "tui_ft.data.dataset", "tui_ft.data.styles",
                "tui_ft.data.split", "tui_ft.data.batches", "tui_ft.data.tokenizer", "tui_ft.config"]


def probe(stderr: str) -> dict:
    line = [x for x in stderr.splitlines() if x.startswith("PROBE ")][-1]
    return json.loads(line[len("PROBE "):])


@pytest.mark.parametrize("args", HELP_COMMANDS, ids=lambda a: " ".join(a) or "top")
def test_help_exits_zero_without_torch(args):
    proc = subprocess.run([sys.executable, "-c", HELP_PROBE, json.dumps(args)],
                          capture_output=True, text=True, timeout=60)
    assert "Traceback" not in proc.stderr, proc.stderr
    result = probe(proc.stderr)
    assert result["code"] in (0, None)
    assert "usage: tui-ft" in proc.stdout
    assert "torch" not in result["heavy"]
    assert "textual" not in result["heavy"]


@pytest.mark.parametrize("args", HELP_COMMANDS, ids=lambda a: " ".join(a) or "top")
def test_help_importtime_has_no_torch(args):
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "tui_ft.cli", *args,
                           "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage: tui-ft")
    imported = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines()
                if line.startswith("import time:")}
    assert "tui_ft" in imported  # the probe did see our imports (cli runs as __main__)
    assert not {m for m in imported if m == "torch" or m.startswith("torch.")}
    assert not {m for m in imported if m == "textual" or m.startswith("textual.")}


def test_help_texts_describe_the_commands():
    def help_of(*args):
        proc = subprocess.run([sys.executable, "-m", "tui_ft.cli", *args, "--help"],
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0
        return proc.stdout

    assert "--index" in help_of("data", "preview")
    assert "--mask-prompt" in help_of("data", "preview")
    inspect = help_of("data", "inspect")
    for option in ("--style", "--json", "--max-length", "--split", "--seed"):
        assert option in inspect
    assert "inspect" in help_of("data") and "preview" in help_of("data")


@pytest.mark.parametrize("module", DATA_MODULES)
def test_data_modules_import_neither_torch_nor_textual(module):
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} does not exist (yet)")
    code = (f"import sys, json; import {module}; "
            "print(json.dumps(sorted(m for m in ('torch', 'textual') if m in sys.modules)))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == []


def test_data_inspect_run_does_not_import_torch(sample_data_dir):
    """Checking a dataset is a CPU-light job: it needs the tokenizer, not torch."""
    code = ("import runpy, sys; "
            f"sys.argv = ['tui-ft', 'data', 'inspect', {str(sample_data_dir / 'chat.jsonl')!r}, "
            "'--json']\n"
            "try:\n    runpy.run_module('tui_ft.cli', run_name='__main__', alter_sys=True)\n"
            "except SystemExit as exc:\n    assert exc.code in (0, None), exc.code\n"
            "sys.stderr.write('\\nTORCH ' + str('torch' in sys.modules) + '\\n')")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert "Traceback" not in proc.stderr, proc.stderr
    assert json.loads(proc.stdout)["records"] == 60
    assert "TORCH False" in proc.stderr
