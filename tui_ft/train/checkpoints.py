"""Checkpoints that survive a crash at any moment: everything is written into a
temporary folder, flushed to disk, a completion marker written last, and the folder
renamed to `checkpoint-N` only when complete, so a folder with that name is always
whole (and one that is not, e.g. half copied, is not listed: Run.checkpoints). A full
disk ends in the one DiskFull message, the earlier checkpoints intact. Rotation never
deletes the best one, nor one whose responses were graded.
Nothing here unpickles arbitrary objects: `torch.load(..., weights_only=True)`."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import NamedTuple

import torch

from ..fsio import disk_full, disk_full_error, fsync_dir, open_synced
from ..model.weights import save_checkpoint_weights
from ..runfolder import CheckpointInfo, Run, RunError, write_checkpoint_marker
from ..text import format_bytes

TRAINER_STATE = "trainer_state.json"
OPTIMIZER = "optimizer.pt"
SCHEDULER = "scheduler.pt"
SCALER = "scaler.pt"
RNG = "rng.pt"
TMP_PREFIX = ".tmp-"


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict, rank: int = 0) -> None:
    """Restore the random state saved by `rank` (a checkpoint of several ranks holds
    each one's in `ranks`; rank 0's is also the top level, as one process saves it)."""
    ranks = state.get("ranks")
    if rank and isinstance(ranks, list) and rank < len(ranks):
        state = ranks[rank]
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def ranks_rng_state(states: list[dict]) -> dict:
    """rng.pt's content for the random states of every rank, rank 0's first."""
    if len(states) == 1:
        return states[0]
    return {**states[0], "ranks": states}


def _save(obj, path: Path) -> None:
    # Through a Python file: a full disk is then an OSError in the chain, not only
    # a C++ stream's "iostream error" (fsio.open_synced).
    with open_synced(path) as f:
        torch.save(obj, f)


def save_checkpoint(run: Run, step: int, *, model, optimizer, scheduler, scaler,
                    trainer_state: dict, rng: dict | None = None,
                    sharded=None) -> CheckpointInfo | None:
    """Write checkpoint-`step` atomically and return it. `rng`: the random states to
    save (ranks_rng_state), else this process's. `sharded`: an FSDP run's
    distributed.ShardedState; then every rank calls this (the weights are gathered,
    the optimizer state saved by every rank into `optimizer/`), rank 0 writes the
    rest and gets the checkpoint, the others None."""
    name = f"checkpoint-{step}"
    main = sharded is None or sharded.world.is_main
    # Every rank of a sharded save writes into one folder: a name they all know.
    tmp = run.checkpoints_dir / (f"{TMP_PREFIX}{name}-{os.getpid()}" if sharded is None
                                 else f"{TMP_PREFIX}{name}-sharded")
    if main:
        run.checkpoints_dir.mkdir(parents=True, exist_ok=True)
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
    if sharded is not None:
        sharded.barrier()  # the folder is there for every rank
        full = sharded.full_weights()
        sharded.save_optimizer(tmp / sharded.OPTIMIZER_DIR)
        if not main:
            return None
    try:
        if sharded is None:
            save_checkpoint_weights(model, tmp)
            _save(optimizer.state_dict(), tmp / OPTIMIZER)
        else:
            save_checkpoint_weights(model, tmp, state_dict=full)
        _save(scheduler.state_dict(), tmp / SCHEDULER)
        if scaler is not None:
            _save(scaler.state_dict(), tmp / SCALER)
        _save(rng if rng is not None else rng_state(), tmp / RNG)
        with open_synced(tmp / TRAINER_STATE) as f:
            f.write((json.dumps(trainer_state, indent=1) + "\n").encode("utf-8"))
        write_checkpoint_marker(tmp, step)
        fsync_dir(tmp)
        final = run.checkpoints_dir / name
        if final.exists():
            # Saving the same step again (a resumed run): the old one goes only once
            # the new one is complete.
            old = run.checkpoints_dir / f"{TMP_PREFIX}old-{name}-{os.getpid()}"
            final.rename(old)
            tmp.rename(final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(final)
        fsync_dir(run.checkpoints_dir)
    except BaseException as exc:
        written = _folder_bytes(tmp)
        shutil.rmtree(tmp, ignore_errors=True)
        earlier = run.checkpoints()
        kept = ", ".join(c.name for c in earlier) or "none"
        if full := disk_full(exc):
            # What to free: a whole checkpoint's size when one exists to tell it.
            need = (f"one takes {format_bytes(_folder_bytes(earlier[-1].path))}" if earlier
                    else f"one takes more than {format_bytes(written)}")
            raise disk_full_error(run.checkpoints_dir, f"write {name}", full,
                                  after=f"the earlier checkpoints are intact ({kept}); "
                                        f"{need}") from None
        if isinstance(exc, OSError):
            raise RunError(f"cannot write {name} in {run.checkpoints_dir}: "
                           f"{exc.strerror or exc}; nothing half-written was kept, "
                           f"the earlier checkpoints are intact ({kept})") from None
        raise
    return CheckpointInfo(name, step, final)


def _folder_bytes(folder: Path) -> int:
    try:
        return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    except OSError:
        return 0


def remove_partial(run: Run) -> list[str]:
    """Delete temporary folders a killed worker left behind; returns their names."""
    if not run.checkpoints_dir.is_dir():
        return []
    removed = []
    for child in run.checkpoints_dir.iterdir():
        if child.name.startswith(TMP_PREFIX):
            shutil.rmtree(child, ignore_errors=True)
            removed.append(child.name)
    return removed


class Rotation(NamedTuple):
    removed: list[str]
    # Pinned checkpoints the limit alone would have removed (kept past the limit).
    spared: list[str]


def rotate(run: Run, limit: int | None, keep: set[str],
           pinned: set[str] = frozenset()) -> Rotation:
    """Delete the oldest checkpoints beyond `limit`, never one named in `keep` (the
    best) and never the newest (a resume continues from it), so a limit of 1 with a
    best that is not the newest keeps two, as Hugging Face does. A `pinned` one (its
    responses were graded) is never deleted either: the next oldest goes in its place,
    and it is reported in `spared`."""
    if not limit:
        return Rotation([], [])
    existing = run.checkpoints()
    candidates = [c for c in existing[:-1] if c.name not in keep]
    excess = max(0, len(existing) - limit)
    spared = [c.name for c in candidates[:excess] if c.name in pinned]
    removed = []
    for c in [c for c in candidates if c.name not in pinned][:excess]:
        # Out of the listing first, in one rename, then deleted: a worker killed while
        # deleting leaves a temporary folder (removed at the next start), never a
        # half-deleted checkpoint under its own name that a resume would pick.
        trash = run.checkpoints_dir / f"{TMP_PREFIX}trash-{c.name}-{os.getpid()}"
        c.path.rename(trash)
        shutil.rmtree(trash, ignore_errors=True)
        removed.append(c.name)
    return Rotation(removed, spared)


def read_trainer_state(folder: Path) -> dict:
    try:
        state = json.loads((folder / TRAINER_STATE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunError(f"{folder}: not a resumable checkpoint (no {TRAINER_STATE})") from None
    except (OSError, ValueError) as exc:
        raise RunError(f"{folder}/{TRAINER_STATE}: unreadable ({exc})") from None
    if not isinstance(state, dict) or "global_step" not in state:
        raise RunError(f"{folder}/{TRAINER_STATE}: not a trainer state")
    return state


def load_training_state(folder: Path, *, optimizer, scheduler, scaler, device,
                        rank: int = 0, sharded=None) -> dict:
    """Restore optimizer, scheduler, scaler and `rank`'s RNG from a checkpoint folder;
    returns its trainer state. The model weights are loaded separately (load_model).
    `sharded`: an FSDP run's distributed.ShardedState (every rank calls this)."""
    state = read_trainer_state(folder)
    if sharded is not None and not (folder / sharded.OPTIMIZER_DIR).is_dir():
        raise RunError(f"{folder}: saved without FSDP (no {sharded.OPTIMIZER_DIR}/ of "
                       "shards); resume it with distributed: ddp")
    if sharded is None and not (folder / OPTIMIZER).is_file() and \
            (folder / "optimizer").is_dir():
        raise RunError(f"{folder}: saved by an FSDP run (its optimizer state is "
                       "sharded); resume it with distributed: fsdp")
    try:
        if sharded is not None:
            sharded.load_optimizer(folder / sharded.OPTIMIZER_DIR)
        else:
            optimizer.load_state_dict(torch.load(folder / OPTIMIZER, map_location=device,
                                                 weights_only=True))
        scheduler.load_state_dict(torch.load(folder / SCHEDULER, weights_only=True))
        if scaler is not None and (folder / SCALER).is_file():
            scaler.load_state_dict(torch.load(folder / SCALER, weights_only=True))
        set_rng_state(torch.load(folder / RNG, weights_only=True), rank)
    except FileNotFoundError as exc:
        raise RunError(f"{folder}: incomplete checkpoint ({Path(exc.filename).name} "
                       "missing)") from None
    except (RuntimeError, ValueError, KeyError) as exc:
        raise RunError(f"{folder}: cannot restore the training state ({exc})") from None
    return state
