"""logging_dir receives the logged scalars as JSONL (TensorBoard files when installed)."""

from __future__ import annotations

import json

from tui_ft.config import TrainConfig
from tui_ft.train.worker import prepare_run, run_in_process


def test_logging_dir_gets_train_and_eval_scalars(tmp_path):
    logs = tmp_path / "tb"
    config = TrainConfig.from_dict({
        "max_steps": 4, "logging_steps": 2, "eval_steps": 2, "save_steps": 2,
        "max_length": 48, "per_device_train_batch_size": 4, "split_ratios": [0.9, 0.02, 0.08],
        "output_dir": str(tmp_path / "run"), "logging_dir": str(logs)})
    run, _ = prepare_run(config)
    run_in_process(run)
    rows = [json.loads(line) for line in (logs / "scalars.jsonl").read_text().splitlines()]
    train = [(r["step"], r["value"]) for r in rows if r["tag"] == "train/loss"]
    evals = [(r["step"], r["value"]) for r in rows if r["tag"] == "eval/loss"]
    metrics = run.read_metrics()
    assert train == [(m["step"], m["train_loss"]) for m in metrics if "train_loss" in m]
    assert evals == [(m["step"], m["val_loss"]) for m in metrics if "val_loss" in m]
    assert [s for s, _ in train] == [2, 4] and [s for s, _ in evals] == [2, 4]
    assert {r["tag"] for r in rows} >= {"train/learning_rate", "train/tokens_per_second"}


def test_torch_compile_failure_falls_back_to_eager_with_an_event(tmp_path, monkeypatch):
    """Compilation fails lazily on some platforms; the run must go on, eagerly, and
    say why (the failure is injected: compiling for real takes minutes on CPU)."""
    import torch

    def broken_compile(model, *args, **kwargs):
        def forward(*a, **k):
            raise RuntimeError("no C++ compiler found")
        return forward

    monkeypatch.setattr(torch, "compile", broken_compile)
    config = TrainConfig.from_dict({
        "max_steps": 2, "logging_steps": 1, "eval_steps": 2, "save_steps": 2,
        "max_length": 48, "per_device_train_batch_size": 4, "split_ratios": [0.9, 0.02, 0.08],
        "output_dir": str(tmp_path / "run"), "torch_compile": True})
    run, _ = prepare_run(config)
    assert run_in_process(run) == "finished"
    events = [m for m in run.read_metrics() if m.get("event") == "compile_fallback"]
    assert len(events) == 1 and "no C++ compiler found" in events[0]["reason"]
    assert [m["step"] for m in run.read_metrics() if "train_loss" in m] == [1, 2]
