"""The fine-tuned model's answer for every record of a split, into RUN/responses.jsonl.
Lines are appended to a partial file as batches finish (so grading can start on the
first ones) and the file takes its final name only when complete."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, replace
from pathlib import Path
from typing import Callable

from ..config import ConfigError, TrainConfig, check, read_yaml
from ..errors import TuiFtError
from ..fsio import disk_full, disk_full_error, replace as replace_durably, sync, try_lock
from ..runfolder import Run, now_iso
from ..tail import JsonlTail
from ..text import exact_match

PARTIAL_SUFFIX = ".partial"


def partial_path(run: Run) -> Path:
    return run.responses_path.with_name(run.responses_path.name + PARTIAL_SUFFIX)


def answer_key(record: dict) -> str:
    """Which answer a mark judged: the response text and what made it (checkpoint,
    generation settings). Answers generated again (other settings, same checkpoint)
    get new keys, so a mark of the old answer is shown as stale instead of being
    carried over to an answer nobody read."""
    import hashlib

    basis = json.dumps([record.get("response"), record.get("checkpoint"),
                        record.get("generation")], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(basis.encode("utf-8")).hexdigest()[:16]


def automatic_match(record: dict) -> bool | None:
    """The exact-match check of a response line (as generation recorded it, else worked
    out from the texts); None when the line has no texts to compare. A suggestion
    shown beside the person's mark, never the mark."""
    recorded = record.get("exact_match")
    if isinstance(recorded, bool):
        return recorded
    expected, response = record.get("expected"), record.get("response")
    if isinstance(expected, str) and isinstance(response, str):
        return exact_match(response, expected)
    return None


def read_responses(path: Path) -> list[dict]:
    """Response lines of a (possibly still growing) file; a half-written last line
    and lines that are not JSON objects are skipped."""
    return [value for value in JsonlTail(path).read() if "id" in value]


GENERATION_LOCK = ".responses.lock"


def generation_holder(run: Run) -> int | None:
    """The pid of the `tui-ft responses` now writing this run's answers, else None."""
    fd = try_lock(run.path / GENERATION_LOCK)
    if fd is not None:
        os.close(fd)
        return None
    try:
        return int((run.path / GENERATION_LOCK).read_text().strip() or 0) or -1
    except (OSError, ValueError):
        return -1  # held, by a process that has not written its pid yet


def generate_responses(run: Run, **kwargs) -> dict:
    """One generation per run at a time: two writing one responses file interleaved it
    (and one removed the other's partial file). The lock is held for the whole job;
    a second one is refused with the holder's pid. See _generate for the rest."""
    fd = try_lock(run.path / GENERATION_LOCK)
    if fd is None:
        holder = generation_holder(run)
        who = f" (pid {holder})" if holder and holder > 0 else ""
        raise TuiFtError(f"{run.path}: another 'tui-ft responses'{who} is writing this "
                         "run's answers; wait for it to end, or stop it, and try again")
    try:
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError:
            pass  # a full disk: the lock holds all the same, only its pid is unsaid
        return _generate(run, **kwargs)
    finally:
        os.close(fd)


