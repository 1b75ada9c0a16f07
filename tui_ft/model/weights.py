"""Find, download, check and load GPT-2 weights (presets, Hugging Face folders and
files, tui-ft checkpoints and runs); write checkpoints and Hugging Face exports."""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from ..fsio import atomic_path, fsync_dir, sync, tmp_name, write_atomic, write_synced
from ..paths import cache_dir
from . import hf_layout
from .presets import PRESETS, TINY_INIT_SEED, Preset
from .sources import (CONFIG_FILE, HF_BIN_FILE, HF_CONFIG_FILE, HF_INDEX_FILE, WEIGHTS_FILE,
                      ModelSource, RunLookup, WeightsError, configs_beside, read_json,
                      resolve_source)

# torch stays out of this module's import so that the download code (and the UI,
# asking whether weights are cached) can use it cheaply.
if TYPE_CHECKING:
    import torch

    from .gpt import GPT, GPTConfig

VERIFIED_SUFFIX = ".verified"
# Marks a safetensors file written in our names and Linear layout.
LAYOUT_METADATA_KEY = "tui_ft_layout"

_FLOAT_DTYPES = {"F16": "float16", "BF16": "bfloat16", "F32": "float32", "F64": "float64"}

Progress = Callable[[int, "int | None"], None]


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
    import torch

    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    names = {"fp32": torch.float32, "float32": torch.float32, "bf16": torch.bfloat16,
             "bfloat16": torch.bfloat16, "fp16": torch.float16, "float16": torch.float16}
    if dtype not in names:
        raise WeightsError(f"unknown dtype '{dtype}': use one of {', '.join(names)}")
    return names[dtype]


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
    with _TensorSource.open([path], device) as tensors:
        layout = _detect_layout(tensors)
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
    with _TensorSource.open(files, device) as tensors:
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

    config_path = folder / CONFIG_FILE
    data = read_json(config_path)
    try:
        config = GPTConfig.from_dict(data)
    except (TypeError, ValueError, AttributeError) as exc:
        raise WeightsError(f"{config_path} is not a valid model config ({exc})") from None
    path = folder / WEIGHTS_FILE
    if not path.is_file():
        raise WeightsError(f"{path} is missing: the checkpoint folder is incomplete")
    with _TensorSource.open([path], device) as tensors:
        hint = f"the weights do not match {config_path}: the checkpoint is damaged"
        model = _build(config, tensors, "ours", device, dtype, hint)
    return model, ModelInfo(source, kind, config, weights_path=path, checkpoint=folder.name)


def _load_safetensors_file(source, path: Path, device, dtype):
    with _TensorSource.open([path], device) as tensors:
        layout = _detect_layout(tensors)
        config = _infer_config(tensors, path)
        hint = "the file is not a complete GPT-2 model"
        model = _build(config, tensors, layout, device, dtype, hint)
    return model, ModelInfo(source, "safetensors-file", config, weights_path=path)


# ------------------------------------------------------------------ tensors on disk


class _TensorSource:
    """The tensors of one or more weight files, by name, with each one's shape and
    dtype known from the header before any data is read."""

    def __init__(self) -> None:
        self.header: dict[str, tuple[Path, tuple, str]] = {}
        self.metadata: dict = {}
        self._handles: dict[Path, object] = {}
        self._loaded: dict[str, "torch.Tensor"] = {}

    @classmethod
    def open(cls, paths: list[Path], device) -> "_TensorSource":
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
        names = {v: k for k, v in _FLOAT_DTYPES.items()}
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

    def __enter__(self) -> "_TensorSource":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def files(self) -> str:
        return ", ".join(str(p) for p in dict.fromkeys(v[0] for v in self.header.values()))


def _detect_layout(tensors: _TensorSource) -> str:
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


def _infer_config(tensors: _TensorSource, path: Path) -> "GPTConfig":
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


