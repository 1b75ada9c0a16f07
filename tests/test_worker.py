"""The training worker as a real process: prepared run folders, a detached worker in
its own session that outlives whoever started it and writes only to its run folder,
a worker killed with SIGKILL, a clean stop, and failures that end in status.json."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tui_ft.config import TrainConfig
from tui_ft.model.weights import load_model
from tui_ft.runfolder import Run, RunError, pid_alive
from tui_ft.runs.jobs import prepare_run, start_detached, stop_run
from tui_ft.runs.worker import main, run_in_process

from helpers import wait_for, word_task_config

# -- helpers ---------------------------------------------------------------------------------


def config_for(tmp_path, name: str, **overrides) -> TrainConfig:
    return TrainConfig.from_dict(word_task_config(tmp_path, name, **overrides))


def reap(pid: int) -> None:
    """Collect a worker this test process started (it becomes a zombie otherwise)."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    reap(pid)


def all_finite(checkpoint: Path) -> bool:
    model, _ = load_model(str(checkpoint), device="cpu")
    return all(torch.isfinite(t).all() for t in model.state_dict().values())


# -- preparing a run -------------------------------------------------------------------------


def test_prepare_run_writes_the_config_before_step_one(tmp_path):
    run, config = prepare_run(config_for(tmp_path, "prepared"))
    assert run.path == tmp_path / "prepared" and run.path.is_dir()
    assert config.output_dir == str(run.path.resolve())
    assert TrainConfig.load(run.config_path) == config
    status = run.read_status()
    assert status["state"] == "starting" and status["step"] == 0
    assert not run.metrics_path.exists() and run.checkpoints() == []
    # The folder holds a run now: a second run may not overwrite it.
    with pytest.raises(RunError, match="already holds a run.*--resume"):
        prepare_run(config_for(tmp_path, "prepared"))
    assert TrainConfig.load(run.config_path) == config


def test_without_output_dir_a_run_gets_a_new_folder_in_the_runs_directory(isolated_dirs):
    first, _ = prepare_run(TrainConfig())
    second, _ = prepare_run(TrainConfig())
    runs = isolated_dirs["runs"]
    assert first.path.parent == runs and second.path.parent == runs
    assert first.path != second.path
    assert "tiny" in first.name and "alpaca" in first.name


# -- a detached worker -----------------------------------------------------------------------


LAUNCHER = """
import sys, time
from tui_ft.runfolder import Run
from tui_ft.runs.jobs import start_detached

t0 = time.monotonic()
pid = start_detached(Run(sys.argv[1]))
print(pid, time.monotonic() - t0, flush=True)
"""


def test_a_detached_worker_has_its_own_session_and_outlives_its_parent(tmp_path):
    run, _ = prepare_run(config_for(tmp_path, "detached", max_steps=6, save_strategy="steps",
                                    save_steps=3))
    # The parent that starts it is a process of its own, and it exits at once.
    launcher = subprocess.run([sys.executable, "-c", LAUNCHER, str(run.path)],
                              capture_output=True, text=True, timeout=60)
    assert launcher.returncode == 0, launcher.stderr
    pid_text, seconds = launcher.stdout.split()
    pid = int(pid_text)
    try:
        assert float(seconds) < 3.0
        assert run.read_status()["pid"] == pid
        # Its parent is gone; the worker goes on, in a session of its own.
        assert pid_alive(pid)
        assert os.getsid(pid) != os.getsid(0)
        assert os.getsid(pid) == pid  # a session leader: no terminal to hang up on it
        # stdout and stderr go to worker.log, not to a pipe somebody must drain.
        for fd in (1, 2):
            assert os.readlink(f"/proc/{pid}/fd/{fd}") == str(run.log_path)
        wait_for(lambda: not pid_alive(pid), what="the worker to finish")
    finally:
        kill(pid)
    assert run.state() == "finished"
    status = run.read_status()
    assert status["step"] == 6 and status["error"] is None
    assert [c.step for c in run.checkpoints()] == [3, 6]
    log = run.log_path.read_text()
    assert f"worker {pid} starting" in log and "finished" in log


