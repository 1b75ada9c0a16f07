"""What model a source names -- a preset, a Hugging Face-layout folder, a .safetensors
file, a tui-ft checkpoint folder or a run -- told apart by its name and the files
there, without torch and without reading any weights; and the model's shape, where a
preset or a config file says it.

Runs are not this layer's knowledge. Which folder is a run, which of its checkpoints
is the best, and which run a name means (the runs directory, the registry of runs
made elsewhere) belong to the run-folder layer above. So `resolve_source` recognises
presets, weights files and checkpoint folders by their files, and asks the caller's
`runs` lookup (the run layer's function, passed in by commands, the UI or the
training loop) about anything else. Without one, a run is not recognised: the model
layer never imports the run layer and keeps no global hook for it to fill in."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from ..errors import TuiFtError
from .presets import PRESETS, Preset, get_preset

if TYPE_CHECKING:
    from .shape import GPTConfig

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "model_config.json"  # ours: GPTConfig.to_dict()
HF_CONFIG_FILE = "config.json"
HF_INDEX_FILE = "model.safetensors.index.json"
HF_BIN_FILE = "pytorch_model.bin"

# The checkpoint folder a run stands for when it is given as a model (its best one),
# or None when the text names no run. May raise TuiFtError (a run with no checkpoint
# yet, a name two runs share): resolve_source reports it as a WeightsError.
RunLookup = Callable[[str], "Path | None"]


class WeightsError(TuiFtError):
    """Weights that cannot be found, fetched or used; the message names the file and
    the fix."""


class UnknownModelError(WeightsError):
    """A source that names nothing: no preset, file, folder or run."""


@dataclass(frozen=True)
class ModelSource:
    """A resolved model source. `path` is the file or folder the weights are read
    from: for a run, the checkpoint folder the run layer chose."""

    text: str  # as given
    # "preset", "hf-folder", "safetensors-file", "checkpoint", "run" or "file" (an
    # existing file of another type, refused when loaded)
    kind: str
    preset: Preset | None = None
    path: Path | None = None


def resolve_source(source: "str | os.PathLike | Preset | ModelSource", *,
                   runs: RunLookup | None = None) -> ModelSource:
    """What `source` names, cheaply (no torch, no weights read), so that a command
    can refuse a typo before it spends seconds importing torch. A name or folder that
    is no model raises WeightsError saying what would be."""
    if isinstance(source, ModelSource):
        return source
    if isinstance(source, Preset):
        return ModelSource(source.name, "preset", preset=source)
    text = os.fspath(source)
    preset = get_preset(text)
    if preset is not None:
        return ModelSource(text, "preset", preset=preset)
    path = Path(text).expanduser()
    exists = bool(text.strip()) and path.exists()
    if exists and path.is_file():
        kind = "safetensors-file" if path.suffix == ".safetensors" else "file"
        return ModelSource(text, kind, path=path)
    if exists and (path / CONFIG_FILE).is_file():
        return ModelSource(text, "checkpoint", path=path)
    if exists and (path / HF_CONFIG_FILE).is_file():
        return ModelSource(text, "hf-folder", path=path)
    if runs is not None and text.strip():
        try:
            checkpoint = runs(text)
        except TuiFtError as exc:
            raise WeightsError(str(exc)) from None
        if checkpoint is not None:
            return ModelSource(text, "run", path=Path(checkpoint))
    if exists:
        raise WeightsError(
            f"{path} holds no model: expected {CONFIG_FILE} + {WEIGHTS_FILE} (a tui-ft "
            f"checkpoint), {HF_CONFIG_FILE} + {WEIGHTS_FILE} (Hugging Face layout), or "
            f"checkpoints/checkpoint-N/ folders (a run)")
    raise UnknownModelError(
        f"unknown model '{text}': not a preset ({', '.join(PRESETS)}) and no "
        f"such file or folder. Give a preset name, a Hugging Face-layout folder, "
        f"a .safetensors file, a checkpoint folder or a run folder")


def source_shape(source: ModelSource, dropout: float = 0.0) -> "GPTConfig | None":
    """The model's shape from its preset or a config file (ours or Hugging Face's)
    in its folder or beside its file; None when only its weights could tell."""
    from .shape import GPTConfig

    if source.preset is not None:
        return GPTConfig(**source.preset.config_dict(), dropout=dropout)
    if source.path is None:
        return None
    for candidate, data in configs_beside(source.path):
        try:
            if candidate.name == HF_CONFIG_FILE:
                from .hf_layout import config_kwargs_from_hf

                data = config_kwargs_from_hf(data)
            return GPTConfig(**{k: int(data[k]) for k in (
                "vocab_size", "context_length", "n_embd", "n_layer", "n_head")},
                dropout=dropout)
        except Exception:  # noqa: BLE001 -- a config of another kind: keep looking
            continue
    return None


def configs_beside(path: Path) -> list[tuple[Path, dict]]:
    """The readable JSON objects among the config files in folder `path`, or beside
    file `path`: ours (model_config.json) first, then Hugging Face's (config.json)."""
    folder = path.parent if path.is_file() else path
    out = []
    for candidate in (folder / CONFIG_FILE, folder / HF_CONFIG_FILE):
        try:
            data = json.loads(candidate.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError):
            continue
        if isinstance(data, dict):
            out.append((candidate, data))
    return out


def read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise WeightsError(f"{path} is missing") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise WeightsError(f"{path} is not valid JSON ({exc})") from None
