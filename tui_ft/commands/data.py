"""`tui-ft data inspect`, `tui-ft data preview` and `tui-ft styles`. Every setting
left out on the command line is the training default (TrainConfig), so a dataset is
read, split and measured here exactly as `tui-ft train` would."""

from __future__ import annotations

import sys
from ..config import TrainConfig, resolve_data_path
from ..console import json_text, pick
from ..data.batches import IGNORE_INDEX, encode_rendered, loss_segments
from ..data.dataset import Dataset
from ..data.records import RecordError
from ..data.split import parse_ratios, split_records
from ..data.styles import load_styles
from ..data.stats import counting_limit, length_stats, longer_than, token_lengths
from ..errors import TuiFtError
from ..text import visible

MAX_ERRORS_SHOWN = 20
# Command-line options and the TrainConfig keys they set.
_OPTION_KEYS = {"style": "prompt_style", "seed": "split_seed", "split_method": "split_method",
                "instruction_key": "instruction_key", "input_key": "input_key",
                "output_key": "output_key"}


def settings_from_args(args) -> tuple[TrainConfig, int]:
    """The data settings of TrainConfig with the options given on the command line,
    checked as a configuration file would be, and the token limit (--max-length,
    else training's: max_length or the default model's context)."""
    given = {key: getattr(args, option) for option, key in _OPTION_KEYS.items()
             if getattr(args, option, None) is not None}
    if getattr(args, "split", None) is not None:
        given["split_ratios"] = list(parse_ratios(args.split))
    config = TrainConfig.from_dict(given, source="command line")
    max_length = args.max_length if args.max_length is not None else config.sequence_length()
    _check_max_length(max_length)
    return config, max_length


