"""Entry point `tui-ft`: with no sub-command it opens the TUI; sub-commands run
headless. Only argparse is imported here, so every `--help` answers at once; each
command imports what it needs when it runs."""

from __future__ import annotations

import argparse
import os
import sys

from . import __version__
from .model.precision import PRECISIONS  # names only: imports no torch

EPILOG = """\
commands:
  tui-ft                          open the app on the default configuration
  tui-ft RUN                      open the app on a run (a folder, or a name from 'runs')
  tui-ft data inspect PATH        check a dataset: records, errors, splits, token lengths
  tui-ft data preview PATH -i N   show record N as the model is trained on it
  tui-ft styles                   list the prompt styles (built-in and your own)
  tui-ft train [CONFIG.yaml]      train (foreground; --detach for background)
  tui-ft runs                     list runs; attach RUN follows one, stop RUN stops one
  tui-ft responses RUN            answer the test split, into RUN/responses.jsonl
  tui-ft grades export RUN OUT    write the graded responses as JSONL
  tui-ft grades import FILE --run NAME
                                  make a run of answers made elsewhere, to grade them
  tui-ft judge RUN --base-url URL --model NAME
                                  have an LLM judge the answers; 'grades agreement
                                  RUN' says how far it agrees with your marks
  tui-ft compare RUN_A[:CKPT] RUN_B[:CKPT]
                                  blind A/B comparison (--judge: by the LLM judge)
  tui-ft generate -m M -p TEXT    answer an instruction with a model
  tui-ft export SOURCE OUT_DIR    write a model in Hugging Face GPT-2 layout
  tui-ft eval mc FILE -m M        multiple-choice accuracy (MMLU CSV or JSONL)

Run 'tui-ft COMMAND --help' for a command's options."""


class _CommandParser(argparse.ArgumentParser):
    """The parser of a sub-command. A mistake prints that command's usage on one line
    and `tui-ft COMMAND: error: ...`, exit 2. Plain argparse prints the whole wrapped
    usage, and leaves an unknown option to the top-level parser, which then shows the
    top-level usage instead of the command's."""

    def parse_known_args(self, args=None, namespace=None):
        namespace, extras = super().parse_known_args(args, namespace)
        if extras:
            self.error(f"unrecognized arguments: {' '.join(extras)}")
        return namespace, extras

    def error(self, message: str):
        self.exit(2, f"{self.short_usage()}\n{self.prog}: error: {message}\n")

    def short_usage(self) -> str:
        """`usage: tui-ft CMD [options] REQUIRED...`: the optional options are in --help."""
        parts = [self.prog]
        if any(a.option_strings and not a.required and not isinstance(a, argparse._HelpAction)
               for a in self._actions):
            parts.append("[options]")
        for action in self._actions:
            if action.option_strings:
                if action.required:
                    parts.append(f"{action.option_strings[0]} "
                                 f"{action.metavar or action.dest.upper()}")
                continue
            name = action.metavar or action.dest
            parts.append({"?": f"[{name}]", "*": f"[{name} ...]", "+": f"{name} ...",
                          argparse.PARSER: f"{name} ..."}.get(action.nargs, name))
        return f"usage: {' '.join(parts)}  (see '{self.prog} --help')"


