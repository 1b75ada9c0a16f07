"""A checkpoint whose responses were graded is never rotated away: save_total_limit
removes the next oldest instead, and the run log says once that it was kept."""

from __future__ import annotations

import pytest
import torch

from tui_ft.runs.progress import describe_event
from tui_ft.config import TrainConfig
from tui_ft.grade.store import GradeStore
from tui_ft.model.weights import load_model
from tui_ft.runfolder import Run
from tui_ft.runs.jobs import prepare_run
from tui_ft.runs.worker import run_in_process

from helpers import word_task_config

pytestmark = pytest.mark.slow


def test_graded_checkpoints_survive_save_total_limit(tmp_path):
    config = word_task_config(tmp_path, "pinned", max_steps=10, save_strategy="steps",
                              save_steps=2, save_total_limit=2)
    run, _ = prepare_run(TrainConfig.from_dict(config))
    assert run_in_process(run, stop_at_step=4) == "stopped"
    assert [c.name for c in run.checkpoints()] == ["checkpoint-2", "checkpoint-4"]

    # Answers of checkpoint-2 graded (one mark, one note); one of checkpoint-4's was
    # marked and then cleared, which leaves nothing to keep.
    store = GradeStore(run)
    store.mark("t-0", "checkpoint-2", "correct")
    store.set_note("t-1", "checkpoint-2", "close, but not the word")
    store.mark("t-0", "checkpoint-4", "wrong")
    store.mark("t-0", "checkpoint-4", None)
    assert store.graded_checkpoints() == {"checkpoint-2": 2}

    assert run_in_process(run, resume=run.checkpoint("last").path) == "finished"
    names = [c.name for c in run.checkpoints()]
    assert names == ["checkpoint-2", "checkpoint-10"]  # the limit holds around it
    metrics = run.read_metrics()
    removed = [n for m in metrics if m.get("event") == "checkpoint" for n in m["removed"]]
    assert removed == ["checkpoint-4", "checkpoint-6", "checkpoint-8"]
    kept = [m for m in metrics if m.get("event") == "checkpoint_kept"]
    assert len(kept) == 1  # said once, not at every save
    assert kept[0]["checkpoint"] == "checkpoint-2" and kept[0]["graded"] == 2
    assert kept[0]["reason"] == "graded" and kept[0]["save_total_limit"] == 2
    assert "checkpoint-2" in describe_event(kept[0])
    assert "graded" in describe_event(kept[0])
    # The kept checkpoint is whole, and its grades are still there.
    model, _ = load_model(str(run.checkpoints_dir / "checkpoint-2"), device="cpu")
    assert all(torch.isfinite(t).all() for t in model.state_dict().values())
    assert GradeStore(Run(run.path)).get("t-0", "checkpoint-2").grade == "correct"
