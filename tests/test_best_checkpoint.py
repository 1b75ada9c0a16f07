"""The best checkpoint is named with its own validation loss. With save_steps not a
multiple of eval_steps the best evaluation may have no checkpoint: the best checkpoint
is then the best among the evaluations that have one, and the best evaluation is
reported on its own (best_eval_step, best_eval_metric). Real runs on the tiny model."""

from __future__ import annotations

import json

import pytest

from tui_ft.runs.summary import run_summary
from tui_ft.config import TrainConfig
from tui_ft.model.weights import load_model
from tui_ft.runs.run_source import run_checkpoint
from tui_ft.train.checkpoints import read_trainer_state
from tui_ft.runfolder import Run
from tui_ft.runs.jobs import prepare_run
from tui_ft.runs.worker import run_in_process

from helpers import word_task_config

pytestmark = pytest.mark.slow


def overfitting_run(tmp_path, name: str, **overrides) -> Run:
    """A constant high learning rate on arbitrary word pairs: validation loss falls
    while the format is learned, then rises as the pairs are memorised, so the best
    evaluation comes before the end."""
    config = word_task_config(tmp_path, name, n_train=16, learning_rate=1e-2,
                              lr_scheduler_type="constant", max_steps=12,
                              eval_strategy="steps", save_strategy="steps", **overrides)
    run, _ = prepare_run(TrainConfig.from_dict(config))
    assert run_in_process(run) == "finished"
    return run


def evaluations(run: Run) -> dict[int, float]:
    return {m["step"]: m["val_loss"] for m in run.read_metrics()
            if "val_loss" in m and "event" not in m}


def expected_best(run: Run, saved_steps: set[int]) -> tuple[int, int]:
    """(best checkpoint's step, best evaluation's step), worked out from the metrics."""
    vals = evaluations(run)
    with_checkpoint = {s: v for s, v in vals.items() if s in saved_steps}
    return min(with_checkpoint, key=with_checkpoint.get), min(vals, key=vals.get)


def test_save_steps_not_a_multiple_of_eval_steps_names_the_checkpoint_with_its_own_loss(
        tmp_path):
    # Evaluations at 2, 4, ..., 12; checkpoints at 3 (no evaluation), 6, 9 (none), 12.
    run = overfitting_run(tmp_path, "mixed", eval_steps=2, save_steps=3,
                          load_best_model_at_end=False)
    vals = evaluations(run)
    saved = {c.step for c in run.checkpoints()}
    assert saved == {3, 6, 9, 12}
    best_step, best_eval_step = expected_best(run, saved)
    # What this test is about: the best evaluation has no checkpoint of its own.
    assert best_eval_step not in saved, vals

    status = run.read_status()
    assert status["best_checkpoint"] == f"checkpoint-{best_step}"
    assert status["best_checkpoint_step"] == best_step
    assert status["best_checkpoint_metric"] == pytest.approx(vals[best_step])
    assert status["best_metric"] == status["best_checkpoint_metric"]  # HF's pairing
    assert status["best_eval_step"] == best_eval_step
    assert status["best_eval_metric"] == pytest.approx(vals[best_eval_step])

    # Every checkpoint event named a best checkpoint that had an evaluation, and the
    # checkpoint's own trainer state agrees (what a resume continues from).
    for m in run.read_metrics():
        if m.get("event") == "checkpoint" and m["best_checkpoint"]:
            assert int(m["best_checkpoint"].split("-")[1]) in vals
    state = read_trainer_state(run.checkpoints_dir / "checkpoint-12")
    assert state["best_checkpoint"] == f"checkpoint-{best_step}"
    assert state["best_metric"] == pytest.approx(vals[best_step])

    # The one rule every reader uses: the run's best, loading the run, `tui-ft runs`.
    best = run.best_checkpoint()
    assert best.evaluated and best.checkpoint.step == best_step
    assert best.metric == pytest.approx(vals[best_step])
    assert run.checkpoint("best").step == best_step
    _, info = load_model(str(run.path), device="cpu", runs=run_checkpoint)
    assert info.checkpoint == f"checkpoint-{best_step}"
    row = run_summary(run)
    assert row["best_checkpoint"] == f"checkpoint-{best_step}"
    assert row["best_checkpoint_val_loss"] == pytest.approx(vals[best_step])
    assert row["best_val_loss"] == pytest.approx(vals[best_eval_step])
    assert row["best_eval_step"] == best_eval_step


