"""The CUDA paths, on a real GPU (skipped without one; CI has none). They check what
the CPU tests cannot: flash / memory-efficient attention kernels against the
reference, bf16 and fp16 training steps, the fused AdamW path, packing's masked
attention, torch.compile with CUDA graphs (mode reduce-overhead) over bucketed
shapes, and the memory estimate against the CUDA allocator's peak.

Run them on a GPU machine with `python -m pytest -q tests/test_gpu.py` (see
benchmarks/gpu_suite.sh, which also runs the GPU benchmarks)."""

from __future__ import annotations

import importlib.util
import math

import pytest
import torch
import torch.nn.functional as F

from tui_ft.config import TrainConfig
from tui_ft.data.batches import Example, Pack, collate, collate_packed
from tui_ft.model.gpt import GPT, GPTConfig
from tui_ft.model.loss import lm_loss_sum
from tui_ft.runs.jobs import prepare_run
from tui_ft.runs.worker import run_in_process

from helpers import code_word_records, one_token_words, write_jsonl

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]

CUDA = "cuda"


def _gpt(seed=0, **shape) -> GPT:
    cfg = dict(vocab_size=50257, context_length=256, n_embd=128, n_layer=2, n_head=4)
    cfg.update(shape)
    torch.manual_seed(seed)
    return GPT(GPTConfig(**cfg)).to(CUDA)


# -- kernels against references ----------------------------------------------------------------


def test_fp32_logits_on_cuda_match_transformers():
    transformers = pytest.importorskip("transformers")
    from tui_ft.model import hf_layout

    ours = _gpt(seed=1, n_embd=256, n_layer=3, n_head=8).eval()
    cfg = dict(hf_layout.hf_config(ours.config))
    for key in ("model_type", "architectures", "torch_dtype"):
        cfg.pop(key, None)
    hf = transformers.GPT2LMHeadModel(transformers.GPT2Config(**cfg))
    hf.load_state_dict(hf_layout.to_hf_state_dict(ours.state_dict()), strict=False)
    hf.tie_weights()
    hf = hf.to(CUDA).eval()
    ids = torch.randint(0, 50257, (3, 200), device=CUDA)
    with torch.no_grad():
        torch.testing.assert_close(ours(ids), hf(ids).logits, rtol=0, atol=2e-4)


def test_chunked_loss_on_cuda_matches_the_plain_path_in_bf16():
    g = torch.Generator(device=CUDA).manual_seed(0)
    hidden = torch.randn(3000, 256, device=CUDA, generator=g)
    weight = torch.randn(50257, 256, device=CUDA, generator=g) * 0.02
    labels = torch.randint(0, 50257, (3000,), device=CUDA, generator=g)
    labels[::4] = -100
    results = []
    for chunked in (False, True):
        h = hidden.clone().requires_grad_()
        w = weight.clone().requires_grad_()
        with torch.autocast(CUDA, dtype=torch.bfloat16):
            if chunked:
                loss = lm_loss_sum(h, w, labels, chunk=1024)
            else:
                loss = F.cross_entropy(F.linear(h, w).float(), labels, reduction="sum")
        (loss / 2250).backward()
        results.append((loss.detach(), h.grad, w.grad))
    (l0, gh0, gw0), (l1, gh1, gw1) = results
    torch.testing.assert_close(l1, l0, rtol=1e-5, atol=1e-2)
    torch.testing.assert_close(gh1, gh0, rtol=2e-2, atol=1e-6)
    torch.testing.assert_close(gw1, gw0, rtol=2e-2, atol=1e-5)


