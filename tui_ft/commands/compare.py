"""`tui-ft compare RUN_A[:CKPT] RUN_B[:CKPT]`: make or reopen a blind A/B comparison
(grade/arena.py), have the LLM judge fill it (--judge), print its results and write
its verdicts (--export)."""

from __future__ import annotations

import sys

from ..console import json_text
from ..errors import TuiFtError
from ..runs.registry import find_run
from ..text import visible


def _side(spec: str):
    from ..grade.arena import split_spec

    run_name, checkpoint = split_spec(spec)
    return find_run(run_name), checkpoint


def progress(done: int, total: int) -> None:
    if sys.stderr.isatty():
        print(f"\r{done}/{total}", end="", file=sys.stderr, flush=True)


def _pct(value) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def prepare_comparison(args):
    """The comparison the command line names, made or reopened (answers generated
    where a side lacks them); refused when its sides share no prompt."""
    from ..grade import arena

    if args.grade and (args.judge or args.export or args.json):
        raise TuiFtError("--grade opens the screen to give verdicts by hand; use --judge, "
                         "--export and --json in a separate command")
    if args.judge and not (args.base_url and args.model):
        raise TuiFtError("--judge needs the judge server: --base-url URL and --model NAME")
    if not args.judge and (args.base_url or args.model):
        raise TuiFtError("--base-url and --model are the judge's: add --judge to have it "
                         "fill the comparison")
    first, second = _side(args.side_a), _side(args.side_b)
    tty = sys.stderr.isatty()

    def note(text: str) -> None:
        print(f"tui-ft: {visible(text, keep_newlines=False)}", file=sys.stderr)

    comparison = arena.prepare(first, second, name=args.name, seed=args.seed,
                               device=args.device, batch_size=args.batch_size,
                               on_progress=progress, on_note=note)
    if tty:
        print(file=sys.stderr)
    if not comparison.pairs:
        raise TuiFtError(f"{comparison.path}: the two sides answer no prompt in common "
                         "(same id, instruction and input); were they tested on the same "
                         "data?")
    return comparison


def run(args) -> int:
    from ..grade import arena

    comparison = prepare_comparison(args)
    tty = sys.stderr.isatty()
    code = 0
    by = arena.HUMAN
    judge_fields = {}
    if args.judge:
        from ..grade.judge import JudgeStopped
        from .judge import settings_from_args

        settings = settings_from_args(args)
        by = arena.judge_rater(settings.model)
        try:
            judged = arena.judge_comparison(comparison, settings, on_progress=progress)
        except JudgeStopped as stopped:
            if tty:
                print(file=sys.stderr)
            s = stopped.summary
            print(f"tui-ft: stopped: {s['judged']} of {s['pairs']} pairs judged are kept "
                  f"in {comparison.path}; the same command goes on with the rest",
                  file=sys.stderr)
            return 130
        if tty:
            print(file=sys.stderr)
        judge_fields = {k: judged[k] for k in ("judged", "unparseable", "errors", "sent",
                                               "prompt", "model")}
        if judged["errors"]:
            print(f"tui-ft: error: {judged['errors']} pairs got no reply from the judge in "
                  f"both orders (each error is in {judged['journal']}); run the same "
                  "command again to send them again", file=sys.stderr)
            code = 1
        if judged["unparseable"]:
            print(f"tui-ft: {judged['unparseable']} pairs have a reply the judge's verdict "
                  f"could not be read from (in {judged['journal']}); they have no verdict",
                  file=sys.stderr)
    results = comparison.results(by, reveal=args.reveal)
    exported = None
    if args.export:
        exported = comparison.export(args.export, reveal=args.reveal)
    if args.json:
        print(json_text({**results, **judge_fields, "export": exported}))
        return code
    _print(results, comparison, exported)
    if judge_fields:
        print(f"judge {visible(judge_fields['model'], keep_newlines=False)} "
              f"({judge_fields['prompt']}): {judge_fields['sent']} requests now, "
              f"{judge_fields['unparseable']} pairs unparseable, {judge_fields['errors']} "
              "without a reply; a pair's verdict stands when both orders agree, else tie")
    return code


def _print(results: dict, comparison, exported: dict | None) -> None:
    print(f"comparison: {results['comparison']} ({results['pairs']} pairs, seed "
          f"{results['seed']})")
    if results["unpaired"]:
        print(f"{results['unpaired']} answers have no partner on the other side (another "
              "prompt, or missing there) and are left out")
    print(f"verdicts by {visible(results['by'], keep_newlines=False)}: {results['verdicts']} "
          f"of {results['pairs']} ({results['remaining']} left): {results['decisive']} "
          f"decisive, {results['ties']} ties, {results['both_bad']} both bad")
    if results["sides"] is None:
        print("which model wrote which answer stays hidden until every pair has a verdict "
              "(--reveal shows it now)")
    else:
        width = max(len(s["spec"]) for s in results["sides"])
        for side in results["sides"]:
            interval = ("" if side["ci_low"] is None else
                        f" (95% CI {_pct(side['ci_low'])} to {_pct(side['ci_high'])})")
            print(f"  {visible(side['spec'], keep_newlines=False):<{width}}  wins "
                  f"{side['wins']:>4}  win rate {_pct(side['win_rate'])}{interval}")
        print("win rate: share of the decisive verdicts; ties and both bad are not in it")
    others = [r for r in comparison.raters() if r != results["by"]]
    if others:
        print("other raters: " + ", ".join(visible(r, keep_newlines=False) for r in others))
    if exported is not None:
        print(f"exported {exported['rows']} verdicts to {exported['path']}"
              + ("" if exported["revealed"] else " (without model names; --reveal adds them)"))
