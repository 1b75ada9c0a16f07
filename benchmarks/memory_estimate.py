#!/usr/bin/env python3
"""Benchmark: `tui_ft.model.memory.estimate_memory` against memory measured in a real
training step (forward, loss, backward, clipping, fused AdamW step) of our GPT, per
preset and precision.

The step is the Trainer's (tui_ft/train/loop.py): the final hidden states under
autocast, then the chunked loss `lm_loss_sum` (tui_ft/model/loss.py) over the
labelled positions only (`positions=target_positions`, as collate makes them), no
logits held by the loop, then clip_grad_norm_ and AdamW with fused=True (the CPU too,
as tui_ft/train/optim.py's `adamw` asks). The labels mask the first `--masked` fraction of every
row (-100, like a masked prompt), and the estimate is given the number of labelled
tokens (`targets`); the row also reports the estimate with every token labelled, the
default, an upper bound. `--loss plain` measures the earlier path instead
(logits = model(ids), cross-entropy over them, the logits held until the next step).

On CUDA: torch.cuda.max_memory_allocated over the second step (the first one creates
the optimizer state), against the estimate's total. On the CPU: the bytes of every
tensor autograd saves for the backward pass (saved_tensors_hooks, each storage once;
for the chunked loss its two saved gradients and index_select's positions, for the
plain path plus the logits), against the estimate's activations; and the peak of the
profiler's memory timeline over the second step, against the estimate's total.
Weights, gradients and optimizer state are counted from the tensors after the step.

One JSON object per case, then one about the machine:

    python benchmarks/memory_estimate.py --presets tiny,gpt2 --batch 2 --seq-len 128
    python benchmarks/memory_estimate.py --precisions fp32,bf16 --no-profile
    python benchmarks/memory_estimate.py --presets tiny --batch 8 --seq-len 256 --chunk 512
    python benchmarks/memory_estimate.py --presets tiny --masked 0   # every token labelled
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def _nbytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def _autocast(device, precision):
    import torch

    if precision == "fp32":
        return torch.autocast(device.type, enabled=False)
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device.type, dtype=dtype)


def _build(config, device):
    import torch

    from tui_ft.model.gpt import GPT

    torch.manual_seed(0)
    with torch.device(device):
        model = GPT(config)
    model.train()
    # The Trainer's optimizer (train/optim.py `adamw`): fused, where this torch has the kernel.
    try:
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    except (RuntimeError, ValueError, TypeError):
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    return model, optimizer


def make_batch(ids, masked):
    """The batch the loop gets from collate: `labels` aligned with the ids (already
    shifted), the first `masked` fraction of every row -100 (a masked prompt), and
    `target_positions`, the flat indices of the labelled tokens (collate's own
    function)."""
    from tui_ft.data.batches import _target_positions
    from tui_ft.model.loss import IGNORE_INDEX

    labels = ids.roll(-1, dims=1)
    labels[:, :int(ids.size(1) * masked)] = IGNORE_INDEX
    return {"input_ids": ids, "labels": labels,
            "target_positions": _target_positions(labels.cpu()).to(ids.device)}


def _loss_sum(model, batch, precision, device, chunk):
    """The Trainer's loss (Trainer._loss_sum): the hidden states under autocast, then
    the chunked loss over the labelled positions; `hidden` goes when this returns, as
    it does there."""
    from tui_ft.model.loss import lm_loss_sum

    with _autocast(device, precision):
        hidden = model.hidden_states(batch["input_ids"])
        return lm_loss_sum(hidden, model.lm_head.weight, batch["labels"], chunk=chunk,
                           positions=batch["target_positions"])


def _step(model, optimizer, batch, precision, device, loss="chunked", chunk=None):
    """One training step as the Trainer writes it: the summed loss over the number of
    targets, backward, gradient clipping at 1.0, the optimizer step, the gradients
    dropped. Returns what the loop still holds: nothing for the chunked loss, the
    logits for the plain path (so the caller decides when they go)."""
    import torch

    from tui_ft.model.gpt import lm_loss
    from tui_ft.model.loss import DEFAULT_CHUNK

    logits = None
    if loss == "chunked":
        value = (_loss_sum(model, batch, precision, device, chunk or DEFAULT_CHUNK)
                 / max(1, batch["target_positions"].numel()))
    else:
        with _autocast(device, precision):
            logits = model(batch["input_ids"])
        value = lm_loss(logits, batch["labels"])
    value.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return logits


_VIEW_NODES = {"TBackward0", "ViewBackward0", "TransposeBackward0", "PermuteBackward0",
               "UnsafeViewBackward0", "ExpandBackward0"}


def is_weight_copy(t) -> bool:
    """A tensor that is (a view of) autocast's low-precision cast of a parameter: its
    autograd history is view ops, then a cast, then the parameter itself."""
    fn = t.grad_fn
    while fn is not None and type(fn).__name__ in _VIEW_NODES:
        fn = fn.next_functions[0][0]
    return (fn is not None and type(fn).__name__ == "ToCopyBackward0"
            and any(f is not None and type(f).__name__ == "AccumulateGrad"
                    for f, _ in fn.next_functions))


def measure_saved(model, batch, precision, device, loss="chunked",
                  chunk=None) -> tuple[int, int]:
    """(activations, weight copies): bytes autograd keeps for the backward pass after a
    forward and the loss, each storage once and parameters excluded (for the chunked
    loss: its saved gradients of the selected hidden states and of the output weight,
    and index_select's positions), plus, for the plain path, the logits the loop holds;
    autocast's casts of the weights counted apart."""
    import torch

    from tui_ft.model.gpt import lm_loss
    from tui_ft.model.loss import DEFAULT_CHUNK

    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    storages: dict[int, int] = {}
    copies: dict[int, int] = {}

    def pack(t):
        s = t.untyped_storage()
        if s.data_ptr() not in params:
            (copies if is_weight_copy(t) else storages)[s.data_ptr()] = s.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        if loss == "chunked":
            value = _loss_sum(model, batch, precision, device, chunk or DEFAULT_CHUNK)
        else:
            with _autocast(device, precision):
                logits = model(batch["input_ids"])
            value = lm_loss(logits, batch["labels"])
            s = logits.untyped_storage()
            storages.setdefault(s.data_ptr(), s.nbytes())
            del logits
    del value
    return sum(storages.values()), sum(copies.values())


def measure_cpu_peak(model, optimizer, batch, precision, device, loss="chunked",
                     chunk=None) -> int | None:
    """Peak bytes of CPU tensors over one step, from the profiler's memory timeline
    (a private torch API: None where it is missing or fails)."""
    try:
        from torch.profiler import ProfilerActivity, profile
        from torch.profiler._memory_profiler import MemoryProfileTimeline
    except ImportError:
        return None
    try:
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True,
                     record_shapes=True, with_stack=True) as prof:
            held = _step(model, optimizer, batch, precision, device, loss, chunk)
            del held
        _, sizes = MemoryProfileTimeline(prof._memory_profile())._coalesce_timeline("cpu")
        return int(max(sum(row) for row in sizes))
    except Exception as exc:  # a private API may change between torch releases
        print(f"profiler peak unavailable: {exc}", file=sys.stderr)
        return None


