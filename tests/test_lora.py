"""LoRA (issue 18): adapters on a frozen base, PEFT-compatible names and export,
adapter-only checkpoints that resume exactly, and every later step (generation,
responses, export) on a LoRA run. peft and transformers are test-only references."""

from __future__ import annotations

import json

import pytest
import torch

from tui_ft.config import TrainConfig, check
from tui_ft.model.export import PEFT_DIR, export_hf
from tui_ft.model.lora import (LoraSettings, add_lora, expand_targets, lora_state_dict,
                               merge_lora, trainable_parameters, write_peft_adapter)
from tui_ft.model.weights import load_model
from tui_ft.runs.jobs import prepare_run
from tui_ft.runs.worker import run_in_process

from helpers import word_task_config

IDS = torch.tensor([[464, 3290, 318, 257, 922, 1110, 13, 50256, 11, 290, 262, 3797]])


def lora_tiny(targets=("c_attn",), r=4, alpha=8.0) -> torch.nn.Module:
    """The tiny model with adapters whose B is not zero (as after training), the same
    adapters at every call."""
    model, _ = load_model("tiny")
    add_lora(model, LoraSettings(r=r, alpha=alpha, targets=expand_targets(targets),
                                 base="tiny"))
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.05)
    return model.eval()


def test_the_base_is_frozen_and_only_adapters_train():
    model = lora_tiny(("all",), r=8)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(".lora_A." in n or ".lora_B." in n for n in trainable)
    d, L = model.config.n_embd, model.config.n_layer
    # r x (in + out) for c_attn (d -> 3d), attn.c_proj (d -> d), c_fc (d -> 4d), mlp.c_proj.
    assert trainable_parameters(model) == L * 8 * ((d + 3 * d) + (d + d) + (d + 4 * d)
                                                   + (4 * d + d))
    assert set(lora_state_dict(model)) == {
        f"h.{i}.{layer}.lora_{ab}.weight" for i in range(L)
        for layer in ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")
        for ab in "AB"}


@pytest.mark.slow
def test_our_lora_equals_peft_on_the_same_weights_and_merges_exactly(tmp_path):
    peft = pytest.importorskip("peft")
    from transformers import GPT2LMHeadModel

    base, _ = load_model("tiny")
    export_hf(base, tmp_path / "base")
    model = lora_tiny(("c_attn", "mlp"))
    with torch.no_grad():
        ours = model(IDS).float()
    write_peft_adapter(model, tmp_path / "adapter",
                       base_model_name_or_path=str(tmp_path / "base"))
    config = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert config["target_modules"] == ["attn.c_attn", "mlp.c_fc", "mlp.c_proj"]
    hf = GPT2LMHeadModel.from_pretrained(tmp_path / "base").eval()
    with torch.no_grad():
        plain = hf(IDS).logits.float()  # before PEFT wraps it (it adapts it in place)
    peft_model = peft.PeftModel.from_pretrained(hf, tmp_path / "adapter").eval()
    # PEFT found every adapter tensor (none left at its zero initialisation).
    assert all(p.abs().sum() > 0 for n, p in peft_model.named_parameters() if "lora_B" in n)
    with torch.no_grad():
        theirs = peft_model(IDS).logits.float()
    assert (ours - theirs).abs().max().item() < 1e-4
    assert (ours - plain).abs().max().item() > 1e-3  # the adapters do something
    # Merged: the same outputs from plain weights; exported merged, transformers agrees.
    out = tmp_path / "export"
    written = export_hf(model, out)
    assert f"{PEFT_DIR}/adapter_model.safetensors" in {str(p.relative_to(out))
                                                        for p in written}
    with torch.no_grad():
        merged = model(IDS).float()
    assert not lora_state_dict(model)
    assert (merged - ours).abs().max().item() < 1e-5
    with torch.no_grad():
        exported = GPT2LMHeadModel.from_pretrained(out)(IDS).logits.float()
    assert (exported - ours).abs().max().item() < 1e-4
    again = peft.PeftModel.from_pretrained(GPT2LMHeadModel.from_pretrained(tmp_path / "base"),
                                           out / PEFT_DIR).eval()
    with torch.no_grad():
        assert (again(IDS).logits.float() - ours).abs().max().item() < 1e-4
    # And merge_lora alone.
    twin = lora_tiny(("c_attn", "mlp"))
    merge_lora(twin)
    with torch.no_grad():
        assert (twin(IDS).float() - ours).abs().max().item() < 1e-5


