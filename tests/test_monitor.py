"""The overfitting alert and early stopping: fed loss sequences (noise, a real rise,
training loss that rises too, recovery), and a real tiny run on data it overfits."""

from __future__ import annotations

import json
import math
import random

import pytest

from tui_ft.config import TrainConfig
from tui_ft.train.monitor import (EarlyStopping, OverfitMonitor, load_monitor_state,
                                  monitor_state)
from tui_ft.runfolder import Run
from tui_ft.runs.jobs import prepare_run
from tui_ft.runs.worker import run_in_process

from helpers import code_word_records, one_token_words, write_jsonl


def feed(monitor: OverfitMonitor, evaluations) -> list[dict]:
    """Feed (step, val_loss, train_loss) triples; return the events."""
    events = []
    for step, val, train in evaluations:
        event = monitor.update(step, val, train)
        if event is not None:
            events.append(event)
    return events


def falling(start: float, n: int, by: float = 0.1) -> list[float]:
    return [start - by * i for i in range(n)]


# -- the overfitting monitor on loss sequences ---------------------------------------------


def test_bumps_within_min_delta_between_real_improvements_do_not_fire():
    # After each real improvement the validation loss wobbles up by less than
    # min_delta once or twice (noise), then improves again.
    vals = [3.0, 2.9, 2.905, 2.908, 2.8, 2.807, 2.7, 2.701, 2.709, 2.6, 2.603, 2.5]
    evaluations = [(10 * (i + 1), v, 3.0 - 0.05 * i) for i, v in enumerate(vals)]
    monitor = OverfitMonitor(patience=3, min_delta=0.01)
    assert feed(monitor, evaluations) == []
    assert not monitor.alerted and monitor.best_step == 120


def test_a_plateau_with_noise_within_min_delta_does_not_fire():
    # Both losses flat, each wobbling by less than min_delta: a converged run, not an
    # overfitting one. The alert must not cry wolf on it, however long it lasts.
    rng = random.Random(1)
    evaluations = [(10 * (i + 1), 2.0 + rng.uniform(-0.004, 0.004),
                    1.5 + rng.uniform(-0.004, 0.004)) for i in range(200)]
    monitor = OverfitMonitor(patience=3, min_delta=0.01)
    assert feed(monitor, evaluations) == []
    assert monitor.since_best > 3  # it did see no improvement; it just is no alert


def test_a_plateau_while_training_loss_keeps_falling_fires():
    # Validation flat (within noise) while training loss falls: the model stopped
    # generalising better and only fits the training data: that is the alert.
    evaluations = [(1, 2.5, 2.6), (2, 2.0, 2.2), (3, 2.004, 2.0), (4, 1.997, 1.8),
                   (5, 2.003, 1.6)]
    events = feed(OverfitMonitor(patience=3, min_delta=0.01), evaluations)
    assert [(e["step"], e["began_at_step"], e["best_step"]) for e in events] == [(5, 3, 2)]


def test_a_rise_while_training_loss_falls_fires_once_with_where_it_began():
    val = [3.0, 2.5, 2.2, 2.3, 2.4, 2.5, 2.6, 2.7]
    train = falling(3.0, len(val), by=0.25)
    evaluations = [(50 * (i + 1), v, t) for i, (v, t) in enumerate(zip(val, train))]
    monitor = OverfitMonitor(patience=3, min_delta=0.01)
    events = feed(monitor, evaluations)
    assert len(events) == 1
    event = events[0]
    assert event["event"] == "overfitting"
    assert event["step"] == 300  # the third evaluation without improvement
    assert event["began_at_step"] == 200  # the first one
    assert event["best_step"] == 150
    assert event["best_val_loss"] == pytest.approx(2.2)
    assert event["last_val_loss"] == pytest.approx(2.5)
    assert event["last_train_loss"] == pytest.approx(train[5])
    assert event["evaluations_without_improvement"] == 3


