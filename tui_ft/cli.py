"""Entry point `tui-ft`: with no sub-command it opens the TUI; sub-commands run
headless. Only argparse is imported here, so every `--help` answers at once; each
command imports what it needs when it runs."""

from __future__ import annotations

import argparse
import sys

from . import __version__

EPILOG = """\
commands:
  tui-ft                          open the app on the default configuration
  tui-ft data inspect PATH        check a dataset: records, errors, splits, token lengths
  tui-ft data preview PATH -i N   show record N as the model is trained on it
  tui-ft styles                   list the prompt styles (built-in and your own)

Run 'tui-ft COMMAND --help' for a command's options."""


def _add_data_commands(sub: argparse._SubParsersAction) -> None:
    data = sub.add_parser("data", help="inspect and preview instruction datasets",
                          description="Inspect and preview instruction datasets "
                                      "(JSON list or JSONL, Alpaca or chat records).")
    data_sub = data.add_subparsers(dest="data_command", metavar="{inspect,preview}")
    data_sub.required = True

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("path", help="dataset file (.json list or .jsonl)")
    common.add_argument("--style", default="alpaca",
                        help="prompt style (default: alpaca; see 'tui-ft styles')")
    common.add_argument("--max-length", type=int, default=1024, metavar="N",
                        help="truncate sequences to N tokens (default: 1024, GPT-2's context)")
    common.add_argument("--json", action="store_true", help="print one JSON object")

    inspect = data_sub.add_parser(
        "inspect", parents=[common], help="count records, report errors, splits, token lengths",
        description="Check every record of a dataset. Prints the record count, every bad "
                    "record with its line (JSONL) or index (JSON list), the split sizes and "
                    "token-length statistics. Exit status 0 when at least one record loaded.")
    inspect.add_argument("--seed", type=int, default=123, help="split seed (default: 123)")
    inspect.add_argument("--split", default="85/5/10", metavar="TRAIN/VAL/TEST",
                         help="split ratios (default: 85/5/10)")
    inspect.add_argument("--mask-prompt", action="store_true",
                         help="also count how many tokens count toward the loss with the "
                              "prompt masked")

    preview = data_sub.add_parser(
        "preview", parents=[common], help="show one record rendered and tokenized",
        description="Render one record in a prompt style and show which tokens count "
                    "toward the loss. With --json: {text, input_ids, labels}, where "
                    "labels[i] is the token to predict after input_ids[0..i], or -100.")
    preview.add_argument("--index", "-i", type=int, required=True, metavar="N",
                         help="0-based position of the record in the file")
    preview.add_argument("--mask-prompt", action="store_true",
                         help="mask the prompt: only the answer counts toward the loss")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tui-ft",
        description="Instruction fine-tuning of GPT-2-family models, in the terminal.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"tui-ft {__version__}")
    parser.add_argument("--no-mouse", action="store_true",
                        help="TUI: ignore the mouse (saves bandwidth over SSH)")
    parser.add_argument("--dataset", metavar="PATH",
                        help="TUI: open this dataset file (default: the shipped sample data)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_data_commands(sub)
    sub.add_parser("styles", help="list prompt styles",
                   description="List the built-in prompt styles and those in your config "
                               "folder, with any errors in your style files.")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from .errors import TuiFtError

    try:
        if args.command == "data":
            from .commands import data

            return data.run(args)
        if args.command == "styles":
            from .commands import data

            return data.list_styles(args)
        from pathlib import Path

        from .ui.app import run_app

        dataset = Path(args.dataset).expanduser() if args.dataset else None
        return run_app(mouse=not args.no_mouse, dataset_path=dataset)
    except TuiFtError as exc:
        print(f"tui-ft: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
