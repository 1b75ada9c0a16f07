"""Exports and saved files onto something that is not a regular file (issue 13): a
device, a FIFO or a symlink is never replaced by a regular file. Real files, a real
FIFO, the real CLI."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import threading

from tui_ft.config import TrainConfig

from helpers import write_jsonl

ANSWERS = [{"instruction": f"Say {w}.", "input": "", "output": w, "response": w}
           for w in ("cat", "dog", "sun")]


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tui_ft.cli", *args], capture_output=True,
                          text=True, timeout=120)


def imported(tmp_path) -> str:
    proc = cli("grades", "import", write_jsonl(tmp_path / "a.jsonl", ANSWERS), "--run", "t")
    assert proc.returncode == 0, proc.stderr
    return "t"


def test_export_to_dev_null_and_dev_stdout_streams(tmp_path, isolated_dirs):
    run = imported(tmp_path)
    before = os.stat("/dev/null")
    proc = cli("grades", "export", run, "/dev/null")
    assert proc.returncode == 0, proc.stderr
    after = os.stat("/dev/null")
    assert stat.S_ISCHR(after.st_mode) and after.st_rdev == before.st_rdev
    proc = cli("grades", "export", run, "/dev/stdout")
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert [r["response"] for r in rows] == ["cat", "dog", "sun"]


def test_export_to_a_fifo_streams_into_it(tmp_path, isolated_dirs):
    run = imported(tmp_path)
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()))
    reader.start()
    proc = cli("grades", "export", run, str(fifo))
    reader.join(timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    assert len(got[0].decode().splitlines()) == 3


def test_export_and_config_save_through_a_symlink_keep_the_link(tmp_path, isolated_dirs):
    run = imported(tmp_path)
    target = tmp_path / "real" / "graded.jsonl"
    target.parent.mkdir()
    target.write_text("old\n")
    link = tmp_path / "graded.jsonl"
    link.symlink_to(target)
    proc = cli("grades", "export", run, str(link))
    assert proc.returncode == 0, proc.stderr
    assert link.is_symlink() and len(target.read_text().splitlines()) == 3

    config_target = tmp_path / "real" / "params.yaml"
    config_target.write_text("")
    config_link = tmp_path / "params.yaml"
    config_link.symlink_to(config_target)
    TrainConfig(learning_rate=0.01).save(config_link)  # what the Params screen's save does
    assert config_link.is_symlink()
    assert TrainConfig.load(config_target).learning_rate == 0.01
