"""The run folder's format: the only thing the training worker and its readers (the
TUI, `tui-ft runs`, `tui-ft attach`) share. The worker writes config.yaml,
metrics.jsonl, status.json and checkpoints/; readers tail and poll them, so a reader
can come and go (an SSH link drops) while training goes on.

This module is the format alone (file names, the Run object, status and metrics
reading and writing with their types checked, which checkpoint is best) and sits
below every layer that writes or reads a run: the trainer, grading and the
`tui_ft.runs` package (finding runs, progress, jobs) all use it. Stdlib only."""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from .errors import TuiFtError
from .fsio import FileLock, append_line, write_atomic, write_synced
from .tail import JsonlTail

CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.jsonl"
STATUS_FILE = "status.json"
LOG_FILE = "worker.log"
STOP_FILE = "STOP"
CHECKPOINTS_DIR = "checkpoints"
RANKS_DIR = "ranks"
RESPONSES_FILE = "responses.jsonl"
GRADES_FILE = "grades.jsonl"
CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")
# Written last into a checkpoint (train/checkpoints.py): the files it holds and their
# sizes. A folder whose marker does not match what is there (half deleted, half
# copied) is not a checkpoint.
CHECKPOINT_MARKER = "complete.json"
# Checkpoints from before the marker (or weights saved by hand): loadable when these
# are there; resuming one that lacks the training state says which file is missing.
_LEGACY_CHECKPOINT_FILES = ("model.safetensors", "model_config.json")
# Space set aside in every run folder while training, given up when a write meets a
# full disk, so the reason can still be written into status.json.
RESERVE_FILE = ".space-reserve"
RESERVE_BYTES = 256 * 1024

STATES = ("starting", "running", "finished", "failed", "stopped")
# A run-like folder of answers made elsewhere (`tui-ft grades import`): responses and
# grades, no model, nothing to train or generate.
IMPORTED = "imported"


# The fields of status.json whose type readers rely on (None is always allowed: not
# known yet). "number" is an int or a float, never a bool.
STATUS_FIELDS = {
    "state": "str", "pid": "int", "pid_start": "int", "step": "int", "total_steps": "int", "epoch": "number",
    "error": "str", "stopped_by": "str", "created_at": "str", "updated_at": "str",
    "finished_at": "str", "last_checkpoint": "name", "best_checkpoint": "name",
    "best_checkpoint_step": "int", "best_checkpoint_metric": "number",
    "best_metric": "number", "best_eval_step": "int", "best_eval_metric": "number",
    "responses": "dict", "overfitting": "dict", "error_kind": "str",
    "world_size": "int", "effective_batch_size": "int", "failed_rank": "int",
    "metric_for_best_model": "str",
    "launcher_pid": "int",
}


# The fields of a metrics.jsonl record whose type readers rely on.
METRIC_FIELDS = {
    "step": "int", "epoch": "number", "time": "number", "event": "str",
    "total_steps": "int", "train_loss": "number", "val_loss": "number",
    "val_accuracy": "number", "val_exact_match": "number",
    "tokens_per_s": "number", "lr": "number",
}


def metric_ok(record: dict) -> bool:
    """Every known field of a metrics record has its type (None: not known)."""
    return all(v is None or k not in METRIC_FIELDS or _has_type(v, METRIC_FIELDS[k])
               for k, v in record.items())


def _has_type(value, kind: str) -> bool:
    if isinstance(value, bool):
        return False
    # "name": a checkpoint named as text or by its step (checkpoint_name reads both).
    return isinstance(value, {"str": str, "int": int, "number": (int, float),
                              "dict": dict, "name": (str, int)}[kind])


class RunError(TuiFtError):
    """A run folder that is missing or unusable."""


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# The pid_start of a pid that had already exited when it was written (a worker that
# died at once): no process can be it, whatever later gets the number.
PID_GONE = -1


