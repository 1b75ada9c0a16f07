"""tui_ft.runfolder: status.json read with its types checked, so a status edited by
hand never crashes a reader."""

from __future__ import annotations

import json

from tui_ft.runfolder import Run
from tui_ft.runs.jobs import stop_run
from tui_ft.runs.registry import list_runs


def test_a_field_of_the_wrong_type_reads_as_absent(tmp_path):
    run = Run.create(tmp_path, "edited")
    run.status_path.write_text(json.dumps({
        "state": "running", "pid": "12345", "step": "7", "total_steps": 10,
        "epoch": True, "best_checkpoint": ["a"], "best_checkpoint_metric": "0.5",
        "error": None, "something_else": [1, 2]}))
    status = run.read_status()
    assert status == {"state": "running", "total_steps": 10, "error": None,
                      "something_else": [1, 2]}
    # No pid a reader can use: the worker is not alive, so the run reads as died, and
    # a stop has nothing to signal (both once crashed on the string pid).
    assert run.state() == "died"
    assert stop_run(run, wait=0) is True
    assert [r.name for r in list_runs(tmp_path)] == [run.name]


def test_the_next_write_keeps_the_good_fields_and_drops_the_bad(tmp_path):
    run = Run.create(tmp_path, "rewrite")
    run.status_path.write_text(json.dumps({"state": "stopped", "step": "x", "pid": 5}))
    written = run.write_status(error="gone")
    assert written["state"] == "stopped" and written["pid"] == 5
    assert "step" not in written and written["error"] == "gone"
    assert json.loads(run.status_path.read_text())["error"] == "gone"


def test_a_metrics_line_of_the_wrong_types_is_skipped_and_the_progress_goes_on(tmp_path):
    from tui_ft.runs.progress import ProgressState

    run = Run.create(tmp_path, "metrics")
    lines = [{"event": "start", "step": 0, "total_steps": 10, "time": 100.0},
             {"step": "three", "train_loss": 2.0, "time": 101.0},  # hand-made
             {"step": 4, "train_loss": "low", "time": 102.0},
             {"step": 5, "epoch": 0.5, "train_loss": 1.5, "time": 105.0}]
    run.metrics_path.write_text("".join(json.dumps(m) + "\n" for m in lines))
    tail = run.metrics_tail()
    records = tail.read()
    assert [m["step"] for m in records] == [0, 5]
    assert tail.skipped == 2
    assert [m["step"] for m in run.read_metrics()] == [0, 5]
    progress = ProgressState()
    for m in records:
        progress.feed(m)
    assert (progress.step, progress.train_loss) == (5, 1.5)
    assert progress.eta(now=105.0) == 5.0
