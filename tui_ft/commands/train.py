"""`tui-ft train`, `runs`, `attach`, `stop` and `responses`: the training engine from
the shell, with the same run folders the TUI reads."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from ..config import TrainConfig
from ..paths import runs_dir
from ..runfolder import Run, RunError
from ..runs.progress import format_duration, metric_label
from ..runs.registry import find_run, list_runs
from ..runs.summary import run_summary
from ..text import visible
from .progress import ProgressLine, TrainingProgress


def cmd_train(args) -> int:
    from ..runs.jobs import lock_run, prepare_run, start_detached
    from ..runs.worker import run_in_process

    if args.node_rank > 0:
        return _join_as_node(args)
    if args.resume:
        run = find_run(args.resume)
        # Before any look at its state: of two resumes at once, one gets the run.
        lock = lock_run(run)
        if run.state() in ("starting", "running"):
            raise RunError(f"{run.path} is still running; stop it first ('tui-ft stop')")
        # Refused before the run's state changes: a config the worker cannot read
        # would otherwise leave the run 'starting'.
        TrainConfig.load(run.config_path, recorded=True)
        if not run.checkpoints() and not args.checkpoint:
            # Stopped (or failed) before its first checkpoint: nothing to continue
            # from, so it trains again from step 0, in its folder, with its config.
            run.truncate_metrics_after(-1)
            run.write_status(state="starting", error=None, step=0)
            resume = None
            notice = f"{run.path} has no checkpoint: training it again from step 0"
        else:
            checkpoint = run.checkpoint(args.checkpoint or "last")
            run.write_status(state="starting", error=None)
            resume = checkpoint.path
            notice = f"resuming {run.path} from {checkpoint.name}"
    else:
        if args.config:
            config = TrainConfig.load(args.config)
        else:
            config = TrainConfig()
        if args.output_dir:
            config = TrainConfig.from_dict({**config.to_dict(), "output_dir": args.output_dir})
        if args.nproc_per_node:
            # Kept in the run's config: a resume launches as many again.
            config = TrainConfig.from_dict({**config.to_dict(),
                                            "nproc_per_node": args.nproc_per_node})
        run, config = prepare_run(config)
        lock = lock_run(run)
        resume = None
        notice = None
    launch = _launch(args, run)
    if launch.distributed and not args.detach:
        # torchrun's processes run detached (a terminal's Ctrl-C must not reach them
        # half-way through a collective); this command follows them, as attach does.
        start_detached(run, resume=resume, lock=lock, launch=launch)
        for line in (notice, f"run folder: {run.path}",
                     f"torchrun: {launch.nproc_per_node} process(es) per node x "
                     f"{launch.nnodes} node(s); Ctrl-C stops after a checkpoint, twice "
                     "detaches"):
            if line:
                print(line, file=sys.stderr)
        return _follow(run, interval=0.5, stop_on_interrupt=True)
    if args.detach:
        pid = start_detached(run, resume=resume, lock=lock,
                             launch=launch if launch.distributed else None)
        if notice:
            print(notice, file=sys.stderr)
        print(str(run.path))
        print(f"started worker {pid}; follow it with 'tui-ft attach {run.path}'",
              file=sys.stderr)
        return 0
    progress = TrainingProgress()
    # Through the progress line: a log reader that has gone (`| head`) must not keep
    # the run from starting or mark it failed.
    for line in (notice, f"run folder: {run.path}"):
        if line:
            progress.line.message(line)
    try:
        state = run_in_process(run, resume=resume, on_event=progress.feed)
    except KeyboardInterrupt:
        # A second Ctrl-C: the run stopped at once, without a checkpoint of its own.
        progress.line.close()
        print(f"interrupted at step {run.read_status().get('step')}; "
              + _resume_hint(run), file=sys.stderr)
        return 130
    finally:
        progress.line.close()
    status = run.read_status()
    print(f"{state}: step {status.get('step')}, " + best_summary(status), file=sys.stderr)
    if state == "stopped":
        print(_resume_hint(run), file=sys.stderr)
    print(str(run.path))
    if state == "stopped" and status.get("stopped_by") == "SIGINT":
        return 130  # as a shell expects of Ctrl-C: 'tui-ft train && ...' goes no further
    return 0 if state in ("finished", "stopped") else 1


# How long another node waits for node 0 to make the run folder.
JOIN_WAIT_S = 600.0


def _join_as_node(args) -> int:
    """Node R > 0 of a run on several nodes: node 0 makes (or resumes) the run folder,
    on storage both see, and records everything; this node waits for the folder,
    then starts its own ranks in it and follows the run."""
    from ..runs.jobs import start_detached

    if args.resume:
        path = Path(args.resume).expanduser()
    elif args.output_dir:
        path = Path(args.output_dir).expanduser()
    else:
        config = TrainConfig.load(args.config) if args.config else TrainConfig()
        if not config.output_dir:
            raise RunError("--node-rank above 0 joins node 0's run: give the same "
                           "--output-dir (on storage every node sees) or --resume RUN")
        path = Path(config.output_dir).expanduser()
    run = Run(path)
    print(f"node {args.node_rank}: waiting for node 0's run in {path}", file=sys.stderr)
    deadline = time.monotonic() + JOIN_WAIT_S
    while not run.config_path.is_file() or run.read_status().get("state") != "starting":
        if time.monotonic() > deadline:
            raise RunError(f"{path}: node 0 made no run here within {JOIN_WAIT_S:.0f} s "
                           "(is the folder on storage both nodes see?)")
        time.sleep(0.5)
    resume = None
    if args.resume and (run.checkpoints() or args.checkpoint):
        resume = run.checkpoint(args.checkpoint or "last").path  # node 0's choice too
    launch = _launch(args, run)
    start_detached(run, resume=resume, launch=launch)
    if args.detach:
        print(str(run.path))
        return 0
    return _follow(run, interval=0.5, stop_on_interrupt=True)


def _launch(args, run: Run):
    """How many processes train the run: the flags, else its config's nproc_per_node."""
    from ..runs.launch import Launch

    nproc = args.nproc_per_node or TrainConfig.load(run.config_path,
                                                    recorded=True).nproc_per_node
    if args.nnodes > 1 and not args.rdzv_endpoint:
        raise RunError("--nnodes above 1 needs --rdzv-endpoint HOST:PORT (the same on "
                       "every node; node 0's address is usual)")
    if not 0 <= args.node_rank < args.nnodes:
        raise RunError(f"--node-rank {args.node_rank} is not between 0 and "
                       f"{args.nnodes - 1} (--nnodes {args.nnodes})")
    return Launch(nproc_per_node=nproc, nnodes=args.nnodes, node_rank=args.node_rank,
                  rdzv_endpoint=args.rdzv_endpoint)


