"""Training throughput: tui-ft's engine against Hugging Face `transformers.Trainer`.

The same workload, in one process, one after the other, from the same random weights
and the same tokenized examples (built with tui-ft's own `encode_records`):

- tui-ft: `prepare_run` + `run_in_process` with a `TrainConfig` into a temporary
  output_dir, i.e. the real `Trainer` of `tui_ft/train/loop.py`;
- hf-trainer: `GPT2LMHeadModel` of the same shape with `Trainer`/`TrainingArguments`
  as a typical user sets them (bf16 on GPU, fused AdamW on CUDA, a padding collator).

Before timing, one batch is put through both models with the same weights and the
losses must agree: this checks the weight mapping and the label shift.

Prints one JSON line per implementation, then one line about the machine.
See benchmarks/README.md (section `train_throughput.py`)."""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import json
import math
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DATA_W1 = Path(__file__).resolve().parents[2] / "shared" / "data" / "instruction-data.json"
if not DATA_W1.is_file():  # on a GPU machine: the copy gpu_suite.sh carries
    DATA_W1 = ROOT / ".bench-data" / "instruction-data.json"
PAD_ID = 50256
IGNORE = -100
# Dense bf16 peak FLOP/s (no sparsity) by device-name fragment.
PEAK_BF16 = (("H200", 989e12), ("H100", 989e12), ("A100", 312e12))


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def emit(obj: dict, out) -> None:
    line = json.dumps(obj)
    print(line, flush=True)
    if out is not None:
        out.write(line + "\n")
        out.flush()


