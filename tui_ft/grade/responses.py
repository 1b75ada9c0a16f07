"""The fine-tuned model's answer for every record of a split, into RUN/responses.jsonl.
Lines are appended to a partial file as batches finish (so grading can start on the
first ones) and the file takes its final name only when complete."""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Callable

from ..config import TrainConfig
from ..errors import TuiFtError
from ..train.run import Run, now_iso

PARTIAL_SUFFIX = ".partial"


def partial_path(run: Run) -> Path:
    return run.responses_path.with_name(run.responses_path.name + PARTIAL_SUFFIX)


def normalise(text: str) -> str:
    """What exact match compares: surrounding white space and case do not count."""
    return " ".join(text.split()).casefold()


def exact_match(response: str, expected: str) -> bool:
    return normalise(response) == normalise(expected)


def read_responses(path: Path) -> list[dict]:
    """Response lines of a (possibly still growing) file; a half-written last line
    and lines that are not JSON objects are skipped."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    end = data.rfind(b"\n")
    out = []
    for line in data[:end + 1].split(b"\n") if end >= 0 else []:
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict) and "id" in value:
            out.append(value)
    return out


def generate_responses(run: Run, *, checkpoint: str = "best", split: str = "test",
                       device: str = "auto", batch_size: int = 16,
                       max_new_tokens: int | None = None,
                       on_progress: Callable[[int, int], None] | None = None,
                       cuda_graphs: bool = False) -> dict:
    """Answer every record of `split` with the run's `checkpoint`. Returns a summary:
    path, checkpoint, count, exact-match accuracy, how many stopped at end-of-text.
    `cuda_graphs` replays each batch's decoding step as a CUDA graph (see
    tui_ft.model.generate.generate); CUDA only."""
    from ..data.styles import load_styles
    from ..data.tokenizer import encode
    from ..model.generate import GenerationConfig, generate
    from ..model.precision import pick_device
    from ..model.weights import load_model
    from ..train.data import config_splits

    config = TrainConfig.load(run.config_path)
    chosen = run.checkpoint(checkpoint)
    splits, _ = config_splits(config)
    records = splits[split]
    if not records:
        raise TuiFtError(f"the {split} split of {config.dataset} is empty: nothing to answer")
    style = load_styles().get(config.prompt_style)
    dev = pick_device(device)
    if cuda_graphs and dev.type != "cuda":
        raise TuiFtError(f"--cuda-graphs needs a CUDA device; this run would generate on "
                         f"{dev.type}")
    model, _ = load_model(str(chosen.path), device=dev)
    gen = GenerationConfig(max_new_tokens=max_new_tokens or config.max_new_tokens,
                           temperature=config.temperature, top_k=config.top_k,
                           top_p=config.top_p, seed=config.seed, stop_strings=style.stop)
    gen.validate()
    settings = {k: v for k, v in asdict(gen).items() if k != "stop_strings"}
    settings["stop_strings"] = list(gen.stop_strings)

    partial = partial_path(run)
    prompts = [encode(style.prompt(r)) for r in records]
    counts = {"correct": 0, "stopped": 0, "done": 0}
    with open(partial, "w", encoding="utf-8") as out:

        def save(index: int, result) -> None:
            # Each answer is on disk as soon as its batch finishes, so grading can
            # start before the last one is generated.
            record = records[index]
            match = exact_match(result.text, record.output)
            counts["correct"] += match
            counts["stopped"] += result.finish_reason != "length"
            counts["done"] += 1
            out.write(json.dumps({
                "id": record.id, "instruction": record.instruction, "input": record.input,
                "expected": record.output, "response": result.text,
                "run": run.name, "checkpoint": chosen.name, "split": split,
                "finish_reason": result.finish_reason, "exact_match": match,
                "generation": settings, "generated_at": now_iso(),
            }, ensure_ascii=False) + "\n")
            out.flush()
            if on_progress is not None:
                on_progress(counts["done"], len(records))

        # One call, so each prompt's sampling stream is keyed by its own index.
        generate(model, prompts, gen, batch_size=batch_size, on_result=save,
                 cuda_graphs=cuda_graphs)
        os.fsync(out.fileno())
    os.replace(partial, run.responses_path)
    done = counts["done"]
    summary = {"path": str(run.responses_path), "checkpoint": chosen.name, "split": split,
               "count": done, "exact_match": counts["correct"] / done,
               "correct": counts["correct"], "stopped_at_end_of_text": counts["stopped"]}
    run.write_status(responses=summary)
    return summary