def _add_data_commands(sub: argparse._SubParsersAction) -> None:
    data = sub.add_parser("data", help="inspect and preview instruction datasets",
                          description="Inspect and preview instruction datasets "
                                      "(JSON list or JSONL, Alpaca or chat records).")
    data_sub = data.add_subparsers(dest="data_command", metavar="{inspect,preview}")
    data_sub.required = True

    # Defaults are None: left out, a setting is training's (TrainConfig), filled in
    # by the command, so the two never disagree.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("path", help="dataset file (.json list or .jsonl; '@sample/NAME' "
                                     "is the shipped sample data)")
    common.add_argument("--style", help="prompt style (default: training's prompt_style; "
                                        "see 'tui-ft styles')")
    common.add_argument("--max-length", type=int, metavar="N",
                        help="truncate sequences to N tokens (default: training's max_length, "
                             "the default model's context)")
    for field, example in (("instruction", "prompt"), ("input", "context"),
                           ("output", "completion")):
        common.add_argument(f"--{field}-key", metavar="KEY",
                            help=f"read each record's {field} from KEY, e.g. {example} "
                                 f"(default: {field})")
    common.add_argument("--json", action="store_true", help="print one JSON object")

    inspect = data_sub.add_parser(
        "inspect", parents=[common], help="count records, report errors, splits, token lengths",
        description="Check every record of a dataset. Prints the record count, every bad "
                    "record with its line (JSONL) or index (JSON list), the split sizes and "
                    "token-length statistics. Exit status 0 when at least one record loaded.")
    inspect.add_argument("--seed", type=int,
                         help="split seed of the hash method (default: training's split_seed)")
    inspect.add_argument("--split", metavar="TRAIN/VAL/TEST",
                         help="split ratios, e.g. 85/5/10 (default: training's split_ratios)")
    inspect.add_argument("--split-method", metavar="hash|ordered",
                         help="hash: by id and seed, stable under edits; ordered: file order "
                              "as the book's script (default: training's split_method)")

    preview = data_sub.add_parser(
        "preview", parents=[common], help="show one record rendered and tokenized",
        description="Render one record in a prompt style and show which tokens count "
                    "toward the loss. With --json: {text, input_ids, labels}, where "
                    "labels[i] is the token to predict after input_ids[0..i], or -100.")
    preview.add_argument("--index", "-i", type=int, required=True, metavar="N",
                         help="0-based position of the record in the file")
    preview.add_argument("--mask-prompt", action="store_true",
                         help="mask the prompt: only the answer counts toward the loss")


def _add_model_commands(sub: argparse._SubParsersAction) -> None:
    gen = sub.add_parser(
        "generate", help="generate text from a model",
        description="Answer the instruction PROMPT with a model (KV-cached): PROMPT is put "
                    "in a prompt style first, as the model was trained on it (--style; "
                    "--raw continues PROMPT as is), and the style's stop strings end the "
                    "answer. With --json prints {prompt_ids, output_ids, text, style}: "
                    "prompt_ids are the styled prompt's tokens, output_ids the new tokens "
                    "only, text is their decoding.")
    # Defaults left None are training's (TrainConfig), filled in by the command.
    gen.add_argument("--model", "-m",
                     help="preset (tiny, gpt2, gpt2-medium, gpt2-large, gpt2-xl), a Hugging "
                          "Face-layout folder, a .safetensors file, a run or a checkpoint "
                          "(default: training's model)")
    gen.add_argument("--prompt", "-p", required=True,
                     help="the instruction (with --raw: the text to continue)")
    framing = gen.add_mutually_exclusive_group()
    framing.add_argument("--style", metavar="NAME",
                         help="prompt style (default: the run's for a run or checkpoint, "
                              "else training's prompt_style; see 'tui-ft styles')")
    framing.add_argument("--raw", action="store_true",
                         help="continue PROMPT as is, in no prompt style")
    gen.add_argument("--max-new-tokens", type=int, default=64, metavar="N",
                     help="stop after N new tokens (default: 64)")
    gen.add_argument("--temperature", type=float, metavar="T",
                     help="0 is greedy; above 0 samples (default: training's temperature)")
    gen.add_argument("--top-k", type=int, default=None, metavar="K",
                     help="sample only from the K most likely tokens")
    gen.add_argument("--top-p", type=float, default=None, metavar="P",
                     help="sample from the smallest set of tokens whose probability "
                          "reaches P")
    gen.add_argument("--seed", type=int, default=0, help="sampling seed (default: 0)")
    gen.add_argument("--device", help="auto, cpu, cuda, cuda:N (default: training's device)")
    gen.add_argument("--dtype", default="auto", choices=PRECISIONS,
                     help="inference precision (auto: bf16 on a GPU that has it, else fp32; "
                          "int8: weight-only quantized)")
    gen.add_argument("--json", action="store_true", help="print one JSON object")

    export = sub.add_parser(
        "export", help="write a model in Hugging Face GPT-2 layout",
        description="Write config.json, model.safetensors, generation_config.json and "
                    "the tokenizer (vocab.json, merges.txt, tokenizer_config.json, "
                    "special_tokens_map.json) in Hugging Face GPT-2 layout, loadable "
                    "offline with GPT2LMHeadModel.from_pretrained(OUT_DIR) and "
                    "AutoTokenizer.from_pretrained(OUT_DIR).")
    export.add_argument("source", help="a run, a checkpoint or a model (as for --model)")
    export.add_argument("out_dir", help="folder to write (created; must be empty if it exists)")