def _examples(lengths, seed=0) -> list[Example]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for n in lengths:
        ids = torch.randint(0, 50000, (n,), generator=g).tolist()
        out.append(Example(tuple(ids), tuple(ids[1:] + [-100]), n))
    return out


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_packed_rows_on_cuda_equal_each_example_alone(dtype):
    model = _gpt(seed=2).eval()
    examples = _examples([40, 90, 25, 100])
    batch = collate_packed([Pack(tuple(examples[:3])), Pack((examples[3],))], width=160,
                           device=CUDA)
    tol = 1e-4 if dtype == torch.float32 else 3e-2
    with torch.no_grad(), torch.autocast(CUDA, dtype=dtype, enabled=dtype != torch.float32):
        packed = model.hidden_states(batch["input_ids"], batch["position_ids"],
                                     document_ids=batch["document_ids"])
        offset = 0
        for e in examples[:3]:
            alone = model.hidden_states(torch.tensor([e.input_ids], device=CUDA))[0]
            torch.testing.assert_close(packed[0, offset:offset + len(e.input_ids)], alone,
                                       rtol=tol, atol=tol)
            offset += len(e.input_ids)


# -- training runs on the GPU ---------------------------------------------------------------------


def _run(tmp_path, name, **overrides):
    words = one_token_words()
    records = code_word_records(words[:24], 1, "t")
    # Mixed lengths, so batches come in several widths.
    records = [dict(r, output=" ".join([r["output"]] * (1 + i % 5))) for i, r in enumerate(records)]
    data = {"output_dir": str(tmp_path / name),
            "dataset": write_jsonl(tmp_path / f"{name}-train.jsonl", records),
            "val_dataset": write_jsonl(tmp_path / f"{name}-val.jsonl",
                                       code_word_records(words[24:32], 2, "v")),
            "prompt_style": "phi3", "max_length": 128, "device": CUDA,
            "per_device_train_batch_size": 4, "per_device_eval_batch_size": 8,
            "learning_rate": 2e-3, "num_train_epochs": 3, "logging_steps": 1,
            "eval_strategy": "epoch", "save_strategy": "no", "load_best_model_at_end": False,
            "save_total_limit": None, "bf16": True}
    data.update(overrides)
    run, _ = prepare_run(TrainConfig.from_dict(data))
    assert run_in_process(run) == "finished"
    metrics = run.read_metrics()
    assert not [m for m in metrics if m.get("event") == "compile_fallback"], metrics
    train = [m["train_loss"] for m in metrics if "train_loss" in m and "event" not in m]
    vals = [m["val_loss"] for m in metrics if "val_loss" in m]
    assert all(math.isfinite(x) for x in train + vals)
    return train, vals


def test_bf16_eager_run_learns(tmp_path):
    train, vals = _run(tmp_path, "eager")
    assert vals[-1] < vals[0] - 0.5


@pytest.mark.parametrize("mode", ["default", "reduce-overhead"])
def test_compiled_runs_match_the_eager_run(tmp_path, mode):
    """torch.compile (with CUDA graphs in reduce-overhead mode) over bucketed widths:
    no fallback, and the same losses as eager bf16 within bf16 noise."""
    eager_train, eager_vals = _run(tmp_path, "eager-ref", pad_to_multiple_of=64)
    train, vals = _run(tmp_path, f"compiled-{mode}", torch_compile=True,
                       torch_compile_mode=mode)
    assert train[0] == pytest.approx(eager_train[0], rel=1e-2)
    assert vals[-1] == pytest.approx(eager_vals[-1], rel=5e-2)


def test_packed_compiled_run_with_flex_attention_and_cuda_graphs(tmp_path):
    """Packed rows compiled on CUDA use flex attention (block-sparse document mask)
    under CUDA graphs: no fallback, and the eager packed run's losses (SDPA with the
    dense mask) within bf16 noise."""
    eager_train, eager_vals = _run(tmp_path, "packed-eager", packing=True,
                                   per_device_train_batch_size=2)
    train, vals = _run(tmp_path, "packed", packing=True, per_device_train_batch_size=2,
                       torch_compile=True, torch_compile_mode="reduce-overhead")
    assert vals[-1] < vals[0] - 0.5
    assert train[0] == pytest.approx(eager_train[0], rel=1e-2)
    assert vals[-1] == pytest.approx(eager_vals[-1], rel=5e-2)


