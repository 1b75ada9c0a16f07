"""The 8-bit paths of issue 18 with the real bitsandbytes, on the CPU (it runs its
int8 matrix products there from 0.46 and its 8-bit optimizers from 0.50; the test
extra installs it): an int8 LoRA base that trains, resumes exactly and answers, and
8-bit AdamW for full fine-tuning. Without bitsandbytes, or on a device it cannot
serve, each option says what it needs (those tests need no bitsandbytes at all).
tests/test_gpu.py runs the same paths on CUDA."""

from __future__ import annotations

import importlib.util
import sys

import pytest
import torch

from tui_ft.config import TrainConfig, check
from tui_ft.errors import TrainingError, TuiFtError
from tui_ft.model import bnb as bnb_support
from tui_ft.model.lora import (LoraSettings, add_lora, adapter_tensor_sizes, expand_targets,
                               lora_state_dict)
from tui_ft.model.weights import load_model
from tui_ft.runs.jobs import prepare_run
from tui_ft.runs.worker import run_in_process
from tui_ft.train.checkpoints import OPTIMIZER

from helpers import word_task_config

needs_bnb = pytest.mark.skipif(importlib.util.find_spec("bitsandbytes") is None,
                               reason="needs bitsandbytes (pip install tui-ft[bnb])")
IDS = torch.tensor([[464, 3290, 318, 257, 922, 1110, 13, 50256, 11, 290, 262, 3797]])


def _losses(run, key="train_loss"):
    return [m[key] for m in run.read_metrics() if key in m and "event" not in m]


def test_without_bitsandbytes_each_8bit_option_says_how_to_install(tmp_path, monkeypatch):
    config = word_task_config(tmp_path, "adam8", optim="adamw_bnb_8bit")
    run, _ = prepare_run(TrainConfig.from_dict(config))
    # None in sys.modules is how Python blocks an import: as if it were not installed.
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)
    reasons = {p.key: p.reason for p in check({"optim": "adamw_bnb_8bit"})[1]}
    assert reasons == {"optim": 'needs bitsandbytes: pip install "tui-ft[bnb]"'}
    reasons = {p.key: p.reason for p in check({"lora_r": 4, "load_in_8bit": True})[1]}
    assert reasons == {"load_in_8bit": 'needs bitsandbytes: pip install "tui-ft[bnb]"'}
    # A run that exists still reads (its answers and export need no 8-bit kernels)...
    assert check({"optim": "adamw_bnb_8bit"}, recorded=True)[1] == []
    # ...and training it says what is missing, in the run's status too.
    with pytest.raises(TuiFtError, match=r'adamw_bnb_8bit needs bitsandbytes: pip install'):
        run_in_process(run)
    assert "needs bitsandbytes" in run.read_status()["error"]
    with pytest.raises(TrainingError, match="load_in_8bit needs bitsandbytes"):
        bnb_support.require("int8", "cpu")


@needs_bnb
def test_a_device_bitsandbytes_cannot_serve_is_named_with_what_would():
    # The meta device has no kernels at all: the probe fails there for real.
    for op, what in (("int8", "load_in_8bit"), ("adamw8bit", "optim: adamw_bnb_8bit")):
        with pytest.raises(TrainingError) as caught:
            bnb_support.require(op, "meta")
        text = str(caught.value)
        assert text.startswith(f"{what}: bitsandbytes ") and "cannot run it on meta (" in text
        assert text.endswith("train on a CUDA device")
    # The CPU is served (0.50 and later): both probes pass and are remembered.
    assert bnb_support.require("int8", "cpu") is bnb_support.require("adamw8bit", "cpu")
    assert bnb_support._probed[("int8", "cpu")] is None