def _add_eval_commands(sub: argparse._SubParsersAction) -> None:
    ev = sub.add_parser("eval", help="benchmark a model",
                        description="Measure a model on a benchmark.")
    ev_sub = ev.add_subparsers(dest="eval_command", metavar="{mc}")
    ev_sub.required = True
    mc = ev_sub.add_parser(
        "mc", help="multiple-choice accuracy (MMLU layout)",
        description="Score multiple-choice questions by the log-likelihood of each "
                    "choice's letter after the prompt, as lm-evaluation-harness scores "
                    "MMLU. FILE is an MMLU CSV (question,A,B,C,D,answer letter; the "
                    "subject from the name, e.g. abstract_algebra_test.csv), a JSONL "
                    "file of {question, choices, answer (index or letter), subject?}, "
                    "or a folder of such files. With --json prints {n, accuracy, "
                    "per_subject: {SUBJECT: {n, accuracy}}}.")
    mc.add_argument("file", metavar="FILE",
                    help="a .csv or .jsonl file or a folder of them ('@sample/mc' is "
                         "the shipped sample)")
    mc.add_argument("--model", "-m", required=True,
                    help="preset, Hugging Face-layout folder, .safetensors file, run or "
                         "checkpoint")
    mc.add_argument("--shots", type=int, default=0, metavar="K",
                    help="worked examples before each question, of its subject (default: 0)")
    mc.add_argument("--shots-from", metavar="FILE",
                    help="take the shots from this file or folder (e.g. MMLU's dev "
                         "split; default: the other questions of FILE)")
    mc.add_argument("--seed", type=int, default=0,
                    help="seed of the choice of shots (default: 0)")
    mc.add_argument("--limit", type=int, metavar="N",
                    help="only the first N questions of each subject")
    mc.add_argument("--batch-size", type=int, default=16, metavar="N",
                    help="sequences per forward pass (default: 16)")
    mc.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N (default: auto)")
    mc.add_argument("--dtype", default="auto", choices=PRECISIONS,
                    help="precision (auto: bf16 on a GPU that has it, else fp32)")
    mc.add_argument("--json", action="store_true", help="print one JSON object")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not 1 or more")
    return value