def process_start(pid: int) -> int | None:
    """When process `pid` started (clock ticks since boot, /proc/PID/stat field 22):
    with the pid, it names one process for good, where a pid alone is recycled.
    None where there is no /proc (then the pid is all there is)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return int(f.read().rsplit(b") ", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def worker_alive(status: dict) -> bool:
    """The process status.json names is alive and is the one that wrote it: the pid and
    its start time, recorded when the worker started, still match. A stale pid (the
    worker died, the number went to another process) or a pid edited by hand is no
    worker: nothing is signalled, and the run reads as died."""
    pid = status.get("pid")
    if not pid_alive(pid):
        return False
    recorded = status.get("pid_start")
    if recorded == PID_GONE:
        return False
    if recorded is None:
        return True  # a run from before pid_start, or a system without /proc
    return process_start(pid) in (recorded, None)


def pid_alive(pid: int | None) -> bool:
    # 0, -1 and other negatives name process groups or every process, and 1 is init:
    # never a worker, and os.kill(-1, ...) would reach everything the user owns.
    if not isinstance(pid, int) or isinstance(pid, bool) or not 1 < pid < 2 ** 31:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not yet reaped by its parent) is not training anymore.
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().split(b") ", 1)[1][:1] != b"Z"
    except (OSError, IndexError):
        return True


@dataclass(frozen=True)
class CheckpointInfo:
    name: str
    step: int
    path: Path


@dataclass(frozen=True)
class BestCheckpoint:
    """The checkpoint a run calls best, with its own validation loss.

    The best checkpoint is the best among the evaluations that have a checkpoint (an
    evaluation at a step where one was saved): its metric is that evaluation's, never
    a later or earlier step's. The best evaluation overall may have no checkpoint
    (save_steps not a multiple of eval_steps); status.json reports it on its own as
    best_eval_step and best_eval_metric. When no checkpoint has an evaluation (no
    evaluation at all, or it was deleted by hand), the last checkpoint stands in,
    with `evaluated` False and no metric."""

    checkpoint: CheckpointInfo
    metric: float | None
    evaluated: bool


def checkpoint_name(value) -> str | None:
    """A checkpoint named in status.json or by a user: a step number, a name, or a
    path relative to the run or absolute (they all end in the name)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return f"checkpoint-{value}"
    if isinstance(value, str) and value.strip():
        name = Path(value.strip()).name
        return name if name.startswith("checkpoint-") else f"checkpoint-{name}"
    return None


