"""`tui-ft grades export RUN OUT.jsonl` and `tui-ft grades summary RUN`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ..errors import TuiFtError
from ..grade.responses import read_responses
from ..grade.store import GradeStore
from .train import find_run


def _load(run_name: str):
    run = find_run(run_name)
    responses = read_responses(run.responses_path)
    if not responses:
        raise TuiFtError(f"{run.responses_path}: no responses yet; make them with "
                         f"'tui-ft responses {run_name}'")
    return run, responses, GradeStore(run)


def run(args) -> int:
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