def _add_train_commands(sub: argparse._SubParsersAction) -> None:
    train = sub.add_parser(
        "train", help="train a model (foreground, or --detach)",
        description="Train with the parameters of CONFIG.yaml (default: the embedded default, "
                    "the tiny model on the shipped sample data). Prints the run folder. "
                    "--detach starts the run as its own process session that outlives the "
                    "terminal and SSH disconnects, and returns at once.")
    train.add_argument("config", nargs="?", help="a YAML file of training parameters")
    train.add_argument("--detach", action="store_true", help="run in the background")
    train.add_argument("--resume", metavar="RUN",
                       help="continue RUN exactly from its last checkpoint")
    train.add_argument("--checkpoint", metavar="N",
                       help="with --resume: the checkpoint to continue from (default: last)")
    train.add_argument("--output-dir", metavar="DIR", help="the run folder to create")
    dist = train.add_argument_group(
        "several GPUs (torchrun, DDP)",
        "The run trains on N processes per node, one per GPU (the CPU with gloo where "
        "there is none); per_device_train_batch_size is per process. Several nodes: the "
        "same command on each, with its --node-rank and one --rdzv-endpoint.")
    dist.add_argument("--nproc-per-node", type=_positive_int, metavar="N",
                      help="processes on this node (default: the config's nproc_per_node)")
    dist.add_argument("--nnodes", type=_positive_int, default=1, metavar="N",
                      help="nodes taking part (default: 1)")
    dist.add_argument("--node-rank", type=int, default=0, metavar="R",
                      help="this node's rank, 0 to nnodes-1 (default: 0)")
    dist.add_argument("--rdzv-endpoint", metavar="HOST:PORT",
                      help="where the nodes meet (needed with --nnodes above 1)")

    runs = sub.add_parser("runs", help="list runs",
                          description="List runs: state, step, best validation loss, age.")
    runs.add_argument("--dir", help="runs directory (default: the platform's)")
    runs.add_argument("--json", action="store_true", help="print a JSON list")

    attach = sub.add_parser("attach", help="follow a run's progress",
                            description="Follow a running run's progress until it ends "
                                        "(ctrl+c detaches; the run goes on).")
    attach.add_argument("run", help="run folder or name")
    attach.add_argument("--interval", type=float, default=1.0, help=argparse.SUPPRESS)

    stop = sub.add_parser("stop", help="stop a run after a checkpoint",
                          description="Stop a running run cleanly: it saves a checkpoint "
                                      "after its current step, then ends (state: stopped).")
    stop.add_argument("run", help="run folder or name")
    stop.add_argument("--wait", type=float, default=60.0, metavar="S",
                      help="seconds to wait for it to end (default: 60)")

    resp = sub.add_parser(
        "responses", help="answer the test split with a run's model",
        description="Generate the model's answer for every record of a split into "
                    "RUN/responses.jsonl, and report exact-match accuracy.")
    resp.add_argument("run", help="run folder or name")
    resp.add_argument("--checkpoint", default="best", metavar="best|last|N",
                      help="which checkpoint answers (default: best)")
    resp.add_argument("--split", default="test", choices=["test", "val", "train"])
    resp.add_argument("--batch-size", type=int, default=16, metavar="N")
    resp.add_argument("--max-new-tokens", type=int, default=None, metavar="N",
                      help="longest answer (default: the run's max_new_tokens; lowered when "
                           "the longest prompt leaves less room in the model's context)")
    resp.add_argument("--temperature", type=float, default=None, metavar="T",
                      help="0 is greedy; above 0 samples (default: the run's temperature)")
    resp.add_argument("--top-k", type=int, default=None, metavar="K",
                      help="sample only from the K most likely tokens (default: the run's)")
    resp.add_argument("--top-p", type=float, default=None, metavar="P",
                      help="nucleus sampling threshold (default: the run's)")
    resp.add_argument("--seed", type=int, default=None,
                      help="sampling seed (default: the run's seed)")
    resp.add_argument("--device", default="auto")
    resp.add_argument("--cuda-graphs", action="store_true",
                      help="replay each batch's decoding step as a CUDA graph (CUDA only)")
    resp.add_argument("--json", action="store_true", help="print the summary as JSON")


