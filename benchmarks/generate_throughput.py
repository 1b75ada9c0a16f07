"""Generation throughput: tui-ft's `generate` against Hugging Face `generate`.

The test-split prompts of the W1 data (Alpaca style, 85/5/10 split, as the Grading
screen builds them), greedy, up to --max-new-tokens new tokens, stopping at
<|endoftext|>, on the same weights: tui-ft's KV-cached `generate` (batches grouped by
length, finished rows dropped) and `GPT2LMHeadModel.generate` (the same batches,
left-padded with 50256 and an attention mask). Reports new tokens per second and
whether both produced the same tokens.

Prints one JSON line per implementation plus one agreement line, then one line about
the machine. See benchmarks/README.md (section `generate_throughput.py`)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from train_throughput import (DATA_W1, PAD_ID, build_init, emit, hf_from_ours,  # noqa: E402
                              log, machine_line, parse_variants)


def test_prompts(dataset: Path, limit: int | None) -> list[list[int]]:
    from tui_ft.config import TrainConfig
    from tui_ft.data.styles import load_styles
    from tui_ft.data.tokenizer import encode
    from tui_ft.train.splits import config_splits

    c = TrainConfig(dataset=str(dataset), split_ratios=[0.85, 0.05, 0.10])
    splits, _ = config_splits(c)
    style = load_styles().get(c.prompt_style)
    records = splits.test[:limit] if limit else splits.test
    return [encode(style.prompt(r)) for r in records]


def batches_longest_first(prompts, batch_size):
    """The batches tui-ft's `generate` makes: longest prompts first."""
    order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


def trim(ids: list[int], eos: int) -> list[int]:
    """New tokens up to and including the first end-of-text."""
    return ids[:ids.index(eos) + 1] if eos in ids else ids


# tui-ft decoding paths: name -> generate() keywords.
VARIANTS = {"dynamic": {}, "static": {"static": True}, "cuda-graphs": {"cuda_graphs": True}}


def run_tui_ft(model, prompts, args, sync, variant="dynamic") -> tuple[list[list[int]], float]:
    from tui_ft.model.generate import GenerationConfig, generate

    cfg = GenerationConfig(max_new_tokens=args.max_new_tokens, temperature=0.0)
    sync()
    t0 = time.perf_counter()
    results = generate(model, prompts, cfg, batch_size=args.batch_size, **VARIANTS[variant])
    sync()
    return [r.output_ids for r in results], time.perf_counter() - t0


