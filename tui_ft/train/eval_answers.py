"""Answers generated at each evaluation, for metrics a loss cannot give: the
normalised exact match of greedy answers to the validation split (eval_exact_match),
and the numbers a user's compute_metrics file works out from (prompt, expected,
answer), e.g. whether an arithmetic answer is right. Both are means over the
validation records (a name the hook returns for some records only: over those),
logged beside val_loss as val_exact_match and val_NAME, and usable as
metric_for_best_model.

compute_metrics is a Python file of the user's, loaded and run in the worker (as
Hugging Face's compute_metrics is their own code): it must define
`compute_metrics(prompt: str, expected: str, answer: str) -> dict[str, float]`.
sample_data/metrics.py is an example for the shipped sample data."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path
from typing import Callable

from ..config import TrainConfig, resolve_data_path
from ..data.records import Record
from ..data.styles import Style
from ..data.tokenizer import encode
from ..errors import TrainingError
from ..text import exact_match
from .distributed import World, all_gather

HOOK = "compute_metrics"


def load_hook(value: str) -> Callable[[str, str, str], dict]:
    """The compute_metrics function of the file `value` names (@sample/ paths too)."""
    path = resolve_data_path(value)
    if path is None or not Path(path).is_file():
        raise TrainingError(f"compute_metrics: {value}: no such file")
    spec = importlib.util.spec_from_file_location(f"tui_ft_user_metrics_{abs(hash(path))}",
                                                  path)
    if spec is None or spec.loader is None:
        raise TrainingError(f"compute_metrics: {path}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # the user's code: any error, said with its place
        raise TrainingError(f"compute_metrics: {path} failed to load: "
                            f"{type(exc).__name__}: {exc}") from None
    hook = getattr(module, HOOK, None)
    if not callable(hook):
        raise TrainingError(f"compute_metrics: {path} defines no function {HOOK}(prompt, "
                            "expected, answer)")
    return hook


class EvalAnswers:
    """Greedy answers to this rank's share of the validation records, and the means
    of their metrics over all ranks (a collective when there are several)."""

    def __init__(self, config: TrainConfig, records: list[Record], style: Style, *,
                 context: int, world: World, emit: Callable[[dict], None],
                 batch_size: int) -> None:
        from ..model.generate import GenerationConfig, fit_max_new_tokens

        self.config, self.world, self.batch_size = config, world, batch_size
        self.hook = load_hook(config.compute_metrics) if config.compute_metrics else None
        self.records = world.shard(list(records))
        self.texts = [style.prompt(r) for r in self.records]
        self.prompts = [encode(t) for t in self.texts]
        every = [len(encode(style.prompt(r))) for r in records] if world.distributed \
            else [len(p) for p in self.prompts]
        fitted, note = fit_max_new_tokens(config.max_new_tokens, context, every)
        if note is not None:
            emit({"step": 0, "epoch": 0.0, "event": "note",
                  "text": f"evaluation answers: {note}"})
        self.generation = GenerationConfig(max_new_tokens=fitted, temperature=0.0,
                                           stop_strings=style.stop)

    def __call__(self, model) -> dict[str, float]:
        from ..model.generate import generate

        results = generate(model, self.prompts, self.generation,
                           batch_size=self.batch_size) if self.prompts else []
        sums: dict[str, list[float]] = {}

        def add(name: str, value: float) -> None:
            entry = sums.setdefault(name, [0.0, 0])
            entry[0] += value
            entry[1] += 1

        for record, text, result in zip(self.records, self.texts, results):
            if self.config.eval_exact_match:
                add("exact_match", float(exact_match(result.text, record.output)))
            if self.hook is not None:
                for name, value in self._call_hook(record, text, result.text).items():
                    add(name, value)
        total: dict[str, list[float]] = {}
        for part in all_gather(sums, self.world):
            for name, (value, count) in part.items():
                entry = total.setdefault(name, [0.0, 0])
                entry[0] += value
                entry[1] += count
        return {name: value / count for name, (value, count) in total.items() if count}

    def _call_hook(self, record: Record, prompt: str, answer: str) -> dict[str, float]:
        try:
            values = self.hook(prompt, record.output, answer)
        except Exception as exc:  # the user's code
            raise TrainingError(f"compute_metrics failed on validation record "
                                f"{record.id!r}: {type(exc).__name__}: {exc}") from None
        if not isinstance(values, dict):
            raise TrainingError(f"compute_metrics returned {type(values).__name__} for "
                                f"record {record.id!r}; it must return a dict of numbers")
        out = {}
        for name, value in values.items():
            if not (isinstance(name, str) and name.isidentifier()):
                raise TrainingError(f"compute_metrics returned the name {name!r}: names "
                                    "must be identifiers (they become val_NAME)")
            if isinstance(value, bool):
                value = float(value)
            if not isinstance(value, (int, float)) or not math.isfinite(value):
                raise TrainingError(f"compute_metrics returned {name}={value!r} for record "
                                    f"{record.id!r}; it must be a finite number")
            out[name] = float(value)
        return out

