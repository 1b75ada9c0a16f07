"""The seeded train / validation / test split."""

from __future__ import annotations

import json
import math
from collections import defaultdict

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tui_ft.data.dataset import load_records
from tui_ft.data.records import parse_record
from tui_ft.data.split import (
    DEFAULT_RATIOS,
    SplitError,
    assign_split,
    check_ratios,
    parse_ratios,
    split_records,
)
from tui_ft.errors import TuiFtError


def synthetic(n: int, start: int = 0) -> list:
    return [parse_record({"instruction": f"Question number {i}?", "input": "",
                          "output": f"Answer {i}"}) for i in range(start, start + n)]


def where(splits) -> dict[str, str]:
    return {r.id: name for name in ("train", "val", "test") for r in splits[name]}


def test_default_ratios():
    assert DEFAULT_RATIOS == (0.85, 0.05, 0.10)
    assert check_ratios(DEFAULT_RATIOS) == (0.85, 0.05, 0.10)


@pytest.mark.parametrize("text, expected", [
    ("80/10/10", (0.8, 0.1, 0.1)),
    ("85/5/10", (0.85, 0.05, 0.10)),
    ("0.7,0.2,0.1", (0.7, 0.2, 0.1)),
    ("90/0/10", (0.9, 0.0, 0.1)),
    ("100/0/0", (1.0, 0.0, 0.0)),
])
def test_parse_ratios(text, expected):
    assert parse_ratios(text) == pytest.approx(expected)
    assert sum(parse_ratios(text)) == pytest.approx(1.0)


@pytest.mark.parametrize("text", ["80/10", "80/10/5", "a/b/c", "", "-10/60/50", "0/50/50",
                                  "80/10/10/0", "nan/0/0", "inf/0/0", "1e400/0/0"])
def test_bad_ratio_text(text):
    with pytest.raises(SplitError) as info:
        parse_ratios(text)
    assert isinstance(info.value, TuiFtError)
    assert str(info.value)


@pytest.mark.parametrize("ratios", [(0.5, 0.5), (0.8, 0.1, 0.05), (1.2, -0.1, -0.1),
                                    (0, 0.5, 0.5), (float("nan"), 0.5, 0.5), ("a", 1, 1),
                                    (0.5, 0.25, 0.25, 0.0), (101, 0, 0)])
def test_bad_ratios(ratios):
    with pytest.raises(SplitError):
        check_ratios(ratios)


def test_percentages_are_accepted():
    assert check_ratios((80, 10, 10)) == pytest.approx((0.8, 0.1, 0.1))


@settings(max_examples=300, deadline=None, database=None)
@given(st.lists(st.floats(allow_nan=True, allow_infinity=True) | st.integers(-200, 200),
                max_size=5))
def test_check_ratios_on_arbitrary_numbers(values):
    try:
        result = check_ratios(values)
    except SplitError:
        return
    assert len(result) == 3
    assert all(isinstance(v, float) and 0 <= v <= 1 for v in result)
    assert result[0] > 0
    assert math.isclose(sum(result), 1.0, abs_tol=1e-5)


def test_split_is_deterministic_and_partitions():
    records = synthetic(500)
    a = split_records(records, seed=7)
    b = split_records(list(records), seed=7)
    assert where(a) == where(b)
    assert sorted(where(a)) == sorted(r.id for r in records)
    assert sum(a.sizes().values()) == 500


def test_split_order_does_not_matter():
    records = synthetic(300)
    assert where(split_records(records, seed=1)) == where(split_records(records[::-1], seed=1))


def test_different_seed_gives_different_split():
    records = synthetic(500)
    a, b = where(split_records(records, seed=1)), where(split_records(records, seed=2))
    moved = sum(1 for k in a if a[k] != b[k])
    assert moved > 50


def test_split_survives_adding_and_removing_records(shared_instructions, tmp_path):
    before = load_records(shared_instructions).records
    first = where(split_records(before, seed=123))
    # Drop every other record, add new ones, write a new file (ids are derived from
    # content, so they must come out the same), and split again.
    raw = json.loads(shared_instructions.read_text(encoding="utf-8"))
    kept = raw[::2]
    added = [{"instruction": f"New task {i}", "input": "", "output": f"new {i}"}
             for i in range(400)]
    mixed = added[:200] + kept + added[200:]
    path = tmp_path / "edited.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in mixed) + "\n", encoding="utf-8")
    after_records = load_records(path).records
    after = where(split_records(after_records, seed=123))
    survivors = [r.id for r in before[::2]]
    assert len(survivors) == 550
    assert all(s in after for s in survivors)
    assert {s: after[s] for s in survivors} == {s: first[s] for s in survivors}