def _build(config: "GPTConfig", tensors: _TensorSource, layout: str, device, dtype,
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
        if file_dtype not in _FLOAT_DTYPES:
            raise WeightsError(f"{where}: tensor '{key}' has dtype {file_dtype}; expected a "
                               f"floating-point type ({', '.join(_FLOAT_DTYPES)}); {hint}")
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


# --------------------------------------------------------------- pretrained weights


def pretrained_cache_path(preset: Preset) -> Path:
    """Where our cache keeps (or would keep) a preset's model.safetensors."""
    return cache_dir() / "models" / preset.name / (preset.revision or "main") / WEIGHTS_FILE


def pretrained_url(preset: Preset) -> str:
    from .download import hub_file_url

    return hub_file_url(preset.hub_repo, preset.revision or "main", WEIGHTS_FILE)


def hf_hub_cache_dir() -> Path:
    """The Hugging Face hub cache, as huggingface_hub itself finds it."""
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(var):
            return Path(os.environ[var]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    base = os.environ.get("XDG_CACHE_HOME") or "~/.cache"
    return Path(base).expanduser() / "huggingface" / "hub"


def find_pretrained(preset: Preset, *, local_path: Path | None = None) -> Path | None:
    """A verified local copy of a pretrained preset's model.safetensors, or None:
    `local_path`, then our cache, then the Hugging Face hub cache."""
    return _search_pretrained(preset, local_path)[0]


def fetch_pretrained(preset: Preset, *, local_path: Path | None = None, download: bool = True,
                     progress: Progress | None = None, timeout: float = 30) -> Path:
    """A local model.safetensors for a pretrained preset: found (see find_pretrained)
    or downloaded into our cache."""
    from .download import download_file, offline_reason

    if not preset.pretrained:
        raise WeightsError(f"preset '{preset.name}' has no pretrained weights")
    found, notes = _search_pretrained(preset, local_path)
    if found is not None:
        return found
    reason = offline_reason()
    if reason or not download:
        why = (f"downloads are off ({reason})" if reason
               else "downloading was not allowed")
        raise WeightsError(_missing_text(preset, why, notes))
    dest = pretrained_cache_path(preset)
    try:
        download_file(pretrained_url(preset), dest, expected_sha256=preset.sha256,
                      expected_size=preset.size, progress=progress, timeout=timeout)
    except WeightsError as exc:
        raise WeightsError(f"{exc}\n{_where_to_put(preset)}") from None
    if preset.sha256:
        _write_verified(dest, preset.sha256)
    return dest


def _search_pretrained(preset: Preset, local_path) -> tuple[Path | None, list[str]]:
    notes: list[str] = []
    if local_path is not None:
        path = Path(local_path).expanduser()
        if path.is_file():
            return path, notes
        notes.append(f"{path} does not exist")
    ours = pretrained_cache_path(preset)
    if ours.is_file():
        problem = _check_pinned(ours, preset, record=True)
        if problem is None:
            return ours, notes
        notes.append(f"{ours} {problem}")
    for candidate in _hub_cache_candidates(preset):
        problem = _check_pinned(candidate, preset, record=False)
        if problem is None:
            return candidate, notes
        notes.append(f"{candidate} {problem}")
    return None, notes


def _hub_cache_candidates(preset: Preset) -> list[Path]:
    """model.safetensors snapshots of the preset's repo in the HF hub cache: the
    pinned revision first, then what refs/main names, then any other snapshot."""
    hub = hf_hub_cache_dir()
    repo = preset.hub_repo or ""
    names = ["models--" + repo.replace("/", "--")]
    owner, _, short = repo.partition("/")
    if owner == "openai-community" and short:
        names.append("models--" + short)  # before the move to openai-community
    found: list[Path] = []
    for name in names:
        snapshots = hub / name / "snapshots"
        if not snapshots.is_dir():
            continue
        order = [preset.revision]
        try:
            order.append((hub / name / "refs" / "main").read_text().strip())
        except OSError:
            pass
        others = sorted((p for p in snapshots.iterdir() if p.is_dir()),
                        key=lambda p: p.stat().st_mtime, reverse=True)
        order.extend(p.name for p in others)
        for revision in dict.fromkeys(order):
            if revision and "/" not in revision:
                candidate = snapshots / revision / WEIGHTS_FILE
                if candidate.is_file() and candidate not in found:
                    found.append(candidate)
    return found


def _check_pinned(path: Path, preset: Preset, *, record: bool) -> str | None:
    """None when `path` is the pinned file (or nothing is pinned); else what is wrong.
    The HF cache names each blob by its sha256, so its files need no hashing."""
    size = path.stat().st_size
    if preset.size is not None and size != preset.size:
        return f"has {size} bytes, expected {preset.size} (not the pinned file)"
    if preset.sha256 is None:
        return None
    blob = path.resolve().name
    if re.fullmatch(r"[0-9a-f]{64}", blob):
        return None if blob == preset.sha256 else (
            f"has sha256 {blob}, expected {preset.sha256} (not the pinned file)")
    if _read_verified(path) == preset.sha256:
        return None
    from .download import sha256_of

    actual = sha256_of(path)
    if actual != preset.sha256:
        return f"has sha256 {actual}, expected {preset.sha256} (not the pinned file)"
    if record:
        _write_verified(path, actual)
    return None


def _read_verified(path: Path) -> str | None:
    """The sha256 recorded when `path` was last verified, if the file is unchanged."""
    try:
        data = json.loads(path.with_name(path.name + VERIFIED_SUFFIX).read_text())
        st = path.stat()
        if data["size"] == st.st_size and data["mtime_ns"] == st.st_mtime_ns:
            return data["sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return None


def _write_verified(path: Path, sha256: str) -> None:
    # Hashing 0.5 to 6 GB on every start would be slow; remember it once checked.
    st = path.stat()
    data = {"sha256": sha256, "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    try:
        write_atomic(path.with_name(path.name + VERIFIED_SUFFIX), json.dumps(data).encode())
    except OSError:
        pass


def _where_to_put(preset: Preset) -> str:
    return (f"  it comes from: {pretrained_url(preset)}\n"
            f"  put it here:   {pretrained_cache_path(preset)}\n"
            f"  or load a copy directly: --model /path/to/model.safetensors")


def _missing_text(preset: Preset, why: str, notes: list[str]) -> str:
    size = f", {preset.size / 1e6:.1f} MB" if preset.size else ""
    lines = [f"the pretrained weights of '{preset.name}' are not on this machine and {why}.",
             f"  missing file:  {WEIGHTS_FILE} of {preset.hub_repo} (revision "
             f"{preset.revision}{size})",
             _where_to_put(preset),
             f"  looked in:     {pretrained_cache_path(preset)} and the Hugging Face cache "
             f"{hf_hub_cache_dir()}"]
    lines += [f"  skipped:       {note}" for note in notes]
    return "\n".join(lines)


# ------------------------------------------------------------------------- writing


def save_checkpoint_weights(model: "GPT", folder) -> Path:
    """Write `folder/model.safetensors` (our names and layout, the tied output layer
    stored once as `wte.weight`) and `folder/model_config.json`, each atomically."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {k: v for k, v in model.state_dict().items() if k != "lm_head.weight"}
    path = folder / WEIGHTS_FILE
    _atomic_write_safetensors(path, tensors, {"format": "pt", LAYOUT_METADATA_KEY: "tui-ft"})
    write_atomic(folder / CONFIG_FILE,
                 (json.dumps(model.config.to_dict(), indent=2) + "\n").encode())
    fsync_dir(folder)
    return path


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


def export_hf(model: "GPT", out_dir) -> list[Path]:
    """Write `model` in Hugging Face GPT-2 layout (config.json, model.safetensors,
    generation_config.json, and GPT-2's tokenizer files) into `out_dir`, which must be
    absent or empty. The files are written into a temporary folder beside it, renamed
    into place when complete."""
    from ..data.tokenizer import ENDOFTEXT, EOT_ID, VOCAB_SIZE, gpt2_ranks

    out = check_export_target(out_dir)
    names = [HF_CONFIG_FILE, WEIGHTS_FILE, "generation_config.json"]
    parent = out.absolute().parent
    parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_name(parent / out.name)
    tmp.mkdir()
    try:
        first = next(model.parameters())
        dtype_name = str(first.dtype).removeprefix("torch.")
        write_synced(tmp / HF_CONFIG_FILE,
                      _json_bytes(hf_layout.hf_config(model.config, dtype_name)))
        tensors = hf_layout.to_hf_state_dict(model.state_dict())
        _write_safetensors(tmp / WEIGHTS_FILE, tensors, {"format": "pt"})
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


_ST_DTYPES = {"float32": "F32", "float16": "F16", "bfloat16": "BF16", "float64": "F64",
              "int64": "I64", "int32": "I32", "int16": "I16", "int8": "I8", "uint8": "U8",
              "bool": "BOOL"}


def _write_safetensors(path: Path, tensors: dict, metadata: dict) -> None:
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
                f.write(_raw_bytes(data))
        sync(f)


def _raw_bytes(tensor: "torch.Tensor") -> memoryview:
    """A contiguous CPU tensor's bytes without a copy. Not through `.numpy()`: numpy
    is no dependency of ours (nor of torch), and bf16 has no numpy dtype anyway. The
    view borrows the tensor's memory: the caller keeps the tensor alive while using it."""
    import ctypes

    nbytes = tensor.numel() * tensor.element_size()
    return memoryview((ctypes.c_ubyte * nbytes).from_address(tensor.data_ptr())).cast("B")


def _atomic_write_safetensors(path: Path, tensors: dict, metadata: dict) -> None:
    with atomic_path(path) as tmp:
        _write_safetensors(tmp, tensors, metadata)
