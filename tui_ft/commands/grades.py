"""`tui-ft grades export RUN OUT.jsonl`, `tui-ft grades summary RUN` and `tui-ft grades
import RESPONSES --run NAME`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ..console import json_text
from ..errors import TuiFtError
from ..text import visible
from ..grade.responses import read_responses
from ..grade.store import GradeStore
from ..runs.registry import find_run


def _load(run_name: str):
    run = find_run(run_name)
    responses = read_responses(run.responses_path)
    if not responses:
        raise TuiFtError(f"{run.responses_path}: no responses yet; make them with "
                         f"'tui-ft responses {run_name}'")
    return run, responses, GradeStore(run)


def cmd_import(args) -> int:
    from ..grade.imported import import_answers

    fields = {f"{name}_key": getattr(args, f"{name}_key") for name in
              ("instruction", "input", "output") if getattr(args, f"{name}_key") is not None}
    summary = import_answers(args.responses, args.run, response_key=args.response_key,
                             label=args.label, fields=fields)
    if summary["ignored_keys"]:
        keys = ", ".join(f"'{visible(k, keep_newlines=False)}'"
                         for k in list(summary["ignored_keys"])[:10])
        print(f"tui-ft: note: keys not read: {keys}", file=sys.stderr)
    print(f"{summary['count']} answers ({visible(summary['label'], keep_newlines=False)}; "
          f"exact match {summary['correct']}/{summary['count']}) -> {summary['run_path']}",
          file=sys.stderr)
    print(f"grade them with 'tui-ft {summary['run']}'; export with 'tui-ft grades export "
          f"{summary['run']} OUT.jsonl'", file=sys.stderr)
    if args.json:
        print(json_text(summary))
    else:
        print(summary["run_path"])
    return 0


def run(args) -> int:
    if args.grades_command == "import":
        return cmd_import(args)
    run_, responses, store = _load(args.run)
    if args.grades_command == "export":
        summary = store.export(responses, Path(args.out))
        print(f"{summary['total']} responses -> {summary['path']} (correct {summary['correct']}, "
              f"wrong {summary['wrong']}, ungraded {summary['ungraded']})", file=sys.stderr)
        return 0
    counts = store.counts(responses)
    if args.json:
        print(json.dumps(counts))
    else:
        acc = f"{100 * counts['accuracy']:.1f}%" if counts["accuracy"] is not None else "-"
        print(f"{counts['total']} responses: {counts['correct']} correct, {counts['wrong']} "
              f"wrong, {counts['ungraded']} ungraded; accuracy of graded: {acc}")
    return 0
