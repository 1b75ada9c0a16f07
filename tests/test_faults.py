"""Faults caused for real, or injected where the machine cannot cause them (a full
disk): whatever happens, nothing the user already has is lost or left half-written."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import signal
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tui_ft.config import ConfigError, TrainConfig, read_yaml
from tui_ft.errors import DiskFull, TuiFtError
from tui_ft.grade.store import GradeError, GradeStore
from tui_ft.model.weights import load_model
from tui_ft.runfolder import Run, RunError
from tui_ft.runs.jobs import prepare_run
from tui_ft.runs.worker import run_in_process

from helpers import PtyApp

ROOT = Path(__file__).resolve().parents[1]


def small_config(tmp_path: Path, **changes) -> TrainConfig:
    data = {"max_steps": 6, "logging_steps": 1, "eval_steps": 2, "save_steps": 2,
            "max_length": 48, "per_device_train_batch_size": 4,
            "split_ratios": [0.9, 0.02, 0.08], "output_dir": str(tmp_path / "run")}
    data.update(changes)
    return TrainConfig.from_dict(data)


def test_disk_full_during_a_checkpoint_keeps_the_earlier_ones(tmp_path, monkeypatch):
    import torch

    real_save = torch.save
    calls = {"n": 0}

    class FullAfter:
        """The file torch.save writes into, on a disk that fills after 1000 bytes: its
        write raises ENOSPC, which torch wraps in a RuntimeError (as on a real full
        disk, tests/test_disk_full.py)."""

        def __init__(self, f):
            self.f, self.n = f, 0

        def write(self, data):
            self.n += len(data)
            if self.n > 1000:
                raise OSError(errno.ENOSPC, "No space left on device")
            return self.f.write(data)

        def flush(self):
            self.f.flush()

    def save_until_full(obj, f, *args, **kwargs):
        # The optimizer state of the second checkpoint hits a full disk.
        if str(getattr(f, "name", f)).endswith("optimizer.pt"):
            calls["n"] += 1
            if calls["n"] == 2:
                return real_save(obj, FullAfter(f), *args, **kwargs)
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save_until_full)
    run, _ = prepare_run(small_config(tmp_path))
    with pytest.raises(DiskFull, match="disk full: cannot write checkpoint-4"):
        run_in_process(run)
    status = run.read_status()
    assert status["state"] == "failed" and "checkpoint-4" in status["error"]
    assert status["error_kind"] == "disk_full"
    assert "no space left on device" in status["error"]
    assert [c.name for c in run.checkpoints()] == ["checkpoint-2"]
    assert not [p for p in run.checkpoints_dir.iterdir() if p.name.startswith(".tmp-")]
    model, info = load_model(str(run.checkpoint("last").path))
    assert info.checkpoint is None or info.checkpoint == "checkpoint-2"
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_disk_full_during_an_export_leaves_the_old_export(tmp_path, monkeypatch):
    run = Run(tmp_path / "run")
    run.path.mkdir()
    responses = [{"id": "a", "instruction": "i", "input": "", "expected": "x",
                  "response": "x", "checkpoint": "checkpoint-1", "run": "run"}]
    store = GradeStore(run)
    store.mark("a", "checkpoint-1", "correct")
    out = tmp_path / "graded.jsonl"
    out.write_text("the previous export\n")

    real_fsync = os.fsync

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(GradeError, match="disk full: cannot write the export"):
        store.export(responses, out)
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert out.read_text() == "the previous export\n"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".graded")] == []
    # The grade itself is still there for the next export.
    assert GradeStore(run).get("a", "checkpoint-1").grade == "correct"


def _ssh_session(sighup) -> None:
    """In the app's process before it starts: the pty becomes its controlling terminal,
    as over SSH, so closing the other end sends it SIGHUP; and SIGHUP has the
    disposition the test asks for, whatever this test process inherited (under
    `nohup` it is ignored, and a child inherits that)."""
    signal.signal(signal.SIGHUP, sighup)
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


@pytest.mark.parametrize("sighup", [signal.SIG_DFL, signal.SIG_IGN], ids=["sshd", "nohup"])
def test_hanging_up_the_terminal_leaves_the_run_going(tmp_path, sighup):
    """The app in a real pty starts a run; the pty is closed (the SSH link drops: the
    app gets SIGHUP and dies); the run finishes, and its folder says so. With SIGHUP
    ignored (`nohup tui-ft`), the app sees the hung-up terminal itself and ends too,
    instead of spinning on it (tui_ft/ui/hangup.py)."""
    config = small_config(tmp_path, max_steps=40, eval_steps=20, save_steps=20,
                          output_dir=None)
    config_path = tmp_path / "train.yaml"
    config.save(config_path)
    runs = tmp_path / "runs"
    with PtyApp([sys.executable, "-m", "tui_ft.cli", "--config", str(config_path),
                 "--screen", "training"], rows=30, cols=100,
                env={"TUI_FT_RUNS_DIR": str(runs)}, cwd=ROOT,
                preexec_fn=lambda: _ssh_session(sighup)) as app:
        app.read_until(lambda: False, 10)
        app.write(b"s")
        app.read_until(lambda: runs.is_dir() and any(runs.iterdir()), 60)
        run = Run(next(runs.iterdir()))
        app.read_until(lambda: b"train_loss" in (run.metrics_path.read_bytes()
                                                 if run.metrics_path.exists() else b""), 60)
        assert run.state() == "running"
        app.hang_up()  # the terminal goes away
        app.wait(timeout=20)
        # Killed by SIGHUP, or ended by the app itself with SIGHUP's shell status.
        assert app.returncode == (-signal.SIGHUP if sighup == signal.SIG_DFL else 129)
    deadline = time.monotonic() + 180
    while run.state() in ("starting", "running") and time.monotonic() < deadline:
        time.sleep(0.5)
    assert run.state() == "finished"
    assert run.read_status()["step"] == 40


yaml_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner,
                                                                max_size=4),
    max_leaves=12)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(TrainConfig.field_names() + ["bogus", "learnig_rate"]),
                       yaml_values, max_size=8))
def test_any_structure_gives_a_config_or_located_problems(data):
    try:
        config = TrainConfig.from_dict(data)
    except ConfigError as exc:
        assert exc.problems and all(p.key and p.reason for p in exc.problems)
    else:
        assert TrainConfig.from_dict(config.to_dict()) == config


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                   HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=300))
def test_any_bytes_as_a_config_file_give_a_located_error(tmp_path, raw):
    path = tmp_path / "c.yaml"
    path.write_bytes(raw)
    try:
        TrainConfig.from_dict(read_yaml(path), source=str(path))
    except TuiFtError as exc:
        assert str(path) in str(exc)


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=300) | st.builds(lambda d: json.dumps(d).encode(),
                                          st.dictionaries(st.sampled_from(
                                              ["name", "templates", "system", "stop", "x"]),
                                              yaml_values, max_size=5)))
def test_any_bytes_as_a_style_file_give_a_located_error(tmp_path, raw):
    from tui_ft.data.styles import StyleError, load_style_file

    path = tmp_path / "mine.yaml"
    path.write_bytes(raw)
    try:
        style = load_style_file(path)
    except StyleError as exc:
        assert str(path) in str(exc)
    else:
        assert style.templates["assistant"].count("{content}") == 1


def test_sigkill_while_a_checkpoint_is_being_written(tmp_path):
    """Kill the worker the moment a checkpoint's temporary folder appears: the run
    shows as died, every listed checkpoint loads, and resume finishes the run."""
    import torch

    from tui_ft.runs.jobs import start_detached

    run, _ = prepare_run(small_config(tmp_path, max_steps=12, save_steps=1, eval_steps=1,
                                      save_total_limit=None))
    pid = start_detached(run)
    killed_mid_write = False
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            if run.checkpoints_dir.is_dir():
                names = [p.name for p in run.checkpoints_dir.iterdir()]
                complete = [n for n in names if n.startswith("checkpoint-")]
                if len(complete) >= 2 and any(n.startswith(".tmp-") for n in names):
                    os.kill(pid, signal.SIGKILL)
                    killed_mid_write = True
                    break
            time.sleep(0.002)
    finally:
        if not killed_mid_write:
            os.kill(pid, signal.SIGKILL)
    assert killed_mid_write, "never saw a checkpoint being written"
    deadline = time.monotonic() + 10
    while run.state() != "died" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert run.state() == "died"
    listed = run.checkpoints()
    assert listed and all(not c.name.startswith(".") for c in listed)
    for c in listed:
        model, _ = load_model(str(c.path))
        assert all(torch.isfinite(p).all() for p in model.parameters())
    last = listed[-1]
    assert run_in_process(run, resume=last.path) == "finished"
    assert run.read_status()["step"] == 12
    assert not [p for p in run.checkpoints_dir.iterdir() if p.name.startswith(".tmp-")]


def test_a_config_with_escape_codes_is_refused_with_a_readable_message(tmp_path):
    """Escape codes in a config value (a path, a model name) are refused where the file
    is read, and the message shows them escaped: no text field ever holds
    them, so none can send them to the terminal."""
    path = tmp_path / "hostile.yaml"
    path.write_text('dataset: "[bold]d[/bold]\\e]0;PWNED\\a.jsonl"\nmodel: "m\\e[31mRED"\n')
    with pytest.raises(ConfigError) as info:
        TrainConfig.load(path)
    keys = {p.key: p.reason for p in info.value.problems}
    assert keys == {"dataset": "must not contain control characters",
                    "model": "must not contain control characters"}
    result = subprocess.run([sys.executable, "-m", "tui_ft.cli", "--config", str(path)],
                            capture_output=True, cwd=ROOT, timeout=60)
    assert result.returncode == 1
    assert b"\x1b" not in result.stderr and b"\x07" not in result.stderr
    assert b"PWNED" in result.stderr and b"must not contain control characters" in result.stderr
    assert b"Traceback" not in result.stderr
