"""Pretrained preset weights: where they are cached (ours, else the Hugging Face hub
cache), whether a copy is the pinned file (size and sha256, remembered once checked),
downloading it into our cache, and the one message that says what is missing, where
it comes from and where to put it. No torch."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from ..fsio import write_atomic
from ..paths import cache_dir
from .download import Progress, download_file, hub_file_url, offline_reason, sha256_of
from .presets import Preset
from .sources import WEIGHTS_FILE, WeightsError

VERIFIED_SUFFIX = ".verified"

def pretrained_cache_path(preset: Preset) -> Path:
    """Where our cache keeps (or would keep) a preset's model.safetensors."""
    return cache_dir() / "models" / preset.name / (preset.revision or "main") / WEIGHTS_FILE


def pretrained_url(preset: Preset) -> str:
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
