"""A run given where a model is expected (generate, export, train from it, the memory
estimate): the run layer's answer to model.sources.resolve_source, which recognises
presets, weights files and checkpoint folders by their files and leaves runs -- run
names, the registry, which checkpoint is best -- to this layer. Callers pass
`run_checkpoint` as its `runs` argument."""

from __future__ import annotations

from pathlib import Path

from ..runfolder import CHECKPOINT_RE, CHECKPOINTS_DIR, Run, RunError, checkpoint_complete
from .registry import find_run, runs_named


def run_checkpoint(source: str) -> Path | None:
    """The checkpoint folder `source` stands for as a run, or None if it names no run.

    A run folder (or its checkpoints/ folder, or a run's name) stands for its best
    checkpoint by Run.checkpoint("best"), the rule every reader uses; a folder of
    checkpoint-N folders copied out of their run, where no status says which is
    best, for the highest N. A run without a checkpoint raises RunError."""
    path = Path(source).expanduser()
    if not path.exists():
        if not runs_named(source):
            return None
        # Under the runs directory or registered elsewhere; two of one name: says which.
        path = find_run(source).path
    if not path.is_dir():
        return None
    if (path / CHECKPOINTS_DIR).is_dir():
        run = Run(path)
    elif path.name == CHECKPOINTS_DIR:
        run = Run(path.parent)
    else:
        found = {int(m.group(1)): child for child in path.iterdir()
                 if (m := CHECKPOINT_RE.match(child.name)) and checkpoint_complete(child)}
        return found[max(found)] if found else None
    try:
        return run.checkpoint("best").path
    except RunError:
        raise RunError(f"run {run.path} has no checkpoint yet ({run.checkpoints_dir} "
                       f"is empty): wait for the first save or pick another "
                       f"source") from None
