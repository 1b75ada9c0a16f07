"""Start a run as its own detached process (its own session: it outlives the
terminal and an SSH disconnect), run one in the foreground, and stop one cleanly.
The worker writes only to its run folder; its stdout and stderr go to worker.log,
never to a pipe that somebody must drain."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Callable

from ..config import TrainConfig
from ..errors import TuiFtError
from ..paths import runs_dir
from .run import Run, RunError, now_iso, pid_alive, register_run


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


def resume_point(run: Run, which: str = "last"):
    """The checkpoint a resumed run continues from."""
    return run.checkpoint(which)


def run_in_process(run: Run, *, resume: Path | None = None,
                   on_event: Callable[[dict], None] | None = None,
                   stop_at_step: int | None = None) -> str:
    """Train `run` in this process. Every failure ends in status.json (state failed,
    with the reason) as well as in the raised error."""
    try:
        config = TrainConfig.load(run.config_path, recorded=True)
    except TuiFtError as exc:
        # Said in the run's status too: a run left 'starting' would read as running.
        run.write_status(state="failed", error=str(exc), finished_at=now_iso())
        raise
    run.stop_path.unlink(missing_ok=True)
    run.write_status(state="running", pid=os.getpid(), error=None)
    try:
        from .loop import Trainer  # torch is imported here, not before

        return Trainer(config, run, resume_from=resume, on_event=on_event,
                       stop_at_step=stop_at_step).train()
    except KeyboardInterrupt:
        # Ctrl-C twice (the first asks for a stop after a checkpoint), or once before
        # training began: no traceback, no "failed"; the last checkpoint is the
        # resume point.
        last = run.checkpoints()
        status = run.write_status(state="stopped", stopped_by="SIGINT", error=None,
                                  finished_at=now_iso())
        run.append_metrics({"step": status.get("step", 0), "epoch": status.get("epoch", 0.0),
                            "event": "stopped", "by": "SIGINT", "interrupted": True,
                            "last_checkpoint": status.get("last_checkpoint")
                            or (last[-1].name if last else None)})
        raise
    except TuiFtError as exc:
        status = run.write_status(state="failed", error=str(exc), finished_at=now_iso())
        run.append_metrics({"step": status.get("step", 0), "epoch": status.get("epoch", 0.0),
                            "event": "failed", "error": str(exc)})
        raise
    except BaseException as exc:
        text = f"internal error: {type(exc).__name__}: {exc} (details in {run.log_path})"
        traceback.print_exc()
        status = run.write_status(state="failed", error=text, finished_at=now_iso())
        run.append_metrics({"step": status.get("step", 0), "epoch": status.get("epoch", 0.0),
                            "event": "failed", "error": text})
        raise


def start_detached(run: Run, *, resume: Path | None = None) -> int:
    """Start the worker for `run` as a new session and return its pid at once."""
    cmd = [sys.executable, "-m", "tui_ft.train.worker", str(run.path)]
    if resume is not None:
        cmd += ["--resume", str(resume)]
    with open(run.log_path, "ab") as log, open(os.devnull, "rb") as devnull:
        proc = subprocess.Popen(cmd, stdin=devnull, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True, close_fds=True,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})
    run.write_status(pid=proc.pid)
    return proc.pid


def stop_run(run: Run, *, wait: float = 0.0) -> bool:
    """Ask the worker to stop after its current step (it saves a checkpoint first).
    Returns True when the run is no longer running (within `wait` seconds)."""
    status = run.read_status()
    if status.get("state") not in ("starting", "running"):
        return True
    run.stop_path.write_text(now_iso() + "\n", encoding="utf-8")
    pid = status.get("pid")
    if pid_alive(pid):
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if run.read_status().get("state") not in ("starting", "running") or not pid_alive(pid):
            return True
        time.sleep(0.1)
    return not pid_alive(pid)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the detached worker: `python -m tui_ft.train.worker RUN`."""
    import argparse

    parser = argparse.ArgumentParser(prog="tui_ft.train.worker")
    parser.add_argument("run")
    parser.add_argument("--resume")
    args = parser.parse_args(argv)
    # No terminal to hang up on (new session), but be explicit: a closing SSH
    # session must not end training.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    run = Run(args.run)
    print(f"[{now_iso()}] worker {os.getpid()} starting {run.path}", flush=True)
    try:
        state = run_in_process(run, resume=Path(args.resume) if args.resume else None)
    except TuiFtError as exc:
        print(f"[{now_iso()}] failed: {exc}", flush=True)
        return 1
    except BaseException:
        return 1
    print(f"[{now_iso()}] {state}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
