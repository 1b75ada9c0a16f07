"""`tui-ft generate`: continue one prompt with a model (preset, folder, file, checkpoint
or run), greedy or sampled, in the precision asked for; plain text or one JSON object."""

from __future__ import annotations

import json
import math
import sys

from ..text import visible

USAGE_ERROR = 2


def _usage_error(message: str) -> int:
    print(f"tui-ft generate: error: {message}", file=sys.stderr)
    return USAGE_ERROR


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


def run(args) -> int:
    problem = check_args(args)
    if problem:
        return _usage_error(problem)

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
                              top_p=args.top_p, seed=args.seed)
    try:
        config.validate()
    except GenerationError as exc:
        return _usage_error(str(exc))

    model, info = _load(args.model, device, precision)
    context = model.config.context_length
    if args.max_new_tokens >= context:
        return _usage_error(f"--max-new-tokens must be less than the model's context "
                            f"({context} tokens for {info.source}), got "
                            f"{args.max_new_tokens}")
    prompt_ids = encode(args.prompt)
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


def _load(source: str, device, precision):
    """The model on `device` in `precision`; for int8 the weights are quantized from
    fp32 on the CPU first (scales from full-precision weights), then moved."""
    from ..model.download import TerminalProgress
    from ..model.weights import load_model

    progress = TerminalProgress(f"downloading {visible(source, keep_newlines=False)}")
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
