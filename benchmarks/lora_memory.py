"""Full fine-tuning (with AdamW, and with bitsandbytes' 8-bit AdamW) against LoRA
(and LoRA on a bitsandbytes int8 base) for one model shape: peak memory, tokens/s and
the validation loss after the same steps, each variant a training run of its own in
its own process (`python -m tui_ft.runs.worker RUN`). The 8-bit variants need
`pip install "tui-ft[bnb]"`; bitsandbytes 0.50 runs them on the CPU too.

Peak memory is the process's peak resident set on the CPU (its rusage, so the
interpreter and torch count too), torch's peak allocated on CUDA. Without network
the pretrained weights cannot be fetched: `--random` builds the preset's shape with
random weights into a .safetensors file first (the speed and memory are the shape's;
the losses then say only that every variant trains).

    python benchmarks/lora_memory.py --model gpt2-medium --random --max-steps 8  # CPU
    python benchmarks/lora_memory.py --model gpt2-medium --device cuda --bf16 \\
        --max-steps 100 --variants full,adam8,lora,lora8                            # GPU
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from train_throughput import machine_line  # noqa: E402

VARIANTS = {
    "full": {},
    "adam8": {"optim": "adamw_bnb_8bit"},
    "lora": {"lora_r": 16, "lora_alpha": 32.0, "lora_target_modules": ["c_attn"]},
    "lora8": {"lora_r": 16, "lora_alpha": 32.0, "lora_target_modules": ["c_attn"],
              "load_in_8bit": True},
}

# The worker, with its peaks written at exit: resident set (the CPU case) and CUDA.
_WORKER = """
import atexit, json, resource, sys, torch
from tui_ft.runs.worker import main
def _peaks():
    peaks = {"rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}
    if torch.cuda.is_available():
        peaks["cuda_bytes"] = torch.cuda.max_memory_allocated()
    open(sys.argv[2], "w").write(json.dumps(peaks))
atexit.register(_peaks)
sys.exit(main([sys.argv[1]]))
"""


def random_weights(model: str, folder: Path) -> str:
    """The preset's shape with random weights, as a .safetensors file."""
    import torch

    from tui_ft.model.gpt import GPT, GPTConfig
    from tui_ft.model.presets import get_preset
    from tui_ft.model.weights import save_checkpoint_weights

    torch.manual_seed(0)
    gpt = GPT(GPTConfig(**get_preset(model).config_dict()))
    save_checkpoint_weights(gpt, folder)
    return str(folder)


def run_variant(name: str, args, source: str, work: Path) -> dict:
    from tui_ft.config import TrainConfig
    from tui_ft.runfolder import Run

    folder = work / name
    folder.mkdir()
    TrainConfig.from_dict({
        "model": source, "dataset": args.dataset, "device": args.device,
        "max_steps": args.max_steps, "logging_steps": 1, "eval_strategy": "steps",
        "eval_steps": args.max_steps, "save_strategy": "no",
        "load_best_model_at_end": False, "per_device_train_batch_size": args.batch,
        "max_length": args.max_length, "bf16": args.bf16,
        "learning_rate": args.lr_lora if "lora_r" in VARIANTS[name] else args.lr_full, "split_ratios": [0.9, 0.05, 0.05],
        "output_dir": str(folder), **VARIANTS[name]}).save(folder / "config.yaml")
    peak_file = folder / "peaks.json"
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", _WORKER, str(folder), str(peak_file)],
                          cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True)
    out = proc.stdout
    wall = time.perf_counter() - started
    run = Run(folder)
    state = run.read_status()
    if state.get("state") != "finished":
        return {"benchmark": "lora_memory", "variant": name, "error": state.get("error")
                or out[-1000:]}
    steps = [m for m in run.read_metrics() if "tokens_per_s" in m and "event" not in m]
    start = next(m for m in run.read_metrics() if m.get("event") == "start")
    val = [m["val_loss"] for m in run.read_metrics() if "val_loss" in m and "event" not in m]
    row = {"benchmark": "lora_memory", "variant": name, "model": args.model,
           "random_weights": args.random, "device": args.device, "bf16": args.bf16,
           "batch": args.batch, "max_length": args.max_length, "steps": len(steps),
           "learning_rate": args.lr_lora if "lora_r" in VARIANTS[name] else args.lr_full,
           "parameters": start.get("parameters"),
           "trainable_parameters": start.get("trainable_parameters"),
           "tokens_per_s": round(statistics.median(m["tokens_per_s"] for m in steps[1:]
                                                   or steps), 1),
           "final_val_loss": val[-1] if val else None, "wall_s": round(wall, 1)}
    if peak_file.is_file():
        peaks = json.loads(peak_file.read_text())
        row["peak_rss_mb"] = round(peaks["rss_kb"] / 1024, 1)
        if "cuda_bytes" in peaks:
            row["peak_cuda_mb"] = round(peaks["cuda_bytes"] / 2**20, 1)
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="gpt2-medium")
    parser.add_argument("--random", action="store_true",
                        help="the preset's shape with random weights (no download)")
    parser.add_argument("--variants", default="full,adam8,lora,lora8")
    parser.add_argument("--dataset", default=str(ROOT.parent / "shared" / "data" /
                                                 "instruction-data.json"))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--max-steps", type=int, default=8)
    parser.add_argument("--bf16", action="store_true")
    parser.add_argument("--lr-full", type=float, default=5e-5,
                        help="learning rate of full fine-tuning (full, adam8)")
    parser.add_argument("--lr-lora", type=float, default=2e-4,
                        help="learning rate of the LoRA variants (lora, lora8)")
    args = parser.parse_args(argv)
    print(json.dumps(machine_line(args.device, "lora_memory")), flush=True)
    with tempfile.TemporaryDirectory(prefix="tui-ft-lora-") as tmp:
        work = Path(tmp)
        source = random_weights(args.model, work / "base") if args.random else args.model
        for name in args.variants.split(","):
            print(json.dumps(run_variant(name, args, source, work)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