def test_a_small_improvement_below_min_delta_does_not_reset_the_count():
    # 2.195 is better than 2.2 by less than min_delta: still no real improvement.
    evaluations = [(1, 3.0, 3.0), (2, 2.2, 2.5), (3, 2.195, 2.3), (4, 2.21, 2.1),
                   (5, 2.25, 1.9)]
    events = feed(OverfitMonitor(patience=3, min_delta=0.01), evaluations)
    assert [(e["step"], e["began_at_step"], e["best_step"]) for e in events] == [(5, 3, 2)]


def test_no_alert_when_training_loss_rises_too():
    val = [3.0, 2.5, 2.2, 2.3, 2.4, 2.5, 2.6]
    train = [3.0, 2.6, 2.3, 2.35, 2.4, 2.5, 2.6]  # diverging, not overfitting
    evaluations = [(10 * (i + 1), v, t) for i, (v, t) in enumerate(zip(val, train))]
    assert feed(OverfitMonitor(patience=3, min_delta=0.01), evaluations) == []
    # Without a training loss there is no evidence of overfitting either.
    no_train = [(s, v, None) for s, v, _ in evaluations]
    assert feed(OverfitMonitor(patience=3, min_delta=0.01), no_train) == []


def test_the_alert_clears_after_an_improvement_and_can_fire_again():
    monitor = OverfitMonitor(patience=2, min_delta=0.01)
    first = feed(monitor, [(1, 3.0, 3.0), (2, 2.0, 2.5), (3, 2.1, 2.0), (4, 2.2, 1.8)])
    assert [e["event"] for e in first] == ["overfitting"]
    assert monitor.alerted
    assert feed(monitor, [(5, 2.3, 1.7)]) == []  # once per episode
    cleared = feed(monitor, [(6, 1.9, 1.6)])
    assert cleared == [{"event": "overfitting_cleared", "step": 6, "best_val_loss": 1.9}]
    assert not monitor.alerted
    again = feed(monitor, [(7, 1.95, 1.5), (8, 2.0, 1.4)])
    assert [(e["event"], e["began_at_step"], e["best_step"]) for e in again] == \
        [("overfitting", 7, 6)]


def test_monitor_state_survives_a_json_round_trip_and_resumes_the_same():
    val = [3.0, 2.5, 2.2, 2.3, 2.4, 2.5, 2.6, 2.0, 2.1, 2.2, 2.3]
    train = falling(3.0, len(val), by=0.2)
    evaluations = [(10 * (i + 1), v, t) for i, (v, t) in enumerate(zip(val, train))]
    whole = feed(OverfitMonitor(patience=3, min_delta=0.01), evaluations)
    for cut in range(1, len(evaluations)):
        first = OverfitMonitor(patience=3, min_delta=0.01)
        head = feed(first, evaluations[:cut])
        second = OverfitMonitor(patience=3, min_delta=0.01)
        load_monitor_state(second, json.loads(json.dumps(monitor_state(first))))
        assert head + feed(second, evaluations[cut:]) == whole, cut
    assert [e["event"] for e in whole] == ["overfitting", "overfitting_cleared", "overfitting"]


# -- early stopping ------------------------------------------------------------------------


def test_early_stopping_counts_evaluations_without_improvement():
    stopper = EarlyStopping(patience=2, threshold=0.01)
    assert [stopper.update(v) for v in (3.0, 2.5, 2.495, 2.4, 2.45, 2.41)] == \
        [False, False, False, False, False, True]
    # 2.495 was not better by more than the threshold; 2.4 was and reset the count.
    assert stopper.best == 2.4


def test_early_stopping_for_a_metric_where_greater_is_better():
    stopper = EarlyStopping(patience=1, greater_is_better=True)
    assert [stopper.update(v) for v in (0.1, 0.2, 0.3, 0.3)] == [False, False, False, True]


def test_early_stopping_state_round_trip():
    stopper = EarlyStopping(patience=3)
    for v in (2.0, 1.5, 1.6):
        stopper.update(v)
    other = EarlyStopping(patience=3)
    other.load_state_dict(json.loads(json.dumps(stopper.state_dict())))
    assert [other.update(v) for v in (1.7, 1.8)] == [False, True]