def run_case(preset_name, precision, batch, seq_len, device, profile_cpu,
             loss="chunked", chunk=None, masked=0.25) -> dict:
    import torch

    from tui_ft.model.gpt import GPTConfig
    from tui_ft.model.loss import DEFAULT_CHUNK
    from tui_ft.model.memory import estimate_memory
    from tui_ft.model.presets import get_preset

    preset = get_preset(preset_name)
    if preset is None:
        raise SystemExit(f"unknown preset {preset_name!r}")
    config = GPTConfig(**preset.config_dict())
    if seq_len > config.context_length:
        seq_len = config.context_length
    chunk = chunk or DEFAULT_CHUNK
    t0 = time.perf_counter()
    model, optimizer = _build(config, device)
    ids = torch.randint(0, config.vocab_size, (batch, seq_len), device=device,
                        generator=torch.Generator(device=device).manual_seed(0))
    data = make_batch(ids, masked)
    targets = data["target_positions"].numel()
    kw = {"precision": precision, "batch_size": batch, "seq_len": seq_len,
          "device_type": device.type, "loss": loss, "chunk": chunk}
    estimate = estimate_memory(config, targets=targets, **kw)
    row = {"preset": preset_name, "precision": precision, "batch": batch,
           "seq_len": seq_len, "targets": targets, "loss": loss,
           "chunk": chunk if loss == "chunked" else None,
           "optimizer": "AdamW fused" if optimizer.defaults.get("fused") else "AdamW",
           "device": str(device), "estimate": estimate.to_dict(),
           # Every token taken as labelled, the estimate's default: an upper bound.
           "estimate_all_labelled_total": estimate_memory(config, **kw).total}
    measured: dict = {}
    # The first step creates the optimizer state; its logits (plain) go before measuring.
    held = _step(model, optimizer, data, precision, device, loss, chunk)
    del held
    measured["weights"] = _nbytes(model.parameters())
    measured["optimizer"] = sum(_nbytes(v for v in state.values() if torch.is_tensor(v))
                                for state in optimizer.state.values())
    measured["activations"], measured["weight_copies"] = measure_saved(
        model, data, precision, device, loss, chunk)
    model.zero_grad(set_to_none=True)
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats(device)
        held = _step(model, optimizer, data, precision, device, loss, chunk)
        torch.cuda.synchronize()
        measured["peak"] = torch.cuda.max_memory_allocated(device)
        measured["peak_source"] = "torch.cuda.max_memory_allocated"
        del held
    elif profile_cpu:
        measured["peak"] = measure_cpu_peak(model, optimizer, data, precision, device,
                                            loss, chunk)
        measured["peak_source"] = "torch.profiler memory timeline (CPU)"
    measured["gradients"] = measured["weights"]  # every parameter gets an fp32 gradient
    row["measured"] = measured
    row["activations_ratio"] = round(estimate.activations / measured["activations"], 4)
    if measured.get("peak"):
        row["total_ratio"] = round(estimate.total / measured["peak"], 4)
    row["seconds"] = round(time.perf_counter() - t0, 2)
    del model, optimizer
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return row


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", default="tiny,gpt2",
                        help="comma-separated presets (default: tiny,gpt2)")
    parser.add_argument("--precisions", default="fp32,bf16",
                        help="comma-separated training precisions: fp32, bf16, fp16 "
                             "(default: fp32,bf16; fp16 is skipped on the CPU)")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    parser.add_argument("--loss", choices=("chunked", "plain"), default="chunked",
                        help="the Trainer's chunked loss (default), or the plain path: "
                             "full logits and cross-entropy")
    parser.add_argument("--chunk", type=int, default=None,
                        help="tokens per chunk of the chunked loss (default: "
                             "tui_ft.model.loss.DEFAULT_CHUNK)")
    parser.add_argument("--masked", type=float, default=0.25,
                        help="fraction of every row's first tokens without a label "
                             "(-100, a masked prompt): the chunked loss projects only the "
                             "others (default: 0.25)")
    parser.add_argument("--no-profile", action="store_true",
                        help="CPU: skip the profiler's peak (the slow part)")
    parser.add_argument("--out", help="also append the JSON lines to this file")
    args = parser.parse_args(argv)
    if not 0 <= args.masked < 1:
        parser.error(f"--masked must be in [0, 1), got {args.masked}")

    import torch

    from tui_ft.model.precision import pick_device

    device = pick_device(args.device)
    lines = []
    started = time.perf_counter()
    for preset in [p for p in args.presets.split(",") if p]:
        for precision in [p for p in args.precisions.split(",") if p]:
            if precision == "fp16" and device.type == "cpu":
                print(f"skip {preset} fp16: not on the CPU", file=sys.stderr)
                continue
            print(f"{preset} {precision} ...", file=sys.stderr, flush=True)
            row = run_case(preset, precision, args.batch, args.seq_len, device,
                           profile_cpu=not args.no_profile, loss=args.loss,
                           chunk=args.chunk, masked=args.masked)
            lines.append(json.dumps(row))
            print(lines[-1], flush=True)
    machine = {
        "machine": {"platform": platform.platform(), "python": platform.python_version(),
                    "cpu_count": os.cpu_count(),
                    "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None},
        "torch": torch.__version__,
        "date_utc": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "benchmark": "memory_estimate",
        "seconds": round(time.perf_counter() - started, 1),
    }
    lines.append(json.dumps(machine))
    print(lines[-1])
    if args.out:
        with open(args.out, "a", encoding="utf-8") as fh:
            fh.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
