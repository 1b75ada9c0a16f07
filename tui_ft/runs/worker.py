"""The training worker: trains a prepared run folder in this process, and records
every ending (finished, stopped, failed) in its status and metrics. It runs in the
foreground (`tui-ft train`) or as the detached process `python -m tui_ft.runs.worker
RUN` that jobs.start_detached starts. It lives in the run layer, not in train/,
because it hands the trainer what the layers above train know: how a run given as
the model is found (run_source), and which checkpoints hold grades (grade/)."""

from __future__ import annotations

import os
import signal
import sys
import traceback
from pathlib import Path
from typing import Callable

from ..config import TrainConfig
from ..errors import DiskFull, TuiFtError
from ..fsio import disk_full, disk_full_error
from ..grade.store import GradeStore
from ..runfolder import Run, now_iso
from .run_source import run_checkpoint


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
    try:
        run.write_status(state="running", pid=os.getpid(), error=None, error_kind=None)
    except OSError as exc:
        if full := disk_full(exc):
            error = _disk_full(run, full, "start the run")
            _record_failure(run, error)
            raise error from None
        raise
    # Given up at the first full disk, so the reason reaches status.json.
    run.reserve_space()
    try:
        from ..train.loop import Trainer  # torch is imported here, not before

        return Trainer(config, run, resume_from=resume, on_event=on_event,
                       stop_at_step=stop_at_step, model_runs=run_checkpoint,
                       graded_checkpoints=lambda: GradeStore(run).graded_checkpoints()
                       ).train()
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
    except DiskFull as exc:
        # A checkpoint's message says what is intact; the way on is said here.
        error = DiskFull(f"{exc}; free some space, then resume: tui-ft train --resume "
                         f"{run.path}")
        _record_failure(run, error)
        raise error from None
    except TuiFtError as exc:
        _record_failure(run, exc)
        raise
    except BaseException as exc:
        if full := disk_full(exc):
            # Met anywhere (a metrics line, the status, a best-model copy): one message.
            error = _disk_full(run, full, "write to the run folder")
            _record_failure(run, error)
            raise error from None
        text = f"internal error: {type(exc).__name__}: {exc} (details in {run.log_path})"
        traceback.print_exc()
        _record_failure(run, text)
        raise
    finally:
        run.release_reserve()


def _disk_full(run: Run, cause: OSError, doing: str) -> DiskFull:
    return disk_full_error(run.path, doing, cause,
                           after=f"free some space, then resume: tui-ft train --resume "
                                 f"{run.path}")


def _record_failure(run: Run, error: BaseException | str) -> None:
    """State failed with the reason, in status.json and as a metrics event. Even on a
    full disk: the reserved space is given up to get it written."""
    text = str(error)
    kind = "disk_full" if isinstance(error, DiskFull) else None
    if kind:
        # The space set aside at start is what this status write lands in.
        run.release_reserve()
    try:
        status = run.write_status(state="failed", error=text, error_kind=kind,
                                  finished_at=now_iso())
        run.append_metrics({"step": status.get("step", 0), "epoch": status.get("epoch", 0.0),
                            "event": "failed", "error": text})
    except OSError as exc:
        if not disk_full(exc):
            raise
        # Not even the reserve was enough: the error still reaches the caller and the
        # log; the status reads 'died' (its worker is gone).
        print(f"[{now_iso()}] cannot record the failure in {run.status_path}: disk full",
              file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the detached worker: `python -m tui_ft.runs.worker RUN`."""
    import argparse

    parser = argparse.ArgumentParser(prog="tui_ft.runs.worker")
    parser.add_argument("run")
    parser.add_argument("--resume")
    parser.add_argument("--lock-fd", type=int,
                        help="the run lock, inherited from the starter (jobs.start_detached)")
    args = parser.parse_args(argv)
    # No terminal to hang up on (new session), but be explicit: a closing SSH
    # session must not end training.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    run = Run(args.run)
    if args.lock_fd is None:
        from .jobs import lock_run

        try:
            # Started by hand: take the run lock before touching anything.
            args.lock_fd = lock_run(run)
        except TuiFtError as exc:
            print(f"[{now_iso()}] not started: {exc}", flush=True)
            return 1
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
