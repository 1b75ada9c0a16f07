"""Load a GPT-2 model from what model.sources resolved (a preset, its pretrained
weights, a Hugging Face folder or file, a tui-ft checkpoint or a run's), checking
every tensor against the config before any is copied; and write our checkpoint
format (model.safetensors in our layout + model_config.json)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..fsio import fsync_dir, write_atomic
from . import hf_layout
from .download import Progress
from .presets import PRESETS, TINY_INIT_SEED, Preset
from .pretrained import fetch_pretrained
from .sources import (CONFIG_FILE, HF_BIN_FILE, HF_CONFIG_FILE, HF_INDEX_FILE, WEIGHTS_FILE,
                      ModelSource, RunLookup, WeightsError, configs_beside, read_json,
                      resolve_source)
from .tensors import (FLOAT_DTYPES, LAYOUT_METADATA_KEY, TensorSource,
                      atomic_write_safetensors, detect_layout)

# torch stays out of this module's import so that the commands can resolve a source
# and refuse a typo cheaply.
if TYPE_CHECKING:
    from .gpt import GPT, GPTConfig

@dataclass
class ModelInfo:
    source: str
    # "preset-random", "preset-pretrained", "hf-folder", "safetensors-file",
    # "checkpoint" or "run"
    kind: str
    config: "GPTConfig"
    weights_path: Path | None = None
    # The checkpoint folder's name (checkpoint-N) for a checkpoint or a run.
    checkpoint: str | None = None
    preset: str | None = None

    def describe(self) -> str:
        c = self.config
        where = {
            "preset-random": "random init",
            "preset-pretrained": "pretrained",
            "hf-folder": "Hugging Face folder",
            "safetensors-file": "safetensors file",
            "checkpoint": "checkpoint",
            "run": f"run, {self.checkpoint}",
        }[self.kind]
        return (f"{self.source} ({where}; {c.n_layer} layers, {c.n_head} heads, "
                f"n_embd {c.n_embd}, context {c.context_length}, "
                f"{c.n_params() / 1e6:.1f}M parameters)")


# --------------------------------------------------------------------------- loading


def load_model(source: "str | os.PathLike | Preset | ModelSource", *, device="cpu",
               dtype=None, download: bool = True, progress: Progress | None = None,
               runs: RunLookup | None = None) -> "tuple[GPT, ModelInfo]":
    """The model named by `source`, in eval mode on `device` (fp32 unless `dtype`).

    `source` is a preset name (or a Preset), a Hugging Face-layout folder, a
    .safetensors file, a tui-ft checkpoint folder, a ModelSource, or (with the run
    layer's `runs` lookup, see sources.py) a run. Pretrained presets are read from
    our cache or the Hugging Face cache, else downloaded (unless `download` is false
    or an offline variable is set); `progress(done, total)` follows the download."""
    target = _torch_dtype(dtype)
    resolved = resolve_source(source, runs=runs)
    text, path = resolved.text, resolved.path
    if resolved.kind == "preset":
        return _load_preset(resolved.preset, device, target, download, progress)
    if resolved.kind == "safetensors-file":
        return _load_safetensors_file(text, path, device, target)
    if resolved.kind == "checkpoint":
        return _load_checkpoint(text, path, device, target, kind="checkpoint")
    if resolved.kind == "run":
        return _load_checkpoint(text, path, device, target, kind="run")
    if resolved.kind == "hf-folder":
        return _load_hf_folder(text, path, device, target)
    raise WeightsError(
        f"{path}: tui-ft reads weights from .safetensors files (or from a "
        f"Hugging Face folder holding config.json and model.safetensors or "
        f"pytorch_model.bin)")


def _torch_dtype(dtype):
    """A torch dtype, or a precision name (fp32, bf16, fp16 and their torch aliases)."""
    import torch

    from .precision import PrecisionError, torch_dtype

    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    try:
        return torch_dtype(dtype)
    except PrecisionError as exc:
        raise WeightsError(str(exc)) from None


def _load_preset(preset: Preset, device, dtype, download, progress):
    import torch

    from .gpt import GPT, GPTConfig

    config = GPTConfig(**preset.config_dict())
    if not preset.pretrained:
        # Built on the CPU under a forked RNG: the same model in every process and on
        # every device, and the caller's random stream is left as it was.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(TINY_INIT_SEED)
            model = GPT(config)
        model.to(device=device, dtype=dtype).eval()
        return model, ModelInfo(preset.name, "preset-random", config, preset=preset.name)
    path = fetch_pretrained(preset, download=download, progress=progress)
    with TensorSource.open([path], device) as tensors:
        layout = detect_layout(tensors)
        hint = (f"it does not hold the '{preset.name}' weights: delete it and let tui-ft "
                f"download it again")
        model = _build(config, tensors, layout, device, dtype, hint)
    return model, ModelInfo(preset.name, "preset-pretrained", config, weights_path=path,
                            preset=preset.name)


def _load_hf_folder(source, folder: Path, device, dtype):
    from .gpt import GPTConfig

    config_path = folder / HF_CONFIG_FILE
    data = read_json(config_path)
    try:
        config = GPTConfig(**hf_layout.config_kwargs_from_hf(data))
    except (hf_layout.HFLayoutError, ValueError) as exc:
        raise WeightsError(f"{config_path} {exc}") from None
    files = _hf_weight_files(folder)
    with TensorSource.open(files, device) as tensors:
        hint = f"the weights do not match {config_path}: re-save the folder or fix the config"
        model = _build(config, tensors, "hf", device, dtype, hint)
    return model, ModelInfo(source, "hf-folder", config, weights_path=files[0])


def _hf_weight_files(folder: Path) -> list[Path]:
    single = folder / WEIGHTS_FILE
    if single.is_file():
        return [single]
    index = folder / HF_INDEX_FILE
    if index.is_file():
        data = read_json(index)
        weight_map = data.get("weight_map") if isinstance(data, dict) else None
        if not isinstance(weight_map, dict) or not weight_map:
            raise WeightsError(f"{index} has no weight_map: the sharded checkpoint is "
                               f"incomplete; re-save it")
        files = [folder / name for name in dict.fromkeys(weight_map.values())]
        for f in files:
            if not f.is_file():
                raise WeightsError(f"{f} is missing ({index} lists it): copy every shard")
        return files
    binary = folder / HF_BIN_FILE
    if binary.is_file():
        return [binary]
    raise WeightsError(f"{folder} has {HF_CONFIG_FILE} but no weights: expected "
                       f"{WEIGHTS_FILE} (or {HF_BIN_FILE})")


def _load_checkpoint(source, folder: Path, device, dtype, *, kind: str):
    from .gpt import GPTConfig

    from .lora import is_adapter_folder

    if is_adapter_folder(folder):
        return _load_adapter(source, folder, device, dtype, kind=kind)
    config_path = folder / CONFIG_FILE
    data = read_json(config_path)
    try:
        config = GPTConfig.from_dict(data)
    except (TypeError, ValueError, AttributeError) as exc:
        raise WeightsError(f"{config_path} is not a valid model config ({exc})") from None
    path = folder / WEIGHTS_FILE
    if not path.is_file():
        raise WeightsError(f"{path} is missing: the checkpoint folder is incomplete")
    with TensorSource.open([path], device) as tensors:
        hint = f"the weights do not match {config_path}: the checkpoint is damaged"
        model = _build(config, tensors, "ours", device, dtype, hint)
    return model, ModelInfo(source, kind, config, weights_path=path, checkpoint=folder.name)


def _load_adapter(source, folder: Path, device, dtype, *, kind: str):
    """A LoRA checkpoint: its base (loaded as any model), then its adapter."""
    from .lora import ADAPTER_FILE, LoraError, add_lora, load_lora_state, read_settings

    settings = read_settings(folder)
    from ..errors import TuiFtError

    try:
        model, base = load_model(settings.base, device=device, dtype=dtype)
    except TuiFtError as exc:
        raise WeightsError(f"{folder}: the base model of this LoRA adapter, "
                           f"{settings.base!r}, cannot be loaded: {exc}") from None
    add_lora(model, settings)
    path = folder / ADAPTER_FILE
    if not path.is_file():
        raise WeightsError(f"{path} is missing: the checkpoint folder is incomplete")
    with TensorSource.open([path], device) as tensors:
        loaded = {name: tensors.get(name).to(dtype) for name in tensors.header}
    try:
        load_lora_state(model, loaded, str(path))
    except LoraError as exc:
        raise WeightsError(str(exc)) from None
    model.eval()
    return model, ModelInfo(source, kind, base.config, weights_path=path,
                            checkpoint=folder.name)


def _load_safetensors_file(source, path: Path, device, dtype):
    with TensorSource.open([path], device) as tensors:
        layout = detect_layout(tensors)
        config = _infer_config(tensors, path)
        hint = "the file is not a complete GPT-2 model"
        model = _build(config, tensors, layout, device, dtype, hint)
    return model, ModelInfo(source, "safetensors-file", config, weights_path=path)


def _infer_config(tensors: TensorSource, path: Path) -> "GPTConfig":
    """GPTConfig of a lone .safetensors file, from its tensor shapes."""
    from .gpt import GPTConfig

    shapes = {hf_layout.strip_prefix(k): v[1] for k, v in tensors.header.items()}
    for key in ("wte.weight", "wpe.weight"):
        if key not in shapes or len(shapes[key]) != 2:
            raise WeightsError(f"{path} has no 2-D '{key}' tensor: it is not a GPT-2 "
                               f"weights file")
    vocab_size, n_embd = shapes["wte.weight"]
    context = shapes["wpe.weight"][0]
    blocks = {hf_layout.block_index(k) for k in shapes} - {None}
    n_layer = max(blocks) + 1 if blocks else 0
    sibling = next((data for _, data in configs_beside(path)), {})
    n_head = sibling.get("n_head")
    if not isinstance(n_head, int) or isinstance(n_head, bool) or n_head <= 0 \
            or n_embd % n_head:
        matching = [p for p in PRESETS.values() if p.n_embd == n_embd]
        if matching:
            n_head = matching[0].n_head
        else:
            # GPT-2's sizes all use 64-wide heads.
            n_head = max(1, n_embd // 64)
            while n_embd % n_head:
                n_head -= 1
    eps = sibling.get("layer_norm_epsilon", sibling.get("layer_norm_eps", 1e-5))
    try:
        return GPTConfig(vocab_size=vocab_size, context_length=context, n_embd=n_embd,
                         n_layer=n_layer, n_head=n_head, layer_norm_eps=float(eps))
    except (TypeError, ValueError) as exc:
        raise WeightsError(f"{path}: cannot infer a GPT-2 config ({exc})") from None


def _build(config: "GPTConfig", tensors: TensorSource, layout: str, device, dtype,
           hint: str) -> "GPT":
    """Check every tensor against `config`, then move them into a model built on the
    meta device (no random init, no second copy of the weights)."""
    import torch

    from .gpt import GPT

    with torch.device("meta"):
        model = GPT(config)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    where = tensors.files()

    mapping: dict[str, str] = {}  # our name -> name in the file
    unexpected = []
    for key in tensors.header:
        ours = key
        if layout == "hf":
            if hf_layout.is_mask_buffer(key):
                continue
            ours = hf_layout.strip_prefix(key)
        if ours not in expected:
            unexpected.append(key)
            continue
        if ours in mapping:
            raise WeightsError(f"{where}: '{mapping[ours]}' and '{key}' are the same "
                               f"tensor; keep one")
        mapping[ours] = key
    if unexpected:
        raise WeightsError(f"{where}: unexpected tensor(s) {_names(unexpected)} for a GPT-2 "
                           f"with {config.n_layer} layers; {hint}")
    missing = [k for k in expected if k not in mapping and k != "lm_head.weight"]
    if missing:
        raise WeightsError(f"{where}: missing tensor(s) {_names(missing)} for a GPT-2 with "
                           f"{config.n_layer} layers; {hint}")
    for ours, key in mapping.items():
        _, shape, file_dtype = tensors.header[key]
        if file_dtype not in FLOAT_DTYPES:
            raise WeightsError(f"{where}: tensor '{key}' has dtype {file_dtype}; expected a "
                               f"floating-point type ({', '.join(FLOAT_DTYPES)}); {hint}")
        want = expected[ours]
        if layout == "hf" and hf_layout.is_conv1d(ours):
            want = want[::-1]
        if tuple(shape) != want:
            raise WeightsError(f"{where}: tensor '{key}' has shape {list(shape)}, expected "
                               f"{list(want)} (n_embd {config.n_embd}, vocab_size "
                               f"{config.vocab_size}, context {config.context_length}); "
                               f"{hint}")

    state = {}
    for ours, key in mapping.items():
        if ours == "lm_head.weight":
            continue
        tensor = tensors.get(key)
        if layout == "hf" and hf_layout.is_conv1d(ours):
            tensor = tensor.t()
        # Exactly one copy per tensor, cast and transposed in the same pass. Always
        # a copy: on the CPU the file's tensors are views of its memory map, which a
        # model must not outlive (a file rewritten in place would crash it).
        owned = torch.empty(tensor.shape, dtype=dtype, device=device)
        owned.copy_(tensor)
        state[ours] = owned
        del tensor
    if "lm_head.weight" in mapping:
        head = tensors.get(mapping["lm_head.weight"]).to(device=device, dtype=dtype)
        if not torch.equal(head, state["wte.weight"]):
            raise WeightsError(
                f"{where}: '{mapping['lm_head.weight']}' differs from the token embeddings; "
                f"GPT-2 ties the two, and tui-ft's GPT-2 cannot load an untied model")
        del head
    state["lm_head.weight"] = state["wte.weight"]
    model.load_state_dict(state, strict=True, assign=True)
    # assign=True puts a separate Parameter into each module: tie them again.
    model.lm_head.weight = model.wte.weight
    return model.to(device).eval()


def _names(keys: list[str], limit: int = 6) -> str:
    shown = ", ".join(f"'{k}'" for k in keys[:limit])
    more = f" and {len(keys) - limit} more" if len(keys) > limit else ""
    return shown + more


def save_checkpoint_weights(model: "GPT", folder, *, state_dict: dict | None = None) -> Path:
    """Write `folder/model.safetensors` (our names and layout, the tied output layer
    stored once as `wte.weight`) and `folder/model_config.json`, each atomically.
    `state_dict`: the weights to write, where the model's own are sharded (FSDP
    gathers them whole for this)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    from .lora import ADAPTER_FILE, has_lora, save_adapter

    if has_lora(model):
        # LoRA: the adapter and the name of its base (lora.py), never the base's weights.
        save_adapter(model, folder)
        path = folder / ADAPTER_FILE
        write_atomic(folder / CONFIG_FILE,
                     (json.dumps(model.config.to_dict(), indent=2) + "\n").encode())
        fsync_dir(folder)
        return path
    weights = model.state_dict() if state_dict is None else state_dict
    tensors = {k: v for k, v in weights.items() if k != "lm_head.weight"}
    path = folder / WEIGHTS_FILE
    atomic_write_safetensors(path, tensors, {"format": "pt", LAYOUT_METADATA_KEY: "tui-ft"})
    write_atomic(folder / CONFIG_FILE,
                 (json.dumps(model.config.to_dict(), indent=2) + "\n").encode())
    fsync_dir(folder)
    return path
