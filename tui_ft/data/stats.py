"""Summaries of a dataset: token lengths as the model sees them, and their statistics."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from .records import Record
from .styles import Style
from .tokenizer import encode_batch, encode_prefix


def counting_limit(max_length: int) -> int:
    """How far a record's tokens are counted: well past max_length (how far over it
    records go tells whether to raise it), but bounded, since a record of 100 MB on
    one line took seconds and a gigabyte to count whole."""
    return max(4 * max_length, 4096)


def token_lengths(records: Sequence[Record], style: Style, limit: int | None = None,
                  chunk: int = 20_000) -> list[int]:
    """Tokens of each record rendered in `style`, with the appended <|endoftext|>.
    With `limit`, a record longer than that reads `limit + 1` ("more than limit"):
    its tokens are counted no further."""
    lengths: list[int] = []
    # Text up to this many characters costs little to count whole (in one batch,
    # across threads); longer text is counted only until it passes `limit`.
    long_text = None if limit is None else 4 * (limit + 1)
    for start in range(0, len(records), chunk):
        texts = [style.render(r).text for r in records[start:start + chunk]]
        if long_text is None:
            lengths.extend(len(ids) + 1 for ids in encode_batch(texts))
            continue
        short = [t for t in texts if len(t) <= long_text]
        counts = iter([len(ids) + 1 for ids in encode_batch(short)])
        for text in texts:
            n = next(counts) if len(text) <= long_text else _counted(text, limit)
            lengths.append(min(n, limit + 1))
    return lengths


def _counted(text: str, limit: int) -> int:
    ids, covered = encode_prefix(text, limit)
    return len(ids) + 1 if covered == len(text) else limit + 1


def longer_than(lengths: Sequence[int], limit: int | None) -> int:
    """How many of `token_lengths(..., limit)` were counted no further than `limit`."""
    return 0 if limit is None else sum(1 for n in lengths if n > limit)


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
