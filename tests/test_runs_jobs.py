"""tui_ft.runs.jobs.detach: the one way a job is started that outlives its starter."""

from __future__ import annotations

import os
import sys

from tui_ft.runs.jobs import detach

CHILD = """
import os, sys
print("sid", os.getsid(0), "pid", os.getpid(), "stdin", repr(sys.stdin.read()))
print("buffered?", os.environ.get("PYTHONUNBUFFERED"))
raise SystemExit(3)
"""


def test_detach_starts_a_new_session_with_no_terminal_and_logs_its_output(tmp_path):
    log = tmp_path / "job.log"
    log.write_bytes(b"earlier line\n")
    proc = detach([sys.executable, "-c", CHILD], log)
    assert proc.wait(60) == 3
    text = log.read_text()
    # Appended, never truncated: a log keeps what earlier jobs wrote.
    assert text.startswith("earlier line\n")
    # Its own session (the pid leads it): a hang-up of the starter's terminal and
    # its Ctrl-C never reach it. Nothing to read on stdin, so it never waits on it.
    assert f"sid {proc.pid} pid {proc.pid} stdin ''" in text
    assert "buffered? 1" in text
    assert os.getsid(0) != proc.pid