# -- a real run that overfits --------------------------------------------------------------


@pytest.fixture(scope="module")
def overfit_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("overfit")
    words = one_token_words()
    assert len(words) >= 24
    config = TrainConfig.from_dict({
        "output_dir": str(tmp / "run"),
        "dataset": write_jsonl(tmp / "train.jsonl", code_word_records(words[:16], 1, "t")),
        "val_dataset": write_jsonl(tmp / "val.jsonl", code_word_records(words[16:24], 2, "v")),
        "prompt_style": "phi3", "max_length": 24, "device": "cpu",
        "per_device_train_batch_size": 8, "learning_rate": 1e-2,
        "lr_scheduler_type": "constant", "max_steps": 200,
        "eval_strategy": "steps", "eval_steps": 2, "save_steps": 2, "logging_steps": 2,
        "overfit_patience": 3, "overfit_min_delta": 0.01, "early_stopping_patience": 5,
        "save_total_limit": 2, "load_best_model_at_end": True})
    run, _ = prepare_run(config)
    state = run_in_process(run)
    return run, state


def test_a_real_overfitting_run_raises_the_alert(overfit_run):
    run, state = overfit_run
    assert state == "finished"
    metrics = run.read_metrics()
    alerts = [m for m in metrics if m.get("event") == "overfitting"]
    assert len(alerts) >= 1
    alert = alerts[0]
    evals = [m for m in metrics if "val_loss" in m]
    by_step = {m["step"]: m["val_loss"] for m in evals}
    # The alert names the best evaluation before it, and where the decline began.
    earlier = {s: v for s, v in by_step.items() if s <= alert["step"]}
    assert alert["best_step"] == min(earlier, key=earlier.get)
    assert alert["best_val_loss"] == pytest.approx(earlier[alert["best_step"]])
    assert alert["best_step"] < alert["began_at_step"] <= alert["step"]
    assert alert["began_at_step"] in by_step
    assert alert["last_val_loss"] > alert["best_val_loss"]
    # ... and the checkpoint that holds the best model, which still exists at the end.
    assert alert["best_checkpoint"] == f"checkpoint-{alert['best_step']}"
    assert alert["best_checkpoint"] in [c.name for c in run.checkpoints()]
    assert run.read_status()["overfitting"]["best_checkpoint"] == alert["best_checkpoint"]
    # Training loss really kept falling while validation loss did not improve.
    train = {m["step"]: m["train_loss"] for m in metrics if "train_loss" in m}
    assert train[alert["step"]] < train[alert["best_step"]]
    # An event repeats neither loss: one train_loss and one val_loss per step at most.
    for key in ("train_loss", "val_loss"):
        steps = [m["step"] for m in metrics if key in m]
        assert len(steps) == len(set(steps)), key


def test_early_stopping_ends_the_real_run_before_max_steps(overfit_run):
    run, state = overfit_run
    metrics = run.read_metrics()
    status = run.read_status()
    stops = [m for m in metrics if m.get("event") == "early_stopping"]
    assert len(stops) == 1
    assert status["state"] == "finished"
    assert status["step"] == stops[0]["step"] < status["total_steps"] == 200
    evals = [m["val_loss"] for m in metrics if "val_loss" in m]
    # Only evaluation lines carry val_loss (readers chart every one they see).
    assert all("event" not in m for m in metrics if "val_loss" in m)
    best = min(evals)
    # The last `patience` evaluations did not beat the best one before them.
    assert all(v >= best for v in evals[-5:])
    assert evals.index(best) == len(evals) - 6
    # The best model is what the run hands on; rotation kept it.
    assert status["final_checkpoint"] == status["best_checkpoint"]
    assert status["best_metric"] == pytest.approx(best)
    assert status["best_checkpoint"] in [c.name for c in run.checkpoints()]
    assert math.isfinite(status["train_loss"])
    assert Run(run.path).state() == "finished"
