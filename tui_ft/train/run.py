"""A run folder: the only thing the training worker and its readers (the TUI, `tui-ft
runs`, `tui-ft attach`) share. The worker writes config.yaml, metrics.jsonl,
status.json and checkpoints/; readers tail and poll them, so a reader can come and
go (an SSH link drops) while training goes on."""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from ..errors import TuiFtError
from ..settings import write_atomic

CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.jsonl"
STATUS_FILE = "status.json"
LOG_FILE = "worker.log"
STOP_FILE = "STOP"
CHECKPOINTS_DIR = "checkpoints"
RESPONSES_FILE = "responses.jsonl"
GRADES_FILE = "grades.jsonl"
CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")

STATES = ("starting", "running", "finished", "failed", "stopped")


class RunError(TuiFtError):
    """A run folder that is missing or unusable."""


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def pid_alive(pid: int | None) -> bool:
    if not pid:
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


class MetricsTail:
    """Reads metrics.jsonl incrementally: each `read()` returns the complete lines
    written since the last one. A half-written last line waits for its newline; a
    line that is not valid JSON is skipped, never fatal."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.skipped = 0
        self._inode = None
        # Set when the file was rewritten (a resumed run drops the lines after its
        # checkpoint): the reader should forget what it had and start over.
        self.restarted = False

    def read(self) -> list[dict]:
        try:
            with open(self.path, "rb") as f:
                st = os.fstat(f.fileno())
                if self._inode is not None and (st.st_ino != self._inode
                                                or st.st_size < self.offset):
                    self.offset, self.restarted = 0, True
                self._inode = st.st_ino
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            return []
        end = data.rfind(b"\n")
        if end < 0:
            return []
        self.offset += end + 1
        out = []
        for line in data[:end].split(b"\n"):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except ValueError:
                self.skipped += 1
                continue
            if isinstance(value, dict):
                out.append(value)
            else:
                self.skipped += 1
        return out


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
        so a reader never sees half of it)."""
        try:
            value = json.loads(self.status_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return value if isinstance(value, dict) else {}

    def write_status(self, *, durable: bool = True, **fields) -> dict:
        """Update some fields of status.json. Read, change and replace happen under a
        lock, so a trainer and a responses job writing at once lose nothing."""
        import fcntl

        self.path.mkdir(parents=True, exist_ok=True)
        with open(self.path / ".status.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            status = self.read_status()
            status.update(fields)
            status["updated_at"] = now_iso()
            write_atomic(self.status_path, json.dumps(status, indent=2) + "\n",
                         durable=durable)
        return status

    def state(self) -> str:
        """The state, corrected for a worker that died without saying so."""
        status = self.read_status()
        state = status.get("state", "unknown")
        if state in ("starting", "running") and not pid_alive(status.get("pid")):
            # A worker that is just starting may not have written its pid yet.
            if state == "starting" and time.time() - self.path.stat().st_mtime < 30:
                return state
            return "died"
        return state

    # -- metrics -------------------------------------------------------------------------

    def append_metrics(self, record: dict) -> None:
        line = json.dumps(record, separators=(",", ":")) + "\n"
        with open(self.metrics_path, "a", encoding="utf-8") as f:
            f.write(line)
            f.flush()

    def read_metrics(self) -> list[dict]:
        return MetricsTail(self.metrics_path).read()

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
            if match and child.is_dir():
                out.append(CheckpointInfo(child.name, int(match.group(1)), child))
        return sorted(out, key=lambda c: c.step)

    def checkpoint(self, which: str = "best") -> CheckpointInfo:
        """`best`, `last`, a step number or a checkpoint name."""
        available = self.checkpoints()
        if not available:
            raise RunError(f"{self.path}: has no checkpoint yet")
        if which == "last":
            # The one written last: after a resume from an earlier checkpoint, higher
            # steps left from before it are not the latest.
            latest = self.read_status().get("last_checkpoint")
            for c in available:
                if c.name == latest:
                    return c
            return available[-1]
        if which == "best":
            best = self.read_status().get("best_checkpoint")
            for c in available:
                if c.name == best:
                    return c
            return available[-1]
        name = which if which.startswith("checkpoint-") else f"checkpoint-{which}"
        for c in available:
            if c.name == name:
                return c
        names = ", ".join(c.name for c in available)
        raise RunError(f"{self.path}: no {name} (available: {names}, best, last)")


def list_runs(parent: Path) -> list[Run]:
    """Run folders under `parent`, newest first."""
    if not parent.is_dir():
        return []
    runs = [Run(p) for p in parent.iterdir()
            if p.is_dir() and ((p / CONFIG_FILE).is_file() or (p / STATUS_FILE).is_file())]
    return sorted(runs, key=lambda r: r.path.stat().st_mtime, reverse=True)
