"""`tui-ft data inspect`, `tui-ft data preview` and `tui-ft styles`."""

from __future__ import annotations

import json
import sys
from ..data.batches import IGNORE_INDEX, encode_rendered, loss_segments
from ..data.records import Dataset, RecordError
from ..data.split import parse_ratios, split_records
from ..data.styles import load_styles
from ..data.stats import length_stats, token_lengths
from ..errors import TuiFtError
from ..text import visible

MAX_ERRORS_SHOWN = 20


def inspect_dataset(path: str, *, style_name: str = "alpaca", max_length: int = 1024,
                    seed: int = 123, ratios=(0.85, 0.05, 0.10)) -> dict:
    """Everything `data inspect` reports, as one plain dict."""
    style = load_styles().get(style_name)
    with Dataset(path) as ds:
        scan = ds.scan()
        fmt = ds.format
    # Token lengths are those the model sees: the rendered text plus <|endoftext|>.
    lengths = token_lengths(scan.records, style)
    stats = length_stats(lengths)
    splits = split_records(scan.records, seed=seed, ratios=ratios)
    return {
        "path": str(path),
        "format": fmt,
        "style": style.name,
        "max_length": max_length,
        "records": len(scan.records),
        "errors": [e.to_dict() for e in scan.errors],
        "splits": splits.sizes(),
        "tokens": stats.to_dict() if stats else None,
        "truncated": sum(1 for n in lengths if n > max_length),
        "kinds": {
            "alpaca": sum(1 for r in scan.records if r.messages is None),
            "chat": sum(1 for r in scan.records if r.messages is not None),
        },
        "_error_texts": [str(e) for e in scan.errors],
    }


def _check_max_length(value: int) -> None:
    if value < 2:
        raise TuiFtError(f"--max-length must be at least 2, got {value}")


def _print_inspect(report: dict) -> None:
    out = sys.stdout
    kinds = report["kinds"]
    kind_text = ", ".join(f"{n} {k}" for k, n in kinds.items() if n)
    print(f"{visible(report['path'])} ({report['format']}): {report['records']} records"
          f"{f' ({kind_text})' if kind_text else ''}, {len(report['errors'])} bad", file=out)
    s = report["splits"]
    print(f"split: train {s['train']}, val {s['val']}, test {s['test']}", file=out)
    t = report["tokens"]
    if t:
        print(f"tokens ({report['style']} style, with <|endoftext|>): min {t['min']}, "
              f"median {t['median']}, p95 {t['p95']}, max {t['max']}", file=out)
    print(f"truncated at {report['max_length']} tokens: {report['truncated']}", file=out)
    errors = report["_error_texts"]
    if errors:
        print(f"\nbad records ({len(errors)}):", file=out)
        for text in errors[:MAX_ERRORS_SHOWN]:
            print(f"  {visible(text, keep_newlines=False)}", file=out)
        if len(errors) > MAX_ERRORS_SHOWN:
            print(f"  ... and {len(errors) - MAX_ERRORS_SHOWN} more (--json lists all)", file=out)


def cmd_inspect(args) -> int:
    _check_max_length(args.max_length)
    report = inspect_dataset(args.path, style_name=args.style, max_length=args.max_length,
                             seed=args.seed, ratios=parse_ratios(args.split))
    if args.json:
        public = {k: v for k, v in report.items() if not k.startswith("_")}
        print(json.dumps(public, ensure_ascii=False))
    else:
        _print_inspect(report)
    if report["records"] == 0:
        print(f"tui-ft: error: {args.path}: no record could be loaded "
              f"({len(report['errors'])} bad)", file=sys.stderr)
        return 1
    return 0


def _loss_view(input_ids: list[int], labels: list[int], tty: bool) -> str:
    """The tokens again, with those the model learns to predict set apart: reverse
    video on a terminal, ⟦ ⟧ brackets otherwise."""
    open_mark, close_mark = ("\x1b[7m", "\x1b[0m") if tty else ("\u27e6", "\u27e7")
    return "".join(f"{open_mark}{visible(text)}{close_mark}" if learned else visible(text)
                   for text, learned in loss_segments(input_ids, labels))


def cmd_preview(args) -> int:
    _check_max_length(args.max_length)
    style = load_styles().get(args.style)
    with Dataset(args.path) as ds:
        if not 0 <= args.index < len(ds):
            raise TuiFtError(f"{args.path}: --index {args.index} is out of range "
                             f"(the file has {len(ds)} records, 0 to {len(ds) - 1})")
        item = ds.get(args.index)
    if isinstance(item, RecordError):
        raise TuiFtError(str(item))
    rendered = style.render(item)
    example = encode_rendered(rendered, mask_prompt=args.mask_prompt, max_length=args.max_length)
    input_ids, labels = list(example.input_ids), list(example.labels)
    if args.json:
        print(json.dumps({"text": rendered.text, "input_ids": input_ids, "labels": labels,
                          "id": item.id, "style": style.name, "mask_prompt": args.mask_prompt,
                          "truncated": example.truncated}, ensure_ascii=False))
        return 0
    tty = sys.stdout.isatty()
    n_learned = sum(1 for lab in labels if lab != IGNORE_INDEX)
    print(f"record {args.index} (id {visible(item.id, keep_newlines=False)}), "
          f"style {style.name}", end="")
    print(", prompt masked" if args.mask_prompt else "")
    print("-" * 60)
    print(visible(rendered.text))
    print("-" * 60)
    legend = "highlighted" if tty else "inside \u27e6 \u27e7"
    print(f"tokens: {len(input_ids)} (<|endoftext|> included); "
          f"learned: {n_learned} ({legend}), masked: {len(labels) - n_learned}"
          + (f"; truncated from {example.full_length}" if example.truncated else ""))
    print(_loss_view(input_ids, labels, tty))
    return 0


def run(args) -> int:
    if args.data_command == "inspect":
        return cmd_inspect(args)
    return cmd_preview(args)


def list_styles(args) -> int:
    catalog = load_styles()
    for style in catalog.styles.values():
        print(f"{style.name:12} {visible(style.description, keep_newlines=False)}  "
              f"[{visible(style.source, keep_newlines=False)}]")
    for error in catalog.errors:
        print(f"tui-ft: warning: {visible(error, keep_newlines=False)}", file=sys.stderr)
    return 0
