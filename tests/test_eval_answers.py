"""Metrics of generated answers during training (issue 17): eval_exact_match and a
user's compute_metrics file, logged at each evaluation and usable as the best-model
metric."""

from __future__ import annotations

import pytest

from tui_ft.config import TrainConfig, check
from tui_ft.errors import TuiFtError
from tui_ft.grade.responses import generate_responses
from tui_ft.runs.jobs import prepare_run
from tui_ft.runs.worker import run_in_process
from tui_ft.text import exact_match

from helpers import word_task_config

HOOK = '''
def compute_metrics(prompt, expected, answer):
    assert prompt.startswith("<|user|>")  # the run's style (phi3)
    out = {"answer_chars": float(len(answer))}
    if len(expected) > 3:
        out["long_right"] = answer.strip() == expected.strip()
    return out
'''


def problems_of(values: dict) -> dict:
    return {p.key: p.reason for p in check(values)[1]}


def test_the_config_says_what_each_metric_needs(tmp_path):
    assert "eval_exact_match: true" in problems_of(
        {"metric_for_best_model": "eval_exact_match", "greater_is_better": True}
    )["metric_for_best_model"]
    assert problems_of({"metric_for_best_model": "eval_exact_match",
                        "greater_is_better": True, "eval_exact_match": True}) == {}
    assert "no such file" in problems_of({"compute_metrics": str(tmp_path / "nope.py")}
                                         )["compute_metrics"]
    hook = tmp_path / "m.py"
    hook.write_text(HOOK)
    # A name of the user's is accepted once a compute_metrics file can give it.
    assert "metric_for_best_model" in problems_of({"metric_for_best_model": "eval_chars"})
    assert problems_of({"metric_for_best_model": "eval_chars", "greater_is_better": True,
                        "compute_metrics": str(hook)}) == {}
    assert "fsdp does not do yet" in problems_of(
        {"eval_exact_match": True, "distributed": "fsdp", "nproc_per_node": 2}
    )["distributed"]
    assert problems_of({"compute_metrics": "@sample/metrics.py"}) == {}


@pytest.mark.slow
def test_answers_are_generated_measured_and_pick_the_best_checkpoint(tmp_path):
    hook = tmp_path / "hook.py"
    hook.write_text(HOOK)
    config = word_task_config(tmp_path, "gen", n_train=8, max_steps=8, learning_rate=1e-2,
                              eval_strategy="steps", eval_steps=4, save_strategy="steps",
                              save_steps=4, max_new_tokens=6, eval_exact_match=True,
                              compute_metrics=str(hook), load_best_model_at_end=True,
                              metric_for_best_model="eval_answer_chars",
                              greater_is_better=True)
    run, _ = prepare_run(TrainConfig.from_dict(config))
    assert run_in_process(run) == "finished"
    evals = {m["step"]: m for m in run.read_metrics() if "val_loss" in m
             and "event" not in m}
    assert sorted(evals) == [4, 8]
    for m in evals.values():
        assert {"val_exact_match", "val_answer_chars", "val_accuracy"} <= set(m)
    # The figures at step 8 are those of the answers checkpoint-8 gives to the
    # validation split, generated again by `tui-ft responses`' own path.
    summary = generate_responses(run, checkpoint="checkpoint-8", split="val",
                                 max_new_tokens=6, temperature=0.0, device="cpu")
    answers = [r for r in _read(run.responses_path)]
    assert summary["count"] == len(answers) == 4
    assert evals[8]["val_exact_match"] == pytest.approx(
        sum(exact_match(a["response"], a["expected"]) for a in answers) / 4)
    assert evals[8]["val_answer_chars"] == pytest.approx(
        sum(len(a["response"]) for a in answers) / 4)
    long = [a for a in answers if len(a["expected"]) > 3]
    if long:
        assert evals[8]["val_long_right"] == pytest.approx(
            sum(a["response"].strip() == a["expected"].strip() for a in long) / len(long))
    # The best checkpoint is the one with the most characters answered.
    best = max(evals.values(), key=lambda m: m["val_answer_chars"])
    status = run.read_status()
    assert status["best_checkpoint"] == f"checkpoint-{best['step']}"
    assert status["best_checkpoint_metric"] == best["val_answer_chars"]


def _read(path):
    import json

    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.parametrize("body,said", [
    ("def compute_metrics(p, e, a):\n    raise ValueError('boom')\n",
     "compute_metrics failed on validation record 'v-0': ValueError: boom"),
    ("def compute_metrics(p, e, a):\n    return [1]\n", "it must return a dict of numbers"),
    ("def compute_metrics(p, e, a):\n    return {'x': float('nan')}\n", "a finite number"),
    ("x = (\n", "failed to load: SyntaxError"),
    ("def other(p, e, a):\n    return {}\n", "defines no function compute_metrics"),
])
def test_a_broken_hook_fails_the_run_with_its_reason(tmp_path, body, said):
    hook = tmp_path / "hook.py"
    hook.write_text(body)
    config = word_task_config(tmp_path, "bad", n_train=4, max_steps=2, eval_strategy="steps",
                              eval_steps=2, max_new_tokens=2, compute_metrics=str(hook))
    run, _ = prepare_run(TrainConfig.from_dict(config))
    with pytest.raises(TuiFtError) as caught:
        run_in_process(run)
    assert said in str(caught.value)
    status = run.read_status()
    assert status["state"] == "failed" and said in status["error"]