@needs_bnb
def test_an_int8_base_holds_int8_weights_and_trains_only_the_adapters():
    from tui_ft.model.quant import bnb_int8_base

    model, _ = load_model("tiny")
    with torch.no_grad():
        before = model(IDS).float()
    fp32_bytes = sum(m.weight.numel() * 4 for m in model.h.modules()
                     if isinstance(m, torch.nn.Linear))
    bnb_int8_base(model)
    add_lora(model, LoraSettings(r=4, alpha=8.0, targets=expand_targets(("all",)), base="tiny"))
    bnb = sys.modules["bitsandbytes"]
    base = [m for m in model.h.modules() if isinstance(m, bnb.nn.Linear8bitLt)]
    assert len(base) == 4 * model.config.n_layer  # c_attn, attn.c_proj, c_fc, mlp.c_proj
    assert all(m.weight.dtype == torch.int8 and not m.weight.requires_grad for m in base)
    assert sum(m.weight.numel() for m in base) * 4 == fp32_bytes  # one byte per weight
    with torch.no_grad():
        after = model(IDS).float()
    # int8 rounding moves the logits a little, not the predictions' substance.
    assert (after - before).abs().max().item() < 0.05 * before.abs().max().item()
    model.train()
    model(IDS).float().logsumexp(-1).sum().backward()
    grads = {n for n, p in model.named_parameters() if p.grad is not None}
    assert grads == {n for n, _ in model.named_parameters() if ".lora_" in n}
    assert any(p.grad.abs().sum() > 0 for n, p in model.named_parameters()
               if ".lora_B." in n)  # B starts at zero, so A's gradient is zero at first