def test_start_detached_returns_at_once(tmp_path):
    run, _ = prepare_run(config_for(tmp_path, "quick", max_steps=1))
    t0 = time.monotonic()
    pid = start_detached(run)
    try:
        assert time.monotonic() - t0 < 3.0
        assert os.getsid(pid) != os.getsid(0)
        wait_for(lambda: run.state() not in ("starting", "running"), what="the end")
    finally:
        kill(pid)
    assert run.state() == "finished"


def test_a_killed_worker_is_reported_died_and_its_checkpoints_stay_loadable(tmp_path):
    run, _ = prepare_run(config_for(tmp_path, "killed", max_steps=500, save_strategy="steps",
                                    save_steps=2, save_total_limit=2))
    pid = start_detached(run)
    try:
        wait_for(lambda: len(run.checkpoints()) >= 2, what="two checkpoints")
        assert run.state() == "running"
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: not pid_alive(pid), what="the worker to die")
    finally:
        kill(pid)
    assert run.state() == "died"
    assert run.read_status()["state"] == "running"  # it could not say so itself
    checkpoints = run.checkpoints()
    assert checkpoints
    for checkpoint in checkpoints:
        assert all_finite(checkpoint.path)
    # A new start cleans up a save the kill may have cut short, and resumes.
    last = run.checkpoint("last")
    assert run_in_process(run, resume=last.path, stop_at_step=last.step + 1) == "stopped"
    assert run.read_status()["step"] == last.step + 1
    assert not any(p.name.startswith(".tmp-") for p in run.checkpoints_dir.iterdir())


def test_stop_run_stops_after_a_checkpoint_and_the_run_resumes(tmp_path):
    run, _ = prepare_run(config_for(tmp_path, "stopped", max_steps=500, save_strategy="steps",
                                    save_steps=1000))
    pid = start_detached(run)
    try:
        wait_for(lambda: run.read_status().get("step", 0) >= 2, what="step 2")
        assert stop_run(run, wait=60)
        wait_for(lambda: not pid_alive(pid), what="the worker to exit")
    finally:
        kill(pid)
    assert run.state() == "stopped"
    status = run.read_status()
    step = status["step"]
    assert 2 <= step < 500
    # The stop saved a checkpoint at the step it stopped on (save_steps is 1000).
    assert run.checkpoint("last").name == f"checkpoint-{step}" == status["last_checkpoint"]
    assert all_finite(run.checkpoint("last").path)
    events = [m for m in run.read_metrics() if m.get("event") == "stopped"]
    assert [m["step"] for m in events] == [step]
    assert not run.stop_path.exists() or run.state() == "stopped"
    # Resume continues from the step after it.
    assert run_in_process(run, resume=run.checkpoint("last").path,
                          stop_at_step=step + 2) == "stopped"
    train_steps = [m["step"] for m in run.read_metrics() if "train_loss" in m]
    assert train_steps == list(range(1, step + 3))
    # Stopping a run that is not running is a no-op that says so.
    assert stop_run(run)


# -- failures end in status.json -------------------------------------------------------------


def test_the_worker_entry_point_reports_a_failure_in_status_and_log(tmp_path, capsys):
    config = config_for(tmp_path, "bad-data")
    config.dataset = str(tmp_path / "no-such-file.jsonl")
    run, _ = prepare_run(config)
    previous = signal.getsignal(signal.SIGHUP)
    try:
        assert main([str(run.path)]) == 1
    finally:
        signal.signal(signal.SIGHUP, previous)
    out = capsys.readouterr().out
    assert "failed:" in out and "no-such-file.jsonl" in out
    status = run.read_status()
    assert status["state"] == "failed" and "no-such-file.jsonl" in status["error"]
    assert status["pid"] == os.getpid()
    assert run.state() == "failed"
    last = run.read_metrics()[-1]
    assert last["event"] == "failed" and "no-such-file.jsonl" in last["error"]
    assert "epoch" in last and "step" in last


