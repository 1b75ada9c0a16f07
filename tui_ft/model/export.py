"""Write a model as a Hugging Face GPT-2 folder (config.json, model.safetensors,
generation_config.json and GPT-2's tokenizer files), loadable by transformers'
GPT2LMHeadModel and AutoTokenizer; into a folder that is absent or empty, renamed
into place only when complete."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from ..fsio import fsync_dir, tmp_name, write_synced
from . import hf_layout
from .sources import HF_CONFIG_FILE, WEIGHTS_FILE, WeightsError
from .tensors import write_safetensors

if TYPE_CHECKING:
    from .gpt import GPT


def check_export_target(out_dir) -> Path:
    """`out_dir` as a Path, if an export may be written there (absent or empty)."""
    out = Path(out_dir).expanduser()
    if out.exists() or out.is_symlink():
        if not out.is_dir():
            raise WeightsError(f"{out} exists and is not a folder; nothing was written. "
                               f"Choose another OUT_DIR")
        if any(out.iterdir()):
            raise WeightsError(f"{out} already exists and is not empty; nothing was "
                               f"written. Choose a new folder or empty this one first")
    return out


# Where an export of a LoRA model puts its adapter in PEFT's format.
PEFT_DIR = "peft_adapter"


def export_hf(model: "GPT", out_dir) -> list[Path]:
    """Write `model` in Hugging Face GPT-2 layout (config.json, model.safetensors,
    generation_config.json, and GPT-2's tokenizer files) into `out_dir`, which must be
    absent or empty. The files are written into a temporary folder beside it, renamed
    into place when complete. A model with LoRA adapters is written merged (the
    adapters folded into the weights), and its adapter alone in PEFT's format in
    `peft_adapter/` beside (model.lora: the model is merged in place)."""
    from ..data.tokenizer import ENDOFTEXT, EOT_ID, VOCAB_SIZE, gpt2_ranks

    out = check_export_target(out_dir)
    names = [HF_CONFIG_FILE, WEIGHTS_FILE, "generation_config.json"]
    parent = out.absolute().parent
    parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_name(parent / out.name)
    tmp.mkdir()
    try:
        from .lora import has_lora, merge_lora, peft_base_name, write_peft_adapter

        if has_lora(model):
            written = write_peft_adapter(model, tmp / PEFT_DIR,
                                         base_model_name_or_path=peft_base_name(model.lora))
            names += [f"{PEFT_DIR}/{p.name}" for p in sorted(written.iterdir())]
            merge_lora(model)
        first = next(model.parameters())
        dtype_name = str(first.dtype).removeprefix("torch.")
        write_synced(tmp / HF_CONFIG_FILE,
                     _json_bytes(hf_layout.hf_config(model.config, dtype_name)))
        tensors = hf_layout.to_hf_state_dict(model.state_dict())
        write_safetensors(tmp / WEIGHTS_FILE, tensors, {"format": "pt"})
        write_synced(tmp / "generation_config.json",
                     _json_bytes(hf_layout.hf_generation_config(model.config)))
        # The tokenizer too, so that the folder alone serves transformers' AutoTokenizer;
        # a model with fewer embeddings than GPT-2 has tokens cannot take GPT-2's ids.
        if model.config.vocab_size >= VOCAB_SIZE:
            files = hf_layout.hf_tokenizer_files(gpt2_ranks(), {ENDOFTEXT: EOT_ID},
                                                 model.config.context_length)
            for name, data in files.items():
                write_synced(tmp / name, data)
                names.append(name)
        fsync_dir(tmp)
        check_export_target(out)
        try:
            # On POSIX this replaces an empty folder in one step.
            os.replace(tmp, out)
        except OSError:
            if out.is_dir() and not any(out.iterdir()):
                out.rmdir()
                os.replace(tmp, out)
            else:
                raise
        fsync_dir(parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return [out / name for name in names]


def _json_bytes(data) -> bytes:
    return (json.dumps(data, indent=2) + "\n").encode()
