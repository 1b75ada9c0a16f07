"""Training throughput on 1, 2, ... N processes (torchrun, DDP or FSDP2) and the
scaling efficiency, through tui-ft's own launcher (`python -m tui_ft.runs.worker RUN
--nproc-per-node N`, what `tui-ft train --nproc-per-node N` runs).

Per world size it prints one JSON line: tokens/s summed over the ranks (the median
of the logged steps after the first `--warmup`), ms per step, the wall time, and
`efficiency` = tokens/s / (ranks x tokens/s of one process). The per-device batch is
the same at every size (Hugging Face's meaning), so N ranks do N times the work of a
step. On a CPU-only machine the ranks share its cores: the figures then check the
wiring (every size runs and trains), not the speed-up. On a machine with N GPUs, run
it with --device cuda and record the figures in RESULTS.md.

    python benchmarks/train_scaling.py --ranks 1,2 --max-steps 20            # CPU, ~1 min
    python benchmarks/train_scaling.py --device cuda --model gpt2 --ranks 1,2,4,8 \\
        --batch 8 --max-length 512 --max-steps 60 --strategy ddp
"""

from __future__ import annotations

import argparse
import json
import os
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

from tui_ft.config import TrainConfig  # noqa: E402
from tui_ft.runfolder import Run  # noqa: E402


def run_size(ranks: int, args, work: Path) -> dict:
    folder = work / f"ranks-{ranks}"
    folder.mkdir(parents=True)
    config = TrainConfig.from_dict({
        "model": args.model, "dataset": args.dataset, "device": args.device,
        "max_steps": args.max_steps, "logging_steps": 1, "eval_strategy": "no",
        "save_strategy": "no", "load_best_model_at_end": False,
        "per_device_train_batch_size": args.batch, "max_length": args.max_length,
        "bf16": args.bf16, "packing": args.packing, "distributed": args.strategy,
        "nproc_per_node": ranks, "output_dir": str(folder)})
    config.save(folder / "config.yaml")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if ranks > 1 and args.device == "cpu":
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // ranks))
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "tui_ft.runs.worker", str(folder),
                           "--nproc-per-node", str(ranks)], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=args.timeout)
    wall = time.perf_counter() - started
    run = Run(folder)
    if proc.returncode != 0 or run.read_status().get("state") != "finished":
        raise SystemExit(f"{ranks} rank(s) failed: {run.read_status().get('error')}\n"
                         f"{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    steps = [m for m in run.read_metrics() if "tokens_per_s" in m and "event" not in m]
    timed = steps[args.warmup:] or steps
    times = [m["time"] for m in steps]
    ms = (1000 * (times[-1] - times[args.warmup - 1]) / (len(times) - args.warmup)
          if len(times) > args.warmup > 0 else None)
    return {"benchmark": "train_scaling", "ranks": ranks, "strategy": args.strategy,
            "model": args.model, "device": args.device, "per_device_batch": args.batch,
            "global_batch": args.batch * ranks, "max_length": args.max_length,
            "steps": len(steps), "tokens_per_s": round(statistics.median(
                m["tokens_per_s"] for m in timed), 1),
            "ms_per_step": round(ms, 1) if ms else None, "wall_s": round(wall, 1),
            "final_train_loss": steps[-1]["train_loss"] if steps else None}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ranks", default="1,2", help="world sizes, comma-separated")
    parser.add_argument("--strategy", choices=["ddp", "fsdp"], default="ddp")
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--dataset", default="@sample/instructions.jsonl")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=4, help="per-device batch size")
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--max-steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3, help="logged steps left out")
    parser.add_argument("--bf16", action="store_true")
    parser.add_argument("--packing", action="store_true")
    parser.add_argument("--timeout", type=float, default=1800)
    args = parser.parse_args(argv)
    sizes = [int(n) for n in args.ranks.split(",")]
    print(json.dumps(machine_line(args.device, "train_scaling")), flush=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="tui-ft-scaling-") as tmp:
        for ranks in sizes:
            row = run_size(ranks, args, Path(tmp))
            rows.append(row)
            one = next((r for r in rows if r["ranks"] == 1), None)
            row["efficiency"] = (round(row["tokens_per_s"] / (ranks * one["tokens_per_s"]), 3)
                                 if one and one["tokens_per_s"] else None)
            print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