def _add_grades_commands(sub: argparse._SubParsersAction) -> None:
    grades = sub.add_parser("grades", help="export or summarise a run's grades, import "
                                           "answers to grade, or compare the LLM judge",
                            description="The grades given in the Grading screen.")
    grades_sub = grades.add_subparsers(dest="grades_command",
                                       metavar="{export,summary,import,agreement}")
    grades_sub.required = True
    export = grades_sub.add_parser(
        "export", help="write graded responses as JSONL",
        description="Write one JSON object per response: id, instruction, input, expected, "
                    "response, grade (correct/wrong/ungraded), note, run, checkpoint, "
                    "graded_at, exact_match (the automatic check, a suggestion beside the "
                    "grade), and the LLM judge's newest word on the answer ('tui-ft "
                    "judge'): judge_verdict, judge_score, judge_reply, judge_reason, "
                    "judge_unparseable, judge_prompt, judge_model (null where no judge "
                    "read it). The file is written atomically.")
    export.add_argument("run", help="run folder or name")
    export.add_argument("out", help="the JSONL file to write")
    summary = grades_sub.add_parser("summary", help="counts and accuracy")
    summary.add_argument("run", help="run folder or name")
    summary.add_argument("--json", action="store_true")
    imp = grades_sub.add_parser(
        "import", help="grade answers made elsewhere",
        description="Make a run folder (state: imported, no checkpoints) from a file of "
                    "records that hold an instruction, its expected output and a model's "
                    "answer (JSON list or JSONL), so the Grading screen opens it ('tui-ft "
                    "NAME') and 'grades export' writes it like any run's.")
    imp.add_argument("responses", metavar="RESPONSES",
                     help="the answers: .json list or .jsonl")
    imp.add_argument("--run", required=True, metavar="NAME",
                     help="name of the run folder to create under the runs directory "
                          "(an existing one is never replaced)")
    imp.add_argument("--response-key", default="response", metavar="KEY",
                     help="the key of each record's answer (default: response; the book's "
                          "file uses model_response)")
    imp.add_argument("--label", metavar="TEXT",
                     help="what made the answers, shown and exported as their checkpoint "
                          "(default: the file's name)")
    for field in ("instruction", "input", "output"):
        imp.add_argument(f"--{field}-key", metavar="KEY",
                         help=f"the key of each record's {field} (default: {field})")
    imp.add_argument("--json", action="store_true", help="print the summary as JSON")
    agree = grades_sub.add_parser(
        "agreement", help="how far the LLM judge agrees with your marks",
        description="Compare the LLM judge ('tui-ft judge') with your marks on the answers "
                    "both have judged: accuracy, Cohen's kappa, the confusion table, the "
                    "base rate (share you marked correct) and the accuracy of always "
                    "saying your more common mark (baseline_accuracy). For 0-100 scores, "
                    "the pass mark that agrees best with yours (threshold). With --json: "
                    "{n, accuracy, kappa, base_rate, confusion: {judge_correct_human_"
                    "correct, judge_correct_human_wrong, judge_wrong_human_correct, "
                    "judge_wrong_human_wrong}, baseline_accuracy, baseline_label, "
                    "judge_pass_rate, prompt, model, kind, threshold (scores only)}.")
    agree.add_argument("run", help="run folder or name")
    agree.add_argument("--prompt", metavar="NAME",
                       help="the judge prompt's name (default: the judge that judged last)")
    agree.add_argument("--model", metavar="NAME",
                       help="the judge model (default: the judge that judged last)")
    agree.add_argument("--json", action="store_true", help="print one JSON object")


def _add_judge_command(sub: argparse._SubParsersAction) -> None:
    judge = sub.add_parser(
        "judge", help="have an LLM judge a run's answers",
        description="Send each answer of RUN/responses.jsonl, with its instruction and "
                    "expected output, to an OpenAI-compatible chat-completions server "
                    "(vLLM, llama.cpp server, Ollama, a hosted API) and record its score "
                    "or verdict in RUN/judgments.jsonl. An answer already judged with the "
                    "same prompt and model is not sent again, so the same command resumes "
                    "a stopped batch. Needs the optional extra: pip install "
                    "\"tui-ft[judge]\". With --json prints {judged, unparseable, errors, "
                    "mean_score, pass_rate, total, sent, skipped, prompt, model}. Exit 1 "
                    "when some answers got no judgment.")
    judge.add_argument("run", help="run folder or name")
    judge.add_argument("--prompt", default="score100", metavar="score100|correct-wrong|FILE",
                       help="judge prompt: the book's 0-100 score (default), a correct/wrong "
                            "verdict, or a YAML prompt file")
    _add_judge_server_options(judge, required=True)
    judge.add_argument("--json", action="store_true", help="print one JSON object")


def _add_judge_server_options(judge: argparse.ArgumentParser, *, required: bool) -> None:
    """The judge server's options, shared by 'judge' and 'compare --judge'."""
    judge.add_argument("--base-url", required=required, metavar="URL",
                       help="the judge server's API root, e.g. http://127.0.0.1:8000/v1")
    judge.add_argument("--model", required=required, metavar="NAME", help="the judge model")
    judge.add_argument("--api-key-env", metavar="VAR",
                       help="read the API key from this environment variable (default: "
                            "TUI_FT_JUDGE_API_KEY, else OPENAI_API_KEY; none: no key)")
    judge.add_argument("--api-key-file", metavar="FILE",
                       help="read the API key from FILE (mode 600: readable by you only)")
    judge.add_argument("--concurrency", type=_positive_int, default=4, metavar="N",
                       help="requests at once (default: 4)")
    judge.add_argument("--timeout", type=float, default=60.0, metavar="S",
                       help="seconds to wait for each reply (default: 60)")
    judge.add_argument("--retries", type=int, default=4, metavar="N",
                       help="tries again after 429, 5xx, a timeout or a dropped connection, "
                            "waiting longer each time (default: 4)")
    judge.add_argument("--backoff", type=float, default=1.0, metavar="S",
                       help="first wait before trying again, doubled each time; a "
                            "Retry-After from the server wins (default: 1)")


