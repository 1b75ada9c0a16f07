"""Precision names (fp32, bf16, fp16, int8, auto) and device names (auto, cpu, cuda,
cuda:N) turned into what torch needs, with readable errors for values a user typed.
The names and their checks (PRECISIONS, device_problem, precision_problem) import no
torch: the configuration check and the command line use them as they are typed;
torch is imported only by the functions that make torch objects."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import TuiFtError

PRECISIONS = ("auto", "fp32", "bf16", "fp16", "int8")
_ALIASES = {
    "float32": "fp32", "float": "fp32", "32": "fp32",
    "bfloat16": "bf16",
    "float16": "fp16", "half": "fp16", "16": "fp16",
}


DEVICE_NAMES = "auto, cpu, cuda or cuda:N"
_DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")


def device_problem(name: str) -> str | None:
    """Why `name` is no device tui-ft can run on (None: it is one). The name only:
    whether this machine has the GPU it names is pick_device's question when the
    run starts (a config may be written on one machine and trained on another)."""
    key = str(name).strip().lower()
    if _DEVICE.fullmatch(key):
        return None
    if key.startswith("cuda:"):
        return "write cuda:N with N a GPU number, e.g. cuda:0"
    return f"use {DEVICE_NAMES}"


def precision_problem(name: str, device: str) -> str | None:
    """Why precision `name` cannot be used on `device` (a device name or type), as far
    as the names tell (None: it may be; a GPU's own support is known at run time)."""
    key = parse_precision(name)
    if key == "fp16" and str(device).strip().lower() == "cpu":
        return ("fp16 is not supported on the CPU (slow, and many CPU kernels lack it): "
                "use fp32 or bf16 there, or run on a GPU")
    return None


class PrecisionError(TuiFtError):
    """A precision name is unknown or cannot be used on the chosen device."""


class DeviceError(TuiFtError):
    """A device name is malformed or names hardware this machine does not have."""


@dataclass(frozen=True)
class Precision:
    """A resolved precision. `dtype` is the float dtype of activations (and of every
    weight that stays in float); `int8` says the blocks' Linear weights are quantized."""

    name: str  # fp32 | bf16 | fp16 | int8 (never auto)
    dtype: object  # torch.dtype
    int8: bool = False


def parse_precision(name: str) -> str:
    """The canonical name (one of PRECISIONS) for `name`, case-insensitive, accepting
    torch-style aliases (float32, bfloat16, float16, half)."""
    key = str(name).strip().lower()
    key = _ALIASES.get(key, key)
    if key not in PRECISIONS:
        raise PrecisionError(f"unknown precision {name!r}: use one of {', '.join(PRECISIONS)}")
    return key


def torch_dtype(name: str):
    """The torch dtype of a float precision name (fp32, bf16, fp16)."""
    import torch

    key = parse_precision(name)
    table = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
    if key not in table:
        raise PrecisionError(f"{key} is not a float dtype: resolve it with resolve_precision()")
    return table[key]


def visible_gpus() -> int:
    """NVIDIA GPUs this process may use, without importing torch (the Parameters
    screen asks while it draws): the /dev/nvidiaN devices, narrowed by
    CUDA_VISIBLE_DEVICES when it is set. 0 where neither says."""
    import os

    try:
        found = sum(1 for n in os.listdir("/dev") if re.fullmatch(r"nvidia\d+", n))
    except OSError:
        found = 0
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is None:
        return found
    names = [n for n in listed.split(",") if n.strip() and n.strip() != "-1"]
    return min(found, len(names)) if found else 0


def pick_device(name: str = "auto"):
    """A torch.device for `name`: auto (the first CUDA device if there is one, else the
    CPU), cpu, cuda or cuda:N. Asking for CUDA on a machine without it is an error,
    not a silent fall back to the CPU."""
    problem = device_problem(name)
    if problem is not None:
        raise DeviceError(f"unknown device {name!r}: {problem}")
    import torch

    key = str(name).strip().lower()
    if key == "auto":
        return torch.device("cuda:0") if torch.cuda.is_available() else torch.device("cpu")
    if key == "cpu":
        return torch.device("cpu")
    if key.startswith("cuda"):
        index_text = key.partition(":")[2]
        if not torch.cuda.is_available():
            raise DeviceError(f"device {name!r} asked for, but this machine has no usable CUDA "
                              "GPU (or this torch build has no CUDA support): use --device cpu")
        index = int(index_text) if index_text else 0
        count = torch.cuda.device_count()
        if index >= count:
            raise DeviceError(f"device {name!r} asked for, but this machine has {count} CUDA "
                              f"device(s): use cuda:0..cuda:{count - 1}")
        return torch.device("cuda", index)


def _bf16_ok(device) -> bool:
    import torch

    if device.type != "cuda":
        return False
    try:
        with torch.cuda.device(device):
            # Native bf16 only: emulated bf16 on older GPUs is slower than fp32.
            return bool(torch.cuda.is_bf16_supported(including_emulation=False))
    except TypeError:  # a torch without the argument
        return torch.cuda.get_device_capability(device) >= (8, 0)
    except Exception:  # an odd driver must not stop a plain fp32 run
        return False


def resolve_precision(name: str, device) -> Precision:
    """Resolve `name` for `device`. auto is bf16 on a CUDA GPU that supports it, else
    fp32. int8 computes in the auto dtype. fp16 on the CPU is refused (with the reason)
    rather than mapped to fp32: a run that silently used another precision than the
    one asked for would mislead whoever compares its numbers."""
    import torch

    key = parse_precision(name)
    device = torch.device(device)
    auto = torch.bfloat16 if _bf16_ok(device) else torch.float32
    if key == "auto":
        return Precision("bf16" if auto == torch.bfloat16 else "fp32", auto)
    if key == "int8":
        return Precision("int8", auto, int8=True)
    problem = precision_problem(key, device.type)
    if problem is not None:
        raise PrecisionError(problem)
    if key == "bf16" and device.type == "cuda" and not _bf16_ok(device):
        raise PrecisionError(f"this GPU ({device}) does not support bf16: use fp16 or fp32")
    return Precision(key, torch_dtype(key))


def bytes_per_element(name: str) -> int:
    """Bytes per value of a float precision name (int8: 1)."""
    key = parse_precision(name)
    if key == "auto":
        raise PrecisionError("auto has no fixed size: resolve it for a device first")
    return {"fp32": 4, "bf16": 2, "fp16": 2, "int8": 1}[key]
