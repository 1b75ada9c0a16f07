"""One writer per run (issue 13): a run's worker holds the run lock for its life, and
every start takes it before looking at the run's state, so two resumes at once give
one worker, never two writing one metrics.jsonl. Real processes."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tui_ft.config import TrainConfig
from tui_ft.runfolder import pid_alive
from tui_ft.runs.jobs import lock_run, prepare_run, start_detached, stop_run

from helpers import wait_for, word_task_config


def cli(*args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "tui_ft.cli", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


def worker_starts(run) -> int:
    return run.log_path.read_text().count(" starting ")


@pytest.mark.slow
def test_two_resumes_at_once_start_one_worker(tmp_path):
    config = TrainConfig.from_dict(word_task_config(tmp_path, "locked", max_steps=100000,
                                                    save_strategy="steps", save_steps=100000))
    run, _ = prepare_run(config)
    pid = start_detached(run)
    wait_for(lambda: run.read_status().get("step", 0) >= 2, what="step 2")
    # While it trains, the lock is held: a worker started by hand does nothing.
    by_hand = subprocess.run([sys.executable, "-m", "tui_ft.runs.worker", str(run.path)],
                             capture_output=True, text=True, timeout=60)
    assert by_hand.returncode == 1 and "being trained by another process" in by_hand.stdout
    assert stop_run(run, wait=60)
    wait_for(lambda: not pid_alive(pid), what="the first worker to exit")
    assert run.state() == "stopped"
    starts = worker_starts(run)

    procs = [cli("train", "--resume", str(run.path), "--detach") for _ in range(2)]
    results = [p.communicate(timeout=120) + (p.returncode,) for p in procs]
    codes = sorted(code for _, _, code in results)
    assert codes == [0, 1], results
    refusal = next(err for _, err, code in results if code == 1)
    assert ("being trained by another process" in refusal
            or "still running" in refusal), refusal
    assert "Traceback" not in refusal
    wait_for(lambda: run.read_status().get("state") == "running", what="the resumed run")
    wait_for(lambda: worker_starts(run) > starts, what="the worker's first line")
    stopped_at = run.read_status()["step"]
    wait_for(lambda: run.read_status().get("step", 0) >= stopped_at + 2, what="two steps")
    assert stop_run(run, wait=60)
    wait_for(lambda: run.state() == "stopped", what="the stop")
    assert worker_starts(run) == starts + 1  # one worker, not two
    steps = [m["step"] for m in run.read_metrics() if "train_loss" in m]
    assert steps == sorted(set(steps)), "two writers logged the same steps"
    # Once the worker is gone the lock is free again.
    last = run.read_status()["pid"]
    wait_for(lambda: not pid_alive(last), what="the second worker to exit")
    os.close(lock_run(run))
