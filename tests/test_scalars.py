"""logging_dir receives the logged scalars as JSONL (TensorBoard files when installed)."""

from __future__ import annotations

import json

import pytest

from tui_ft.runs.progress import describe_event
from tui_ft.config import TrainConfig
from tui_ft.runs.jobs import prepare_run
from tui_ft.runs.worker import run_in_process


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
    assert describe_event(events[0]) == ("torch.compile failed, training without it: "
                                         "RuntimeError: no C++ compiler found")
    assert [m["step"] for m in run.read_metrics() if "train_loss" in m] == [1, 2]


def _recording_compile(monkeypatch) -> list:
    """torch.compile replaced by one that records its mode and compiles nothing (so
    the run trains eagerly, for real, in seconds)."""
    import torch

    modes = []

    def compile_(fn, *args, mode=None, **kwargs):
        modes.append(mode)
        return fn

    monkeypatch.setattr(torch, "compile", compile_)
    return modes


@pytest.mark.parametrize("accumulation,expected", [(1, "reduce-overhead"), (2, None)])
def test_cuda_graphs_are_not_used_with_gradient_accumulation(tmp_path, monkeypatch,
                                                             accumulation, expected):
    """CUDA graph trees corrupt gradients accumulated over micro-batches (a known torch
    bug): with accumulation the run compiles without CUDA graphs and says so."""
    modes = _recording_compile(monkeypatch)
    config = TrainConfig.from_dict({
        "max_steps": 1, "logging_steps": 1, "eval_strategy": "no", "save_strategy": "no",
        "load_best_model_at_end": False,
        "max_length": 48, "per_device_train_batch_size": 2,
        "gradient_accumulation_steps": accumulation, "split_ratios": [0.9, 0.02, 0.08],
        "output_dir": str(tmp_path / "run"), "torch_compile": True,
        "torch_compile_mode": "reduce-overhead"})
    run, _ = prepare_run(config)
    assert run_in_process(run) == "finished"
    assert modes == [expected]
    changed = [m for m in run.read_metrics() if m.get("event") == "compile_mode_changed"]
    if accumulation == 1:
        assert changed == []
    else:
        assert len(changed) == 1 and changed[0]["to"] == "default"
        assert "accumulat" in changed[0]["reason"]
        assert describe_event(changed[0]).startswith(
            "torch.compile mode reduce-overhead -> default: CUDA graphs corrupt")


def test_torch_compile_pads_batches_to_a_multiple_of_64(tmp_path, monkeypatch):
    """Compiled code specialises on shapes: with torch_compile and no explicit
    pad_to_multiple_of, every training batch is 64 tokens wide or a multiple."""
    import tui_ft.train.batching as batching

    _recording_compile(monkeypatch)
    widths = []
    real_collate = batching.collate

    def spy(examples, **kw):
        batch = real_collate(examples, **kw)
        widths.append(batch["input_ids"].shape[1])
        return batch

    monkeypatch.setattr(batching, "collate", spy)
    config = TrainConfig.from_dict({
        "max_steps": 3, "logging_steps": 1, "eval_strategy": "no", "save_strategy": "no",
        "load_best_model_at_end": False,
        "max_length": 200, "per_device_train_batch_size": 4,
        "split_ratios": [0.9, 0.02, 0.08], "output_dir": str(tmp_path / "run"),
        "torch_compile": True})
    run, _ = prepare_run(config)
    assert run_in_process(run) == "finished"
    assert len(widths) == 3 and all(w % 64 == 0 for w in widths), widths