def inspect_dataset(path: str, config: TrainConfig | None = None,
                    max_length: int | None = None) -> dict:
    """Everything `data inspect` reports, as one plain dict: the file read, split and
    measured with `config`'s data settings (default: training's)."""
    config = config or TrainConfig()
    style = load_styles().get(config.prompt_style)
    max_length = max_length or config.sequence_length()
    fields, method = config.record_fields(), config.split_method
    with Dataset(resolve_data_path(path), fields) as ds:
        scan = ds.scan()
        fmt = ds.format
    # Token lengths are those the model sees: the rendered text plus <|endoftext|>,
    # counted only so far past max_length (a record of 100 MB took a gigabyte).
    limit = counting_limit(max_length)
    lengths = token_lengths(scan.records, style, limit)
    stats = length_stats(lengths)
    splits = split_records(scan.records, seed=config.split_seed, ratios=config.split_ratios,
                           method=method)
    return {
        "path": str(path),
        "format": fmt,
        "style": style.name,
        "max_length": max_length,
        "records": len(scan.records),
        "errors": [e.to_dict() for e in scan.errors],
        "split_method": method,
        "split_seed": config.split_seed if method == "hash" else None,
        "split_ratios": list(config.split_ratios),
        "splits": splits.sizes(),
        "tokens": stats.to_dict() if stats else None,
        # A length above counted_to reads counted_to + 1: "longer", counted no further.
        "counted_to": limit,
        "longer_than_counted": longer_than(lengths, limit),
        "truncated": sum(1 for n in lengths if n > max_length),
        "kinds": {
            "alpaca": sum(1 for r in scan.records if r.messages is None),
            "chat": sum(1 for r in scan.records if r.messages is not None),
        },
        "fields": {"instruction": fields.instruction, "input": fields.input,
                   "output": fields.output},
        "ignored_keys": scan.ignored_keys,
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
    how = report["split_method"] + (f", seed {report['split_seed']}"
                                    if report["split_seed"] is not None else "")
    ratios = "/".join(f"{100 * r:g}" for r in report["split_ratios"])
    print(f"split ({how}, {ratios}): train {s['train']}, val {s['val']}, test {s['test']}",
          file=out)
    f = report["fields"]
    if (f["instruction"], f["input"], f["output"]) != ("instruction", "input", "output"):
        print(f"fields: instruction from '{visible(f['instruction'])}', input from "
              f"'{visible(f['input'])}', output from '{visible(f['output'])}'", file=out)
    ignored = report["ignored_keys"]
    if ignored:
        listed = ", ".join(f"'{visible(k, keep_newlines=False)}' ({n})"
                           for k, n in list(ignored.items())[:MAX_ERRORS_SHOWN])
        more = (f" and {len(ignored) - MAX_ERRORS_SHOWN} more"
                if len(ignored) > MAX_ERRORS_SHOWN else "")
        print(f"ignored keys (records holding each): {listed}{more}; to read one, name it "
              "with --instruction-key, --input-key or --output-key", file=out)
    t = report["tokens"]
    if t:
        limit = report["counted_to"]

        def shown(n):
            return f"over {limit}" if n > limit else n

        longer = report["longer_than_counted"]
        print(f"tokens ({report['style']} style, with <|endoftext|>): min {shown(t['min'])}, "
              f"median {shown(t['median'])}, p95 {shown(t['p95'])}, max {shown(t['max'])}"
              + (f" ({longer} record{'s' if longer != 1 else ''} longer than {limit} "
                 "tokens, counted no further)" if longer else ""), file=out)
    print(f"truncated at {report['max_length']} tokens: {report['truncated']}", file=out)
    errors = report["_error_texts"]
    if errors:
        print(f"\nbad records ({len(errors)}):", file=out)
        for text in errors[:MAX_ERRORS_SHOWN]:
            print(f"  {visible(text, keep_newlines=False)}", file=out)
        if len(errors) > MAX_ERRORS_SHOWN:
            print(f"  ... and {len(errors) - MAX_ERRORS_SHOWN} more (--json lists all)", file=out)


def cmd_inspect(args) -> int:
    config, max_length = settings_from_args(args)
    report = inspect_dataset(args.path, config, max_length)
    if args.json:
        public = {k: v for k, v in report.items() if not k.startswith("_")}
        print(json_text(public))
    else:
        _print_inspect(report)
    if report["records"] == 0:
        print(f"tui-ft: error: {args.path}: no record could be loaded "
              f"({len(report['errors'])} bad)", file=sys.stderr)
        return 1
    return 0


def _loss_marks(tty: bool) -> tuple[str, str]:
    """What sets the learned tokens apart: reverse video on a terminal, ⟦ ⟧ brackets
    otherwise ([[ ]] where stdout cannot encode them: PYTHONIOENCODING=ascii)."""
    if tty:
        return "\x1b[7m", "\x1b[0m"
    return pick("\u27e6", "[["), pick("\u27e7", "]]")


def _loss_view(input_ids: list[int], labels: list[int], tty: bool) -> str:
    """The tokens again, with those the model learns to predict set apart."""
    open_mark, close_mark = _loss_marks(tty)
    return "".join(f"{open_mark}{visible(text)}{close_mark}" if learned else visible(text)
                   for text, learned in loss_segments(input_ids, labels))


def cmd_preview(args) -> int:
    config, max_length = settings_from_args(args)
    style = load_styles().get(config.prompt_style)
    with Dataset(resolve_data_path(args.path), config.record_fields()) as ds:
        if not 0 <= args.index < len(ds):
            raise TuiFtError(f"{args.path}: --index {args.index} is out of range "
                             f"(the file has {len(ds)} records, 0 to {len(ds) - 1})")
        item = ds.get(args.index)
    if isinstance(item, RecordError):
        raise TuiFtError(str(item))
    rendered = style.render(item)
    example = encode_rendered(rendered, mask_prompt=args.mask_prompt, max_length=max_length)
    input_ids, labels = list(example.input_ids), list(example.labels)
    if args.json:
        print(json_text({"text": rendered.text, "input_ids": input_ids, "labels": labels,
                         "id": item.id, "style": style.name, "mask_prompt": args.mask_prompt,
                         "truncated": example.truncated}))
        return 0
    tty = sys.stdout.isatty()
    n_learned = sum(1 for lab in labels if lab != IGNORE_INDEX)
    print(f"record {args.index} (id {visible(item.id, keep_newlines=False)}), "
          f"style {style.name}", end="")
    print(", prompt masked" if args.mask_prompt else "")
    print("-" * 60)
    print(visible(rendered.text))
    print("-" * 60)
    legend = "highlighted" if tty else "inside {} {}".format(*_loss_marks(tty))
    print(f"tokens: {len(input_ids)} (<|endoftext|> included); "
          f"learned: {n_learned} ({legend}), masked: {len(labels) - n_learned}"
          + (f"; truncated from {'' if example.length_exact else 'more than '}"
             f"{example.full_length}" if example.truncated else ""))
    print(_loss_view(input_ids, labels, tty))
    return 0


def run(args) -> int:
    if args.data_command == "inspect":
        return cmd_inspect(args)
    return cmd_preview(args)


def list_styles(args) -> int:
    catalog = load_styles()
    if getattr(args, "json", False):
        print(json_text(styles_report(catalog)))
        return 0
    for style in catalog.styles.values():
        print(f"{style.name:12} {visible(style.description, keep_newlines=False)}  "
              f"[{visible(style.source, keep_newlines=False)}]")
    for error in catalog.errors:
        print(f"tui-ft: warning: {visible(error, keep_newlines=False)}", file=sys.stderr)
    return 0


def styles_report(catalog) -> list[dict]:
    """`styles --json`: each style that loaded, then each style file that did not
    (name null, its located error)."""
    rows = [{"name": st.name, "description": st.description, "source": st.source,
             "builtin": st.source == "built-in", "system": st.system,
             "templates": dict(st.templates), "stop": list(st.stop), "error": None}
            for st in catalog.styles.values()]
    rows += [{"name": None, "description": None, "source": None, "builtin": False,
              "system": None, "templates": None, "stop": None, "error": error}
             for error in catalog.errors]
    return rows