def _add_compare_command(sub: argparse._SubParsersAction) -> None:
    compare = sub.add_parser(
        "compare", help="blind A/B comparison of two runs or checkpoints",
        description="Compare two models blind: each side (a run, or RUN:CHECKPOINT with "
                    "best, last, N or checkpoint-N) answers the test prompts (answers it "
                    "lacks are generated into the comparison folder, the run's own are "
                    "left as they are), and each prompt's two answers are shown as A and "
                    "B in an order drawn at random per prompt (--seed, recorded). The "
                    "comparison lives in RUNS/comparisons/NAME: verdicts.jsonl is fsynced "
                    "per verdict, so the same command resumes it. --judge has an LLM "
                    "judge fill it with the pairwise prompt, asking each pair in both "
                    "orders: a side wins only when both orders agree, else the pair is a "
                    "tie. Win rate: a side's share of the decisive verdicts (ties and "
                    "both-bad reported apart), with a 95% Wilson interval; shown with the "
                    "sides' names only when every pair has a verdict or with --reveal. "
                    "With --json prints {comparison, by, pairs, verdicts, remaining, "
                    "decisive, ties, both_bad, complete, revealed, sides: null or [{run, "
                    "checkpoint, spec, wins, win_rate, ci_low, ci_high}] ...}.")
    compare.add_argument("side_a", metavar="RUN_A[:CKPT]", help="the first side")
    compare.add_argument("side_b", metavar="RUN_B[:CKPT]", help="the second side")
    compare.add_argument("--name", metavar="NAME",
                         help="the comparison's folder under RUNS/comparisons (default: "
                              "from the two sides)")
    compare.add_argument("--seed", type=int, metavar="N",
                         help="seed of the order shown (default: drawn once, recorded)")
    compare.add_argument("--export", metavar="OUT.jsonl",
                         help="write every verdict as JSONL: id, instruction, input, "
                              "expected, answer_a, answer_b, verdict (A, B, tie, both_bad), "
                              "by; with --reveal also model_a, model_b, winner")
    compare.add_argument("--reveal", action="store_true",
                         help="name which model wrote which answer (results and export) "
                              "before every pair has a verdict")
    compare.add_argument("--grade", action="store_true",
                         help="give verdicts by hand: open the blind side-by-side screen "
                              "(a, b, t, x: A better, B better, tie, both bad)")
    compare.add_argument("--judge", action="store_true",
                         help="have the LLM judge fill the comparison (needs --base-url "
                              "and --model)")
    compare.add_argument("--prompt", default="pairwise", metavar="pairwise|FILE",
                         help="the judge's pairwise prompt (default: pairwise)")
    _add_judge_server_options(compare, required=False)
    compare.add_argument("--device", default="auto",
                         help="where answers a side lacks are generated (default: auto)")
    compare.add_argument("--batch-size", type=_positive_int, default=16, metavar="N",
                         help="generation batch size (default: 16)")
    compare.add_argument("--json", action="store_true", help="print one JSON object")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tui-ft", usage="tui-ft [options] [RUN | COMMAND ...]",
        description="Instruction fine-tuning of GPT-2-family models, in the terminal.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"tui-ft {__version__}")
    parser.add_argument("--no-mouse", action="store_true",
                        help="TUI: ignore the mouse (saves bandwidth over SSH)")
    parser.add_argument("--low-bandwidth", action="store_true",
                        help="TUI: for slow SSH links (charts redraw every 5 s, no animations)")
    parser.add_argument("--dataset", metavar="PATH",
                        help="TUI: open this dataset file (default: the shipped sample data)")
    parser.add_argument("--config", metavar="YAML",
                        help="TUI: start from these training parameters")
    parser.add_argument("--screen", choices=["datasets", "params", "training", "grading",
                                             "runs"],
                        help="TUI: the screen to open on (default: datasets, or training "
                             "for a RUN)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", prog="tui-ft",
                                parser_class=_CommandParser)
    _add_data_commands(sub)
    _add_model_commands(sub)
    _add_train_commands(sub)
    _add_grades_commands(sub)
    _add_judge_command(sub)
    _add_compare_command(sub)
    _add_eval_commands(sub)
    styles = sub.add_parser("styles", help="list prompt styles",
                            description="List the built-in prompt styles and those in your "
                                        "config folder, with any errors in your style files. "
                                        "With --json: a list of {name, description, source, "
                                        "builtin, system, templates, stop, error}; a file "
                                        "that did not load has name null and its error.")
    styles.add_argument("--json", action="store_true", help="print a JSON list")
    return parser


