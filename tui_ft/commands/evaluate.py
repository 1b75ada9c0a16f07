"""`tui-ft eval mc FILE --model M`: a multiple-choice benchmark (MMLU's CSV layout or
JSONL) scored by the log-likelihood of each choice, as lm-evaluation-harness scores
MMLU; the accuracy overall and per subject, as a table or one JSON object."""

from __future__ import annotations

import json
import sys

from ..text import visible

USAGE_ERROR = 2


def _usage_error(message: str) -> int:
    print(f"tui-ft eval mc: error: {message}", file=sys.stderr)
    return USAGE_ERROR


def run(args) -> int:
    if args.eval_command == "mc":
        return run_mc(args)
    raise AssertionError(args.eval_command)  # argparse allows no other


def check_args(args) -> str | None:
    """The first bad option value, as a message; checked before anything is loaded."""
    if args.shots < 0:
        return f"--shots must be 0 or more, got {args.shots}"
    if args.batch_size < 1:
        return f"--batch-size must be 1 or more, got {args.batch_size}"
    if args.limit is not None and args.limit < 1:
        return f"--limit must be 1 or more, got {args.limit}"
    return None


def run_mc(args) -> int:
    problem = check_args(args)
    if problem:
        return _usage_error(problem)
    from ..config import resolve_data_path
    from ..data.choices import pick_shots, read_questions
    from ..model.sources import resolve_source
    from ..runs.run_source import run_checkpoint

    # The files and the model's name are checked before torch is imported.
    questions = read_questions(resolve_data_path(args.file))
    if args.limit is not None:
        questions = _first_of_each_subject(questions, args.limit)
    pool = read_questions(resolve_data_path(args.shots_from)) if args.shots_from else None
    shots = pick_shots(questions, args.shots, args.seed, pool)
    short = [q.subject for q, s in zip(questions, shots) if len(s) < args.shots]
    if short:
        print(f"tui-ft eval mc: note: {len(short)} questions have fewer than {args.shots} "
              f"shots: their subject has fewer questions to draw from "
              f"(e.g. {visible(short[0], keep_newlines=False)}); they get all there are",
              file=sys.stderr)
    resolved = resolve_source(args.model, runs=run_checkpoint)

    from .generate import _load
    from ..model.multiple_choice import score_questions, summarize
    from ..model.precision import DeviceError, PrecisionError, pick_device, resolve_precision

    try:
        device = pick_device(args.device)
        precision = resolve_precision(args.dtype, device)
    except (DeviceError, PrecisionError) as exc:
        return _usage_error(str(exc))
    model, info = _load(resolved, device, precision)
    progress = _Progress() if sys.stderr.isatty() else None
    try:
        scored = score_questions(model, questions, shots, batch_size=args.batch_size,
                                 progress=progress)
    finally:
        if progress is not None:
            progress.close()
    summary = summarize(questions, scored)
    if summary["truncated"]:
        print(f"tui-ft eval mc: note: {summary['truncated']} of {summary['n']} prompts "
              f"were longer than the model's context "
              f"({model.config.context_length} tokens) and were cut from the left",
              file=sys.stderr)
    if args.json:
        summary.update(model=info.source, shots=args.shots, seed=args.seed,
                       file=args.file, device=str(device), dtype=precision.name)
        print(json.dumps(summary))
        return 0
    _print_table(summary, info.describe(), args.shots)
    return 0


def _first_of_each_subject(questions, limit: int):
    """The first `limit` questions of each subject (lm-eval's --limit is per task)."""
    seen: dict[str, int] = {}
    out = []
    for q in questions:
        if seen.get(q.subject, 0) < limit:
            seen[q.subject] = seen.get(q.subject, 0) + 1
            out.append(q)
    return out


def _print_table(summary: dict, model: str, shots: int) -> None:
    print(f"model: {visible(model, keep_newlines=False)}, {shots}-shot")
    names = [visible(name, keep_newlines=False) for name in summary["per_subject"]]
    width = max([len("all"), len("subject")] + [len(n) for n in names])
    print(f"{'subject':<{width}}  {'n':>6}  {'correct':>7}  accuracy")
    for name, row in zip(names, summary["per_subject"].values()):
        print(f"{name:<{width}}  {row['n']:>6}  {row['correct']:>7}  "
              f"{row['accuracy']:8.4f}")
    print(f"{'all':<{width}}  {summary['n']:>6}  {summary['correct']:>7}  "
          f"{summary['accuracy']:8.4f}")


class _Progress:
    """'scored N/M' on stderr, one line redrawn (only on a terminal)."""

    def __init__(self) -> None:
        self.shown = False

    def __call__(self, done: int, total: int) -> None:
        sys.stderr.write(f"\rscored {done}/{total} sequences")
        sys.stderr.flush()
        self.shown = True

    def close(self) -> None:
        if self.shown:
            sys.stderr.write("\n")
            sys.stderr.flush()
