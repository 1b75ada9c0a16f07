"""`tui-ft train`, `runs`, `attach`, `stop` and `responses`: the training engine from
the shell, with the same run folders the TUI reads."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from ..config import TrainConfig
from ..paths import runs_dir
from ..text import visible
from ..train.run import MetricsTail, Run, RunError, list_runs
from .progress import ProgressLine, TrainingProgress, format_duration


def find_run(name: str) -> Run:
    """A run by path, or by folder name under the runs directory."""
    path = Path(name).expanduser()
    if not path.exists() and "/" not in name and (runs_dir() / name).is_dir():
        path = runs_dir() / name
    return Run.open(path)


def cmd_train(args) -> int:
    from ..train.worker import prepare_run, run_in_process, start_detached

    if args.resume:
        run = find_run(args.resume)
        checkpoint = run.checkpoint(args.checkpoint or "last")
        if run.state() in ("starting", "running"):
            raise RunError(f"{run.path} is still running; stop it first ('tui-ft stop')")
        run.write_status(state="starting", error=None)
        resume = checkpoint.path
        print(f"resuming {run.path} from {checkpoint.name}", file=sys.stderr)
    else:
        if args.config:
            config = TrainConfig.load(args.config)
        else:
            config = TrainConfig()
        if args.output_dir:
            config = TrainConfig.from_dict({**config.to_dict(), "output_dir": args.output_dir})
        run, config = prepare_run(config)
        resume = None
    if args.detach:
        pid = start_detached(run, resume=resume)
        print(str(run.path))
        print(f"started worker {pid}; follow it with 'tui-ft attach {run.path}'",
              file=sys.stderr)
        return 0
    print(f"run folder: {run.path}", file=sys.stderr)
    progress = TrainingProgress()
    try:
        state = run_in_process(run, resume=resume, on_event=progress.feed)
    except KeyboardInterrupt:
        progress.line.close()
        print(f"interrupted; resume with 'tui-ft train --resume {run.path}'", file=sys.stderr)
        return 130
    finally:
        progress.line.close()
    status = run.read_status()
    print(f"{state}: step {status.get('step')}, best checkpoint "
          f"{status.get('best_checkpoint') or '-'}"
          + (f" (val loss {status['best_metric']:.4f})" if status.get("best_metric") else ""),
          file=sys.stderr)
    print(str(run.path))
    return 0 if state in ("finished", "stopped") else 1


def _age(path: Path) -> str:
    seconds = time.time() - path.stat().st_mtime
    return format_duration(seconds) + " ago"


def run_summary(run: Run) -> dict:
    status = run.read_status()
    metrics = run.read_metrics()
    vals = [m["val_loss"] for m in metrics if "val_loss" in m]
    return {"run": run.name, "path": str(run.path), "state": run.state(),
            "step": status.get("step"), "total_steps": status.get("total_steps"),
            "best_val_loss": min(vals) if vals else None,
            "best_checkpoint": status.get("best_checkpoint"),
            "updated_at": status.get("updated_at"), "error": status.get("error")}


def cmd_runs(args) -> int:
    runs = list_runs(Path(args.dir) if args.dir else runs_dir())
    rows = [run_summary(r) for r in runs]
    if args.json:
        print(json.dumps(rows))
        return 0
    if not rows:
        print(f"no runs under {args.dir or runs_dir()}")
        return 0
    print(f"{'RUN':34} {'STATE':9} {'STEP':>11} {'BEST VAL':>9} {'BEST CHECKPOINT':18} AGE")
    for run, row in zip(runs, rows):
        step = f"{row['step'] or 0}/{row['total_steps'] or '?'}"
        best = f"{row['best_val_loss']:.4f}" if row["best_val_loss"] is not None else "-"
        print(f"{visible(row['run'], keep_newlines=False)[:34]:34} {row['state']:9} {step:>11} "
              f"{best:>9} {row['best_checkpoint'] or '-':18} {_age(run.path)}")
    return 0


def cmd_attach(args) -> int:
    run = find_run(args.run)
    tail = MetricsTail(run.metrics_path)
    progress = TrainingProgress()
    quiet_history = True
    try:
        while True:
            for m in tail.read():
                if quiet_history and m.get("event") not in ("start", "resumed"):
                    # Replay the history silently, then show what comes live.
                    progress.line, real = _NullLine(), progress.line
                    progress.feed(m)
                    progress.line = real
                else:
                    progress.feed(m)
            quiet_history = False
            state = run.state()
            if state not in ("starting", "running"):
                progress.line.update(progress.text(), force=True)
                progress.line.close()
                status = run.read_status()
                print(f"{state}" + (f": {status['error']}" if status.get("error") else ""),
                      file=sys.stderr)
                return 0 if state in ("finished", "stopped") else 1
            time.sleep(args.interval)
    except KeyboardInterrupt:
        progress.line.close()
        print("detached; the run goes on", file=sys.stderr)
        return 0


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
    from ..train.worker import stop_run

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
    from ..grade.responses import generate_responses

    run = find_run(args.run)
    line = ProgressLine()
    t0 = time.monotonic()

    def progress(done: int, total: int) -> None:
        rate = done / max(1e-9, time.monotonic() - t0)
        line.update(f"responses {done}/{total} | ETA {format_duration((total - done) / rate)}",
                    force=done == total)

    try:
        summary = generate_responses(run, checkpoint=args.checkpoint, split=args.split,
                                     device=args.device, batch_size=args.batch_size,
                                     max_new_tokens=args.max_new_tokens, on_progress=progress,
                                     cuda_graphs=args.cuda_graphs)
    finally:
        line.close()
    print(f"{summary['count']} responses from {summary['checkpoint']} -> {summary['path']}",
          file=sys.stderr)
    print(f"exact match: {summary['correct']}/{summary['count']} "
          f"({100 * summary['exact_match']:.1f}%); stopped at end of text: "
          f"{summary['stopped_at_end_of_text']}/{summary['count']}", file=sys.stderr)
    if args.json:
        print(json.dumps(summary))
    return 0


def run(args) -> int:
    handlers = {"train": cmd_train, "runs": cmd_runs, "attach": cmd_attach,
                "stop": cmd_stop, "responses": cmd_responses}
    return handlers[args.command](args)