def machine_line(device: str, benchmark: str) -> dict:
    import torch

    name = (torch.cuda.get_device_name(0) if device == "cuda" and torch.cuda.is_available()
            else _cpu_model())
    try:
        import transformers
        tf_version = transformers.__version__
    except ImportError:
        tf_version = None
    return {"machine": {"platform": platform.platform(), "python": platform.python_version(),
                        "torch": torch.__version__, "transformers": tf_version,
                        "device": device, "device_name": name,
                        "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads()},
            "date_utc": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "benchmark": benchmark}


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def peak_flops(device: str) -> float | None:
    import torch

    if device != "cuda":
        return None
    name = torch.cuda.get_device_name(0)
    return next((v for k, v in PEAK_BF16 if k in name), None)


# ---------------------------------------------------------------------- weights


def build_init(model_name: str, seed: int = 0):
    """Our model with random weights: the tiny preset as tui-ft builds it, or GPT-2
    shapes (gpt2, gpt2-medium) randomly initialised (no download)."""
    import torch

    from tui_ft.model.gpt import GPT, GPTConfig
    from tui_ft.model.presets import get_preset
    from tui_ft.model.weights import load_model

    if model_name == "tiny":
        model, _ = load_model("tiny")
        return model
    preset = get_preset(model_name)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = GPT(GPTConfig(**preset.config_dict()))
    return model.eval()


def hf_from_ours(model):
    """A GPT2LMHeadModel with `model`'s weights, through tui-ft's hf_layout mapping."""
    from transformers import GPT2Config, GPT2LMHeadModel

    from tui_ft.model import hf_layout

    cfg = dict(hf_layout.hf_config(model.config))
    for key in ("model_type", "architectures", "torch_dtype"):
        cfg.pop(key, None)
    hf = GPT2LMHeadModel(GPT2Config(**cfg))
    state = hf_layout.to_hf_state_dict(model.state_dict())
    missing, unexpected = hf.load_state_dict(state, strict=False)
    missing = [k for k in missing if k != "lm_head.weight" and not k.endswith(".attn.bias")
               and not k.endswith(".attn.masked_bias")]
    if missing or unexpected:
        raise SystemExit(f"weight mapping failed: missing {missing}, unexpected {unexpected}")
    hf.tie_weights()
    assert hf.lm_head.weight.data_ptr() == hf.transformer.wte.weight.data_ptr()
    return hf


def hf_labels(input_ids, labels) -> list[int]:
    """HF shifts inside the model: logits[j] is scored against labels[j + 1]. Ours are
    already shifted: labels[i] is the target after input i. So hf[j] = ours[j - 1]
    (which is input_ids[j] or -100), and hf[0] = -100. Our last label (the real next
    token of a truncated example) has no HF equivalent: HF learns one token fewer on
    each truncated example (counted in the output)."""
    out = [IGNORE] + list(labels[:-1])
    for j in range(1, len(out)):
        assert out[j] == IGNORE or out[j] == input_ids[j]
    return out


class PadCollator:
    """Pads to the longest row: inputs with 50256, labels with -100, attention mask 0."""

    def __call__(self, feats):
        import torch

        width = max(len(f["input_ids"]) for f in feats)
        ids = [f["input_ids"] + [PAD_ID] * (width - len(f["input_ids"])) for f in feats]
        lab = [f["labels"] + [IGNORE] * (width - len(f["labels"])) for f in feats]
        mask = [[1] * len(f["input_ids"]) + [0] * (width - len(f["input_ids"])) for f in feats]
        return {"input_ids": torch.tensor(ids), "labels": torch.tensor(lab),
                "attention_mask": torch.tensor(mask)}


def check_same_loss(ours, hf, examples, device: str) -> dict:
    """Both models, the same weights, one batch of non-truncated examples: the
    token-mean losses must agree (fp32)."""
    import torch
    import torch.nn.functional as F

    from tui_ft.data.batches import collate

    batch_ex = [e for e in examples if not e.truncated][:4]
    ours, hf = ours.to(device).float().eval(), hf.to(device).float().eval()
    with torch.no_grad():
        b = collate(batch_ex, device=device)
        logits = ours(b["input_ids"])
        ours_loss = F.cross_entropy(logits.float().flatten(0, 1), b["labels"].flatten(),
                                    ignore_index=IGNORE).item()
        feats = [{"input_ids": list(e.input_ids), "labels": hf_labels(e.input_ids, e.labels)}
                 for e in batch_ex]
        hb = {k: v.to(device) for k, v in PadCollator()(feats).items()}
        hf_loss = hf(**hb).loss.item()
    if not math.isclose(ours_loss, hf_loss, rel_tol=1e-4, abs_tol=1e-4):
        raise SystemExit(f"loss mismatch before timing: tui-ft {ours_loss} vs HF {hf_loss}")
    return {"tui_ft": round(ours_loss, 6), "hf": round(hf_loss, 6)}


# ---------------------------------------------------------------------- data


def load_examples(dataset: Path, max_length: int):
    from tui_ft.config import TrainConfig
    from tui_ft.data.batches import encode_records
    from tui_ft.data.styles import load_styles
    from tui_ft.train.splits import config_splits

    c = TrainConfig(dataset=str(dataset), split_ratios=[0.85, 0.05, 0.10])
    splits, errors = config_splits(c)
    style = load_styles().get(c.prompt_style)
    train = encode_records(splits.train, style, mask_prompt=c.mask_prompt, max_length=max_length)
    val = encode_records(splits.val, style, mask_prompt=c.mask_prompt, max_length=max_length)
    return splits, train, val


def mean_val_loss(model, val, device: str, batch: int = 8) -> float:
    """Token-weighted validation loss, the same function for every final model, in
    fp32 (the judge of a loss-quality comparison must not add bf16's rounding)."""
    import torch
    import torch.nn.functional as F

    from tui_ft.data.batches import collate

    model.eval()
    total, n = 0.0, 0
    model.float()
    with torch.no_grad():
        for i in range(0, len(val), batch):
            ex = val[i:i + batch]
            b = collate(ex, device=device)
            logits = model(b["input_ids"])
            logits = logits if isinstance(logits, torch.Tensor) else logits.logits
            total += F.cross_entropy(logits.float().flatten(0, 1), b["labels"].flatten(),
                                     ignore_index=IGNORE, reduction="sum").item()
            n += sum(e.n_targets for e in ex)
    return total / max(1, n)


# ---------------------------------------------------------------------- plan


class Plan:
    """Steps, the boundary step B after which the steady-state window starts, and the
    window's tokens. B is the end of epoch 1 for a full run of 2+ epochs; for a run
    cut by --max-steps, a quarter of the steps (warm-up excluded)."""

    def __init__(self, args, n_train: int, batch: int | None = None,
                 grad_accum: int | None = None):
        self.micro_per_epoch = math.ceil(n_train / (batch or args.batch))
        self.steps_per_epoch = math.ceil(self.micro_per_epoch / (grad_accum or args.grad_accum))
        self.total = (args.max_steps if args.max_steps > 0
                      else math.ceil(self.steps_per_epoch * args.epochs))
        if args.max_steps <= 0 and args.epochs >= 2:
            last = math.ceil(args.epochs)
            self.boundary = self.steps_per_epoch
            self.window = "epoch 2" if last == 2 else f"epochs 2-{last}"
        else:
            self.boundary = max(1, self.total // 4)
            self.window = f"steps {self.boundary + 1}-{self.total}"


def _mfu(tokens_per_s, n_params, cfg, mean_len, device) -> float | None:
    peak = peak_flops(device)
    if peak is None or not tokens_per_s:
        return None
    flops_per_token = 6 * n_params + 12 * cfg.n_layer * cfg.n_embd * mean_len
    return round(tokens_per_s * flops_per_token / peak, 4)


def _bf16_of(args, result: dict) -> bool:
    """Whether a run trained in bf16 autocast (its variant may override --precision)."""
    return VARIANTS.get(result.get("variant"), {}).get("bf16", args.bf16)


def _flop_params(model) -> int:
    # Every parameter but the position embeddings: the tied output projection costs
    # 2*V*d FLOPs a token forward, so the token embeddings count once.
    return model.num_parameters() - model.wpe.weight.numel()


# ---------------------------------------------------------------------- tui-ft


# tui-ft configurations the benchmark can run: name -> TrainConfig options.
VARIANTS = {
    "eager": {},
    # CUDA graphs over bucketed widths (the padding rounds each batch up to 64 tokens).
    "compiled": {"torch_compile": True, "torch_compile_mode": "reduce-overhead",
                 "pad_to_multiple_of": 64},
    "packed": {"packing": True},
    "packed-compiled": {"packing": True, "torch_compile": True,
                        "torch_compile_mode": "reduce-overhead"},
    # The fp32 path whatever --precision says: the reference for the loss-quality
    # claim (bf16 must reach the same validation loss within noise).
    "fp32": {"bf16": False},
}


def items_for(variant: str, train, args):
    """What the engine batches for `variant`: the examples, or the packed rows (built
    as the Trainer builds them, from the same seed)."""
    if VARIANTS[variant].get("packing"):
        from tui_ft.data.batches import pack_examples

        return pack_examples(train, args.max_length, seed=args.seed)
    return train


def run_tui_ft(args, plan, init_dir: Path, items, device: str, tmp: Path,
               variant: str = "eager") -> dict:
    import torch

    from tui_ft.config import TrainConfig
    from tui_ft.data.batches import Pack, batch_order
    from tui_ft.runs.jobs import prepare_run
    from tui_ft.runs.worker import run_in_process

    packed = bool(VARIANTS[variant].get("packing"))
    batch = args.rows if packed else args.batch
    grad_accum = 1 if packed else args.grad_accum
    cfg = TrainConfig.from_dict({
        "model": str(init_dir), "dataset": str(args.dataset),
        "split_ratios": [0.85, 0.05, 0.10], "max_length": args.max_length,
        "output_dir": str(tmp / f"tui-ft-{variant}"), "num_train_epochs": float(args.epochs),
        "max_steps": args.max_steps if args.max_steps > 0 else -1,
        "per_device_train_batch_size": batch, "per_device_eval_batch_size": args.batch,
        "gradient_accumulation_steps": grad_accum, "learning_rate": args.lr,
        "weight_decay": args.weight_decay, "eval_strategy": "epoch", "save_strategy": "no",
        "load_best_model_at_end": False, "logging_steps": plan.boundary,
        "bf16": args.bf16, "device": device, "seed": args.seed,
        "logging_dir": str(tmp / f"tui-ft-{variant}-logs"),
        **VARIANTS[variant],
    })
    run, cfg = prepare_run(cfg)
    events: list[dict] = []

    def on_event(e: dict) -> None:
        e = dict(e)
        e["t"] = time.perf_counter()
        events.append(e)

    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    state = run_in_process(run, on_event=on_event)
    t_end = time.perf_counter()
    if state != "finished":
        raise SystemExit(f"tui-ft run ended {state}")
    peak = torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else None

    # Non-padding tokens of each step, from the engine's own (seeded) batch order.
    lengths = [i.length if isinstance(i, Pack) else len(i.input_ids) for i in items]
    step_tokens, epoch = [], 0
    while len(step_tokens) < plan.total:
        order = batch_order(lengths, batch, seed=cfg.seed, epoch=epoch, shuffle=True,
                            group_by_length=cfg.group_by_length)
        for i in range(0, len(order), grad_accum):
            step_tokens.append(sum(lengths[j] for b in order[i:i + grad_accum] for j in b))
        epoch += 1
    step_tokens = step_tokens[:plan.total]

    def t_after(step: int) -> float:
        # The latest event at `step` (log, then evaluation if one ran there).
        return max(e["t"] for e in events if e.get("step") == step and
                   ("train_loss" in e or "val_loss" in e))

    t_start_log = next(e["t"] for e in events if e.get("event") == "start")
    t_last_log = next(e["t"] for e in events if e.get("step") == plan.total and "train_loss" in e)
    steady_s = t_last_log - t_after(plan.boundary)
    steady_tok = sum(step_tokens[plan.boundary:])
    vals = [e for e in events if "val_loss" in e]
    return {"state": state, "steady_s": steady_s, "steady_tokens": steady_tok,
            "steady_steps": plan.total - plan.boundary,
            "run_s": t_end - t0, "train_s": t_last_log - t_start_log,
            "run_tokens": sum(step_tokens), "peak_mem_mb": peak,
            "val_losses": [round(e["val_loss"], 5) for e in vals],
            "final_val_loss": vals[-1]["val_loss"] if vals else None,
            "run_dir": run.path}


# ---------------------------------------------------------------------- HF


def run_hf(args, plan, hf_model, train, val, device: str, tmp: Path) -> dict:
    import torch
    from transformers import Trainer, TrainerCallback, TrainingArguments

    tr = [{"input_ids": list(e.input_ids), "labels": hf_labels(e.input_ids, e.labels)}
          for e in train]
    va = [{"input_ids": list(e.input_ids), "labels": hf_labels(e.input_ids, e.labels)}
          for e in val]
    cuda = device == "cuda"
    targs = TrainingArguments(
        output_dir=str(tmp / "hf-run"), per_device_train_batch_size=args.batch,
        per_device_eval_batch_size=args.batch, gradient_accumulation_steps=args.grad_accum,
        learning_rate=args.lr, weight_decay=args.weight_decay,
        num_train_epochs=args.epochs, max_steps=args.max_steps if args.max_steps > 0 else -1,
        lr_scheduler_type="linear", warmup_steps=0, max_grad_norm=1.0,
        optim="adamw_torch_fused" if cuda else "adamw_torch", bf16=args.bf16,
        use_cpu=not cuda, eval_strategy="epoch", save_strategy="no",
        logging_strategy="steps", logging_steps=plan.boundary, report_to="none",
        disable_tqdm=True, seed=args.seed, dataloader_num_workers=0,
        remove_unused_columns=False)

    # Non-padding tokens seen in training, counted on the device (no sync per step).
    seen = torch.zeros((), dtype=torch.long, device=device)

    def count(module, a, kw):
        if module.training:
            seen.add_(kw["attention_mask"].sum())

    hook = hf_model.register_forward_pre_hook(count, with_kwargs=True)
    marks: dict[int, dict] = {}

    class Clock(TrainerCallback):
        def _mark(self, state, what):
            if cuda:
                torch.cuda.synchronize()
            marks.setdefault(state.global_step, {})[what] = (time.perf_counter(),
                                                             int(seen.item()))

        def on_train_begin(self, a, state, control, **kw):
            self._mark(state, "begin")

        def on_log(self, a, state, control, logs=None, **kw):
            if logs and "loss" in logs:
                self._mark(state, "log")

        def on_step_end(self, a, state, control, **kw):
            if state.global_step in (plan.boundary, plan.total):
                self._mark(state, "step")

        def on_evaluate(self, a, state, control, **kw):
            self._mark(state, "eval")

    trainer = Trainer(model=hf_model, args=targs, train_dataset=tr, eval_dataset=va,
                      data_collator=PadCollator(), callbacks=[Clock()])
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(sys.stderr):  # HF prints its log dicts to stdout
        trainer.train()
    t_end = time.perf_counter()
    hook.remove()
    peak = torch.cuda.max_memory_allocated() / 2**20 if cuda else None
    b, last = marks[plan.boundary], marks[plan.total]
    t_b = max(v[0] for v in b.values())  # after the log and the evaluation at B
    vals = [h["eval_loss"] for h in trainer.state.log_history if "eval_loss" in h]
    return {"steady_s": last["step"][0] - t_b,
            "steady_tokens": last["step"][1] - b["step"][1],
            "steady_steps": plan.total - plan.boundary, "run_s": t_end - t0,
            "train_s": last["step"][0] - marks[0]["begin"][0],
            "run_tokens": last["step"][1], "peak_mem_mb": peak,
            "val_losses": [round(v, 5) for v in vals],
            "final_val_loss": vals[-1] if vals else None, "model": trainer.model}


# ---------------------------------------------------------------------- main


def parse_variants(parser, text: str, known) -> list[str]:
    """The comma-separated variant names of `text`; an unknown one is a usage error."""
    variants = [v.strip() for v in text.split(",") if v.strip()]
    unknown = [v for v in variants if v not in known]
    if unknown:
        parser.error(f"unknown variant(s) {', '.join(unknown)}: use {', '.join(known)}")
    return variants


CHILD_RESULT = "CHILD-RESULT "


def one_run(args, name: str, variants, train, val, plan, init_dir: Path, tmp: Path) -> dict:
    """One run of `name` ("tui-ft:VARIANT" or "hf-trainer") from the weights in
    `init_dir`, scored by the common validation-loss function; JSON-ready."""
    import torch

    from tui_ft.model.weights import load_model

    if name.startswith("tui-ft:"):
        variant = name.split(":", 1)[1]
        items = items_for(variant, train, args)
        packed = items is not train
        plan = Plan(args, len(items), batch=args.rows, grad_accum=1) if packed else plan
        r = run_tui_ft(args, plan, init_dir, items, args.device, tmp, variant)
        r["variant"] = variant
        if packed:
            r["packing"] = {"rows": len(items), "rows_per_step": args.rows,
                            "fill": round(sum(i.length for i in items)
                                          / (len(items) * args.max_length), 4)}
        ckpt = sorted((r.pop("run_dir") / "checkpoints").glob("checkpoint-*"),
                      key=lambda q: int(q.name.split("-")[1]))[-1]
        final, _ = load_model(str(ckpt), device=args.device)
    else:
        ours, _ = load_model(str(init_dir), device="cpu")
        r = run_hf(args, plan, hf_from_ours(ours), train, val, args.device, tmp)
        final = r.pop("model")
    r["val_loss_common"] = mean_val_loss(final, val, args.device, args.batch)
    r["steps_per_epoch"], r["window"] = plan.steps_per_epoch, plan.window
    r["max_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    del final
    if args.device == "cuda":
        torch.cuda.empty_cache()
    return r


def child_run(argv, name: str, init_dir: Path, tmp: Path) -> dict:
    """`one_run` in a fresh Python process with the same arguments."""
    import subprocess

    cmd = [sys.executable, str(Path(__file__).resolve()),
           *(sys.argv[1:] if argv is None else argv),
           "--child", name, "--child-init", str(init_dir), "--child-tmp", str(tmp)]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)  # stderr: progress
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(CHILD_RESULT)]
    if proc.returncode != 0 or not lines:
        raise SystemExit(f"{name}: the run's process failed (exit {proc.returncode})")
    return json.loads(lines[-1][len(CHILD_RESULT):])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", choices=("cpu", "cuda"), default="cuda")
    p.add_argument("--model", choices=("tiny", "gpt2", "gpt2-medium"), default="gpt2")
    p.add_argument("--workload", choices=("w1", "w2"), default="w1")
    p.add_argument("--epochs", type=float, default=None, help="W1: 2, W2: 10")
    p.add_argument("--max-steps", type=int, default=-1)
    p.add_argument("--impl", choices=("both", "tui-ft", "hf"), default="both")
    p.add_argument("--variants", default=None,
                   help=f"tui-ft configurations, comma-separated, of {', '.join(VARIANTS)} "
                        "(default: eager on the CPU; W1 on CUDA: eager,compiled; W2 on CUDA: "
                        "packed,packed-compiled)")
    p.add_argument("--rows", type=int, default=None,
                   help="packed variants: rows of max-length tokens per step (default: "
                        "16k tokens a step)")
    p.add_argument("--batch", type=int, default=None, help="W1: 8, W2: 16")
    p.add_argument("--grad-accum", type=int, default=None,
                   help="W1: 1; W2: enough for >= 16k tokens a step")
    p.add_argument("--max-length", type=int, default=1024,
                   help="capped at the model's context (tiny: 256)")
    p.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto",
                   help="bf16 autocast or fp32 for both implementations (auto: bf16 on "
                        "CUDA, fp32 on the CPU); the fp32 variant is fp32 regardless")
    p.add_argument("--dataset", type=Path, default=DATA_W1)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--repeat", type=int, default=1,
                   help="runs of each implementation, alternating; the median is reported")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--in-process", action="store_true",
                   help="run everything in this one process (HF Trainer first), instead of "
                        "a process per run")
    # Internal: one run in a child process (see one_run).
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--child-init", type=Path, default=None, help=argparse.SUPPRESS)
    p.add_argument("--child-tmp", type=Path, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda but no CUDA device is available (use --device cpu)")
    if args.workload == "w2":
        if args.device != "cuda":
            p.error("workload w2 (gpt2-medium, >= 16k tokens per optimizer step) is a GPU "
                    "throughput test; on the CPU it would run for days. Use --device cuda, "
                    "or workload w1 with --model tiny --max-steps N on the CPU")
        if args.model != "gpt2-medium":
            log("w2 uses gpt2-medium")
        args.model = "gpt2-medium"
    args.batch = args.batch or (16 if args.workload == "w2" else 8)
    args.epochs = args.epochs or (10.0 if args.workload == "w2" else 2.0)
    if args.variants is None:
        args.variants = ("eager" if args.device == "cpu" else
                         "packed,packed-compiled" if args.workload == "w2" else "eager,compiled")
    variants = parse_variants(p, args.variants, VARIANTS)
    args.lr, args.weight_decay = 5e-5, 0.1
    args.bf16 = (args.device == "cuda") if args.precision == "auto" else args.precision == "bf16"
    if not args.dataset.is_file():
        p.error(f"{args.dataset}: no such data file")

    from tui_ft.model.presets import get_preset
    from tui_ft.model.weights import save_checkpoint_weights

    context = get_preset(args.model).context_length
    if args.max_length > context:
        log(f"max length {args.max_length} capped at {args.model}'s context {context}")
        args.max_length = context
    splits, train, val = load_examples(args.dataset, args.max_length)
    lengths = [len(e.input_ids) for e in train]
    mean_len = sum(lengths) / len(lengths)
    if args.grad_accum is None:
        # W2: at least 16k non-padding tokens an optimizer step on average.
        args.grad_accum = (max(1, math.ceil(16384 / (args.batch * mean_len)))
                           if args.workload == "w2" else 1)
    args.rows = args.rows or max(1, math.ceil(16384 / args.max_length))
    plan = Plan(args, len(train))
    truncated = sum(e.truncated for e in train)
    workload = {"name": args.workload, "data": args.dataset.name, "style": "alpaca",
                "split": "85/5/10", "train": len(train), "val": len(val),
                "test": len(splits.test), "batch": args.batch, "grad_accum": args.grad_accum,
                "max_length": args.max_length, "lr": args.lr, "weight_decay": args.weight_decay,
                "epochs": args.epochs, "max_steps": args.max_steps, "total_steps": plan.total,
                "steps_per_epoch": plan.steps_per_epoch, "steady_window": plan.window,
                "mean_tokens_per_example": round(mean_len, 1),
                "mean_tokens_per_step": round(mean_len * args.batch * args.grad_accum),
                "truncated_train_examples": truncated}
    if args.child:
        result = one_run(args, args.child, variants, train, val, plan, args.child_init,
                         args.child_tmp)
        print(CHILD_RESULT + json.dumps(result), flush=True)
        return 0
    log(f"workload: {json.dumps(workload)}")

    ours = build_init(args.model)
    hf_check = None
    if args.impl in ("both", "hf"):
        hf = hf_from_ours(ours)
        hf_check = check_same_loss(ours, hf, train, args.device)
        log(f"same weights, same batch: loss tui-ft {hf_check['tui_ft']} HF {hf_check['hf']}")
        del hf
    ours = ours.cpu()
    n_flop = _flop_params(ours)
    cfg = ours.config

    out = open(args.out, "a", encoding="utf-8") if args.out else None
    results = {}
    with tempfile.TemporaryDirectory(prefix="tui-ft-bench-") as tmpdir:
        tmp = Path(tmpdir)
        init_dir = tmp / "init"
        save_checkpoint_weights(ours, init_dir)
        runs: dict[str, list[dict]] = {}
        names = ([f"tui-ft:{v}" for v in variants] if args.impl in ("both", "tui-ft")
                 else []) + (["hf-trainer"] if args.impl in ("both", "hf") else [])
        # HF first: the reference, had a later run to be cut short (a time limit on a
        # lent GPU); and in one process, the tui-ft trainer's malloc setting then
        # cannot help it (in the first repeat).
        names.sort(key=lambda n: n != "hf-trainer")
        # Each run in a process of its own: what one run does to the process (the
        # tui-ft trainer tunes glibc's malloc on the CPU; CUDA's caching allocator;
        # compiled code) cannot help or hurt the next, and each has its own peak RSS.
        # Repeats alternate the implementations, so a slow spell of a shared machine
        # falls on all of them; every run starts from the same initial weights.
        for repeat in range(args.repeat):
            for name in names:
                log(f"{name}: run {repeat + 1} of {args.repeat}")
                run_tmp = tmp / f"r{repeat}-{name.replace(':', '-')}"
                run_tmp.mkdir()
                r = (one_run(args, name, variants, train, val, plan, init_dir, run_tmp)
                     if args.in_process else child_run(argv, name, init_dir, run_tmp))
                runs.setdefault(name, []).append(r)
                # The figures of each run as soon as it ends, should the whole be cut.
                log(f"{name} run {repeat + 1}: {r['steady_tokens'] / r['steady_s']:.1f} "
                    f"tokens/s, {1000 * r['steady_s'] / r['steady_steps']:.2f} ms/step "
                    f"({r['window']}), val losses {r['val_losses']}, common val loss "
                    f"{r['val_loss_common']:.5f}, peak {r['peak_mem_mb']} MB")
        # Each implementation's median run by tokens/s, the others listed with it.
        for name, rs in runs.items():
            rs.sort(key=lambda r: r["steady_tokens"] / r["steady_s"])
            results[name] = dict(rs[len(rs) // 2])
            results[name]["all_tokens_per_s"] = [round(r["steady_tokens"] / r["steady_s"], 1)
                                                 for r in rs]

    for name, r in results.items():
        tps = r["steady_tokens"] / r["steady_s"]
        extra = {}
        if "variant" in r:
            extra = {"variant": r["variant"], "options": VARIANTS[r["variant"]],
                     "steps_per_epoch": r["steps_per_epoch"]}
            if "packing" in r:
                extra["packing"] = r["packing"]
        emit({"impl": name.split(":")[0], **extra, "workload": workload, "model": args.model,
              "device": args.device,
              "precision": "bf16 autocast" if _bf16_of(args, r) else "fp32",
              "tokens_per_s": round(tps, 1),
              # Steady-state seconds an epoch: the window's time per step, times the
              # steps of one epoch (the window itself may span several epochs).
              "epoch_s": round(r["steady_s"] / r["steady_steps"] * r["steps_per_epoch"], 3),
              "steady_s": round(r["steady_s"], 3), "steady_window": r["window"],
              "steady_steps": r["steady_steps"], "steady_tokens": r["steady_tokens"],
              "ms_per_step": round(1000 * r["steady_s"] / r["steady_steps"], 2),
              "peak_mem_mb": round(r["peak_mem_mb"], 1) if r["peak_mem_mb"] else None,
              "mfu": _mfu(tps, n_flop, cfg, mean_len, args.device),
              "final_val_loss": round(r["final_val_loss"], 5),
              "val_losses": r["val_losses"],
              "val_loss_common": round(r["val_loss_common"], 5),
              "whole_run": {"s": round(r["run_s"], 3), "train_s": round(r["train_s"], 3),
                            "tokens": r["run_tokens"],
                            "tokens_per_s": round(r["run_tokens"] / r["train_s"], 1)},
              "loss_check": hf_check, "flop_params": n_flop,
              "runs": len(r["all_tokens_per_s"]), "all_tokens_per_s": r["all_tokens_per_s"],
              "max_rss_mb": r["max_rss_mb"]},
             out)
    emit(machine_line(args.device, "train_throughput"), out)
    if out:
        out.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