def test_fp16_run_with_loss_scaling(tmp_path):
    train, vals = _run(tmp_path, "fp16", bf16=False, fp16=True)
    assert vals[-1] < vals[0] - 0.5


# -- memory ----------------------------------------------------------------------------------------


def test_memory_estimate_matches_the_cuda_peak_of_a_training_step():
    from tui_ft.model.memory import estimate_memory

    model = _gpt(seed=3, n_embd=256, n_layer=4, n_head=4, context_length=512).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    batch = collate(_examples([512] * 4, seed=5), device=CUDA)

    def step():
        with torch.autocast(CUDA, dtype=torch.bfloat16):
            hidden = model.hidden_states(batch["input_ids"])
            loss = lm_loss_sum(hidden, model.lm_head.weight, batch["labels"])
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step()  # the optimizer state exists from here on
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    step()
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated()
    e = estimate_memory(model.config, precision="bf16", batch_size=4, seq_len=512,
                        device_type="cuda")
    assert peak == pytest.approx(e.total, rel=0.2), (peak, e.to_dict())


# -- generation ------------------------------------------------------------------------------------


def test_cuda_graph_decoding_gives_the_tokens_of_the_dynamic_path():
    from tui_ft.model.generate import GenerationConfig, generate

    model = _gpt(seed=4, n_embd=256, n_layer=4, n_head=4, context_length=512).eval()
    with torch.no_grad():  # GPT-2-like scales: varied continuations, not one-token loops
        for name, p in model.named_parameters():
            if name == "wte.weight":
                p.normal_(0, 0.1)
            elif name.startswith("h.") and p.dim() == 2:
                p.normal_(0, 0.15)
    g = torch.Generator().manual_seed(7)
    prompts = [torch.randint(0, 50000, (n,), generator=g).tolist()
               for n in (5, 40, 12, 90, 3, 33, 64, 8, 20)]
    for config in (GenerationConfig(max_new_tokens=48, stop_token_id=None),
                   GenerationConfig(max_new_tokens=48, temperature=0.7, top_p=0.9, seed=3,
                                    stop_token_id=None)):
        dynamic = generate(model, prompts, config, batch_size=4)
        graphed = generate(model, prompts, config, batch_size=4, cuda_graphs=True)
        assert [r.output_ids for r in graphed] == [r.output_ids for r in dynamic]


# -- the command line on the GPU ---------------------------------------------------------------


