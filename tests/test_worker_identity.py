"""Signals go only to a process proven to be the run's worker (issue 13): a stale or
edited pid in status.json never reaches another process. Real processes, real files."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tui_ft.runfolder import PID_GONE, Run, process_start, worker_alive
from tui_ft.runs.jobs import stop_run


def running_run(tmp_path, **status) -> Run:
    run = Run(tmp_path / "run")
    run.path.mkdir()
    (run.path / "status.json").write_text(json.dumps({"state": "running", **status}))
    return run


@pytest.fixture
def bystander():
    """A process that has nothing to do with any run."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    yield proc
    proc.kill()
    proc.wait()


def test_a_recycled_pid_is_no_worker_and_is_never_signalled(tmp_path, bystander):
    # The worker that wrote the status died; its pid now belongs to another process.
    start = process_start(bystander.pid)
    assert start is not None
    run = running_run(tmp_path, pid=bystander.pid, pid_start=start - 1)
    assert not worker_alive(run.read_status())
    assert run.state() == "died"
    assert stop_run(run, wait=0.5)
    time.sleep(0.3)
    assert bystander.poll() is None, "stop_run signalled a process that is not the worker"


def test_a_worker_gone_before_its_pid_was_written_is_never_one_again(tmp_path, bystander):
    """The launcher writes the worker's pid after starting it; a worker that died at
    once left a pid with no start time to match, which was then trusted for good: the
    next process to get the number would have been signalled by a stop."""
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    run = running_run(tmp_path)
    run.write_status(pid=gone.pid)
    status = run.read_status()
    assert status["pid_start"] == PID_GONE
    # The number goes to another process (here: said so by hand).
    run.write_status(pid_start=status["pid_start"], pid=bystander.pid)
    assert not worker_alive(run.read_status()) and run.state() == "died"
    assert stop_run(run, wait=0.5)
    time.sleep(0.3)
    assert bystander.poll() is None, "stop_run signalled a process that is not the worker"


def test_the_worker_that_wrote_the_status_is_recognised(tmp_path, bystander):
    run = running_run(tmp_path, pid=bystander.pid, pid_start=process_start(bystander.pid))
    assert worker_alive(run.read_status()) and run.state() == "running"
    assert stop_run(run, wait=10)  # it is the worker here: it gets SIGTERM
    assert bystander.wait(timeout=10) == -signal.SIGTERM


# The own-group pid gets a fixed id: pytest-xdist needs every worker to collect the
# same test names, and each worker is a process of its own.
@pytest.mark.parametrize("pid", [-1, 0, 1, pytest.param(-os.getpid(), id="minus-own-pid"),
                                 True, 1.5, "123", None])
def test_pids_that_name_groups_or_init_are_never_signalled(tmp_path, monkeypatch, pid):
    """`"pid": -1` became kill(-1, SIGTERM): every process the user owns. os.kill is
    recorded here, not called: a regression must not take the test run down."""
    calls = []
    monkeypatch.setattr(os, "kill", lambda *args: calls.append(args))
    run = running_run(tmp_path, pid=pid)
    assert not worker_alive(run.read_status())
    assert stop_run(run, wait=0.2)
    assert calls == []
    assert (run.path / "STOP").exists()  # asked politely all the same
