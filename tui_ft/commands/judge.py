"""`tui-ft judge RUN --base-url URL --model NAME` and `tui-ft grades agreement RUN`."""

from __future__ import annotations

import sys

from ..console import json_text
from ..runs.registry import find_run
from ..text import visible


def _fmt(value, pattern: str) -> str:
    return "-" if value is None else pattern.format(value)


def settings_from_args(args):
    """JudgeSettings from the judge server's options (cli._add_judge_server_options)."""
    from ..grade.judge import JudgeSettings, load_prompt, read_api_key

    return JudgeSettings(
        base_url=args.base_url, model=args.model, prompt=load_prompt(args.prompt),
        api_key=read_api_key(args.api_key_env, args.api_key_file),
        concurrency=args.concurrency, timeout=args.timeout, retries=args.retries,
        backoff=args.backoff)


def run(args) -> int:
    from ..grade.judge import JudgeStopped, judge_run

    run_ = find_run(args.run)
    settings = settings_from_args(args)
    tty = sys.stderr.isatty()

    def progress(done: int, total: int) -> None:
        if tty:
            print(f"\rjudged {done}/{total}", end="", file=sys.stderr, flush=True)

    try:
        summary = judge_run(run_, settings, on_progress=progress)
    except JudgeStopped as stopped:
        if tty:
            print(file=sys.stderr)
        s = stopped.summary
        print(f"tui-ft: stopped: {s['judged']} of {s['total']} answers judged are kept in "
              f"{s['path']}; the same command goes on with the rest", file=sys.stderr)
        if args.json:
            print(json_text(_contract(s)))
        return 130
    if tty:
        print(file=sys.stderr)
    if args.json:
        print(json_text(_contract(summary)))
    else:
        print(f"{summary['judged']} of {summary['total']} answers judged by "
              f"{visible(summary['model'], keep_newlines=False)} ({summary['prompt']}; "
              f"{summary['sent']} requests now, {summary['skipped']} judged before): "
              f"unparseable {summary['unparseable']}, errors {summary['errors']}, "
              f"mean score {_fmt(summary['mean_score'], '{:.1f}')}, pass rate "
              f"{_fmt(summary['pass_rate'], '{:.1%}')}")
        print(f"judgments: {summary['path']}")
        _show_unparseable(run_, settings)
    if summary["errors"]:
        print(f"tui-ft: error: {summary['errors']} answers got no judgment (one: "
              f"{visible(summary['last_error'] or '?', keep_newlines=False)}; each is in "
              f"{summary['path']} with its error); run the same command again to send "
              "them again", file=sys.stderr)
        return 1
    return 0


def _show_unparseable(run_, settings, most: int = 5) -> None:
    """A few replies the judge's answers could not be read from: what to fix in the
    prompt. Shown escaped: a reply is untrusted text."""
    from ..grade.judge import JudgmentStore

    judge = settings.prompt.identity(settings.model)
    bad = [e for e in JudgmentStore(run_).entries()
           if e.get("judge") == judge and e.get("unparseable")]
    for entry in bad[:most]:
        reply = str(entry.get("reply", ""))
        cut = reply[:200] + ("..." if len(reply) > 200 else "")
        print(f"unparseable reply (answer {visible(str(entry.get('id')), keep_newlines=False)})"
              f": {visible(cut, keep_newlines=False)}")
    if len(bad) > most:
        print(f"... and {len(bad) - most} more unparseable replies in judgments.jsonl")


def _contract(summary: dict) -> dict:
    keys = ("judged", "unparseable", "errors", "mean_score", "pass_rate", "total", "sent",
            "skipped", "prompt", "model")
    return {k: summary[k] for k in keys}


def agreement(args) -> int:
    from ..grade.agreement import agreement as measure

    run_ = find_run(args.run)
    result = measure(run_, prompt=args.prompt, model=args.model)
    if args.json:
        print(json_text(result))
        return 0
    c = result["confusion"]
    judge = (f"{visible(str(result['model']), keep_newlines=False)} "
             f"({visible(str(result['prompt']), keep_newlines=False)})")
    lines = [f"{result['n']} answers graded by both you and the judge {judge}"]
    if result.get("threshold") is not None:
        lines.append(f"a score of {result['threshold']} or more reads as correct (the mark "
                     "that agrees best with yours, chosen on these answers: optimistic)")
    lines += [
        f"accuracy {100 * result['accuracy']:.1f}%   kappa {result['kappa']:.3f}   "
        f"base rate {100 * result['base_rate']:.1f}% correct",
        f"always saying '{result['baseline_label']}' would be right "
        f"{100 * result['baseline_accuracy']:.1f}% of the time (kappa 0)",
        "                 you: correct   you: wrong",
        f"judge: correct  {c['judge_correct_human_correct']:>12}  "
        f"{c['judge_correct_human_wrong']:>11}",
        f"judge: wrong    {c['judge_wrong_human_correct']:>12}  "
        f"{c['judge_wrong_human_wrong']:>11}",
    ]
    print("\n".join(lines))
    return 0