def test_explicit_ids_survive_edits():
    records = [parse_record({"id": f"r{i}", "instruction": f"Q {i}", "output": "A"})
               for i in range(300)]
    first = where(split_records(records, seed=3))
    # The same ids with edited content keep their split (grades are tied to ids).
    edited = [parse_record({"id": f"r{i}", "instruction": f"Q {i} (fixed typo)", "output": "B"})
              for i in range(0, 300, 3)]
    second = where(split_records(edited, seed=3))
    assert all(second[k] == first[k] for k in second)


def test_exact_duplicates_land_in_the_same_split(tmp_path):
    groups = [{"instruction": f"Duplicate task {i}", "input": "x", "output": str(i)}
              for i in range(60)]
    lines = [g for g in groups for _ in range(3)]
    path = tmp_path / "dupes.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in lines) + "\n", encoding="utf-8")
    records = load_records(path).records
    assert len(records) == 180
    placed = where(split_records(records, seed=123, ratios=(0.5, 0.25, 0.25)))
    by_content = defaultdict(set)
    for r in records:
        by_content[(r.instruction, r.input, r.output)].add(placed[r.id])
    assert len(by_content) == 60
    assert all(len(s) == 1 for s in by_content.values())
    assert len(set().union(*by_content.values())) == 3  # the groups do spread out


def test_shared_file_sizes_close_to_default(shared_instructions):
    records = load_records(shared_instructions).records
    sizes = split_records(records, seed=123).sizes()
    assert sum(sizes.values()) == 1100
    assert abs(sizes["train"] / 1100 - 0.85) < 0.03
    assert abs(sizes["val"] / 1100 - 0.05) < 0.02
    assert abs(sizes["test"] / 1100 - 0.10) < 0.03
    # Other seeds too.
    for seed in (0, 1, 42):
        s = split_records(records, seed=seed).sizes()
        assert abs(s["train"] / 1100 - 0.85) < 0.04 and s["val"] > 20 and s["test"] > 60


def test_configured_ratios_are_followed():
    records = synthetic(4000)
    sizes = split_records(records, seed=5, ratios=(0.6, 0.2, 0.2)).sizes()
    assert abs(sizes["train"] / 4000 - 0.6) < 0.03
    assert abs(sizes["val"] / 4000 - 0.2) < 0.03
    assert split_records(records, seed=5, ratios=(1, 0, 0)).sizes() == {
        "train": 4000, "val": 0, "test": 0}
    assert split_records(records, seed=5, ratios=(80, 10, 10)).sizes() == split_records(
        records, seed=5, ratios=(0.8, 0.1, 0.1)).sizes()


def test_split_rejects_bad_ratios():
    with pytest.raises(SplitError):
        split_records(synthetic(3), ratios=(0.5, 0.6, 0.1))


def test_assign_split_is_a_pure_function():
    assert assign_split("abc", 1) == assign_split("abc", 1)
    assert assign_split("abc", 1, (1.0, 0.0, 0.0)) == "train"
    names = {assign_split(f"k{i}", 9, (0.34, 0.33, 0.33)) for i in range(100)}
    assert names == {"train", "val", "test"}


def test_splits_lookup_by_name():
    splits = split_records(synthetic(50), seed=1)
    assert splits["train"] is splits.train
    with pytest.raises(KeyError):
        splits["validation"]