def best_summary(status: dict) -> str:
    """The best checkpoint with its own validation loss, and the best evaluation when
    it has no checkpoint (runfolder.py, BestCheckpoint)."""
    best, metric = status.get("best_checkpoint"), status.get("best_checkpoint_metric",
                                                             status.get("best_metric"))
    label = metric_label(status.get("metric_for_best_model"))
    text = f"best checkpoint {best or '-'}" + (
        f" ({label} {metric:.4f})" if best and isinstance(metric, (int, float)) else "")
    step, value = status.get("best_eval_step"), status.get("best_eval_metric")
    if step is not None and isinstance(value, (int, float)) and \
            step != status.get("best_checkpoint_step"):
        text += f"; best evaluation step {step} ({label} {value:.4f}, no checkpoint there)"
    return text


def _resume_hint(run: Run) -> str:
    if not run.checkpoints():
        return (f"no checkpoint was written; 'tui-ft train --resume {run.path}' "
                "starts it again from step 0")
    return (f"resume from {run.checkpoint('last').name} with "
            f"'tui-ft train --resume {run.path}'")


def _age(path: Path) -> str:
    seconds = time.time() - path.stat().st_mtime
    return format_duration(seconds) + " ago"


def cmd_runs(args) -> int:
    # The runs directory lists its own folders and the runs registered in it (made
    # with their own output_dir).
    runs = list_runs(Path(args.dir) if args.dir else runs_dir())
    rows = [run_summary(r) for r in runs]
    if args.json:
        print(json.dumps(rows))
        return 0
    if not rows:
        print(f"no runs under {args.dir or runs_dir()}")
        return 0
    # BEST VAL is the best checkpoint's own loss, beside its name; a better evaluation
    # without a checkpoint is marked with '*' after it (--json has both).
    print(f"{'RUN':34} {'STATE':9} {'STEP':>11} {'BEST CHECKPOINT':18} {'BEST VAL':>9} AGE")
    for run, row in zip(runs, rows):
        step = f"{row['step'] or 0}/{row['total_steps'] or '?'}"
        value = row["best_checkpoint_val_loss"]
        best = f"{value:.4f}" if value is not None else "-"
        if row["best_val_loss"] is not None and (value is None or row["best_val_loss"] < value):
            best += "*"
        print(f"{visible(row['run'], keep_newlines=False)[:34]:34} {row['state']:9} {step:>11} "
              f"{row['best_checkpoint'] or '-':18} {best:>9} {_age(run.path)}")
    if any(r["best_val_loss"] is not None and (r["best_checkpoint_val_loss"] is None or
           r["best_val_loss"] < r["best_checkpoint_val_loss"]) for r in rows):
        print("* a better evaluation has no checkpoint (tui-ft runs --json: best_val_loss "
              "at best_eval_step)")
    return 0


