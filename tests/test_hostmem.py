"""The CPU trainer keeps freed host memory for reuse (tui_ft/train/hostmem.py): the
big tensors a training step makes again every step must not fault their pages in
again. Measured in fresh processes (the setting is process-wide and one-way), by
minor page faults."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

PROBE = r"""
import json, resource, sys
import torch
STEPS = 5
from tui_ft.model.loss import lm_loss_sum
from tui_ft.model.weights import load_model
from tui_ft.train.hostmem import keep_freed_memory
applied = keep_freed_memory() if sys.argv[1] == "keep" else None
model, _ = load_model("tiny")
optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
ids = torch.randint(0, 50257, (8, 96), generator=torch.Generator().manual_seed(0))

def step():  # the trainer's step: its logits chunk and log-probs are 2 x 150 MB
    loss = lm_loss_sum(model.hidden_states(ids), model.lm_head.weight, ids.roll(-1, 1))
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)

for _ in range(3):
    step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(STEPS):
    step()
print(json.dumps({"applied": applied, "again": keep_freed_memory() if applied else None,
                  "faults": resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before}))
"""


def probe(mode: str) -> dict:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True,
                         timeout=300, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_a_training_step_reuses_its_big_tensors_without_page_faults():
    default, kept = probe("default"), probe("keep")
    assert kept["applied"] is True and kept["again"] is True
    pages = 5 * 2 * 8 * 96 * 50257 * 4 // 4096  # the logits and log-probs of 5 steps
    # Default glibc: they come from fresh mmaps, every page faulted in again each step.
    assert default["faults"] > 0.8 * pages, default
    # Kept: the freed chunks are reused; their pages are already there. (Not every
    # step: now and then a small allocation splits a freed chunk, and one tensor of
    # that step comes from fresh memory; measured 0 to 10% over 5 steps.)
    assert kept["faults"] < 0.25 * pages, kept


def test_the_cpu_trainer_says_it_keeps_host_memory(tmp_path):
    from tui_ft.config import TrainConfig
    from tui_ft.runs.jobs import prepare_run
    from tui_ft.runs.worker import run_in_process

    config = TrainConfig.from_dict({
        "max_steps": 1, "logging_steps": 1, "eval_strategy": "no", "save_strategy": "no",
        "load_best_model_at_end": False, "max_length": 48, "device": "cpu",
        "output_dir": str(tmp_path / "run")})
    run, _ = prepare_run(config)
    assert run_in_process(run) == "finished"
    start = next(m for m in run.read_metrics() if m.get("event") == "start")
    expected = "kept" if sys.platform.startswith("linux") else "default"
    assert start["host_memory"] == expected


def test_free_pages_go_back_after_each_evaluation_and_checkpoint(tmp_path, monkeypatch):
    """Kept memory fragments (small allocations split freed big chunks): the trainer
    hands free pages back at each evaluation and checkpoint, bounding the growth."""
    import tui_ft.train.loop as loop
    from tui_ft.config import TrainConfig
    from tui_ft.runs.jobs import prepare_run
    from tui_ft.runs.worker import run_in_process

    calls = []
    monkeypatch.setattr(loop, "release_free_memory",
                        lambda: calls.append(len(run.read_metrics())))
    config = TrainConfig.from_dict({
        "max_steps": 4, "logging_steps": 1, "eval_strategy": "steps", "eval_steps": 2,
        "save_strategy": "steps", "save_steps": 4, "max_length": 48, "device": "cpu",
        "output_dir": str(tmp_path / "run")})
    run, _ = prepare_run(config)
    assert run_in_process(run) == "finished"
    # Evaluations at steps 2 and 4, the checkpoint at step 4.
    assert len(calls) == 3


RSS_PROBE = r"""
import json, sys
from tui_ft.config import TrainConfig
from tui_ft.runs.jobs import prepare_run
from tui_ft.runs.worker import run_in_process
config = TrainConfig.from_dict({
    "max_steps": 60, "logging_steps": 1, "eval_strategy": "no", "save_strategy": "no",
    "load_best_model_at_end": False, "bf16": True, "device": "cpu",
    "output_dir": sys.argv[1]})
run, _ = prepare_run(config)
rss = []
def on_event(e):
    if "train_loss" in e:
        rss.append(int(open("/proc/self/statm").read().split()[1]) * 4096 / 2**20)
assert run_in_process(run, on_event=on_event) == "finished"
print(json.dumps(rss))
"""


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc/self/statm")
def test_a_bf16_run_on_the_cpu_does_not_grow(tmp_path):
    """bf16 matmuls on the CPU go through oneDNN, which caches a kernel and its buffers
    for every new shape: with a shape per batch width and per count of learned tokens
    the process grew ~18 MB a step (the tiny model, the sample data), without bound
    while the kept heap fragmented around the cache. The trainer rounds the shapes."""
    out = subprocess.run([sys.executable, "-c", RSS_PROBE, str(tmp_path / "run")],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    rss = json.loads(out.stdout.strip().splitlines()[-1])
    assert len(rss) == 60
    # After the first steps have met the shapes, steps 20 to 60 add (almost) nothing.
    assert rss[-1] - rss[19] < 150, rss
