"""eval_accuracy (issue 17): next-token accuracy on the learned tokens of the
validation split, computed in the loss's pass, and usable as metric_for_best_model."""

from __future__ import annotations

import pytest
import torch

from tui_ft.config import TrainConfig, check
from tui_ft.model.loss import IGNORE_INDEX, lm_eval_sums
from tui_ft.runs.jobs import prepare_run
from tui_ft.runs.worker import run_in_process

from helpers import word_task_config


@pytest.mark.parametrize("chunk", [2048, 3])
def test_eval_sums_equal_a_hand_computation(chunk):
    torch.manual_seed(0)
    hidden = torch.randn(2, 5, 8)
    weight = torch.randn(11, 8)
    logits = hidden @ weight.t()
    labels = logits.argmax(-1).clone()  # every position right ...
    labels[0, 1] = (labels[0, 1] + 1) % 11  # ... but two wrong
    labels[1, 3] = (labels[1, 3] + 5) % 11
    labels[0, 0] = labels[1, 4] = IGNORE_INDEX  # and two not learned
    flat, y = logits.reshape(-1, 11), labels.reshape(-1)
    keep = y != IGNORE_INDEX
    loss = -torch.log_softmax(flat[keep], -1).gather(1, y[keep].unsqueeze(1)).sum()
    sums = lm_eval_sums(hidden, weight, labels, chunk=chunk)
    assert sums.dtype == torch.float64
    assert sums[0].item() == pytest.approx(loss.item(), rel=1e-6)
    assert sums[1].item() == 6  # 8 learned positions, 2 of them wrong
    positions = keep.nonzero().squeeze(1)
    again = lm_eval_sums(hidden, weight, labels, chunk=chunk, positions=positions)
    assert torch.allclose(again, sums)


@pytest.mark.parametrize("metric,greater,problem", [
    ("eval_accuracy", False, "an accuracy is better when larger"),
    ("eval_loss", True, "a loss is better when smaller"),
    ("eval_f1", True, "other names come from a compute_metrics file"),
])
def test_the_metric_and_its_direction_are_checked(metric, greater, problem):
    _, problems = check({"metric_for_best_model": metric, "greater_is_better": greater})
    assert any(problem in p.reason for p in problems), problems
    assert check({"metric_for_best_model": "accuracy", "greater_is_better": True})[1] == []


@pytest.mark.slow
def test_the_best_checkpoint_by_accuracy_is_the_one_kept_and_loaded(tmp_path):
    """Code words a model can only memorise: on the validation records it learns the
    prompt template (accuracy climbs, then stays) and then overfits the training
    answers (the validation loss turns up), so the two metrics pick different
    checkpoints. With eval_accuracy (greater is better) the trainer keeps and loads
    the first checkpoint at the top accuracy, not the one of the lowest loss."""
    config = word_task_config(tmp_path, "acc", n_train=8, max_steps=36, learning_rate=1e-2,
                              eval_strategy="steps", eval_steps=4, save_strategy="steps",
                              save_steps=4, load_best_model_at_end=True,
                              metric_for_best_model="eval_accuracy", greater_is_better=True)
    run, _ = prepare_run(TrainConfig.from_dict(config))
    assert run_in_process(run) == "finished"
    evals = [m for m in run.read_metrics() if "val_accuracy" in m and "event" not in m]
    assert len(evals) == 9
    top = max(m["val_accuracy"] for m in evals)
    by_accuracy = next(m["step"] for m in evals if m["val_accuracy"] == top)
    by_loss = min(evals, key=lambda m: m["val_loss"])["step"]
    assert by_accuracy != by_loss, evals  # the planted disagreement
    status = run.read_status()
    assert status["best_checkpoint"] == f"checkpoint-{by_accuracy}"
    assert status["best_checkpoint_metric"] == top
    assert status["final_checkpoint"] == f"checkpoint-{by_accuracy}"
    loaded = next(m for m in run.read_metrics() if m.get("event") == "best_model_loaded")
    assert loaded["checkpoint"] == f"checkpoint-{by_accuracy}"
    assert loaded["metric_name"] == "eval_accuracy"
    assert all(0.0 <= m["val_accuracy"] <= 1.0 for m in evals)
