"""Summaries of a dataset: token lengths as the model sees them, and their statistics."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from .records import Record
from .styles import Style
from .tokenizer import encode_batch


def token_lengths(records: Sequence[Record], style: Style, chunk: int = 20_000) -> list[int]:
    """Tokens of each record rendered in `style`, with the appended <|endoftext|>."""
    lengths: list[int] = []
    for start in range(0, len(records), chunk):
        texts = [style.render(r).text for r in records[start:start + chunk]]
        lengths.extend(len(ids) + 1 for ids in encode_batch(texts))
    return lengths


def percentile(sorted_values: list[int], q: float) -> int:
    """Nearest-rank percentile of an ascending list (q in 0..100)."""
    if not sorted_values:
        raise ValueError("no values")
    rank = max(1, -(-len(sorted_values) * q // 100))  # ceil(n * q / 100)
    return sorted_values[int(rank) - 1]


def median(sorted_values: list[int]) -> float:
    n = len(sorted_values)
    mid = n // 2
    if n % 2:
        return sorted_values[mid]
    return (sorted_values[mid - 1] + sorted_values[mid]) / 2


@dataclass
class LengthStats:
    min: int
    median: float
    p95: int
    max: int

    def to_dict(self) -> dict:
        med = int(self.median) if float(self.median).is_integer() else self.median
        return {"min": self.min, "median": med, "p95": self.p95, "max": self.max}


def length_stats(lengths: list[int]) -> LengthStats | None:
    if not lengths:
        return None
    ordered = sorted(lengths)
    return LengthStats(ordered[0], median(ordered), percentile(ordered, 95), ordered[-1])