def run_hf(model, prompts, args, device, sync) -> tuple[list[list[int]], float]:
    import torch

    outs: list[list[int] | None] = [None] * len(prompts)
    model.eval()
    sync()
    t0 = time.perf_counter()
    with torch.inference_mode():
        for chunk in batches_longest_first(prompts, args.batch_size):
            rows = [prompts[i] for i in chunk]
            width = max(len(r) for r in rows)
            ids = torch.tensor([[PAD_ID] * (width - len(r)) + r for r in rows], device=device)
            mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows],
                                device=device)
            gen = model.generate(input_ids=ids, attention_mask=mask, do_sample=False,
                                 max_new_tokens=args.max_new_tokens, pad_token_id=PAD_ID,
                                 eos_token_id=PAD_ID)
            for i, row in zip(chunk, gen[:, width:].tolist()):
                outs[i] = trim(row, PAD_ID)
    sync()
    return outs, time.perf_counter() - t0  # type: ignore[return-value]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", choices=("cpu", "cuda"), default="cuda")
    p.add_argument("--model", choices=("tiny", "gpt2", "gpt2-medium"), default="gpt2")
    p.add_argument("--weights", default=None,
                   help="load these weights (anything tui-ft's load_model reads) instead of "
                        "a random init of --model")
    p.add_argument("--limit", type=int, default=None, help="first N test prompts (default all)")
    p.add_argument("--max-new-tokens", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--dtype", choices=("fp32", "bf16"), default=None,
                   help="weights dtype (default: bf16 on CUDA, fp32 on CPU)")
    p.add_argument("--check", type=int, default=8,
                   help="the first N prompts whose tokens must agree (reported)")
    p.add_argument("--repeat", type=int, default=1, help="timed runs per implementation (best)")
    p.add_argument("--dataset", type=Path, default=DATA_W1)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--impl", choices=("both", "tui-ft", "hf"), default="both")
    p.add_argument("--variants", default=None,
                   help=f"tui-ft decoding paths, comma-separated, of {', '.join(VARIANTS)} "
                        "(default: dynamic on the CPU, dynamic,cuda-graphs on CUDA)")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda but no CUDA device is available (use --device cpu)")
    dtype_name = args.dtype or ("bf16" if args.device == "cuda" else "fp32")
    variants = parse_variants(p, args.variants or ("dynamic,cuda-graphs" if args.device
                                                    == "cuda" else "dynamic"), VARIANTS)
    if "cuda-graphs" in variants and args.device != "cuda":
        p.error("the cuda-graphs variant needs --device cuda")
    dtype = torch.bfloat16 if dtype_name == "bf16" else torch.float32

    def sync():
        if args.device == "cuda":
            torch.cuda.synchronize()

    if args.weights:
        from tui_ft.model.weights import load_model
        from tui_ft.runs.run_source import run_checkpoint

        ours, _ = load_model(args.weights, runs=run_checkpoint)
        model_name = args.weights
    else:
        ours = build_init(args.model)
        model_name = args.model
    if args.max_new_tokens >= ours.config.context_length:
        p.error(f"--max-new-tokens must be under the model's context "
                f"({ours.config.context_length})")
    prompts = test_prompts(args.dataset, args.limit)
    budget = ours.config.context_length - args.max_new_tokens
    # Both see the same prompts: cut from the start as tui-ft's generate would.
    prompts = [pr[-budget:] for pr in prompts]
    hf = hf_from_ours(ours).to(args.device, dtype) if args.impl != "tui-ft" else None
    ours = ours.to(args.device, dtype).eval()

    out = open(args.out, "a", encoding="utf-8") if args.out else None
    common = {"model": model_name, "device": args.device, "dtype": dtype_name,
              "prompts": len(prompts), "max_new_tokens": args.max_new_tokens,
              "batch_size": args.batch_size, "greedy": True,
              "prompt_tokens_mean": round(sum(map(len, prompts)) / len(prompts), 1)}
    warm = prompts[:min(2, len(prompts))]
    outputs = {}
    names = ([f"tui-ft:{v}" for v in variants] if args.impl != "hf" else [])
    names += ["hf-generate"] if args.impl != "tui-ft" else []
    for name in names:
        variant = name.split(":")[1] if ":" in name else None
        fn = ((lambda ps, v=variant: run_tui_ft(ours, ps, args, sync, v)) if variant
              else (lambda ps: run_hf(hf, ps, args, args.device, sync)))
        fn(warm)  # warm-up, not timed
        best, toks = None, None
        for _ in range(args.repeat):
            toks, secs = fn(prompts)
            best = secs if best is None else min(best, secs)
        log(f"{name}: {best:.3f} s")
        outputs[name] = toks
        n_new = sum(len(t) for t in toks)
        emit({"impl": name.split(":")[0], **({"variant": variant} if variant else {}),
              **common, "new_tokens": n_new, "seconds": round(best, 3),
              "new_tokens_per_s": round(n_new / best, 1),
              "ms_per_prompt": round(1000 * best / len(prompts), 2),
              "ended_eos": sum(1 for t in toks if t and t[-1] == PAD_ID)}, out)
    for name in (n for n in outputs if n != "hf-generate" and "hf-generate" in outputs):
        a, b = outputs[name], outputs["hf-generate"]
        n = min(args.check, len(a))
        same = [a[i] == b[i] for i in range(len(a))]
        first_diff = [next((j for j, (x, y) in enumerate(zip(a[i], b[i])) if x != y),
                           min(len(a[i]), len(b[i]))) for i in range(len(a)) if not same[i]]
        emit({"agreement": {"tui_ft_variant": name.split(":")[1], "first_n": n, "same_first_n": sum(same[:n]),
                            "fraction_first_n": round(sum(same[:n]) / max(1, n), 3),
                            "same_all": sum(same), "all": len(same),
                            "fraction_all": round(sum(same) / max(1, len(same)), 3),
                            "first_difference_at_token": first_diff[:10]},
              **common}, out)
    emit(machine_line(args.device, "generate_throughput"), out)
    if out:
        out.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