class Run:
    """A run folder on disk. Creating the object touches nothing; `create` makes one."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r})"

    # -- paths ---------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def config_path(self) -> Path:
        return self.path / CONFIG_FILE

    @property
    def metrics_path(self) -> Path:
        return self.path / METRICS_FILE

    @property
    def status_path(self) -> Path:
        return self.path / STATUS_FILE

    @property
    def log_path(self) -> Path:
        return self.path / LOG_FILE

    @property
    def stop_path(self) -> Path:
        return self.path / STOP_FILE

    @property
    def checkpoints_dir(self) -> Path:
        return self.path / CHECKPOINTS_DIR

    @property
    def responses_path(self) -> Path:
        return self.path / RESPONSES_FILE

    @property
    def grades_path(self) -> Path:
        return self.path / GRADES_FILE

    # -- creating and opening --------------------------------------------------------

    @classmethod
    def create(cls, parent: Path, label: str = "") -> "Run":
        """A new, empty run folder under `parent`, named by time (and `label`)."""
        parent.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", label).strip("-")[:40]
        base = f"{stamp}-{safe}" if safe else stamp
        for n in range(1000):
            path = parent / (base if n == 0 else f"{base}-{n}")
            try:
                path.mkdir()
            except FileExistsError:
                continue
            return cls(path)
        raise RunError(f"{parent}: cannot create a new run folder")

    @classmethod
    def open(cls, path: str | os.PathLike) -> "Run":
        run = cls(path)
        if not run.path.is_dir():
            raise RunError(f"{path}: no such run folder")
        if not run.config_path.is_file() and not run.status_path.is_file():
            raise RunError(f"{path}: not a run folder (no {CONFIG_FILE} or {STATUS_FILE})")
        return run

    # -- status ------------------------------------------------------------------------

    def read_status(self) -> dict:
        """status.json, or {} when missing or unreadable (it is replaced atomically,
        so a reader never sees half of it). A known field of the wrong type (a status
        edited by hand, or by a foreign tool) is left out, as if absent, so that every
        reader can trust the types in STATUS_FIELDS."""
        try:
            value = json.loads(self.status_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        if not isinstance(value, dict):
            return {}
        return {k: v for k, v in value.items()
                if v is None or k not in STATUS_FIELDS or _has_type(v, STATUS_FIELDS[k])}

    def write_status(self, *, durable: bool = True, **fields) -> dict:
        """Update some fields of status.json. Read, change and replace happen under a
        lock, so a trainer and a responses job writing at once lose nothing."""
        self.path.mkdir(parents=True, exist_ok=True)
        if "pid" in fields and "pid_start" not in fields:
            # pid_start always names the start of the pid beside it (worker_alive).
            pid = fields["pid"]
            fields["pid_start"] = process_start(pid) if pid_alive(pid) else PID_GONE
        with FileLock(self.path / ".status.lock"):
            status = self.read_status()
            status.update(fields)
            status["updated_at"] = now_iso()
            write_atomic(self.status_path, json.dumps(status, indent=2) + "\n",
                         durable=durable)
        return status

    def reserve_space(self) -> bool:
        """Set RESERVE_BYTES aside in the run folder (a file of zeros; real blocks, so
        a full disk cannot take them). False when even that does not fit."""
        path = self.path / RESERVE_FILE
        try:
            if path.is_file() and path.stat().st_size >= RESERVE_BYTES:
                return True
            write_synced(path, bytes(RESERVE_BYTES))
            return True
        except OSError:
            path.unlink(missing_ok=True)
            return False

    def release_reserve(self) -> bool:
        """Free the reserved space; True if there was some to free. Done to record
        why a run failed on a full disk (runs/worker.py), and when the worker ends."""
        try:
            (self.path / RESERVE_FILE).unlink()
        except OSError:
            return False
        return True

    # -- ranks of a distributed run -----------------------------------------------------

    @property
    def ranks_dir(self) -> Path:
        return self.path / RANKS_DIR

    def write_heartbeat(self, rank: int, step: int) -> None:
        """Rank `rank` is alive at `step` (each rank writes its own small file, so a
        rank gone silent can be named: read_heartbeats)."""
        self.ranks_dir.mkdir(exist_ok=True)
        record = {"rank": rank, "pid": os.getpid(), "step": step, "time": time.time()}
        write_atomic(self.ranks_dir / f"rank-{rank}.json", json.dumps(record) + "\n",
                     durable=False)

    def read_heartbeats(self) -> list[dict]:
        """The ranks' last heartbeats, by rank, each with `age` in seconds; records of
        the wrong shape are left out."""
        out = []
        try:
            files = sorted(self.ranks_dir.glob("rank-*.json"))
        except OSError:
            return []
        now = time.time()
        for path in files:
            try:
                record = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            if (isinstance(record, dict) and _has_type(record.get("rank"), "int")
                    and _has_type(record.get("step"), "int")
                    and _has_type(record.get("time"), "number")):
                out.append({**record, "age": max(0.0, now - record["time"])})
        return sorted(out, key=lambda r: r["rank"])

    def is_imported(self) -> bool:
        return self.read_status().get("state") == IMPORTED

    def state(self) -> str:
        """The state, corrected for a worker that died without saying so."""
        status = self.read_status()
        state = status.get("state", "unknown")
        if state in ("starting", "running") and not worker_alive(status):
            # A worker that is just starting may not have written its pid yet.
            if state == "starting" and time.time() - self.path.stat().st_mtime < 30:
                return state
            return "died"
        return state

    # -- metrics -------------------------------------------------------------------------

    def append_metrics(self, record: dict) -> None:
        # Not synced: a line lost to a power cut is a point on a curve, and the
        # trainer writes several a second.
        line = json.dumps(record, separators=(",", ":")) + "\n"
        append_line(self.metrics_path, line.encode("utf-8"), durable=False)

    def read_metrics(self) -> list[dict]:
        return self.metrics_tail().read()

    def metrics_tail(self) -> "JsonlTail":
        """A tail of metrics.jsonl that passes only records whose known fields have
        the types in METRIC_FIELDS (a foreign or hand-made line is skipped)."""
        return JsonlTail(self.metrics_path, accept=metric_ok)

    def truncate_metrics_after(self, step: int) -> None:
        """Drop metric lines past `step` (a resumed run rewrites them)."""
        kept = [m for m in self.read_metrics() if int(m.get("step", 0)) <= step]
        write_atomic(self.metrics_path,
                     "".join(json.dumps(m, separators=(",", ":")) + "\n" for m in kept))

    # -- checkpoints ---------------------------------------------------------------------

    def checkpoints(self) -> list[CheckpointInfo]:
        """Complete checkpoints, oldest first (temporary folders are not listed)."""
        if not self.checkpoints_dir.is_dir():
            return []
        out = []
        for child in self.checkpoints_dir.iterdir():
            match = CHECKPOINT_RE.match(child.name)
            if match and checkpoint_complete(child):
                out.append(CheckpointInfo(child.name, int(match.group(1)), child))
        return sorted(out, key=lambda c: c.step)

    def checkpoint(self, which: str = "best") -> CheckpointInfo:
        """`best`, `last`, a step number or a checkpoint name."""
        available = self._available_checkpoints()
        if which in ("best", "last"):
            status = self.read_status()
            best = self._named_best(available, status) if which == "best" else None
            return best or self._last_checkpoint(available, status)
        name = checkpoint_name(which) or str(which)
        for c in available:
            if c.name == name:
                return c
        names = ", ".join(c.name for c in available)
        raise RunError(f"{self.path}: no {name} (available: {names}, best, last)")

    def best_checkpoint(self) -> BestCheckpoint:
        """The run's best checkpoint and its own validation loss (see BestCheckpoint):
        the one rule every reader uses (responses, export, load_model on a run, the
        screens)."""
        available = self._available_checkpoints()
        status = self.read_status()
        best = self._named_best(available, status)
        if best is None:
            return BestCheckpoint(self._last_checkpoint(available, status), None, False)
        metric = status.get("best_checkpoint_metric")
        if not _has_type(metric, "number"):
            # A run from before best_checkpoint_metric: its best_metric may be a later
            # evaluation's, so the loss is read at the checkpoint's own step.
            metric = self.eval_metric_at(best.step)
        return BestCheckpoint(best, metric, True)

    def eval_metric_at(self, step: int) -> float | None:
        """The validation loss of the evaluation at `step`, if there was one."""
        found = None
        for m in self.read_metrics():
            if (m.get("step") == step and _has_type(m.get("val_loss"), "number")
                    and "event" not in m):
                found = m["val_loss"]  # the last one: a resumed run evaluates again
        return found

    def _available_checkpoints(self) -> list[CheckpointInfo]:
        available = self.checkpoints()
        if not available:
            if self.is_imported():
                raise RunError(f"{self.path}: holds imported answers and no model, so "
                               "nothing can generate new ones; grade them in the app "
                               f"('tui-ft {self.name}') or export them ('tui-ft grades "
                               f"export {self.name} OUT.jsonl')")
            raise RunError(f"{self.path}: has no checkpoint yet")
        return available

    @staticmethod
    def _named_best(available: list[CheckpointInfo], status: dict) -> CheckpointInfo | None:
        best = checkpoint_name(status.get("best_checkpoint"))
        return next((c for c in available if c.name == best), None)

    @staticmethod
    def _last_checkpoint(available: list[CheckpointInfo], status: dict) -> CheckpointInfo:
        # The one written last: after a resume from an earlier checkpoint, higher
        # steps left from before it are not the latest.
        latest = checkpoint_name(status.get("last_checkpoint"))
        for c in available:
            if c.name == latest:
                return c
        return available[-1]


class ReadOnlyRun(Run):
    """A run as the ranks other than 0 of a distributed run see it: they read it
    (its checkpoints, to resume), rank 0 alone writes it. Writes are dropped."""

    def write_status(self, *, durable: bool = True, **fields) -> dict:
        return {**self.read_status(), **fields}

    def append_metrics(self, record: dict) -> None:
        pass

    def truncate_metrics_after(self, step: int) -> None:
        pass

    def reserve_space(self) -> bool:
        return True

    def release_reserve(self) -> bool:
        return False


def checkpoint_complete(folder: Path) -> bool:
    """Whether `folder` holds a whole checkpoint: its completion marker names files
    that are all there at their recorded sizes (a few stat calls, cheap enough for
    every listing). A checkpoint from before markers needs its weights, model config
    and trainer state."""
    try:
        marker = json.loads((folder / CHECKPOINT_MARKER).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return folder.is_dir() and all((folder / name).is_file()
                                       for name in _LEGACY_CHECKPOINT_FILES)
    except (OSError, ValueError):
        return False
    files = marker.get("files") if isinstance(marker, dict) else None
    if not isinstance(files, dict):
        return False
    for name, size in files.items():
        # Names are relative paths inside the folder (an FSDP checkpoint's optimizer
        # shards are in optimizer/); nothing outside it is trusted.
        if not isinstance(name, str) or name.startswith("/") or ".." in name.split("/"):
            return False
        try:
            if (folder / name).stat().st_size != size:
                return False
        except OSError:
            return False
    return True


def write_checkpoint_marker(folder: Path, step: int) -> None:
    """Record what `folder` holds, last, once everything else in it is on disk."""
    files = {p.relative_to(folder).as_posix(): p.stat().st_size
             for p in sorted(folder.rglob("*"))
             if p.is_file() and p.name != CHECKPOINT_MARKER}
    write_synced(folder / CHECKPOINT_MARKER,
                 (json.dumps({"step": step, "files": files}, indent=1) + "\n").encode())


def is_run_folder(path: Path) -> bool:
    try:
        return path.is_dir() and ((path / CONFIG_FILE).is_file()
                                  or (path / STATUS_FILE).is_file())
    except OSError:
        return False
