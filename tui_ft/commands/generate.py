"""`tui-ft generate`: answer one instruction with a model (preset, folder, file,
checkpoint or run), put in the prompt style the model was trained on (or continue the
text as is with --raw), greedy or sampled, in the precision asked for; plain text or
one JSON object."""

from __future__ import annotations

import json
import math
import re
import sys
from pathlib import Path

from ..text import visible

USAGE_ERROR = 2
_CHECKPOINT_NAME = re.compile(r"^checkpoint-\d+$")


def _usage_error(message: str) -> int:
    print(f"tui-ft generate: error: {message}", file=sys.stderr)
    return USAGE_ERROR


def fill_defaults(args) -> None:
    """Options left out take training's values (TrainConfig), as a run would."""
    from ..config import TrainConfig

    defaults = TrainConfig()
    for name in ("model", "temperature", "device"):
        if getattr(args, name) is None:
            setattr(args, name, getattr(defaults, name))


def check_args(args) -> str | None:
    """The first bad value among the options, as a message; None when all are usable.
    Checked before any model is loaded, so a typo costs no download."""
    if args.prompt == "":
        return "--prompt is empty: give some text to continue"
    if args.max_new_tokens < 0:
        return f"--max-new-tokens must be >= 0, got {args.max_new_tokens}"
    t = args.temperature
    if not math.isfinite(t) or t < 0:
        return f"--temperature must be a finite number >= 0 (0 is greedy), got {t}"
    if args.top_k is not None and args.top_k < 1:
        return f"--top-k must be >= 1, got {args.top_k}"
    if args.top_p is not None and not (0 < args.top_p <= 1):
        return f"--top-p must be in (0, 1], got {args.top_p}"
    return None


def _write_text(text: str) -> None:
    out = sys.stdout
    # Model output is untrusted: on a terminal an escape sequence in it would act.
    shown = visible(text) if out.isatty() else text
    out.write(shown + "\n")
    out.flush()


def run_of_model(path: Path) -> Path | None:
    """The run folder a model path belongs to: the run itself, its checkpoints/ folder,
    one of its checkpoints or a weights file in one; None for anything else."""
    from ..runfolder import CHECKPOINTS_DIR, Run

    folder = path if path.is_dir() else path.parent
    if _CHECKPOINT_NAME.match(folder.name) and folder.parent.name == CHECKPOINTS_DIR:
        folder = folder.parent.parent
    elif folder.name == CHECKPOINTS_DIR:
        folder = folder.parent
    return folder if Run(folder).config_path.is_file() else None


def pick_style(args, resolved):
    """The style the prompt is put in: --style, else the style the run (of a run or
    checkpoint) was trained in, else alpaca."""
    from ..data.styles import get_style

    if args.style:
        return get_style(args.style), "--style"
    from ..config import TrainConfig

    run_path = run_of_model(resolved) if isinstance(resolved, Path) else None
    if run_path is None:
        # A model not trained by tui-ft (a preset, a foreign folder): training's style.
        return get_style(TrainConfig().prompt_style), "the default"
    from ..errors import TuiFtError
    from ..runfolder import Run

    try:
        name = TrainConfig.load(Run(run_path).config_path).prompt_style
        return get_style(name), f"run {run_path.name}'s"
    except TuiFtError as exc:
        raise TuiFtError(f"{exc}\n(the prompt style of {run_path} is unknown: choose one "
                         f"with --style, or --raw for no style)") from None


def styled_prompt(style, instruction: str) -> str:
    """The text the model continues: the instruction in `style`, up to where the
    answer starts (the same rendering that prompts the test answers)."""
    from ..data.records import Record

    return style.prompt(Record(id="prompt", instruction=instruction, input="", output=""))


def run(args) -> int:
    fill_defaults(args)
    problem = check_args(args)
    if problem:
        return _usage_error(problem)
    from ..model.sources import resolve_source
    from ..runs.run_source import run_checkpoint

    # A model that does not exist is refused here, before torch is imported (seconds).
    resolved = resolve_source(args.model, runs=run_checkpoint)
    style, why = (None, "") if args.raw else pick_style(args, resolved.path)
    text = args.prompt if style is None else styled_prompt(style, args.prompt)
    if style is not None and sys.stderr.isatty() and not args.json:
        print(f"tui-ft generate: prompt style {style.name} ({why}; --raw for none)",
              file=sys.stderr)

    from ..data.tokenizer import encode
    from ..model.generate import GenerationConfig, GenerationError, generate
    from ..model.precision import DeviceError, PrecisionError, pick_device, resolve_precision

    try:
        device = pick_device(args.device)
        precision = resolve_precision(args.dtype, device)
    except (DeviceError, PrecisionError) as exc:
        return _usage_error(str(exc))
    config = GenerationConfig(max_new_tokens=args.max_new_tokens,
                              temperature=args.temperature, top_k=args.top_k,
                              top_p=args.top_p, seed=args.seed,
                              stop_strings=style.stop if style is not None else ())
    try:
        config.validate()
    except GenerationError as exc:
        return _usage_error(str(exc))

    model, info = _load(resolved, device, precision)
    context = model.config.context_length
    if args.max_new_tokens >= context:
        return _usage_error(f"--max-new-tokens must be less than the model's context "
                            f"({context} tokens for {info.source}), got "
                            f"{args.max_new_tokens}")
    prompt_ids = encode(text)
    try:
        result = generate(model, [prompt_ids], config, batch_size=1)[0]
    except GenerationError as exc:
        return _usage_error(str(exc))

    if result.note:
        print(f"tui-ft generate: note: {result.note}", file=sys.stderr)
    if args.json:
        payload = {
            "prompt_ids": prompt_ids,
            "output_ids": result.output_ids,
            "text": result.text,
            "finish_reason": result.finish_reason,
            "prompt_truncated": result.prompt_truncated,
            "style": style.name if style is not None else None,
            "model": info.source,
            "dtype": precision.name,
            "device": str(device),
        }
        report = getattr(model, "quant_report", None)
        if report is not None:
            payload["int8"] = report.to_dict()
        # ASCII escapes: no byte of the model's text reaches the terminal raw.
        print(json.dumps(payload))
        return 0
    report = getattr(model, "quant_report", None)
    if report is not None and sys.stderr.isatty():
        print(f"tui-ft generate: {report.pretty()}", file=sys.stderr)
    _write_text(result.text)
    return 0


def _load(source, device, precision):
    """The model on `device` in `precision`; for int8 the weights are quantized from
    fp32 on the CPU first (scales from full-precision weights), then moved."""
    from .progress import DownloadProgress
    from ..model.weights import load_model

    progress = DownloadProgress(f"downloading {visible(source.text, keep_newlines=False)}")
    try:
        if precision.int8:
            from ..model.quant import quantize_int8

            model, info = load_model(source, device="cpu", progress=progress)
            quantize_int8(model)
            model.to(device=device, dtype=precision.dtype)
        else:
            model, info = load_model(source, device=device, dtype=precision.dtype,
                                     progress=progress)
    finally:
        progress.close()
    return model, info
