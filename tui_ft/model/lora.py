"""LoRA (low-rank adaptation): the base weights frozen, a trainable low-rank update
beside chosen linear layers, W x + (B A x) * alpha / r, with B zero at the start (the
model begins exactly as the base).

The adapter lives on each adapted nn.Linear as its own submodules (`lora_A`,
`lora_B`, `lora_dropout`) and a forward hook adds the update, so every other name in
the model is unchanged (h.0.attn.c_attn.weight is still the base weight) and the
adapter's names are PEFT's: h.0.attn.c_attn.lora_A.weight here is
base_model.model.transformer.h.0.attn.c_attn.lora_A.weight in a PEFT adapter for
transformers' GPT2LMHeadModel, with the same shapes (its Conv1D layers take n_embd
inputs as our Linear does: lora_A is r x in, lora_B is out x r).

A LoRA checkpoint holds the adapter and the name of its base (lora.json), never the
base's weights; loading it (weights.load_model) loads the base, then the adapter."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

from ..errors import TuiFtError

ADAPTER_FILE = "adapter.safetensors"
LORA_FILE = "lora.json"
PEFT_CONFIG = "adapter_config.json"
PEFT_WEIGHTS = "adapter_model.safetensors"
# The adaptable layers of a block, by the names PEFT's target_modules use for GPT-2.
LAYERS = ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")
# Shorthands a config may use.
GROUPS = {"c_attn": ("attn.c_attn",), "c_proj": ("attn.c_proj", "mlp.c_proj"),
          "c_fc": ("mlp.c_fc",), "attention": ("attn.c_attn", "attn.c_proj"),
          "mlp": ("mlp.c_fc", "mlp.c_proj"), "all": LAYERS}


class LoraError(TuiFtError):
    """A LoRA setting or adapter file that cannot be used."""


def expand_targets(names) -> tuple[str, ...]:
    """The block layers `names` (layer names or GROUPS shorthands) stand for, in order."""
    out: list[str] = []
    for name in names:
        layers = GROUPS.get(name, (name,) if name in LAYERS else None)
        if layers is None:
            raise LoraError(f"lora_target_modules: {name!r} is not a layer of a GPT-2 block "
                            f"({', '.join(LAYERS)}) nor one of {', '.join(GROUPS)}")
        out += [layer for layer in layers if layer not in out]
    return tuple(layer for layer in LAYERS if layer in out)


@dataclass(frozen=True)
class LoraSettings:
    r: int
    alpha: float = 16.0
    dropout: float = 0.0
    targets: tuple[str, ...] = ("attn.c_attn",)
    # The model the adapter adapts, as load_model takes it (a preset, a path).
    base: str = ""

    @property
    def scaling(self) -> float:
        return self.alpha / self.r

    def to_dict(self) -> dict:
        return {**asdict(self), "targets": list(self.targets), "format": "tui-ft-lora-1"}

    @classmethod
    def from_dict(cls, data: dict, where: str = "") -> "LoraSettings":
        try:
            return cls(r=int(data["r"]), alpha=float(data["alpha"]),
                       dropout=float(data.get("dropout", 0.0)),
                       targets=expand_targets(data["targets"]), base=str(data["base"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise LoraError(f"{where}: not a LoRA description ({exc})") from None


# (in, out) of each adaptable layer, in units of n_embd.
_SHAPES = {"attn.c_attn": (1, 3), "attn.c_proj": (1, 1), "mlp.c_fc": (1, 4),
           "mlp.c_proj": (4, 1)}


def adapter_tensor_sizes(config, r: int, targets) -> list[int]:
    """The element count of each adapter tensor for a model shape (no torch): A is
    r x in, B is out x r, per adapted layer and block."""
    d = config.n_embd
    return config.n_layer * [r * d * n for t in expand_targets(targets) for n in _SHAPES[t]]


def adapter_parameters(config, r: int, targets) -> int:
    """The adapters' parameter count for a model shape (no torch): r x (in + out) per
    adapted layer and block."""
    return sum(adapter_tensor_sizes(config, r, targets))


def _adapted(model, targets):
    for index, block in enumerate(model.h):
        for layer in targets:
            module = block
            for part in layer.split("."):
                module = getattr(module, part)
            yield f"h.{index}.{layer}", module


def _add_update(module, args, output):
    (x,) = args[:1]
    return output + module.lora_B(module.lora_A(module.lora_dropout(x))) * module.lora_scaling


def add_lora(model, settings: LoraSettings):
    """Freeze `model` and give each target layer a LoRA adapter (in place). A model
    that has adapters already is refused."""
    import torch
    from torch import nn

    if has_lora(model):
        raise LoraError("the model has LoRA adapters already")
    for p in model.parameters():
        p.requires_grad_(False)
    for _, linear in _adapted(model, settings.targets):
        device, dtype = linear.weight.device, linear.weight.dtype
        if not dtype.is_floating_point:  # an int8 base (load_in_8bit): adapters in fp32
            dtype = torch.float32
        linear.lora_A = nn.Linear(linear.in_features, settings.r, bias=False,
                                  device=device, dtype=dtype)
        linear.lora_B = nn.Linear(settings.r, linear.out_features, bias=False,
                                  device=device, dtype=dtype)
        # PEFT's initialisation: A as a Linear layer's (Kaiming uniform), B zero.
        nn.init.kaiming_uniform_(linear.lora_A.weight, a=math.sqrt(5))
        nn.init.zeros_(linear.lora_B.weight)
        linear.lora_dropout = nn.Dropout(settings.dropout) if settings.dropout else nn.Identity()
        linear.lora_scaling = settings.scaling
        linear.lora_hook = linear.register_forward_hook(_add_update)
    model.lora = settings
    return model


def move_adapter(source, target) -> None:
    """Give the layer `target` the adapter of `source` (when it has one): the layer
    is being replaced (an int8 copy of it) and the adapter goes on."""
    if not hasattr(source, "lora_A"):
        return
    source.lora_hook.remove()
    for name in ("lora_A", "lora_B", "lora_dropout"):
        setattr(target, name, getattr(source, name))
    target.lora_scaling = source.lora_scaling
    target.lora_hook = target.register_forward_hook(_add_update)


def has_lora(model) -> bool:
    return getattr(model, "lora", None) is not None


def lora_state_dict(model) -> dict:
    """The adapter's tensors, by our (PEFT-like) names."""
    return {k: v for k, v in model.state_dict().items() if ".lora_" in k}


