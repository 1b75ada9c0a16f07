"""A real full disk: a small tmpfs mounted for the test (root only; elsewhere the
injected faults in test_faults.py stand in). Every write path meets ENOSPC for real:
a checkpoint's optimizer state (torch.save), a status or metrics write mid-run, and
the first writes of a resume. Each ends in the one message, the earlier checkpoints
intact, the reason in status.json, and the run resumes once there is space."""

from __future__ import annotations

import errno
import json
import os
import subprocess
from pathlib import Path

import pytest

from tui_ft.errors import DiskFull
from tui_ft.runfolder import RESERVE_FILE, Run
from tui_ft.runs.jobs import prepare_run
from tui_ft.runs.worker import run_in_process

from test_faults import small_config

pytestmark = pytest.mark.slow


def _mount(target: Path, size_mb: int, *, remount: bool = False) -> subprocess.CompletedProcess:
    options = f"{'remount,' if remount else ''}size={size_mb}m"
    return subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(target)],
                          capture_output=True, text=True)


@pytest.fixture
def small_disk(tmp_path):
    """A tmpfs of 120 MiB: one checkpoint of the tiny model (83 MiB) fits, two do not.
    Yields (folder, resize(size_mb))."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root (test_faults.py injects ENOSPC)")
    proc = _mount(disk, 120)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")

    def resize(size_mb: int) -> None:
        proc = _mount(disk, size_mb, remount=True)
        assert proc.returncode == 0, proc.stderr

    try:
        yield disk, resize
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def fill(folder: Path) -> Path:
    """Take every byte left on the file system of `folder`, down to the last one."""
    filler = folder / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        for size in (1 << 20, 1 << 12, 1):
            chunk = bytes(size)
            try:
                while os.write(fd, chunk) == size:
                    pass
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)
    return filler


def write_config(tmp_path: Path, disk: Path, **changes) -> Path:
    config = small_config(tmp_path, max_steps=8, save_total_limit=1,
                          output_dir=str(disk / "run"), **changes)
    path = tmp_path / "config.yaml"
    config.save(path)
    return path


def no_partial(run: Run) -> bool:
    return not [p for p in run.checkpoints_dir.iterdir() if p.name.startswith(".tmp-")]


def test_a_checkpoint_that_does_not_fit_keeps_the_earlier_one_and_resumes(
        tmp_path, small_disk, run_cli):
    disk, resize = small_disk
    config = write_config(tmp_path, disk)
    run = Run(disk / "run")

    proc = run_cli("train", config, timeout=300)
    # optimizer.pt of checkpoint-4 met the full disk inside torch.save.
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr
    assert "tui-ft: error: disk full: cannot write checkpoint-4" in proc.stderr
    assert "no space left on device" in proc.stderr
    assert "earlier checkpoints are intact (checkpoint-2)" in proc.stderr
    assert f"tui-ft train --resume {run.path}" in proc.stderr
    status = run.read_status()
    assert status["state"] == "failed" and status["error_kind"] == "disk_full"
    assert "cannot write checkpoint-4" in status["error"]
    assert [c.name for c in run.checkpoints()] == ["checkpoint-2"]
    assert no_partial(run) and not (run.path / RESERVE_FILE).exists()
    failed = [m for m in run.read_metrics() if m.get("event") == "failed"]
    assert failed and "disk full" in failed[-1]["error"]

    # Resuming on a disk still full: the message, no traceback, nothing lost.
    filler = fill(disk)
    proc = run_cli("train", "--resume", run.path, timeout=300)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith("tui-ft: error: disk full: cannot "), proc.stderr
    assert str(run.path) in proc.stderr
    assert [c.name for c in run.checkpoints()] == ["checkpoint-2"]
    assert run.read_status()["state"] == "failed"

    # Space again: the resume goes on from checkpoint-2 to the end.
    filler.unlink()
    resize(400)
    proc = run_cli("train", "--resume", run.path, timeout=300)
    assert proc.returncode == 0, proc.stderr
    status = run.read_status()
    assert status["state"] == "finished" and status["step"] == 8
    assert status.get("error") is None and status.get("error_kind") is None
    steps = [m["step"] for m in run.read_metrics() if "train_loss" in m and "event" not in m]
    assert steps == sorted(steps) and steps[-1] == 8 and len(steps) == len(set(steps))
    assert "checkpoint-8" in [c.name for c in run.checkpoints()]

    # Generating the test answers on a full disk: the message; then with space, whole.
    filler = fill(disk)
    proc = run_cli("responses", run.path, "--max-new-tokens", "4", timeout=300)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("tui-ft: error: disk full: cannot write the answers")
    assert not run.responses_path.exists()
    filler.unlink()
    proc = run_cli("responses", run.path, "--max-new-tokens", "4", timeout=300)
    assert proc.returncode == 0, proc.stderr
    lines = run.responses_path.read_text().splitlines()
    assert lines and all(json.loads(line)["checkpoint"] for line in lines)


def test_a_full_disk_between_checkpoints_still_records_why(tmp_path, small_disk):
    """The disk fills during training (another process): the next metrics or status
    write fails. The status still says failed and why (the space set aside at start
    is given up for it), never a failed run with `error: null`."""
    disk, _ = small_disk
    config = small_config(tmp_path, max_steps=40, save_steps=1000, eval_steps=1000,
                          output_dir=str(disk / "run"))
    run, _ = prepare_run(config)
    filled = []

    def on_event(event: dict) -> None:
        if event.get("step") == 3 and not filled:
            filled.append(fill(disk))

    with pytest.raises(DiskFull) as caught:
        run_in_process(run, on_event=on_event)
    assert filled
    message = str(caught.value)
    assert message.startswith("disk full: cannot ") and str(run.path) in message
    assert f"tui-ft train --resume {run.path}" in message
    status = json.loads(run.status_path.read_text())
    assert status["state"] == "failed" and status["error_kind"] == "disk_full"
    assert status["error"] == message
    assert status["step"] < 40


def test_grading_on_a_full_disk_keeps_every_earlier_mark_and_export(tmp_path, small_disk,
                                                                    run_cli):
    from tui_ft.grade.store import GradeError, GradeStore

    disk, _ = small_disk
    run = Run(disk / "run")
    run.path.mkdir()
    run.write_status(state="finished", step=1)
    responses = [{"id": f"q{i}", "instruction": "i", "input": "", "expected": "x",
                  "response": "x", "checkpoint": "checkpoint-1", "run": "run"}
                 for i in range(200)]
    run.responses_path.write_text("".join(json.dumps(r) + "\n" for r in responses))
    store = GradeStore(run)
    store.mark("q0", "checkpoint-1", "correct")
    out = disk / "graded.jsonl"
    store.export(responses, out)
    before = out.read_bytes()

    filler = fill(disk)
    # The journal's last page still has room for a few marks; then the disk says no.
    saved = ["q0"]
    with pytest.raises(GradeError, match="^disk full: cannot save the mark .*"
                                         "the marks before it are on disk"):
        for r in responses[1:]:
            store.mark(r["id"], "checkpoint-1", "wrong")
            saved.append(r["id"])
    failed = responses[len(saved)]["id"]
    with pytest.raises(GradeError, match="^disk full: cannot write the export .*"
                                         "the previous file is untouched"):
        store.export(responses, out)
    proc = run_cli("grades", "export", run.path, out)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("tui-ft: error: disk full: cannot write the export")
    assert out.read_bytes() == before
    assert not [p for p in disk.iterdir() if p.name.startswith(".graded")]

    filler.unlink()
    fresh = GradeStore(run)
    assert [fresh.get(i, "checkpoint-1").grade for i in saved] == \
        ["correct"] + ["wrong"] * (len(saved) - 1)
    # A line the disk took only part of never reads as a mark, nor breaks the next.
    assert fresh.get(failed, "checkpoint-1").grade is None
    fresh.mark(failed, "checkpoint-1", "correct")
    assert GradeStore(run).get(failed, "checkpoint-1").grade == "correct"
    assert GradeStore(run).counts(responses)["wrong"] == len(saved) - 1
