"""The benchmark scripts still run (they are not part of the suite's figures, but a
GPU session has minutes to run them: they must not break unnoticed). Tiny sizes on
the CPU, real processes, and the JSON each prints is checked for the fields the
issue's contract names."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def run_bench(script: str, *args: str, timeout: float = 300) -> list[dict]:
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *args],
                         capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, out.stderr[-3000:]
    return [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]


def test_train_throughput_runs_tui_ft_variants_in_their_own_processes(shared_instructions):
    # HF's Trainer beside ours only on request: accelerate comes with the test extra
    # (peft needs it), and the comparison doubles the test's time in CI.
    both = os.environ.get("TUI_FT_BENCH_HF") == "1" and importlib.util.find_spec("accelerate")
    impls = ["both"] if both else ["tui-ft"]
    lines = run_bench("train_throughput.py", "--device", "cpu", "--model", "tiny",
                      "--max-steps", "4", "--variants", "eager,packed", "--rows", "4",
                      "--impl", impls[0], "--dataset", str(shared_instructions))
    rows = [r for r in lines if "impl" in r]
    by = {(r["impl"], r.get("variant")): r for r in rows}
    assert {("tui-ft", "eager"), ("tui-ft", "packed")} <= set(by)
    for r in rows:
        for key in ("impl", "workload", "model", "device", "tokens_per_s", "epoch_s",
                    "ms_per_step", "peak_mem_mb", "mfu", "final_val_loss"):
            assert key in r, key
        assert r["tokens_per_s"] > 0 and r["runs"] == 1 and r["max_rss_mb"] > 0
    packed = by[("tui-ft", "packed")]
    assert packed["packing"]["rows_per_step"] == 4 and 0.5 < packed["packing"]["fill"] <= 1
    assert by[("tui-ft", "eager")]["steps_per_epoch"] == 118
    if impls[0] == "both":
        hf = by[("hf-trainer", None)]
        assert hf["loss_check"]["tui_ft"] == pytest.approx(hf["loss_check"]["hf"], abs=1e-4)
    assert lines[-1]["benchmark"] == "train_throughput" and "machine" in lines[-1]


def test_train_throughput_in_one_process(shared_instructions):
    lines = run_bench("train_throughput.py", "--device", "cpu", "--model", "tiny",
                      "--max-steps", "3", "--impl", "tui-ft", "--in-process", "--repeat", "2",
                      "--dataset", str(shared_instructions))
    rows = [r for r in lines if "impl" in r]
    assert len(rows) == 1 and rows[0]["variant"] == "eager" and rows[0]["runs"] == 2
    assert len(rows[0]["all_tokens_per_s"]) == 2



def test_train_throughput_precision_and_the_fp32_reference(shared_instructions):
    lines = run_bench("train_throughput.py", "--device", "cpu", "--model", "tiny",
                      "--max-steps", "3", "--impl", "tui-ft", "--in-process",
                      "--precision", "bf16", "--variants", "eager,fp32",
                      "--dataset", str(shared_instructions))
    by = {r["variant"]: r for r in lines if "impl" in r}
    assert by["eager"]["precision"] == "bf16 autocast" and by["fp32"]["precision"] == "fp32"
    assert by["fp32"]["options"] == {"bf16": False}
    # Three steps from the same weights: bf16 autocast trains as fp32 does, and the
    # common (fp32) judge scores both.
    assert by["eager"]["val_loss_common"] == pytest.approx(by["fp32"]["val_loss_common"],
                                                           abs=0.02)
    # The trainer's own evaluation runs in the run's precision: bf16 rounds it.
    assert by["eager"]["final_val_loss"] != by["fp32"]["final_val_loss"]

def test_generate_throughput_compares_the_decoding_paths(shared_instructions):
    lines = run_bench("generate_throughput.py", "--device", "cpu", "--model", "tiny",
                      "--limit", "6", "--max-new-tokens", "6", "--variants", "dynamic,static",
                      "--dataset", str(shared_instructions))
    impls = [(r["impl"], r.get("variant")) for r in lines if "impl" in r]
    assert impls == [("tui-ft", "dynamic"), ("tui-ft", "static"), ("hf-generate", None)]
    agreements = [r["agreement"] for r in lines if "agreement" in r]
    assert [a["tui_ft_variant"] for a in agreements] == ["dynamic", "static"]
    assert all(a["same_all"] == a["all"] == 6 for a in agreements)


def test_memory_estimate_benchmark_agrees_on_the_cpu():
    lines = run_bench("memory_estimate.py", "--presets", "tiny", "--precisions", "fp32",
                      "--batch", "2", "--seq-len", "64", "--no-profile", "--device", "cpu")
    rows = [r for r in lines if "machine" not in r]
    assert [(r["preset"], r["precision"], r["loss"]) for r in rows] == [
        ("tiny", "fp32", "chunked")]
    row = rows[0]
    assert row["targets"] == 96  # a quarter of each 64-token row unlabelled
    for part in ("weights", "gradients", "optimizer", "activations"):
        assert row["measured"][part] == row["estimate"][part], part


def test_train_scaling_runs_one_and_two_ranks_through_the_launcher():
    lines = run_bench("train_scaling.py", "--ranks", "1,2", "--max-steps", "5",
                      "--warmup", "1", "--max-length", "48")
    assert lines[0]["benchmark"] == "train_scaling" and "machine" in lines[0]
    rows = {r["ranks"]: r for r in lines[1:]}
    assert set(rows) == {1, 2}
    for ranks, r in rows.items():
        assert r["steps"] == 5 and r["tokens_per_s"] > 0
        assert r["global_batch"] == 4 * ranks and r["strategy"] == "ddp"
    assert rows[1]["efficiency"] == 1.0 and rows[2]["efficiency"] > 0


def test_lora_memory_runs_each_variant_in_its_own_process(shared_instructions):
    pytest.importorskip("bitsandbytes")  # the 8-bit variants (the test extra has it)
    lines = run_bench("lora_memory.py", "--model", "tiny", "--random", "--max-steps", "2",
                      "--max-length", "48", "--variants", "full,adam8,lora8",
                      "--dataset", str(shared_instructions))
    assert lines[0]["benchmark"] == "lora_memory" and "machine" in lines[0]
    rows = {r["variant"]: r for r in lines[1:]}
    assert set(rows) == {"full", "adam8", "lora8"}
    for r in rows.values():
        assert r["steps"] == 2 and r["tokens_per_s"] > 0 and r["peak_rss_mb"] > 0, r
        assert r["final_val_loss"] is not None
    full, lora = rows["full"], rows["lora8"]
    assert full["trainable_parameters"] == full["parameters"] == rows["adam8"]["parameters"]
    assert 0 < lora["trainable_parameters"] < full["parameters"] / 50
