"""Jobs that outlive the screen or the terminal that started them: the training worker
and response generation. Each runs as its own detached process (its own session: it
outlives the terminal and an SSH disconnect) writing only to its run folder, its
stdout and stderr into a log file there, never a pipe that somebody must drain.
Readers come and go; the job goes on. No Textual here: the screens drive these."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from ..config import TrainConfig
from ..fsio import try_lock, write_atomic
from ..grade.responses import partial_path, read_responses
from ..paths import runs_dir
from ..runfolder import Run, RunError, now_iso, pid_alive, worker_alive
from .launch import Launch
from .registry import register_run


def detach(cmd: list[str], log_path: Path, *, pass_fds: tuple[int, ...] = ()
           ) -> subprocess.Popen:
    """Start `cmd` as a new session with no terminal: stdin from /dev/null, stdout and
    stderr appended to `log_path`, unbuffered, so it goes on when its starter exits.
    `pass_fds`: descriptors the process keeps (a lock it inherits)."""
    with open(log_path, "ab") as log, open(os.devnull, "rb") as devnull:
        return subprocess.Popen(cmd, stdin=devnull, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True, close_fds=True, pass_fds=pass_fds,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})


# -- the training worker ---------------------------------------------------------------


def prepare_run(config: TrainConfig) -> tuple[Run, TrainConfig]:
    """Create the run folder (output_dir, or a new one under the runs directory) and
    write its config.yaml before step 1. Refuses a folder that already holds a run."""
    if config.output_dir:
        path = Path(config.output_dir).expanduser()
        if (path / "config.yaml").exists() or (path / "status.json").exists():
            raise RunError(f"{path} already holds a run; resume it with "
                           f"'tui-ft train --resume {path}' or choose another output_dir")
        path.mkdir(parents=True, exist_ok=True)
        run = Run(path)
        register_run(run.path)  # so that 'tui-ft runs' and its name find it
    else:
        run = Run.create(runs_dir(), label=f"{Path(config.model).name}-{config.prompt_style}")
    config = TrainConfig.from_dict({**config.to_dict(), "output_dir": str(run.path.resolve())})
    config.save(run.config_path)
    run.write_status(state="starting", pid=None, created_at=now_iso(), step=0)
    return run, config


RUN_LOCK = ".run.lock"


def lock_run(run: Run) -> int:
    """Take the run's writer lock, held by whoever trains it for as long as it trains:
    one worker per run folder. Returns the descriptor that holds it; raises RunError
    when another process holds it. Taken before any look at the run's state, so two
    starts at once cannot both see it stopped."""
    fd = try_lock(run.path / RUN_LOCK)
    if fd is None:
        raise RunError(f"{run.path} is being trained by another process (its worker "
                       f"holds {RUN_LOCK}); follow it with 'tui-ft attach {run.path}'")
    return fd


def start_detached(run: Run, *, resume: Path | None = None, lock: int | None = None,
                   launch: Launch | None = None) -> int:
    """Start the training worker for `run` (`python -m tui_ft.runs.worker`, which
    trains in that process, or with `launch` of several processes runs torchrun for
    them: runs/launch.py) and return its pid at once. The worker inherits the run
    lock (`lock`, else taken here), so it holds it for its whole life."""
    joining = launch is not None and launch.node_rank > 0
    # Another node of a run on several (node_rank above 0) holds no lock and writes no
    # status: node 0's launcher does both for the run.
    fd = lock if lock is not None else None if joining else lock_run(run)
    cmd = [sys.executable, "-m", "tui_ft.runs.worker", str(run.path)]
    if fd is not None:
        cmd += ["--lock-fd", str(fd)]
    if resume is not None:
        cmd += ["--resume", str(resume)]
    if launch is not None:
        cmd += launch.as_args()
    log = run.log_path if not joining else run.path / f"worker-node{launch.node_rank}.log"
    try:
        proc = detach(cmd, log, pass_fds=(fd,) if fd is not None else ())
    finally:
        if fd is not None:
            os.close(fd)  # the worker's copy holds the lock now
    if not joining:
        run.write_status(pid=proc.pid)
    return proc.pid


def stop_run(run: Run, *, wait: float = 0.0) -> bool:
    """Ask the worker to stop after its current step (it saves a checkpoint first).
    Returns True when the run is no longer running (within `wait` seconds)."""
    status = run.read_status()
    if status.get("state") not in ("starting", "running"):
        return True
    run.stop_path.write_text(now_iso() + "\n", encoding="utf-8")
    # Only a process proven to be this run's worker is signalled (worker_alive); the
    # STOP file reaches a live worker either way.
    if worker_alive(status):
        try:
            os.kill(status["pid"], signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        current = run.read_status()
        if current.get("state") not in ("starting", "running") or not worker_alive(current):
            return True
        time.sleep(0.1)
    return not worker_alive(run.read_status())




# -- response generation (the Grading screen's `tui-ft responses` process) ------------

JOB_FILE = "responses-job.json"
LOG_FILE = "responses.log"


def _is_generator(pid: int) -> bool:
    """The process `pid` is alive and is a `responses` command (not a recycled pid)."""
    if not pid_alive(pid):
        return False
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return b"responses" in f.read()
    except OSError:
        return True  # no /proc: trust the pid


@dataclass
class GenerationJob:
    """One `tui-ft responses` process. `proc` is set when this session started it;
    a job found through the job file (another session's) has only its pid."""

    run: Run
    pid: int
    checkpoint: str
    started_at: str
    proc: subprocess.Popen | None = None
    returncode: int | None = None

    @property
    def log_path(self) -> Path:
        return self.run.path / LOG_FILE

    @classmethod
    def start(cls, run: Run, checkpoint: str, *, max_new_tokens: int | None = None,
              temperature: float | None = None) -> "GenerationJob":
        """Start generation for `checkpoint` (a checkpoint name) and return at once;
        settings left None are the run's."""
        cmd = [sys.executable, "-m", "tui_ft.cli", "responses", str(run.path),
               "--checkpoint", checkpoint]
        if max_new_tokens is not None:
            cmd += ["--max-new-tokens", str(max_new_tokens)]
        if temperature is not None:
            cmd += ["--temperature", repr(float(temperature))]
        log_path = run.path / LOG_FILE
        with open(log_path, "ab") as log:
            log.write(f"[{now_iso()}] {' '.join(cmd[2:])}\n".encode())
        proc = detach(cmd, log_path)
        job = cls(run, proc.pid, checkpoint, now_iso(), proc)
        try:
            write_atomic(run.path / JOB_FILE, json.dumps(
                {"pid": job.pid, "checkpoint": checkpoint, "started_at": job.started_at}) + "\n",
                durable=False)
        except OSError:
            pass  # only other sessions miss it; this one holds the process
        return job

    @classmethod
    def find(cls, run: Run) -> "GenerationJob | None":
        """The generation another session started on `run`, while it still runs."""
        try:
            data = json.loads((run.path / JOB_FILE).read_text(encoding="utf-8"))
            pid = int(data["pid"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if not _is_generator(pid):
            return None
        return cls(run, pid, str(data.get("checkpoint", "")), str(data.get("started_at", "")))

    def poll(self) -> int | None:
        """None while it runs, else its exit status (-1: another session's, unknown)."""
        if self.returncode is not None:
            return self.returncode
        if self.proc is not None:
            code = self.proc.poll()
            if code is None:
                return None
            self.returncode = code
        elif _is_generator(self.pid):
            return None
        else:
            self.returncode = -1
        self._forget()
        return self.returncode

    def _forget(self) -> None:
        path = self.run.path / JOB_FILE
        try:
            if int(json.loads(path.read_text(encoding="utf-8"))["pid"]) == self.pid:
                path.unlink()
        except (OSError, ValueError, KeyError, TypeError):
            pass

    def error_text(self) -> str:
        """Why it failed, from the end of the log (the CLI's 'error:' line if any)."""
        try:
            with open(self.log_path, "rb") as f:
                f.seek(max(0, os.fstat(f.fileno()).st_size - 8192))
                tail = f.read().decode("utf-8", "replace")
        except OSError:
            return f"see {self.log_path}"
        lines = [line.strip() for line in tail.replace("\r", "\n").splitlines() if line.strip()]
        for i in range(len(lines) - 1, -1, -1):
            if "error:" in lines[i]:
                # The lines after it belong to the message (each problem of a config).
                text = " ".join([lines[i].split("error:", 1)[1].strip(), *lines[i + 1:]])
                return text + f" (log: {self.log_path})"
        return (lines[-1] if lines else "no output") + f" (log: {self.log_path})"


class ResponseFeed:
    """The responses the screen shows: the partial file while generation runs (or
    when an interrupted one left only that), else RUN/responses.jsonl. `reload()`
    reads again only when the file changed (path, inode, size or mtime)."""

    def __init__(self, run: Run) -> None:
        self.run = run
        self.path: Path | None = None
        self.responses: list[dict] = []
        self._signature: tuple | None = None

    def choose(self, generating: bool) -> Path | None:
        partial = partial_path(self.run)
        final = self.run.responses_path
        if generating and partial.exists():
            return partial
        if final.exists():
            return final
        try:
            # An empty one (a generation killed before its first answer) is no result.
            return partial if partial.stat().st_size else None
        except OSError:
            return None

    @property
    def is_partial(self) -> bool:
        return self.path is not None and self.path.name.endswith(".partial")

    def reload(self, generating: bool) -> bool:
        """Re-read the responses if anything changed; True when they did."""
        path = self.choose(generating)
        try:
            st = path.stat() if path is not None else None
        except OSError:
            st = None
        signature = (path, st.st_ino, st.st_size, st.st_mtime_ns) if st else (path,)
        if signature == self._signature:
            return False
        self._signature = signature
        self.path = path
        self.responses = read_responses(path) if path is not None else []
        return True


def count_test_records(run: Run) -> int | None:
    """How many records generation will answer (the run's test split); None when the
    run's data cannot be read. Reads the dataset: call it off the UI thread."""
    from ..errors import TuiFtError
    from ..train.splits import config_splits

    try:
        splits, _ = config_splits(TrainConfig.load(run.config_path))
    except (TuiFtError, OSError, ValueError):
        return None
    return len(splits.test)
