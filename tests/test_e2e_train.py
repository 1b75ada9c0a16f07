"""End to end on the CPU: the default configuration (the tiny model on the shipped
sample data), trained for a few hundred steps with `tui-ft train`, then `tui-ft
responses` on the test split. Asserts that validation loss falls far below where it
started and that answers end at end-of-text; exact-match accuracy is measured and
reported (printed, and written to benchmarks/results/e2e_tiny_cpu.json), not asserted.

Only the length of the run and its speed-related settings differ from the defaults;
the tiny model starts from random weights, so it needs a learning rate far above the
5e-5 that suits fine-tuning a pretrained GPT-2."""

from __future__ import annotations

import json
import os
import platform
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

OVERRIDES = {
    "learning_rate": 2e-3,
    "per_device_train_batch_size": 8,
    "max_steps": 300,
    "eval_steps": 50,
    "save_steps": 50,
    "logging_steps": 10,
    "max_new_tokens": 32,
}
RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "e2e_tiny_cpu.json"


def untrained_val_loss(config) -> float:
    """Validation loss of the model before any step, computed as the loop does."""
    import torch
    import torch.nn.functional as F

    from tui_ft.data.batches import IGNORE_INDEX, collate, encode_records
    from tui_ft.data.styles import load_styles
    from tui_ft.model.weights import load_model
    from tui_ft.train.splits import config_splits

    model, _ = load_model(config.model, device="cpu")
    splits, _ = config_splits(config)
    examples = encode_records(splits.val, load_styles().get(config.prompt_style),
                              mask_prompt=config.mask_prompt,
                              max_length=config.max_length or model.config.context_length)
    total, targets = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(examples), 16):
            chunk = examples[start:start + 16]
            batch = collate(chunk)
            logits = model(batch["input_ids"])
            total += float(F.cross_entropy(logits.float().view(-1, logits.size(-1)),
                                           batch["labels"].view(-1),
                                           ignore_index=IGNORE_INDEX, reduction="sum"))
            targets += sum(e.n_targets for e in chunk)
    return total / targets


def machine() -> dict:
    import torch

    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"platform": platform.platform(), "python": platform.python_version(),
            "torch": torch.__version__, "cpu": cpu, "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "load_average_at_end": list(os.getloadavg())}


def test_default_config_learns_and_answers_stop_at_end_of_text(tmp_path, run_cli):
    from tui_ft.config import TrainConfig
    from tui_ft.runfolder import Run

    run_dir = tmp_path / "e2e"
    config_path = tmp_path / "e2e.yaml"
    config_path.write_text("".join(f"{k}: {json.dumps(v)}\n" for k, v in
                                   {"output_dir": str(run_dir), **OVERRIDES}.items()))
    config = TrainConfig.load(config_path)
    defaults = TrainConfig()
    assert (config.model, config.dataset, config.prompt_style) == \
        (defaults.model, defaults.dataset, defaults.prompt_style) == \
        ("tiny", "@sample/instructions.jsonl", "alpaca")
    initial = untrained_val_loss(config)

    t0 = time.monotonic()
    train = run_cli("train", str(config_path), timeout=1800)
    train_seconds = time.monotonic() - t0
    assert train.returncode == 0, train.stderr[-3000:]
    run = Run(run_dir)
    metrics = run.read_metrics()
    evals = {m["step"]: m["val_loss"] for m in metrics if "val_loss" in m and "event" not in m}
    train_losses = {m["step"]: m["train_loss"] for m in metrics if "train_loss" in m}
    status = run.read_status()

    t0 = time.monotonic()
    responses = run_cli("responses", str(run_dir), "--json", timeout=900)
    responses_seconds = time.monotonic() - t0
    assert responses.returncode == 0, responses.stderr[-3000:]
    summary = json.loads(responses.stdout)
    lines = [json.loads(l) for l in run.responses_path.read_text().splitlines()]
    reasons = [l["finish_reason"] for l in lines]
    stopped = sum(r in ("eos", "stop_string") for r in reasons) / len(reasons)

    final = evals[max(evals)]
    result = {
        "test": "tests/test_e2e_train.py",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(),
        "config_overrides": OVERRIDES,
        "steps": status["step"],
        "train_records": next(m["train"] for m in metrics if m.get("event") == "data"),
        "initial_val_loss": round(initial, 4),
        "val_loss_by_step": {str(k): round(v, 4) for k, v in sorted(evals.items())},
        "final_val_loss": round(final, 4),
        "best_val_loss": round(min(evals.values()), 4),
        "best_checkpoint": status["best_checkpoint"],
        "final_train_loss": round(train_losses[max(train_losses)], 4),
        "responses_checkpoint": summary["checkpoint"],
        "test_records": summary["count"],
        "exact_match_accuracy": round(summary["exact_match"], 4),
        "exact_match_correct": summary["correct"],
        "stopped_at_end_of_text": round(stopped, 4),
        "finish_reasons": {r: reasons.count(r) for r in sorted(set(reasons))},
        "train_seconds": round(train_seconds, 1),
        "responses_seconds": round(responses_seconds, 1),
        "examples": [{k: l[k] for k in ("id", "expected", "response", "finish_reason")}
                     for l in lines[:5]],
    }
    # The committed figures change only on purpose: TUI_FT_RECORD_RESULTS=1 rewrites them.
    if os.environ.get("TUI_FT_RECORD_RESULTS") == "1":
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print("\n" + json.dumps({k: v for k, v in result.items() if k != "examples"}, indent=2))

    assert status["state"] == "finished" and status["step"] == OVERRIDES["max_steps"]
    # From about ln(50257) = 10.8 (a uniform guess) to well under a fifth of it; the
    # issue asks for under a half, measured runs end near a tenth.
    assert final < 0.5 * initial
    assert final < 0.2 * initial, result
    assert final < evals[min(evals)]  # still falling after the first evaluation
    # The fine-tuned model ends its answers instead of running to the token limit.
    assert stopped >= 0.8, result["finish_reasons"]
    assert summary["checkpoint"] == status["best_checkpoint"]