def load_lora_state(model, tensors: dict, where: str) -> None:
    expected = set(lora_state_dict(model))
    got = set(tensors)
    if got != expected:
        missing, extra = sorted(expected - got)[:3], sorted(got - expected)[:3]
        raise LoraError(f"{where}: the adapter does not fit its settings "
                        f"(missing {missing}, unexpected {extra})")
    model.load_state_dict(tensors, strict=False)


def trainable_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def merge_lora(model):
    """Fold each adapter into its layer's weight (W + B A * alpha / r) and remove the
    adapters: a plain model with the same outputs (dropout aside)."""
    import torch

    settings = model.lora
    with torch.no_grad():
        for _, linear in _adapted(model, settings.targets):
            delta = linear.lora_B.weight.float() @ linear.lora_A.weight.float()
            linear.weight.add_((delta * linear.lora_scaling).to(linear.weight.dtype))
            linear.lora_hook.remove()
            for name in ("lora_A", "lora_B", "lora_dropout"):
                delattr(linear, name)
            del linear.lora_scaling, linear.lora_hook
    model.lora = None
    return model


# -- files ------------------------------------------------------------------------------


def save_adapter(model, folder: Path) -> None:
    """ADAPTER_FILE (the adapter's tensors) and LORA_FILE (its settings and base)."""
    from ..fsio import write_atomic
    from .tensors import atomic_write_safetensors

    folder = Path(folder)
    tensors = {k: v.detach() for k, v in lora_state_dict(model).items()}
    atomic_write_safetensors(folder / ADAPTER_FILE, tensors, {"format": "pt"})
    write_atomic(folder / LORA_FILE, json.dumps(model.lora.to_dict(), indent=1) + "\n")


def read_settings(folder: Path) -> LoraSettings:
    path = Path(folder) / LORA_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise LoraError(f"{path}: unreadable ({exc})") from None
    if not isinstance(data, dict):
        raise LoraError(f"{path}: not a LoRA description")
    return LoraSettings.from_dict(data, str(path))


def is_adapter_folder(folder: Path) -> bool:
    return (Path(folder) / LORA_FILE).is_file()


def peft_base_name(settings: LoraSettings) -> str:
    """What PEFT's adapter_config.json names as the base: the Hugging Face repository
    of a pretrained preset, else the base as tui-ft knows it (a path, or `tiny`, which
    exists only here: export it with `tui-ft export tiny DIR` to load the adapter on
    it)."""
    from .presets import get_preset

    preset = get_preset(settings.base)
    return preset.hub_repo if preset is not None and preset.hub_repo else settings.base


def write_peft_adapter(model, folder: Path, *, base_model_name_or_path: str) -> Path:
    """A PEFT adapter for transformers' GPT2LMHeadModel: adapter_config.json and
    adapter_model.safetensors, loadable with peft.PeftModel.from_pretrained."""
    from ..fsio import write_atomic
    from .tensors import atomic_write_safetensors

    settings: LoraSettings = model.lora
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {f"base_model.model.transformer.{k}": v.detach().float().contiguous()
               for k, v in lora_state_dict(model).items()}
    atomic_write_safetensors(folder / PEFT_WEIGHTS, tensors, {"format": "pt"})
    config = {
        "peft_type": "LORA", "task_type": "CAUSAL_LM", "r": settings.r,
        "lora_alpha": settings.alpha, "lora_dropout": settings.dropout,
        "target_modules": list(settings.targets), "fan_in_fan_out": True, "bias": "none",
        "base_model_name_or_path": base_model_name_or_path, "inference_mode": True,
        "init_lora_weights": True, "modules_to_save": None, "use_rslora": False,
        "use_dora": False, "revision": None,
    }
    write_atomic(folder / PEFT_CONFIG, json.dumps(config, indent=2) + "\n")
    return folder