def test_ids_and_split_are_the_same_in_another_process(sample_data_dir, tmp_path):
    """Nothing depends on Python's per-process hash seed: a later run agrees."""
    import os
    import subprocess
    import sys

    path = tmp_path / "noids.jsonl"
    raw = [json.loads(line) for line in
           (sample_data_dir / "instructions.jsonl").read_text(encoding="utf-8").splitlines()]
    path.write_text("\n".join(json.dumps({k: v for k, v in r.items() if k != "id"})
                              for r in raw[:300]) + "\n", encoding="utf-8")
    code = ("import json, sys\n"
            "from tui_ft.data.dataset import load_records\n"
            "from tui_ft.data.split import split_records\n"
            "recs = load_records(sys.argv[1]).records\n"
            "s = split_records(recs, seed=11)\n"
            "print(json.dumps({n: [r.id for r in s[n]] for n in ('train', 'val', 'test')}))\n")
    here = split_records(load_records(path).records, seed=11)
    expected = {n: [r.id for r in here[n]] for n in ("train", "val", "test")}
    for hash_seed in ("1", "2"):
        env = dict(os.environ, PYTHONHASHSEED=hash_seed)
        proc = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True,
                              text=True, env=env, timeout=60)
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout) == expected


# -- the ordered method (the book's slicing) -------------------------------------------


def book_split(data: list) -> tuple[list, list, list]:
    """ch. 7 of "Build a Large Language Model (From Scratch)", verbatim but for names."""
    train_portion = int(len(data) * 0.85)  # 85% for training
    test_portion = int(len(data) * 0.1)    # 10% for testing
    train_data = data[:train_portion]
    test_data = data[train_portion:train_portion + test_portion]
    val_data = data[train_portion + test_portion:]
    return train_data, val_data, test_data


def test_ordered_split_of_the_books_file_is_the_books(shared_instructions):
    data = json.loads(shared_instructions.read_text(encoding="utf-8"))
    records = load_records(shared_instructions).records
    splits = split_records(records, ratios=(0.85, 0.05, 0.10), method="ordered")
    assert splits.sizes() == {"train": 935, "val": 55, "test": 110}
    for ours, theirs in zip((splits.train, splits.val, splits.test), book_split(data)):
        assert [(r.instruction, r.input, r.output) for r in ours] == \
            [(d["instruction"], d["input"], d["output"]) for d in theirs]


@pytest.mark.parametrize("n", [0, 1, 2, 7, 19, 20, 99, 100, 101, 1100, 1234])
def test_ordered_split_is_the_books_slicing_for_any_size(n):
    records = synthetic(n)
    splits = split_records(records, seed=5, ratios=DEFAULT_RATIOS, method="ordered")
    train, val, test = book_split(records)
    assert (splits.train, splits.val, splits.test) == (train, val, test)


def test_ordered_split_follows_ratios_and_ignores_the_seed():
    records = synthetic(200)
    a = split_records(records, seed=1, ratios=(0.6, 0.25, 0.15), method="ordered")
    b = split_records(records, seed=2, ratios=(60, 25, 15), method="ordered")
    assert a == b
    assert a.train == records[:120] and a.test == records[120:150] and a.val == records[150:]


def test_hash_is_the_default_method():
    records = synthetic(300)
    assert split_records(records, seed=9) == split_records(records, seed=9, method="hash")
    assert split_records(records, seed=9) != split_records(records, seed=9, method="ordered")


def test_unknown_split_method():
    with pytest.raises(SplitError, match="unknown split method 'random'.*hash or ordered"):
        split_records(synthetic(3), method="random")


def test_training_reads_the_configured_split(tmp_path):
    """config_splits, which training, responses and the Grading screen's count call,
    follows split_method and the field keys."""
    from tui_ft.config import TrainConfig
    from tui_ft.train.splits import config_splits

    path = tmp_path / "renamed.jsonl"
    path.write_text("".join(json.dumps({"question": f"Question number {i}?",
                                        "answer": f"Answer {i}"}) + "\n"
                            for i in range(40)), encoding="utf-8")
    config = TrainConfig(dataset=str(path), split_method="ordered",
                         instruction_key="question", output_key="answer")
    splits, errors = config_splits(config)
    assert errors == []
    expected = split_records(synthetic(40), method="ordered")
    for name in ("train", "val", "test"):
        assert [(r.instruction, r.output) for r in splits[name]] == \
            [(r.instruction, r.output) for r in expected[name]]
    assert splits.sizes() == {"train": 34, "val": 2, "test": 4}
    hashed, _ = config_splits(TrainConfig(dataset=str(path), instruction_key="question",
                                          output_key="answer"))
    # The same content splits the same under any key names (ids come from content).
    assert [r.id for r in hashed.test] == [r.id for r in split_records(synthetic(40)).test]