def cmd_attach(args) -> int:
    return _follow(find_run(args.run), interval=args.interval)


def _follow(run: Run, *, interval: float, stop_on_interrupt: bool = False) -> int:
    """Show a run's progress until it ends. Ctrl-C detaches (the run goes on); with
    `stop_on_interrupt` the first Ctrl-C asks the run to stop after a checkpoint (and
    the command ends with 130 once it has, as Ctrl-C on a one-process run does), a
    second one detaches."""
    from ..runs.jobs import stop_run

    tail = run.metrics_tail()
    progress = TrainingProgress()
    replay = True  # the history so far is replayed silently
    asked_stop = False
    while True:
        try:
            code = _show_until_end(run, tail, progress, interval, replay)
        except KeyboardInterrupt:
            replay = False
            if asked_stop or not stop_on_interrupt:
                progress.line.close()
                print("detached; the run goes on", file=sys.stderr)
                return 130 if asked_stop else 0
            asked_stop = True
            progress.line.message("stopping after the current step, with a checkpoint; "
                                  "Ctrl-C again detaches")
            stop_run(run)
            continue
        if asked_stop and run.state() == "stopped":
            print(_resume_hint(run), file=sys.stderr)
            return 130
        return code


def _show_until_end(run: Run, tail, progress, interval: float, replay: bool) -> int:
    while True:
        for m in tail.read():
            if replay and m.get("event") not in ("start", "resumed"):
                progress.line, real = _NullLine(), progress.line
                progress.feed(m)
                progress.line = real
            else:
                progress.feed(m)
        replay = False
        state = run.state()
        if state not in ("starting", "running"):
            progress.line.update(progress.text(), force=True)
            progress.line.close()
            status = run.read_status()
            print(f"{state}" + (f": {status['error']}" if status.get("error") else ""),
                  file=sys.stderr)
            return 0 if state in ("finished", "stopped") else 1
        time.sleep(interval)


class _NullLine(ProgressLine):
    def __init__(self):
        self.tty = False

    def update(self, text, force=False):
        pass

    def message(self, text):
        pass

    def close(self):
        pass


def cmd_stop(args) -> int:
    from ..runs.jobs import stop_run

    run = find_run(args.run)
    if run.state() not in ("starting", "running"):
        print(f"{run.path} is not running ({run.state()})", file=sys.stderr)
        return 0
    print(f"asking {run.path} to stop after a checkpoint ...", file=sys.stderr)
    if stop_run(run, wait=args.wait):
        status = run.read_status()
        print(f"{run.state()} at step {status.get('step')}; last checkpoint "
              f"{status.get('last_checkpoint') or '-'}", file=sys.stderr)
        return 0
    print(f"still running after {args.wait:g}s; it stops after its current step",
          file=sys.stderr)
    return 1


def cmd_responses(args) -> int:
    from ..errors import TuiFtError
    from ..grade.responses import generate_responses

    if args.batch_size < 1:
        raise TuiFtError(f"--batch-size {args.batch_size}: must be at least 1")
    run = find_run(args.run)
    line = ProgressLine()
    t0 = time.monotonic()

    def progress(done: int, total: int) -> None:
        # A batch's answers arrive together: before the first whole batch, a rate
        # from one answer would promise hours.
        rate = done / max(1e-9, time.monotonic() - t0)
        eta = (total - done) / rate if done >= min(total, args.batch_size) else None
        line.update(f"responses {done}/{total} | ETA {format_duration(eta)}",
                    force=done == total)

    try:
        summary = generate_responses(run, checkpoint=args.checkpoint, split=args.split,
                                     device=args.device, batch_size=args.batch_size,
                                     max_new_tokens=args.max_new_tokens,
                                     temperature=args.temperature, top_k=args.top_k,
                                     top_p=args.top_p, seed=args.seed, on_progress=progress,
                                     on_note=lambda text: line.message(f"note: {text}"),
                                     cuda_graphs=args.cuda_graphs)
    finally:
        line.close()
    print(f"{summary['count']} responses from {summary['checkpoint']} -> {summary['path']}",
          file=sys.stderr)
    print(f"exact match: {summary['correct']}/{summary['count']} "
          f"({100 * summary['exact_match']:.1f}%); stopped at end of text: "
          f"{summary['stopped_at_end_of_text']}/{summary['count']}", file=sys.stderr)
    if summary["prompts_cut"]:
        print(f"{summary['prompts_cut']} prompts were cut at the start to fit the model's "
              f"context (their lines say prompt_truncated)", file=sys.stderr)
    if args.json:
        print(json.dumps(summary))
    return 0


def run(args) -> int:
    handlers = {"train": cmd_train, "runs": cmd_runs, "attach": cmd_attach,
                "stop": cmd_stop, "responses": cmd_responses}
    return handlers[args.command](args)
