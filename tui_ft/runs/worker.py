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
from ..runfolder import ReadOnlyRun, Run, now_iso
from ..train.distributed import World, world_from_env
from .launch import LAUNCHED_ENV, Launch, run_distributed
from .run_source import run_checkpoint


def run_in_process(run: Run, *, resume: Path | None = None,
                   on_event: Callable[[dict], None] | None = None,
                   stop_at_step: int | None = None) -> str:
    """Train `run` in this process. Every failure ends in status.json (state failed,
    with the reason) as well as in the raised error. Under torchrun (RANK and
    WORLD_SIZE set) this process trains its rank's share; rank 0 records."""
    world = world_from_env()
    if not world.is_main:
        return _follow(run, world, resume, stop_at_step)
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
                       graded_checkpoints=lambda: GradeStore(run).graded_checkpoints(),
                       world=world).train()
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


def _follow(run: Run, world: World, resume: Path | None, stop_at_step: int | None) -> str:
    """A rank other than 0: trains its share and writes nothing; rank 0 (or the
    launcher, if rank 0 is gone) records every ending."""
    from ..train.loop import Trainer

    config = TrainConfig.load(run.config_path, recorded=True)
    return Trainer(config, ReadOnlyRun(run.path), resume_from=resume,
                   stop_at_step=stop_at_step, model_runs=run_checkpoint,
                   graded_checkpoints=dict, world=world).train()


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
    parser.add_argument("--nproc-per-node", type=int,
                        help="launch this many ranks under torchrun (default: the config's)")
    parser.add_argument("--nnodes", type=int, default=1)
    parser.add_argument("--node-rank", type=int, default=0)
    parser.add_argument("--rdzv-endpoint")
    args = parser.parse_args(argv)
    # No terminal to hang up on (new session), but be explicit: a closing SSH
    # session must not end training.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    run = Run(args.run)
    try:
        world = world_from_env()
    except TuiFtError as exc:
        print(f"[{now_iso()}] not started: {exc}", flush=True)
        return 1
    if world.distributed:
        # A rank under torchrun: tui-ft's launcher holds the run lock; under a plain
        # torchrun (or accelerate launch) rank 0 takes it.
        if world.is_main and not os.environ.get(LAUNCHED_ENV):
            try:
                from .jobs import lock_run

                args.lock_fd = lock_run(run)
            except TuiFtError as exc:
                print(f"[{now_iso()}] not started: {exc}", flush=True)
                return 1
        code = _run_worker(run, args, f"rank {world.rank}/{world.world_size}")
        # A rank's work is on disk (rank 0 wrote and synced it) and its process group
        # is gone: it leaves without running C++ static destructors, where a thread of
        # torch's still alive at exit made an ended rank abort once in a busy full
        # suite ("terminate called without an active exception", SIGABRT), which
        # torchrun reports as a failed run.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    if args.lock_fd is None and args.node_rank == 0:
        from .jobs import lock_run

        try:
            # Started by hand: take the run lock before touching anything.
            args.lock_fd = lock_run(run)
        except TuiFtError as exc:
            print(f"[{now_iso()}] not started: {exc}", flush=True)
            return 1
    launch = _launch_of(run, args)
    if launch.distributed:
        print(f"[{now_iso()}] launcher {os.getpid()}: torchrun with "
              f"{launch.nproc_per_node} process(es) per node, {launch.nnodes} node(s), "
              f"for {run.path}", flush=True)
        try:
            state = run_distributed(run, launch,
                                    resume=Path(args.resume) if args.resume else None)
        except BaseException as exc:
            _record_failure(run, f"the launcher failed: {type(exc).__name__}: {exc}")
            traceback.print_exc()
            return 1
        print(f"[{now_iso()}] {state}", flush=True)
        return 0 if state in ("finished", "stopped") else 1
    return _run_worker(run, args, "worker")


def _launch_of(run: Run, args) -> Launch:
    nproc = args.nproc_per_node
    if nproc is None:
        try:
            nproc = TrainConfig.load(run.config_path, recorded=True).nproc_per_node
        except TuiFtError:
            nproc = 1  # the worker says what is wrong with the config
    return Launch(nproc_per_node=nproc, nnodes=args.nnodes, node_rank=args.node_rank,
                  rdzv_endpoint=args.rdzv_endpoint)


def _run_worker(run: Run, args, who: str) -> int:
    print(f"[{now_iso()}] {who} {os.getpid()} starting {run.path}", flush=True)
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
