"""Weights files on disk, tensor by tensor: reading safetensors (and, refusing
anything but tensors, PyTorch .bin) files with every shape and dtype known from the
header before data is read, telling our layout from Hugging Face's, and writing
safetensors streamed one tensor at a time. torch is imported only when used."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING

from ..fsio import atomic_path, sync
from . import hf_layout
from .sources import WeightsError

if TYPE_CHECKING:
    import torch

# Marks a safetensors file written in our names and Linear layout.
LAYOUT_METADATA_KEY = "tui_ft_layout"
# The dtypes a model's weights may have, by their safetensors names.
FLOAT_DTYPES = {"F16": "float16", "BF16": "bfloat16", "F32": "float32", "F64": "float64"}


class TensorSource:
    """The tensors of one or more weight files, by name, with each one's shape and
    dtype known from the header before any data is read."""

    def __init__(self) -> None:
        self.header: dict[str, tuple[Path, tuple, str]] = {}
        self.metadata: dict = {}
        self._handles: dict[Path, object] = {}
        self._loaded: dict[str, "torch.Tensor"] = {}

    @classmethod
    def open(cls, paths: list[Path], device) -> "TensorSource":
        source = cls()
        try:
            for path in paths:
                if path.suffix == ".bin":
                    source._open_bin(path)
                else:
                    source._open_safetensors(path, device)
        except BaseException:
            source.close()
            raise
        return source

    def _open_safetensors(self, path: Path, device) -> None:
        from safetensors import SafetensorError, safe_open

        try:
            handle = safe_open(str(path), framework="pt", device=str(device))
            handle.__enter__()
            self._handles[path] = handle
            self.metadata.update(handle.metadata() or {})
            for key in handle.keys():
                piece = handle.get_slice(key)
                self._add(key, path, tuple(piece.get_shape()), piece.get_dtype())
        except FileNotFoundError:
            raise WeightsError(f"{path} is missing") from None
        except (SafetensorError, OSError) as exc:
            raise WeightsError(
                f"{path} is not a readable safetensors file ({exc}): it is truncated or "
                f"corrupt, e.g. from an interrupted download or copy. Fetch or copy it "
                f"again") from None

    def _open_bin(self, path: Path) -> None:
        import pickle

        import torch

        # weights_only: plain tensors and containers only; a pickle that would build
        # any other object (and so could run code) is refused by torch itself.
        try:
            try:
                data = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            except RuntimeError as exc:
                if "mmap" not in str(exc):
                    raise
                data = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as exc:
            # torch's own text suggests weights_only=False: keep only what it refused.
            what = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(exc))
            found = f" (it refers to {what.group(1)})" if what else ""
            raise WeightsError(
                f"{path} holds Python objects besides tensors{found}, and tui-ft never "
                f"unpickles those: loading them can run arbitrary code. Convert the "
                f"weights to safetensors with a tool you trust") from None
        except Exception as exc:  # noqa: BLE001 -- any failure means an unreadable file
            raise WeightsError(f"{path} is not a readable PyTorch weights file ({exc}): "
                               f"it is truncated or corrupt") from None
        if isinstance(data, dict) and isinstance(data.get("state_dict"), dict):
            data = data["state_dict"]
        if not isinstance(data, dict) or not all(
                isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in data.items()):
            raise WeightsError(f"{path} does not hold a dict of named tensors")
        names = {v: k for k, v in FLOAT_DTYPES.items()}
        for key, tensor in data.items():
            dtype = names.get(str(tensor.dtype).removeprefix("torch."), str(tensor.dtype))
            self._add(key, path, tuple(tensor.shape), dtype)
            self._loaded[key] = tensor

    def _add(self, key, path, shape, dtype) -> None:
        if key in self.header:
            raise WeightsError(f"tensor '{key}' appears twice ({self.header[key][0]} and "
                               f"{path})")
        self.header[key] = (path, shape, dtype)

    def get(self, key: str) -> "torch.Tensor":
        if key in self._loaded:
            return self._loaded.pop(key)
        path = self.header[key][0]
        try:
            return self._handles[path].get_tensor(key)
        except Exception as exc:  # noqa: BLE001 -- a damaged data section
            raise WeightsError(f"{path}: tensor '{key}' cannot be read ({exc}): the file "
                               f"is corrupt; fetch or copy it again") from None

    def close(self) -> None:
        for handle in self._handles.values():
            try:
                handle.__exit__(None, None, None)
            except Exception:  # noqa: BLE001 -- closing must not hide the real error
                pass
        self._handles.clear()
        self._loaded.clear()

    def __enter__(self) -> "TensorSource":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def files(self) -> str:
        return ", ".join(str(p) for p in dict.fromkeys(v[0] for v in self.header.values()))


def detect_layout(tensors: TensorSource) -> str:
    """'ours' (Linear weights, our names) or 'hf' (Conv1D weights)."""
    if tensors.metadata.get(LAYOUT_METADATA_KEY) == "tui-ft":
        return "ours"
    for key, (_, shape, _) in tensors.header.items():
        if key.startswith(hf_layout.HF_PREFIX):
            return "hf"
        if key.endswith("attn.c_attn.weight") and len(shape) == 2:
            # Ours is (3 * n_embd, n_embd); Conv1D is (n_embd, 3 * n_embd).
            return "ours" if shape[0] == 3 * shape[1] else "hf"
    return "hf"


_ST_DTYPES = {"float32": "F32", "float16": "F16", "bfloat16": "BF16", "float64": "F64",
              "int64": "I64", "int32": "I32", "int16": "I16", "int8": "I8", "uint8": "U8",
              "bool": "BOOL"}


def write_safetensors(path: Path, tensors: dict, metadata: dict) -> None:
    """The safetensors format, streamed one tensor at a time: the library's writer
    first builds the whole file in memory, a second copy of a 1.5B model."""
    header: dict = {"__metadata__": metadata}
    offset = 0
    for name, tensor in tensors.items():
        dtype = _ST_DTYPES.get(str(tensor.dtype).removeprefix("torch."))
        if dtype is None:
            raise WeightsError(f"cannot store tensor '{name}' of dtype {tensor.dtype}")
        nbytes = tensor.numel() * tensor.element_size()
        header[name] = {"dtype": dtype, "shape": list(tensor.shape),
                        "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    head = json.dumps(header, separators=(",", ":")).encode()
    head += b" " * (-len(head) % 8)  # the data section starts 8-byte aligned
    with open(path, "wb") as f:
        f.write(len(head).to_bytes(8, "little"))
        f.write(head)
        for tensor in tensors.values():
            data = tensor.detach().to("cpu").contiguous()
            if data.numel():
                f.write(raw_bytes(data))
        sync(f)


def raw_bytes(tensor: "torch.Tensor") -> memoryview:
    """A contiguous CPU tensor's bytes without a copy. Not through `.numpy()`: numpy
    is no dependency of ours (nor of torch), and bf16 has no numpy dtype anyway. The
    view borrows the tensor's memory: the caller keeps the tensor alive while using it."""
    import ctypes

    nbytes = tensor.numel() * tensor.element_size()
    return memoryview((ctypes.c_ubyte * nbytes).from_address(tensor.data_ptr())).cast("B")


def atomic_write_safetensors(path: Path, tensors: dict, metadata: dict) -> None:
    with atomic_path(path) as tmp:
        write_safetensors(tmp, tensors, metadata)
