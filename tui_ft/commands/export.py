"""`tui-ft export SOURCE OUT_DIR`: write a model (preset, checkpoint, run or foreign
weights) in Hugging Face GPT-2 layout, loadable by `GPT2LMHeadModel.from_pretrained`,
with GPT-2's tokenizer files for `AutoTokenizer.from_pretrained`."""

from __future__ import annotations

import sys

from ..text import visible


def run(args) -> int:
    from .progress import DownloadProgress
    from ..model.export import check_export_target, export_hf
    from ..model.weights import load_model
    from ..runs.run_source import run_checkpoint

    # Refuse before loading (and perhaps downloading) anything.
    out = check_export_target(args.out_dir)
    progress = DownloadProgress(f"downloading {visible(args.source, keep_newlines=False)}")
    try:
        model, info = load_model(args.source, device="cpu", progress=progress,
                                 runs=run_checkpoint)
    finally:
        progress.close()
    written = export_hf(model, out)
    print(f"exported {visible(info.describe(), keep_newlines=False)}")
    print(f"to {visible(str(out), keep_newlines=False)}:")
    width = max(len(p.name) for p in written)
    for path in written:
        print(f"  {path.name:<{width}}  {_size(path.stat().st_size):>9}")
    print(f"load it with: GPT2LMHeadModel.from_pretrained({str(out)!r})")
    if any(p.name == "vocab.json" for p in written):
        print(f"and its tokenizer: AutoTokenizer.from_pretrained({str(out)!r})")
    if any(p.parent.name == "peft_adapter" for p in written):
        print(f"the LoRA adapter alone (merged above): PeftModel.from_pretrained(BASE, "
              f"{str(out / 'peft_adapter')!r})")
    sys.stdout.flush()
    return 0


def _size(n: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"
