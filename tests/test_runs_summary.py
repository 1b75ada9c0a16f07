"""`tui-ft runs --json` (issue 17): each run with its model, dataset, state, best
metric, exact match and the share of its answers graded and marked correct; a run
whose config or answers are damaged is still listed."""

from __future__ import annotations

import json

from tui_ft.config import TrainConfig
from tui_ft.grade.store import GradeStore
from tui_ft.runfolder import Run


def answered_run(parent, name: str, *, marks: dict) -> Run:
    run = Run(parent / name)
    run.path.mkdir()
    TrainConfig(model="tiny", metric_for_best_model="eval_accuracy",
                greater_is_better=True).save(run.config_path)
    responses = [{"id": f"q{i}", "instruction": "i", "input": "", "expected": "x",
                  "response": "x" if i % 2 else "y", "checkpoint": "checkpoint-4",
                  "run": name} for i in range(4)]
    run.responses_path.write_text("".join(json.dumps(r) + "\n" for r in responses))
    run.write_status(state="finished", step=4, total_steps=4, best_checkpoint="checkpoint-4",
                     best_checkpoint_metric=0.75, metric_for_best_model="eval_accuracy",
                     responses={"exact_match": 0.5, "count": 4})
    store = GradeStore(run)
    for rid, mark in marks.items():
        store.mark(rid, "checkpoint-4", mark)
    return run


def test_runs_json_lists_quality_figures(isolated_dirs, run_cli):
    runs = isolated_dirs["runs"]
    answered_run(runs, "graded", marks={"q0": "wrong", "q1": "correct", "q3": "correct"})
    damaged = Run(runs / "damaged")
    damaged.path.mkdir()
    damaged.config_path.write_text("model: [unclosed\n")
    damaged.write_status(state="failed", step=1)
    proc = run_cli("runs", "--json")
    assert proc.returncode == 0, proc.stderr
    rows = {r["run"]: r for r in json.loads(proc.stdout)}
    row = rows["graded"]
    assert (row["model"], row["dataset"]) == ("tiny", "@sample/instructions.jsonl")
    assert row["state"] == "finished" and row["metric_for_best_model"] == "eval_accuracy"
    assert row["best_metric"] == 0.75 and row["exact_match"] == 0.5
    assert (row["answers"], row["graded"], row["correct"]) == (4, 3, 2)
    assert row["graded_share"] == 0.75 and row["correct_share"] == 2 / 3
    assert row["world_size"] == 1
    broken = rows["damaged"]
    assert broken["state"] == "failed" and broken["model"] is None
    assert broken["answers"] == 0 and broken["graded_share"] is None