def test_lora_settings_are_checked():
    reasons = {p.key: p.reason for p in check({"lora_r": 4,
                                                "lora_target_modules": ["c_attn", "wte"]})[1]}
    assert "'wte' is not a layer of a GPT-2 block" in reasons["lora_target_modules"]
    assert check({"lora_r": 0})[1][0].key == "lora_r"
    assert check({"lora_r": 4, "lora_target_modules": "attention, mlp"})[1] == []
    assert "fsdp" in {p.key: p.reason for p in check(
        {"lora_r": 4, "distributed": "fsdp", "nproc_per_node": 2})[1]}["distributed"]


@pytest.mark.slow
def test_a_lora_run_saves_adapters_resumes_exactly_and_answers(tmp_path, run_cli):
    common = {"n_train": 8, "max_steps": 8, "eval_strategy": "steps", "eval_steps": 4,
              "save_strategy": "steps", "save_steps": 4, "learning_rate": 1e-2,
              "lora_r": 4, "lora_target_modules": ["attention"], "max_new_tokens": 4}
    run, _ = prepare_run(TrainConfig.from_dict(word_task_config(tmp_path, "lora", **common)))
    assert run_in_process(run) == "finished"
    start = next(m for m in run.read_metrics() if m.get("event") == "start")
    assert start["lora"]["r"] == 4 and 0 < start["trainable_parameters"] < 100_000
    last = run.checkpoints()[-1].path
    assert not (last / "model.safetensors").exists()
    assert (last / "adapter.safetensors").stat().st_size < 200_000
    # The base under the adapters is still the tiny model's, bit for bit.
    trained, _ = load_model(str(last))
    tiny, _ = load_model("tiny")
    base = {k: v for k, v in trained.state_dict().items() if ".lora_" not in k}
    assert all(torch.equal(v, tiny.state_dict()[k]) for k, v in base.items())
    assert any(v.abs().sum() > 0 for k, v in lora_state_dict(trained).items() if "lora_B" in k)
    # Resume from checkpoint-4: the same losses as the uninterrupted run.
    losses = [m["train_loss"] for m in run.read_metrics() if "train_loss" in m
              and "event" not in m]
    proc = run_cli("train", "--resume", run.path, "--checkpoint", "4", timeout=300)
    assert proc.returncode == 0, proc.stderr
    again = [m["train_loss"] for m in run.read_metrics() if "train_loss" in m
             and "event" not in m]
    assert again == pytest.approx(losses, abs=1e-6)
    # Responses and export take the LoRA run as any run.
    proc = run_cli("responses", run.path, "--split", "val", "--max-new-tokens", "4",
                   timeout=300)
    assert proc.returncode == 0, proc.stderr
    answers = [json.loads(line) for line in run.responses_path.read_text().splitlines()]
    assert len(answers) == 4 and {a["checkpoint"] for a in answers} == {"checkpoint-8"}
    out = tmp_path / "exported"
    proc = run_cli("export", run.path, out, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert (out / "model.safetensors").is_file() and (out / PEFT_DIR / "adapter_config.json"
                                                      ).is_file()
    assert "PeftModel.from_pretrained" in proc.stdout


def test_an_int8_base_is_for_lora():
    """(What the 8-bit options need, and their runs: tests/test_bnb.py.)"""
    reasons = {p.key: p.reason for p in check({"load_in_8bit": True})[1]}
    assert "it is for LoRA (set lora_r)" in reasons["load_in_8bit"]


def test_int8_generation_of_a_lora_model_merges_it_first():
    from tui_ft.model.quant import is_quantized, quantize_int8

    model = lora_tiny(("c_attn",))
    with torch.no_grad():
        before = model(IDS).float()
    quantize_int8(model)
    assert is_quantized(model) and not lora_state_dict(model)
    with torch.no_grad():
        after = model(IDS).float()
    # int8 rounding of the merged weights, nothing lost of the adapters.
    assert (after - before).abs().max().item() < 0.05
