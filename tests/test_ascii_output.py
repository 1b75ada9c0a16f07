"""The CLI on a stdout that cannot encode Unicode (issue 13): `PYTHONIOENCODING=ascii
tui-ft data preview ...` died with UnicodeEncodeError on the ⟦ ⟧ marker, and any
command printing non-ASCII data (a record's text, a label, a path) did the same. Now
markers fall back to ASCII, data text is written as backslash escapes, and --json
stays valid JSON. Each command runs for real in a subprocess under an ASCII locale."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

DATA = {"instruction": "Traduis caf\u00e9 \u2615 \u65e5\u672c \U0001f600", "input": "",
        "output": "\u00e9t\u00e9"}


def run_in(encoding: str, *args) -> subprocess.CompletedProcess:
    """`tui-ft ARGS` with stdout and stderr in `encoding` (bytes back, undecoded)."""
    env = dict(os.environ, PYTHONIOENCODING=encoding, LANG="C", LC_ALL="C")
    env.pop("PYTHONWARNINGS", None)
    return subprocess.run([sys.executable, "-m", "tui_ft.cli", *map(str, args)],
                          capture_output=True, env=env, timeout=60,
                          stdin=subprocess.DEVNULL)


def ascii_ok(proc: subprocess.CompletedProcess, code: int = 0) -> str:
    """The command ended with `code`, no traceback, and wrote ASCII only; its stdout."""
    assert b"Traceback" not in proc.stderr, proc.stderr.decode("ascii", "replace")
    assert proc.returncode == code, proc.stderr.decode("ascii", "replace")
    assert proc.stdout.isascii() and proc.stderr.isascii()
    return proc.stdout.decode("ascii")


@pytest.fixture
def unicode_data(tmp_path):
    path = tmp_path / "donn\u00e9es.jsonl"
    path.write_text(json.dumps(DATA) + "\n" + json.dumps({"instruction": "x", "output": 5})
                    + "\n", encoding="utf-8")
    return path


def test_preview_of_the_sample_uses_ascii_markers():
    out = ascii_ok(run_in("ascii", "data", "preview", "@sample/instructions.jsonl",
                          "--index", "0"))
    assert "learned: " in out and "(inside [[ ]])" in out
    loss_view = out.split("(inside [[ ]])", 1)[1].split("\n", 1)[1]
    assert loss_view.rstrip("\n").endswith("<|endoftext|>]]")
    assert loss_view.count("[[") == loss_view.count("]]") >= 1


def test_preview_and_inspect_of_unicode_data_write_escapes(unicode_data):
    out = ascii_ok(run_in("ascii", "data", "preview", unicode_data, "--index", "0"))
    assert "Traduis caf\\xe9 \\u2615 \\u65e5\\u672c \\U0001f600" in out
    # --json is still JSON, and reads back as the exact text.
    out = ascii_ok(run_in("ascii", "data", "preview", unicode_data, "--index", "0", "--json"))
    assert "Traduis caf\u00e9 \u2615 \u65e5\u672c \U0001f600" in json.loads(out)["text"]
    out = ascii_ok(run_in("ascii", "data", "inspect", unicode_data))
    assert "donn\\xe9es.jsonl" in out and ":2: field 'output' must be a string" in out
    report = json.loads(ascii_ok(run_in("ascii", "data", "inspect", unicode_data, "--json")))
    assert report["path"] == str(unicode_data) and report["records"] == 1
    # A located error naming a non-ASCII file reaches stderr, not a traceback.
    proc = run_in("ascii", "data", "preview", unicode_data, "--index", "1")
    ascii_ok(proc, 1)
    assert proc.stderr.startswith(b"tui-ft: error: ") and b"donn\\xe9es.jsonl:2" in proc.stderr


def test_runs_and_grades_commands_with_unicode_labels_and_paths(tmp_path, monkeypatch):
    runs = tmp_path / "ex\u00e9cutions"
    runs.mkdir()
    monkeypatch.setenv("TUI_FT_RUNS_DIR", str(runs))
    assert "no runs under " in ascii_ok(run_in("ascii", "runs"))
    answers = tmp_path / "answers.jsonl"
    answers.write_text(json.dumps({**DATA, "response": "\u00e9t\u00e9 \U0001f600"}) + "\n",
                       encoding="utf-8")
    out = ascii_ok(run_in("ascii", "grades", "import", answers, "--run", "cafe",
                          "--label", "mod\u00e8le-\u2615", "--json"))
    assert json.loads(out)["label"] == "mod\u00e8le-\u2615"
    assert "cafe" in ascii_ok(run_in("ascii", "runs"))
    assert json.loads(ascii_ok(run_in("ascii", "runs", "--json")))[0]["run"] == "cafe"
    assert "1 ungraded" in ascii_ok(run_in("ascii", "grades", "summary", "cafe"))
    target = tmp_path / "sortie-\u00fc.jsonl"
    proc = run_in("ascii", "grades", "export", "cafe", target)
    ascii_ok(proc)
    assert b"sortie-\\xfc.jsonl" in proc.stderr
    # The file is the user's data, in UTF-8 whatever the terminal.
    assert "\u00e9t\u00e9 \U0001f600" in json.loads(target.read_text(encoding="utf-8")).values()
    proc = run_in("ascii", "stop", "cafe")
    ascii_ok(proc)
    assert b"ex\\xe9cutions/cafe is not running (imported)" in proc.stderr


def test_a_stdout_that_can_encode_them_keeps_the_real_characters(unicode_data):
    proc = run_in("utf-8", "data", "preview", unicode_data, "--index", "0")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout.decode("utf-8")
    assert "(inside \u27e6 \u27e7)" in out and "caf\u00e9 \u2615" in out
    assert "\u00e9t\u00e9" in json.loads(run_in("utf-8", "data", "preview", unicode_data,
                                                "--index", "0", "--json").stdout)["text"]
    # latin-1 takes é but not the markers: each character is judged on its own.
    proc = run_in("latin-1", "data", "preview", unicode_data, "--index", "0")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout.decode("latin-1")
    assert "(inside [[ ]])" in out and "caf\u00e9 \\u2615" in out
