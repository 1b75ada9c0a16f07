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
        "epoch": True, "best_checkpoint": 3, "best_checkpoint_metric": "0.5",
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
