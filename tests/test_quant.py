"""Weight-only int8: the blocks' Linear weights really are int8 with per-channel scales,
the quantized model's logits stay close to fp32, generation runs on it (engine and
`tui-ft generate --dtype int8`)."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from torch import nn

from tui_ft.model.generate import GenerationConfig, generate
from tui_ft.model.gpt import GPT, GPTConfig
from tui_ft.model.memory import estimate_memory
from tui_ft.model.presets import get_preset
from tui_ft.model.quant import Int8Linear, is_quantized, quantize_int8

TINY = GPTConfig(**get_preset("tiny").config_dict())


def realistic_tiny(seed: int = 0) -> GPT:
    """The tiny preset's shape with GPT-2-like weight scales (trained GPT-2 small has
    token embeddings of std ~0.14 and block weights of ~0.1), not the 0.02 init."""
    torch.manual_seed(seed)
    model = GPT(TINY).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name == "wte.weight":
                p.normal_(0, 0.14)
            elif name.startswith("h.") and p.dim() == 2:
                p.normal_(0, 0.1)
    return model


@pytest.fixture(scope="module")
def pair():
    fp32 = realistic_tiny()
    return fp32, quantize_int8(copy.deepcopy(fp32))


def test_block_linears_hold_int8_weights_and_the_rest_stays_float(pair):
    fp32, q = pair
    linears = [(n, m) for n, m in q.named_modules() if isinstance(m, Int8Linear)]
    assert len(linears) == 4 * TINY.n_layer
    for name, module in linears:
        assert module.weight.dtype == torch.int8
        assert module.scale.shape == (module.out_features,)
        assert int(module.weight.abs().max()) <= 127
        # Symmetric per-channel absmax: the largest weight of each row maps to +-127.
        assert torch.equal(module.weight.abs().amax(dim=1).long(),
                           torch.full((module.out_features,), 127))
    assert not any(isinstance(m, nn.Linear) for m in q.h.modules())
    assert q.lm_head.weight.dtype == torch.float32 and q.wte.weight is q.lm_head.weight
    assert all(p.dtype == torch.float32 for p in q.parameters())
    assert is_quantized(q) and not is_quantized(fp32)


def test_dequantized_weights_are_within_half_a_step(pair):
    fp32, q = pair
    for (name, original), (_, quantized) in zip(
            ((n, m) for n, m in fp32.h.named_modules() if isinstance(m, nn.Linear)),
            ((n, m) for n, m in q.h.named_modules() if isinstance(m, Int8Linear))):
        error = (original.weight - quantized.dequantized(torch.float32)).abs()
        half_step = quantized.scale.unsqueeze(1) / 2
        assert bool((error <= half_step * (1 + 1e-5) + 1e-12).all()), name
        torch.testing.assert_close(quantized.bias, original.bias)


def test_memory_saved_is_reported_and_matches_the_estimate(pair):
    fp32, q = pair
    report = q.quant_report
    d, L = TINY.n_embd, TINY.n_layer
    linear_weights = L * 12 * d * d
    assert report.layers == 4 * L
    assert report.bytes_before == 4 * (linear_weights + L * 9 * d)
    assert report.bytes_after == linear_weights + 2 * 4 * L * 9 * d  # int8 + scales + biases
    assert report.bytes_saved == report.bytes_before - report.bytes_after > 0

    def model_bytes(m):
        return sum(t.numel() * t.element_size()
                   for t in [*m.parameters(), *m.buffers()])

    assert model_bytes(fp32) - model_bytes(q) == report.bytes_saved
    # The estimator's int8 weights (floats in bf16) equal the real model's bytes.
    bf16 = copy.deepcopy(q).to(torch.bfloat16)
    estimate = estimate_memory(TINY, precision="int8", batch_size=1, seq_len=8,
                               training=False)
    assert estimate.weights == model_bytes(bf16)


def test_quantized_logits_stay_close_to_fp32(pair):
    fp32, q = pair
    ids = torch.randint(0, TINY.vocab_size, (16, 64), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        a, b = fp32(ids), q(ids)
    rel_rms = ((a - b).pow(2).mean().sqrt() / a.pow(2).mean().sqrt()).item()
    assert rel_rms < 0.04
    assert ((a - b).abs().max() / a.abs().max()).item() < 0.05
    agree = a.argmax(-1) == b.argmax(-1)
    assert agree.float().mean().item() > 0.95
    # A random model has many near-ties at the top; where fp32 prefers its token by a
    # margin (5 % of the logits' spread), int8 must agree.
    top = a.topk(2, dim=-1).values
    clear = (top[..., 0] - top[..., 1]) > 0.05 * a.std(dim=-1)
    assert clear.float().mean() > 0.5
    assert agree[clear].float().mean().item() >= 0.99


def test_generation_runs_on_the_quantized_model(pair):
    fp32, q = pair
    prompts = [[464, 3290, 318], [15496, 11, 995, 0, 1]]
    config = GenerationConfig(max_new_tokens=12, stop_token_id=None)
    results = generate(q, prompts, config)
    assert [len(r.output_ids) for r in results] == [12, 12]
    reference = generate(fp32, prompts, config)
    assert results[0].output_ids[0] == reference[0].output_ids[0]
    sampled = generate(q, prompts, GenerationConfig(max_new_tokens=5, temperature=0.8, seed=1))
    assert all(1 <= len(r.output_ids) <= 5 for r in sampled)
    # bf16 activations (the GPU default) dequantize to bf16.
    q16 = copy.deepcopy(q).to(torch.bfloat16)
    assert q16.h[0].attn.c_attn.weight.dtype == torch.int8
    out = generate(q16, prompts[:1], GenerationConfig(max_new_tokens=4, stop_token_id=None))
    assert len(out[0].output_ids) == 4


def test_cli_generate_with_int8(run_cli):
    proc = run_cli("generate", "--model", "tiny", "--prompt", "The capital of France is",
                   "--max-new-tokens", "6", "--dtype", "int8", "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["dtype"] == "int8"
    assert 1 <= len(out["output_ids"]) <= 6
    assert out["int8"]["bytes_saved"] > 0