@needs_bnb
@pytest.mark.slow
def test_lora_on_an_int8_base_learns_resumes_exactly_and_answers(tmp_path, run_cli):
    common = {"n_train": 8, "max_steps": 8, "eval_strategy": "steps", "eval_steps": 4,
              "save_strategy": "steps", "save_steps": 4, "learning_rate": 1e-2,
              "lora_r": 4, "lora_target_modules": ["all"], "load_in_8bit": True,
              "max_new_tokens": 4}
    run, _ = prepare_run(TrainConfig.from_dict(word_task_config(tmp_path, "lora8", **common)))
    assert run_in_process(run) == "finished"
    vals = _losses(run, "val_loss")
    assert len(vals) == 2 and vals[-1] < vals[0]
    last = run.checkpoints()[-1].path
    # Only the adapter is saved; the base it names loads in full precision.
    assert not (last / "model.safetensors").exists()
    assert (last / "adapter.safetensors").stat().st_size < 400_000
    trained, _ = load_model(str(last))
    tiny, _ = load_model("tiny")
    assert all(torch.equal(v, tiny.state_dict()[k])
               for k, v in trained.state_dict().items() if ".lora_" not in k)
    assert any(v.abs().sum() > 0 for k, v in lora_state_dict(trained).items() if "lora_B" in k)
    # Resume from checkpoint-4 (the base is quantized again): the same losses.
    losses = _losses(run)
    proc = run_cli("train", "--resume", run.path, "--checkpoint", "4", timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert _losses(run) == pytest.approx(losses, abs=1e-6)
    proc = run_cli("responses", run.path, "--split", "val", "--max-new-tokens", "4",
                   timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert run.responses_path.read_text().count("\n") == 4
    out = tmp_path / "exported"
    proc = run_cli("export", run.path, out, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert (out / "model.safetensors").is_file()


@needs_bnb
@pytest.mark.slow
def test_8bit_adamw_learns_as_adamw_does_keeps_8bit_state_and_resumes_exactly(tmp_path,
                                                                           run_cli):
    common = {"n_train": 8, "max_steps": 8, "eval_strategy": "steps", "eval_steps": 4,
              "save_strategy": "steps", "save_steps": 4, "learning_rate": 2e-3}
    runs = {}
    for optim in ("adamw_bnb_8bit", "adamw_torch"):
        config = word_task_config(tmp_path, optim, optim=optim, **common)
        runs[optim], _ = prepare_run(TrainConfig.from_dict(config))
        assert run_in_process(runs[optim]) == "finished"
    eight, full = runs["adamw_bnb_8bit"], runs["adamw_torch"]
    vals8, vals = _losses(eight, "val_loss"), _losses(full, "val_loss")
    assert vals8[-1] < vals8[0] and abs(vals8[-1] - vals[-1]) < 0.1 * vals[-1]
    # Its moments are saved in 8 bits: the optimizer file is far smaller than AdamW's.
    state = torch.load(eight.checkpoints()[-1].path / OPTIMIZER, weights_only=True)
    # (bitsandbytes keeps them under one key of each parameter's state.)
    moments = [s.get("__bnb_optimizer_quant_state__", s) for s in state["state"].values()]
    # Tensors under 4096 elements (biases, layer norms) keep 32-bit moments, as in
    # bitsandbytes' default; every larger one has 8-bit moments.
    dtypes = {(m[k].numel() >= 4096, m[k].dtype) for m in moments for k in ("state1", "state2")}
    assert dtypes == {(True, torch.uint8), (False, torch.float32)}
    size8 = (eight.checkpoints()[-1].path / OPTIMIZER).stat().st_size
    size32 = (full.checkpoints()[-1].path / OPTIMIZER).stat().st_size
    assert size8 < 0.4 * size32
    losses = _losses(eight)
    proc = run_cli("train", "--resume", eight.path, "--checkpoint", "4", timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert _losses(eight) == pytest.approx(losses, abs=1e-6)


@needs_bnb
@pytest.mark.parametrize("lora", [False, True])
def test_the_memory_estimate_counts_8bit_adamw_state_as_bitsandbytes_holds_it(lora):
    """The estimate's optimizer part for optim: adamw_bnb_8bit against the bytes of
    the real optimizer's state after a step, for full fine-tuning and for LoRA."""
    from tui_ft.model.memory import estimate_memory
    from tui_ft.train.optim import adamw_8bit, param_groups

    model, _ = load_model("tiny")
    trainable = None
    if lora:
        add_lora(model, LoraSettings(r=8, alpha=16.0, targets=expand_targets(("all",)),
                                     base="tiny"))
        trainable = adapter_tensor_sizes(model.config, 8, ["all"])
        assert sum(trainable) == sum(p.numel() for p in model.parameters() if p.requires_grad)
    optimizer = adamw_8bit(param_groups(model, 0.0), TrainConfig(), torch.device("cpu"))
    model(IDS).float().logsumexp(-1).sum().backward()
    optimizer.step()
    held = sum(t.numel() * t.element_size() for s in optimizer.state.values()
               for t in s.get("__bnb_optimizer_quant_state__", s).values()
               if torch.is_tensor(t) and t.dim() > 0 and t.numel() > 256)  # not the qmaps
    estimate = estimate_memory(model.config, precision="fp32", batch_size=1, seq_len=12,
                               optimizer="adamw_8bit", device_type="cpu",
                               trainable=trainable)
    assert abs(estimate.optimizer - held) < 0.1 * held, (estimate.optimizer, held)
    full = estimate_memory(model.config, precision="fp32", batch_size=1, seq_len=12,
                           device_type="cpu", trainable=trainable)
    # A quarter and a bit; the tiny model's adapters are mostly under 4096 elements,
    # and those keep 32-bit moments.
    assert estimate.optimizer < (0.7 if lora else 0.3) * full.optimizer


def test_fsdp_refuses_8bit_adamw_in_the_config():
    reasons = [p.reason for p in check({"optim": "adamw_bnb_8bit", "distributed": "fsdp",
                                        "nproc_per_node": 2})[1]]
    assert any("8-bit AdamW cannot step fsdp's sharded parameters: use ddp" in r
               for r in reasons), reasons
    assert not [p for p in check({"optim": "adamw_bnb_8bit", "distributed": "ddp",
                                  "nproc_per_node": 2})[1] if p.key == "distributed"]


@needs_bnb
@pytest.mark.slow
def test_a_plain_torchrun_under_fsdp_refuses_8bit_adamw_before_training(tmp_path):
    """A plain torchrun launch need not say nproc_per_node, so the config check does
    not see the world: every rank checks again once it knows it is under FSDP (before,
    the first step failed inside bitsandbytes on FSDP's DTensors)."""
    import os
    import subprocess

    config = word_task_config(tmp_path, "fsdp8", optim="adamw_bnb_8bit", distributed="fsdp")
    run, _ = prepare_run(TrainConfig.from_dict(config))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("PYTHONWARNINGS", None)
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                           "--nproc-per-node=2", "-m", "tui_ft.runs.worker", str(run.path)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode != 0
    status = run.read_status()
    assert status["state"] == "failed" and status["error"].startswith(
        "distributed: fsdp: bitsandbytes' 8-bit AdamW cannot step"), status["error"]
    assert not run.checkpoints()
