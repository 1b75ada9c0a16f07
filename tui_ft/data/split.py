"""Train / validation / test split, by one of two methods:

- `hash` (the default): a record's split is a function of its split key (its id, or
  its content) and the seed alone, so adding or removing other records never moves
  it, and exact duplicates never straddle train and test.
- `ordered`: file order, as the script of "Build a Large Language Model (From
  Scratch)", ch. 7 slices it: train is the first int(n * train) records, test the
  next int(n * test), validation the rest (85/5/10 of its 1,100 records: 935 / 110
  / 55). Editing the file moves records between splits; the seed plays no part."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Sequence

from ..errors import TuiFtError
from .records import Record

SPLITS = ("train", "val", "test")
DEFAULT_RATIOS = (0.85, 0.05, 0.10)
SPLIT_METHODS = ("hash", "ordered")


class SplitError(TuiFtError):
    """Split ratios that cannot be used."""


def check_ratios(ratios: Sequence[float]) -> tuple[float, float, float]:
    """Three non-negative numbers that sum to 1 (fractions) or 100 (percentages)."""
    if len(ratios) != 3:
        raise SplitError(f"split ratios need three numbers (train, val, test), got {len(ratios)}")
    try:
        values = [float(r) for r in ratios]
    except (TypeError, ValueError, OverflowError):  # OverflowError: an int past 1e308
        raise SplitError(f"split ratios must be numbers, got {list(ratios)!r}") from None
    if any(v < 0 or v != v for v in values):
        raise SplitError(f"split ratios must not be negative, got {values}")
    total = sum(values)
    if abs(total - 100) < 1e-6:
        values = [v / 100 for v in values]
    elif abs(total - 1) > 1e-6:
        raise SplitError(f"split ratios must add up to 1 (or 100), got {values} = {total:g}")
    if values[0] == 0:
        raise SplitError("the train ratio must be above 0")
    return values[0], values[1], values[2]


def parse_ratios(text: str) -> tuple[float, float, float]:
    """'85/5/10' or '0.85,0.05,0.1' -> fractions."""
    parts = [p for p in text.replace(",", "/").replace(":", "/").split("/") if p.strip()]
    try:
        return check_ratios([float(p) for p in parts])
    except ValueError:
        raise SplitError(f"split ratios look like 85/5/10, got '{text}'") from None


def unit_interval(key: str, seed: int) -> float:
    """A uniform number in [0, 1) fixed by the key and the seed."""
    digest = hashlib.blake2b(f"{seed}\x1f{key}".encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def assign_split(key: str, seed: int, ratios: Sequence[float] = DEFAULT_RATIOS) -> str:
    train, val, _ = ratios
    u = unit_interval(key, seed)
    if u < train:
        return "train"
    if u < train + val:
        return "val"
    return "test"


@dataclass
class Splits:
    train: list[Record]
    val: list[Record]
    test: list[Record]

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "val": len(self.val), "test": len(self.test)}

    def __getitem__(self, name: str) -> list[Record]:
        if name not in SPLITS:
            raise KeyError(f"unknown split '{name}' (expected train, val or test)")
        return getattr(self, name)


def split_records(records: Sequence[Record], seed: int = 123,
                  ratios: Sequence[float] = DEFAULT_RATIOS, method: str = "hash") -> Splits:
    """The one split of a record list: training, responses, `data inspect` and the
    Datasets screen all call it, so they agree on which record is where."""
    ratios = check_ratios(ratios)
    if method == "ordered":
        return _ordered_split(records, ratios)
    if method != "hash":
        raise SplitError(f"unknown split method '{method}' (expected "
                         f"{' or '.join(SPLIT_METHODS)})")
    out: dict[str, list[Record]] = {"train": [], "val": [], "test": []}
    for record in records:
        out[assign_split(record.split_key or record.id, seed, ratios)].append(record)
    return Splits(out["train"], out["val"], out["test"])


def _ordered_split(records: Sequence[Record], ratios: Sequence[float]) -> Splits:
    # The book's slicing, to the record: int() truncates, test comes right after
    # train, and validation takes what is left (so it gets the rounding).
    n = len(records)
    n_train = int(n * ratios[0])
    n_test = int(n * ratios[2])
    records = list(records)
    return Splits(records[:n_train], records[n_train + n_test:],
                  records[n_train:n_train + n_test])


def splits_from_files(train: str, val: str | None = None, test: str | None = None, *,
                      fields=None) -> tuple[Splits, list]:
    """Splits given as separate files (no seeded assignment), read with `fields` (a
    RecordFields). Returns the splits and the located errors of all three files; a
    missing file raises DatasetError."""
    from .dataset import load_records

    out: dict[str, list[Record]] = {}
    errors: list = []
    for name, path in (("train", train), ("val", val), ("test", test)):
        if path is None:
            out[name] = []
            continue
        result = load_records(path, fields)
        out[name] = result.records
        errors.extend(result.errors)
    seen: dict[str, str] = {}
    for name in SPLITS:
        for record in out[name]:
            other = seen.setdefault(record.content_key, name)
            if other != name:
                raise SplitError(f"record '{record.id}' of the {name} file is also in the "
                                 f"{other} file: an example must not be both trained and "
                                 "evaluated on")
    return Splits(out["train"], out["val"], out["test"]), errors
