"""Ctrl-C on a foreground `tui-ft train` stops like `tui-ft stop` (the app's x): a
checkpoint after the current step, state stopped, no traceback, the resume command
printed; the run resumes from it. A second Ctrl-C quits at once, cleanly. Real
sub-processes and real signals on the tiny model."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading

import pytest
import torch

from tui_ft.model.weights import load_model
from tui_ft.runfolder import Run

from helpers import sigint_as_at_a_terminal, wait_for, word_task_config

pytestmark = pytest.mark.slow


def write_config(tmp_path, name: str, **overrides):
    data = word_task_config(tmp_path, name, **{"max_steps": 8, "save_strategy": "steps",
                                               "save_steps": 100, **overrides})
    path = tmp_path / f"{name}.yaml"
    path.write_text("".join(f"{k}: {json.dumps(v)}\n" for k, v in data.items()))
    return path, Run(data["output_dir"])


class Train:
    """`tui-ft ARGS` with Ctrl-C behaving as at a terminal (a test runner started in
    the background may hand its children SIGINT ignored); stderr gathered as it comes."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tui_ft.cli", *args], stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True,
            preexec_fn=sigint_as_at_a_terminal)
        self.err = []
        self.reader = threading.Thread(target=lambda: self.err.extend(self.proc.stderr),
                                       daemon=True)
        self.reader.start()

    @property
    def stderr(self) -> str:
        return "".join(self.err)

    def finish(self, timeout: float = 120) -> tuple[int, str, str]:
        try:
            code = self.proc.wait(timeout=timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        out = self.proc.stdout.read()
        self.reader.join(10)
        return code, out, self.stderr


def steps_done(run: Run) -> int:
    return max((m["step"] for m in run.read_metrics() if "train_loss" in m), default=0)


def test_ctrl_c_stops_with_a_checkpoint_and_the_run_resumes(tmp_path):
    config, run = write_config(tmp_path, "ctrlc")
    train = Train("train", str(config))
    wait_for(lambda: steps_done(run) >= 2 or train.proc.poll() is not None,
             what="two training steps")
    assert train.proc.poll() is None, train.stderr
    train.proc.send_signal(signal.SIGINT)
    code, out, err = train.finish()

    assert code == 130, err  # as a shell expects of Ctrl-C: 'train && responses' stops
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    assert "SIGINT: stopping after the current step, with a checkpoint" in err
    status = run.read_status()
    assert run.state() == "stopped" and status["stopped_by"] == "SIGINT"
    stop = status["step"]
    assert 2 <= stop < 8
    # save_steps is 100: this checkpoint is the stop's own.
    assert [c.name for c in run.checkpoints()] == [f"checkpoint-{stop}"]
    assert status["last_checkpoint"] == f"checkpoint-{stop}"
    assert f"resume from checkpoint-{stop} with 'tui-ft train --resume {run.path}'" in err
    assert out.strip().splitlines()[-1] == str(run.path)
    stopped = [m for m in run.read_metrics() if m.get("event") == "stopped"]
    assert [(m["step"], m["by"]) for m in stopped] == [(stop, "SIGINT")]
    model, _ = load_model(str(run.checkpoints()[0].path), device="cpu")
    assert all(torch.isfinite(t).all() for t in model.state_dict().values())

    # The printed command resumes it to the end.
    code, out, err = Train("train", "--resume", str(run.path)).finish()
    assert code == 0, err
    assert "Traceback" not in err
    assert run.state() == "finished" and run.read_status()["step"] == 8
    steps = [m["step"] for m in run.read_metrics() if "train_loss" in m]
    assert steps == list(range(1, 9))  # no step twice, none missing


def test_a_second_ctrl_c_quits_at_once_without_a_traceback(tmp_path):
    # A long step (a wide batch) leaves time for the second Ctrl-C to land in it.
    config, run = write_config(tmp_path, "twice", per_device_train_batch_size=8,
                               gradient_accumulation_steps=4, n_train=32)
    train = Train("train", str(config))
    wait_for(lambda: steps_done(run) >= 1 or train.proc.poll() is not None,
             what="a training step")
    train.proc.send_signal(signal.SIGINT)
    wait_for(lambda: "stopping after the current step" in train.stderr
             or train.proc.poll() is not None, what="the first Ctrl-C to be taken")
    train.proc.send_signal(signal.SIGINT)
    code, out, err = train.finish()

    assert code == 130, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    assert run.state() == "stopped"
    assert run.read_status()["stopped_by"] == "SIGINT"
    assert run.read_status()["error"] is None
    checkpoints = run.checkpoints()
    if "interrupted at step" in err:
        # Quit inside the step: no checkpoint of its own, and the output says so.
        assert checkpoints == []
        assert (f"no checkpoint was written; 'tui-ft train --resume {run.path}' starts it "
                "again from step 0") in err
        last = [m for m in run.read_metrics() if m.get("event") == "stopped"][-1]
        assert last["interrupted"] is True
    else:
        # The step (and its checkpoint) ended before the second Ctrl-C arrived.
        assert len(checkpoints) == 1 and "tui-ft train --resume" in err
    # Whatever was written is whole: nothing half-written is left in checkpoints/.
    if run.checkpoints_dir.is_dir():
        assert all(not p.name.startswith(".tmp-") for p in run.checkpoints_dir.iterdir())


def test_resume_of_a_run_without_a_checkpoint_trains_it_again_from_step_zero(tmp_path):
    """What the hint after a quit without a checkpoint says: --resume starts over."""
    config, run = write_config(tmp_path, "again", max_steps=2)
    dataset = tmp_path / "again-train.jsonl"
    dataset.rename(tmp_path / "away.jsonl")
    code, _, err = Train("train", str(config)).finish()
    assert code == 1 and "again-train.jsonl" in err and "Traceback" not in err
    assert run.state() == "failed" and run.checkpoints() == []

    (tmp_path / "away.jsonl").rename(dataset)
    code, out, err = Train("train", "--resume", run.name).finish()  # by name: registered
    assert code == 0, err
    assert "has no checkpoint: training it again from step 0" in err
    assert run.state() == "finished" and [c.step for c in run.checkpoints()] == [2]
    steps = [m["step"] for m in run.read_metrics() if "train_loss" in m]
    assert steps == [1, 2]  # the failed attempt's lines are gone
    assert [m.get("event") for m in run.read_metrics()].count("start") == 1