def test_a_run_with_no_training_record_fails_with_a_clear_message(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text('{"instruction": "", "output": ""}\n')
    run, _ = prepare_run(config_for(tmp_path, "empty", dataset=str(empty)))
    with pytest.raises(Exception) as info:
        run_in_process(run)
    assert "no training record" in str(info.value)
    assert run.state() == "failed"


def test_max_length_beyond_the_context_fails_before_training(tmp_path):
    from tui_ft.config import ConfigError
    from tui_ft.model.weights import load_model, save_checkpoint_weights

    # A preset's context is known to the configuration itself.
    with pytest.raises(ConfigError, match="longer than tiny's context"):
        config_for(tmp_path, "too-long", max_length=512)
    # Any other model's only once it is loaded: the run fails before step 1.
    folder = tmp_path / "tiny-model"
    save_checkpoint_weights(load_model("tiny")[0], folder)
    run, _ = prepare_run(config_for(tmp_path, "too-long", max_length=512, model=str(folder)))
    with pytest.raises(Exception, match="max_length 512 exceeds the model's context"):
        run_in_process(run)
    assert run.read_status()["state"] == "failed"
    assert not any("train_loss" in m for m in run.read_metrics())


def test_run_state_is_starting_until_the_worker_writes_its_pid(tmp_path):
    run, _ = prepare_run(config_for(tmp_path, "fresh"))
    assert run.state() == "starting"  # just created, no pid yet
    run.write_status(state="running", pid=2 ** 22 + 12345)  # no such process
    assert run.state() == "died"


# -- reading metrics.jsonl while it is written ----------------------------------------------


def test_metrics_tail_skips_a_truncated_last_line_and_reads_it_once_complete(tmp_path):
    from tui_ft.tail import JsonlTail

    path = tmp_path / "metrics.jsonl"
    tail = JsonlTail(path)
    assert tail.read() == []  # no file yet: nothing, no error
    path.write_text('{"step": 1, "epoch": 0.1, "train_loss": 2.5}\n{"step": 2, "epo')
    assert tail.read() == [{"step": 1, "epoch": 0.1, "train_loss": 2.5}]
    assert tail.read() == []  # the half line waits
    with open(path, "a") as f:
        f.write('ch": 0.2, "train_loss": 2.4}\n{"step": 3, "epoch": 0.3, "val_loss": 2.6}\n')
    assert tail.read() == [{"step": 2, "epoch": 0.2, "train_loss": 2.4},
                           {"step": 3, "epoch": 0.3, "val_loss": 2.6}]
    assert tail.skipped == 0


def test_metrics_tail_skips_lines_that_are_not_json_objects(tmp_path):
    from tui_ft.tail import JsonlTail

    path = tmp_path / "metrics.jsonl"
    # A worker killed mid-line, then a new worker appending after it; garbage; a list.
    path.write_bytes(b'{"step": 1, "epoch": 0}\n{"step": 2, "tra\n\xff\xfe garbage\n[1, 2]\n'
                     b'\n{"step": 3, "epoch": 1.0}\n')
    tail = JsonlTail(path)
    assert tail.read() == [{"step": 1, "epoch": 0}, {"step": 3, "epoch": 1.0}]
    assert tail.skipped == 3
    assert Run(tmp_path).read_metrics() == [{"step": 1, "epoch": 0}, {"step": 3, "epoch": 1.0}]


def test_a_half_written_last_line_does_not_stop_a_resume(tmp_path):
    run, _ = prepare_run(config_for(tmp_path, "half-line", max_steps=3, save_strategy="steps",
                                    save_steps=2))
    assert run_in_process(run, stop_at_step=2) == "stopped"
    with open(run.metrics_path, "a") as f:
        f.write('{"step": 3, "epoch": 1.5, "train_lo')  # killed in the middle of a write
    assert run_in_process(run, resume=run.checkpoint("last").path) == "finished"
    lines = run.metrics_path.read_text().splitlines()
    assert all(json.loads(line) for line in lines)  # the half line is gone, not glued
    assert [m["step"] for m in run.read_metrics() if "train_loss" in m] == [1, 2, 3]
