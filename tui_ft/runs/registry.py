"""Finding runs: every run folder under the runs directory, plus those made elsewhere
(a config's output_dir) and noted in the runs directory's registry; a run by name or
path."""

from __future__ import annotations

import json
from pathlib import Path

from ..fsio import append_line
from ..paths import run_registry, runs_dir
from ..runfolder import Run, RunError, is_run_folder, now_iso

# A config's output_dir puts a run anywhere; the runs directory keeps a note of it
# (one JSON line per run, appended when the run is created) so that `tui-ft runs`,
# the run pickers and run names still find it. A folder deleted or moved since is
# skipped, never an error.


def register_run(path: Path) -> None:
    """Note a run folder made outside the runs directory. Best effort: a registry that
    cannot be written costs the listing, never the run."""
    path = Path(path).resolve()
    registry = run_registry()
    try:
        if path.parent == registry.parent.resolve():
            return  # found by listing the folder anyway
        registry.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps({"path": str(path), "created_at": now_iso()}) + "\n"
        # Two runs created at once never mix lines.
        append_line(registry, line.encode("utf-8"), durable=False)
    except OSError:
        pass


def registered_runs(parent: Path | None = None) -> list[Path]:
    """Run folders registered in `parent`'s registry (default: the runs directory)
    that still exist and still hold a run."""
    registry = run_registry() if parent is None else Path(parent) / run_registry().name
    try:
        lines = registry.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return []
    out, seen = [], set()
    for line in lines:
        try:
            value = json.loads(line)
            path = Path(value["path"])
        except (ValueError, KeyError, TypeError):
            continue  # a torn or foreign line
        if str(path) not in seen and is_run_folder(path):
            seen.add(str(path))
            out.append(path)
    return out


def list_runs(parent: Path | None = None) -> list[Run]:
    """Run folders under `parent` (default: the runs directory) and those registered
    in it (made with their own output_dir), newest first."""
    parent = runs_dir() if parent is None else Path(parent)
    paths = {}
    if parent.is_dir():
        for p in parent.iterdir():
            if is_run_folder(p):
                paths[str(p.resolve())] = p
    for p in registered_runs(parent):
        paths.setdefault(str(p.resolve()), p)

    def mtime(run: Run) -> float:
        try:
            return run.path.stat().st_mtime
        except OSError:
            return 0.0

    return sorted((Run(p) for p in paths.values()), key=mtime, reverse=True)


def runs_named(name: str) -> list[Path]:
    """Run folders with this folder name: the one under the runs directory, else the
    registered ones made elsewhere (more than one is ambiguous)."""
    if not name or "/" in name or name in (".", ".."):
        return []
    if (runs_dir() / name).is_dir():
        return [runs_dir() / name]
    return [p for p in registered_runs() if p.name == name]


def find_run(name: str) -> Run:
    """A run by path, or by folder name (runs_named)."""
    path = Path(name).expanduser()
    if not path.exists() and name and "/" not in name:
        matches = runs_named(name)
        if len(matches) > 1:
            raise RunError(f"{name}: {len(matches)} runs have this name ("
                           + ", ".join(map(str, matches)) + "); give the path")
        if not matches:
            raise RunError(f"{name}: no such run folder, nor a run of that name in "
                           f"{runs_dir()} ('tui-ft runs' lists them)")
        path = matches[0]
    return Run.open(path)