_TOP_OPTIONS_WITH_VALUE = {"--dataset", "--config", "--screen"}


def _split_run_argument(parser: argparse.ArgumentParser, argv: list[str]):
    """`tui-ft RUN` opens the app on a run: take a first positional that is not a
    command out of argv (argparse would call it an invalid choice)."""
    commands = set()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            commands = set(action.choices)
    skip = False
    for i, arg in enumerate(argv):
        if skip:
            skip = False
            continue
        if arg in _TOP_OPTIONS_WITH_VALUE:
            skip = True
            continue
        if arg.startswith("-"):
            continue
        if arg in commands:
            return argv, None
        return argv[:i] + argv[i + 1:], arg
    return argv, None


def _main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    argv, run_name = _split_run_argument(parser, argv)
    args = parser.parse_args(argv)
    from .errors import TuiFtError

    try:
        if args.command == "data":
            from .commands import data

            return data.run(args)
        if args.command in ("train", "runs", "attach", "stop", "responses"):
            from .commands import train

            return train.run(args)
        if args.command == "judge" or getattr(args, "grades_command", "") == "agreement":
            from .commands import judge

            return judge.run(args) if args.command == "judge" else judge.agreement(args)
        if args.command == "compare":
            from .commands import compare

            if args.grade:
                from .ui.screens.arena import run_arena

                return run_arena(compare.prepare_comparison(args).path,
                                 mouse=not args.no_mouse)
            return compare.run(args)
        if args.command == "grades":
            from .commands import grades

            return grades.run(args)
        if args.command == "generate":
            from .commands import generate

            return generate.run(args)
        if args.command == "export":
            from .commands import export

            return export.run(args)
        if args.command == "eval":
            from .commands import evaluate

            return evaluate.run(args)
        if args.command == "styles":
            from .commands import data

            return data.list_styles(args)
        from pathlib import Path

        from .ui.app import run_app

        # Kept as typed: the configuration resolves it ('@sample/', '~') like every
        # data path, and shows it short.
        dataset = Path(args.dataset) if args.dataset else None
        config = Path(args.config).expanduser() if args.config else None
        run_path = None
        if run_name:
            from .runs.registry import find_run

            run_path = find_run(run_name).path
        return run_app(mouse=not args.no_mouse, dataset_path=dataset, config_path=config,
                       run=run_path, low_bandwidth=args.low_bandwidth,
                       start_mode=args.screen)
    except TuiFtError as exc:
        return _say_error(exc)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        from pathlib import Path

        from .fsio import disk_full, disk_full_error

        # A full disk met by any write not already turned into a message (a resume's
        # first status write, a settings file): the one message, not a traceback.
        full = disk_full(exc)
        if full is None:
            raise
        return _say_error(disk_full_error(Path(full.filename or os.getcwd()), "write",
                                          full))


def _say_error(exc: Exception) -> int:
    from .text import visible

    # Messages quote files and values: their control characters are made visible.
    print(f"tui-ft: error: {visible(str(exc))}", file=sys.stderr)
    return 1


def main(argv: list[str] | None = None) -> int:
    from .console import prepare_streams

    prepare_streams()  # PYTHONIOENCODING=ascii, LANG=C: degrade, never crash on output
    try:
        code = _main(argv)
        sys.stdout.flush()  # a closed pipe shows here, not at interpreter exit
        return code
    except BrokenPipeError:
        # 'tui-ft runs | head': the reader has what it wanted. Quiet, as a command
        # killed by SIGPIPE; stdout goes to devnull so the exit flush says nothing.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