def test_train_then_responses_then_export_from_the_command_line(tmp_path, run_cli):
    """The practitioner's path, for real on CUDA: `tui-ft train` (bf16, packing,
    compiled with CUDA graphs), `tui-ft responses` on the GPU (with and without
    --cuda-graphs), `tui-ft export`; the exported folder loads in transformers with
    the run's logits."""
    import json

    words = one_token_words()
    config = {"output_dir": str(tmp_path / "run"),
              "dataset": write_jsonl(tmp_path / "train.jsonl",
                                     code_word_records(words[:24], 1, "t")),
              "val_dataset": write_jsonl(tmp_path / "val.jsonl",
                                         code_word_records(words[24:28], 2, "v")),
              "test_dataset": write_jsonl(tmp_path / "test.jsonl",
                                          code_word_records(words[28:34], 3, "q")),
              "prompt_style": "phi3", "max_length": 128, "device": CUDA, "bf16": True,
              "packing": True, "torch_compile": True,
              "torch_compile_mode": "reduce-overhead", "per_device_train_batch_size": 2,
              "learning_rate": 3e-3, "max_steps": 12, "logging_steps": 1,
              "eval_strategy": "steps", "eval_steps": 6, "save_strategy": "steps",
              "save_steps": 6, "max_new_tokens": 8}
    path = tmp_path / "config.yaml"
    path.write_text("".join(f"{k}: {json.dumps(v)}\n" for k, v in config.items()))
    proc = run_cli("train", str(path), timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "finished" in proc.stderr and "compile failed" not in proc.stderr
    texts = []
    for extra in ((), ("--cuda-graphs",)):
        proc = run_cli("responses", str(tmp_path / "run"), "--checkpoint", "last", "--split",
                       "test", "--device", CUDA, "--json", *extra, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert json.loads(proc.stdout)["count"] == 6
        texts.append([json.loads(line)["response"] for line in
                      (tmp_path / "run" / "responses.jsonl").read_text().splitlines()])
    assert texts[1] == texts[0]  # greedy: the graphed decoding gives the same answers
    proc = run_cli("export", str(tmp_path / "run"), str(tmp_path / "hf"), timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    transformers = pytest.importorskip("transformers")
    from tui_ft.model.weights import load_model
    from tui_ft.runs.run_source import run_checkpoint

    ours, _ = load_model(str(tmp_path / "run"), device=CUDA, runs=run_checkpoint)
    hf = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "hf").to(CUDA).eval()
    ids = torch.randint(0, 50257, (2, 40), device=CUDA)
    with torch.no_grad():
        torch.testing.assert_close(ours.eval()(ids), hf(ids).logits, rtol=0, atol=2e-4)


# -- LoRA, 8-bit (issue 18): the CUDA-only paths ---------------------------------------------


def test_lora_on_cuda_learns_and_keeps_the_base(tmp_path):
    train, vals = _run(tmp_path, "lora", lora_r=8, lora_target_modules=["all"],
                       learning_rate=1e-2)
    assert vals[-1] < vals[0]


@pytest.mark.skipif(importlib.util.find_spec("bitsandbytes") is None,
                    reason="needs bitsandbytes (pip install tui-ft[bnb])")
def test_lora_on_an_int8_base_learns(tmp_path):
    """load_in_8bit: the blocks' Linear layers as bitsandbytes' Linear8bitLt, adapters
    in full precision on top; it trains, and its checkpoint (adapter only) loads on
    the fp32 base for generation."""
    train, vals = _run(tmp_path, "lora8", lora_r=8, lora_target_modules=["all"],
                       learning_rate=1e-2, load_in_8bit=True, save_strategy="epoch")
    assert vals[-1] < vals[0]
    from tui_ft.model.weights import load_model
    from tui_ft.runfolder import Run

    model, _ = load_model(str(Run(tmp_path / "lora8").checkpoints()[-1].path))
    assert any(".lora_B." in n for n, _ in model.named_parameters())


@pytest.mark.skipif(importlib.util.find_spec("bitsandbytes") is None,
                    reason="needs bitsandbytes (pip install tui-ft[bnb])")
def test_an_int8_base_never_holds_the_fp32_base_on_the_gpu():
    """load_in_8bit loads on the CPU and quantizes each layer on its way to CUDA: the
    GPU's peak stays near the int8 model's size, far under the fp32 blocks'."""
    from tui_ft.model.presets import get_preset
    from tui_ft.model.quant import bnb_int8_base

    torch.manual_seed(0)
    model = GPT(GPTConfig(**get_preset("gpt2-medium").config_dict()))
    linear = sum(m.weight.numel() for m in model.h.modules() if type(m) is torch.nn.Linear)
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    bnb_int8_base(model, CUDA)
    assert all(p.device.type == "cuda" for p in model.parameters())
    peak = torch.cuda.max_memory_allocated() - before
    rest = sum(p.numel() * p.element_size() for n, p in model.named_parameters()
               if ".weight" not in n or not n.startswith("h."))  # embeddings, norms, biases
    assert peak < rest + 1.5 * linear, (peak, rest, 4 * linear)  # int8 + a layer's copy


@pytest.mark.skipif(importlib.util.find_spec("bitsandbytes") is None,
                    reason="needs bitsandbytes (pip install tui-ft[bnb])")
def test_8bit_adamw_trains_as_adamw_does(tmp_path):
    eight, vals8 = _run(tmp_path, "adam8", optim="adamw_bnb_8bit")
    full, vals = _run(tmp_path, "adam32")
    assert vals8[-1] < vals8[0] - 0.5
    assert abs(vals8[-1] - vals[-1]) < 0.25
