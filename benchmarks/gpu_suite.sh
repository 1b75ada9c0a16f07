#!/usr/bin/env bash
# The GPU checks and benchmarks of issue 6, in parts that each fit one 10-minute call
# on a lent GPU machine (the `device` tool), results under $OUT (default: ./gpu-out).
#
# Prepare once, here (both folders are git-ignored and travel with `carry`):
#   mkdir -p .bench-data && cp ../shared/data/instruction-data.json .bench-data/
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#       --implementation cp --platform manylinux_2_24_x86_64 -d .whl platformdirs \
#       "bitsandbytes>=0.50"
# Then, on the GPU machine (carry [".whl", ".bench-data"]):
#   bash benchmarks/gpu_suite.sh tests      # tests/test_gpu.py + generation (< 10 min)
#   bash benchmarks/gpu_suite.sh w1         # W1 gpt2-medium: HF Trainer, eager, compiled,
#                                           # and fp32 (the loss-quality reference)
#   bash benchmarks/gpu_suite.sh w2         # W2 gpt2-medium, >= 16k tokens a step; memory
#   bash benchmarks/gpu_suite.sh lora       # full / 8-bit AdamW / LoRA / LoRA on int8
#                                           # (gpt2-medium's shape, random weights)
# The machine has torch, transformers, accelerate, pytest, tiktoken, safetensors,
# pyyaml; tui-ft's engine needs platformdirs too, and the 8-bit tests and variants
# bitsandbytes (the wheels above, 43 MB of carry's 64); no textual (the engine never
# imports it).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-$PWD/gpu-out}"
mkdir -p "$OUT"
if ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH="/tmp/site:$PWD"
else
    export PYTHONPATH="$PWD"
fi
export PYTHONUNBUFFERED=1
DATA=.bench-data/instruction-data.json
[ -f "$DATA" ] || DATA=../shared/data/instruction-data.json

part="${1:-tests}"
case "$part" in
tests)
    nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1
    python3 -c 'import torch, transformers; print(torch.__version__, torch.version.cuda, transformers.__version__, torch.cuda.get_device_name(0))' \
        | tee "$OUT/versions.txt"
    timeout 380 python3 -m pytest -q -p no:cacheprovider -o addopts="" tests/test_gpu.py 2>&1 \
        | tee "$OUT/gpu_tests.log"
    timeout 170 python3 benchmarks/generate_throughput.py --device cuda --model gpt2 \
        --dataset "$DATA" --out "$OUT/generate.jsonl" 2> "$OUT/generate.err"
    ;;
w1)
    timeout 560 python3 benchmarks/train_throughput.py --device cuda --model gpt2-medium \
        --variants eager,compiled,fp32 --dataset "$DATA" --out "$OUT/train_w1.jsonl" 2>&1 \
        | tee "$OUT/train_w1.log"
    ;;
w2)
    timeout 480 python3 benchmarks/train_throughput.py --device cuda --workload w2 \
        --dataset "$DATA" --out "$OUT/train_w2.jsonl" 2>&1 | tee "$OUT/train_w2.log"
    timeout 90 python3 benchmarks/memory_estimate.py --device cuda --presets gpt2,gpt2-medium \
        --precisions fp32,bf16 --batch 8 --seq-len 512 --out "$OUT/memory.jsonl" \
        2> "$OUT/memory.err"
    ;;
lora)
    timeout 560 python3 benchmarks/lora_memory.py --device cuda --bf16 --model gpt2-medium \
        --random --max-steps 100 --variants full,adam8,lora,lora8 --dataset "$DATA" 2>&1 \
        | tee "$OUT/lora_memory.jsonl"
    ;;
*)
    echo "usage: $0 tests|w1|w2|lora" >&2
    exit 2
    ;;
esac