def test_best_model_loaded_names_the_best_checkpoint_with_its_own_loss(tmp_path):
    # load_best_model_at_end needs save_steps a multiple of eval_steps: evaluations at
    # 2, 4, ..., 12 and checkpoints at 4, 8, 12, so steps 2, 6 and 10 have none.
    run = overfitting_run(tmp_path, "loadbest", eval_steps=2, save_steps=4,
                          load_best_model_at_end=True)
    vals = evaluations(run)
    saved = {c.step for c in run.checkpoints()}
    best_step, best_eval_step = expected_best(run, saved)
    assert best_eval_step not in saved, vals
    loaded = [m for m in run.read_metrics() if m.get("event") == "best_model_loaded"]
    assert len(loaded) == 1
    assert loaded[0]["checkpoint"] == f"checkpoint-{best_step}"
    assert loaded[0]["checkpoint_step"] == best_step
    assert loaded[0]["metric"] == pytest.approx(vals[best_step])
    status = run.read_status()
    assert status["final_checkpoint"] == status["best_checkpoint"] == f"checkpoint-{best_step}"
    assert status["best_checkpoint_metric"] == pytest.approx(vals[best_step])
    assert status["best_eval_step"] == best_eval_step


def test_a_run_from_before_the_fix_reads_and_resumes_with_the_right_pairing(tmp_path):
    """status.json and trainer_state.json written by the old rule, where best_metric
    was the best evaluation's (best_step's), not the best checkpoint's. Readers take
    the checkpoint's own loss from metrics.jsonl; a resume from such a checkpoint
    sorts its best_* out from its history of evaluations."""
    run = overfitting_run(tmp_path, "old", eval_steps=2, save_steps=4,
                          load_best_model_at_end=False)
    vals = evaluations(run)
    best = run.best_checkpoint()
    best_eval_step = min(vals, key=vals.get)
    assert best_eval_step != best.checkpoint.step, vals
    old = {k: v for k, v in run.read_status().items() if not k.startswith("best_")}
    run.status_path.write_text(json.dumps({**old, "best_checkpoint": best.checkpoint.name,
                                           "best_metric": vals[best_eval_step]}))
    again = run.best_checkpoint()
    assert again.checkpoint == best.checkpoint and again.evaluated
    assert again.metric == pytest.approx(vals[best.checkpoint.step])
    # The Grading screen's checkpoint picker says the same (it read best_metric before).
    from tui_ft.ui.widgets.grade_pickers import checkpoint_choices

    name, label = checkpoint_choices(run)[0]
    assert name == best.checkpoint.name
    assert f"(eval {vals[best.checkpoint.step]:.4f})" in label.plain

    # checkpoint-12 as the old trainer wrote it: the best evaluation (step 10) as
    # best_metric/best_step beside its best checkpoint.
    folder = run.checkpoints_dir / "checkpoint-12"
    state = read_trainer_state(folder)
    for key in ("best_checkpoint_step", "best_eval_metric", "best_eval_step"):
        del state[key]
    state.update(best_metric=vals[best_eval_step], best_step=best_eval_step)
    (folder / "trainer_state.json").write_text(json.dumps(state))
    # Resumed at its last step: nothing to train, the status is written from it.
    assert run_in_process(run, resume=folder) == "finished"
    status = run.read_status()
    assert status["best_checkpoint"] == best.checkpoint.name
    assert status["best_checkpoint_metric"] == pytest.approx(vals[best.checkpoint.step])
    assert status["best_eval_step"] == best_eval_step
    assert status["best_eval_metric"] == pytest.approx(vals[best_eval_step])