def _generate(run: Run, *, checkpoint: str = "best", split: str = "test",
                       device: str = "auto", batch_size: int = 16,
                       max_new_tokens: int | None = None, temperature: float | None = None,
                       top_k: int | None = None, top_p: float | None = None,
                       seed: int | None = None,
                       on_progress: Callable[[int, int], None] | None = None,
                       on_note: Callable[[str], None] | None = None,
                       cuda_graphs: bool = False) -> dict:
    """Answer every record of `split` with the run's `checkpoint`. Returns a summary:
    path, checkpoint, count, exact-match accuracy, how many stopped at end-of-text,
    the max_new_tokens used and a note when it was lowered to fit the context.
    Generation settings left None are the run's. `on_note(text)` hears, once before
    the first answer, why max_new_tokens was lowered. `cuda_graphs` replays each
    batch's decoding step as a CUDA graph (see tui_ft.model.generate.generate); CUDA
    only. A failure before the first answer leaves no partial file behind."""
    from ..data.styles import load_styles
    from ..data.tokenizer import encode
    from ..model.generate import GenerationConfig, fit_max_new_tokens, generate
    from ..model.precision import pick_device
    from ..model.weights import load_model
    from ..train.splits import config_splits

    overrides = {k: v for k, v in (("max_new_tokens", max_new_tokens),
                                   ("temperature", temperature), ("top_k", top_k),
                                   ("top_p", top_p), ("seed", seed)) if v is not None}
    # The settings given replace the run's before the config is checked, by the rules
    # of any config (a length that leaves the prompt no room in the model's context is
    # refused as in the Params form), so a run whose own value no longer passes can
    # still answer with one that does.
    values, problems = check({**read_yaml(run.config_path), **overrides},
                             recorded="max_new_tokens" not in overrides)
    if problems:
        given = ", ".join(f"{k} {v}" for k, v in overrides.items())
        raise ConfigError(problems, f"{run.config_path}" + (f" with {given}" if given else ""))
    config = TrainConfig(**values)
    chosen = run.checkpoint(checkpoint)
    splits, _ = config_splits(config)
    records = splits[split]
    if not records:
        raise TuiFtError(f"the {split} split of {config.dataset} is empty: nothing to answer")
    style = load_styles().get(config.prompt_style)

    gen = GenerationConfig(max_new_tokens=config.max_new_tokens,
                           temperature=config.temperature, top_k=config.top_k,
                           top_p=config.top_p, seed=config.seed, stop_strings=style.stop)
    gen.validate()
    dev = pick_device(device)
    if cuda_graphs and dev.type != "cuda":
        raise TuiFtError(f"--cuda-graphs needs a CUDA device; this run would generate on "
                         f"{dev.type}")
    prompts = [encode(style.prompt(r)) for r in records]
    model, _ = load_model(str(chosen.path), device=dev)
    fitted, note = fit_max_new_tokens(gen.max_new_tokens, model.config.context_length,
                                      [len(p) for p in prompts])
    if note is not None:
        note = f"{note} (the {split} split)"
        gen = replace(gen, max_new_tokens=fitted)
        if on_note is not None:
            on_note(note)
    settings = {k: v for k, v in asdict(gen).items() if k != "stop_strings"}
    settings["stop_strings"] = list(gen.stop_strings)

    partial = partial_path(run)
    counts = {"correct": 0, "stopped": 0, "done": 0, "cut": 0}
    try:
        with open(partial, "w", encoding="utf-8") as out:

            def save(index: int, result) -> None:
                # Each answer is on disk as soon as its batch finishes, so grading can
                # start before the last one is generated.
                record = records[index]
                match = exact_match(result.text, record.output)
                counts["correct"] += match
                counts["stopped"] += result.finish_reason != "length"
                counts["done"] += 1
                line = {
                    "id": record.id, "instruction": record.instruction, "input": record.input,
                    "expected": record.output, "response": result.text,
                    "run": run.name, "checkpoint": chosen.name, "split": split,
                    "finish_reason": result.finish_reason, "exact_match": match,
                    "generation": settings, "generated_at": now_iso(),
                }
                if result.prompt_truncated:
                    counts["cut"] += 1
                    line["prompt_truncated"] = result.prompt_truncated
                out.write(json.dumps(line, ensure_ascii=False) + "\n")
                out.flush()
                if on_progress is not None:
                    on_progress(counts["done"], len(records))

            # One call, so each prompt's sampling stream is keyed by its own index.
            generate(model, prompts, gen, batch_size=batch_size, on_result=save,
                     cuda_graphs=cuda_graphs)
            sync(out)
    except BaseException as exc:
        if not counts["done"]:
            # An empty partial file would read as "incomplete: 0 responses".
            partial.unlink(missing_ok=True)
        kept = (f"; the {counts['done']} answers written are kept in {partial}"
                if counts["done"] else "")
        if _out_of_memory(exc):
            raise TuiFtError(
                f"out of memory on {dev} while generating {len(records)} answers in "
                f"batches of {batch_size}{kept}. Use a smaller batch size (--batch-size "
                f"{max(1, batch_size // 4)}) or a shorter max_new_tokens") from None
        if full := disk_full(exc):
            previous = (f"{run.responses_path.name} is untouched"
                        if run.responses_path.exists() else "")
            raise disk_full_error(partial, "write the answers", full,
                                  after="; ".join(x for x in (previous, kept[2:]) if x)
                                  ) from None
        raise
    try:
        replace_durably(partial, run.responses_path)
    except OSError as exc:
        if full := disk_full(exc):
            raise disk_full_error(run.responses_path, "write the answers", full,
                                  after=f"all {counts['done']} are in {partial}") from None
        raise
    done = counts["done"]
    summary = {"path": str(run.responses_path), "checkpoint": chosen.name, "split": split,
               "count": done, "exact_match": counts["correct"] / done,
               "correct": counts["correct"], "stopped_at_end_of_text": counts["stopped"],
               "max_new_tokens": gen.max_new_tokens, "prompts_cut": counts["cut"],
               "note": note}
    run.write_status(responses=summary)
    return summary


def _out_of_memory(exc: BaseException) -> bool:
    import torch

    return isinstance(exc, torch.cuda.OutOfMemoryError) or (
        isinstance(exc, RuntimeError) and ("out of memory" in str(exc)
                                          or "can't allocate memory" in str(exc)))
