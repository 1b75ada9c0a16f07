"""Tests for the shipped sample data set (sample_data/).

The answers of the mechanically checkable tasks are recomputed here from the
record text with parsers written independently of the generator.
"""

from __future__ import annotations

import importlib.util
import json
import re
from collections import Counter
from fractions import Fraction
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SAMPLE_DIR = REPO / "sample_data"
GENERATOR = SAMPLE_DIR / "make_sample_data.py"
GENERATED_FILES = ["instructions.jsonl", "chat.jsonl", "README.md"]
KEYS = ["id", "instruction", "input", "output"]
EXPECTED_TASKS = {
    "arith", "units", "reverse", "sort", "count",
    "plural", "past", "antonym", "case", "seq",
}


def _load_generator():
    spec = importlib.util.spec_from_file_location("make_sample_data", GENERATOR)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def gen():
    return _load_generator()


@pytest.fixture(scope="module")
def records():
    lines = (SAMPLE_DIR / "instructions.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


@pytest.fixture(scope="module")
def chat():
    lines = (SAMPLE_DIR / "chat.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


def _task(record: dict) -> str:
    prefix, number = record["id"].rsplit("-", 1)
    assert number.isdigit() and len(number) == 4, record["id"]
    return prefix


def _of_task(records: list[dict], task: str) -> list[dict]:
    return [r for r in records if _task(r) == task]


# ---------------------------------------------------------------------------
# Files and format
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", GENERATED_FILES)
def test_committed_files_match_generator(gen, name):
    expected = gen.outputs()[name].encode("utf-8")
    actual = (SAMPLE_DIR / name).read_bytes()
    assert actual == expected, (
        f"sample_data/{name} is stale: run python sample_data/make_sample_data.py"
    )


def test_generator_is_deterministic(gen):
    assert gen.outputs() == gen.outputs()
    assert gen.generate() == gen.generate()


def test_generator_records_match_file(gen, records):
    assert gen.generate() == records


@pytest.mark.parametrize("name", ["instructions.jsonl", "chat.jsonl"])
def test_jsonl_layout(name):
    raw = (SAMPLE_DIR / name).read_bytes()
    assert len(raw) < 400_000
    assert b"\r" not in raw
    assert raw.endswith(b"\n") and not raw.endswith(b"\n\n")
    for line in raw.decode("utf-8").split("\n")[:-1]:
        obj = json.loads(line)
        assert json.dumps(obj, ensure_ascii=False) == line


def test_record_count_and_keys(records):
    assert 1400 <= len(records) <= 1700
    for r in records:
        assert list(r) == KEYS, r
        assert all(isinstance(r[k], str) for k in KEYS), r
        assert r["instruction"].strip() and r["output"].strip(), r
        assert r["input"] == r["input"].strip(), r


def test_ids_unique_and_well_formed(records):
    ids = [r["id"] for r in records]
    assert len(ids) == len(set(ids))
    assert all(re.fullmatch(r"[a-z]+-\d{4}", i) for i in ids)


def test_no_duplicate_instruction_input_pairs(records):
    pairs = Counter((r["instruction"], r["input"]) for r in records)
    assert pairs.most_common(1)[0][1] == 1


def test_input_fraction(records):
    fraction = sum(1 for r in records if r["input"]) / len(records)
    assert 0.3 <= fraction <= 0.7


def test_tasks_balanced(records):
    counts = Counter(_task(r) for r in records)
    assert set(counts) == EXPECTED_TASKS
    for task, n in counts.items():
        assert n >= 80, (task, n)


def test_phrasings_are_varied(records):
    for task in sorted(EXPECTED_TASKS):
        rs = _of_task(records, task)
        with_input = {r["instruction"] for r in rs if r["input"]}
        assert len(with_input) >= 4, task
        # No-input phrasings: mask the data (numbers, quoted text, lists).
        masked = {
            re.sub(r'"[^"]*"|-?\d+(\.\d+)?|: .*', "#", r["instruction"])
            for r in rs
            if not r["input"]
        }
        assert len(masked) >= 4, (task, masked)


# ---------------------------------------------------------------------------
# Independent answer checks
# ---------------------------------------------------------------------------


def _text(r: dict) -> str:
    return r["instruction"] + "\n" + r["input"]


def _data(r: dict) -> str:
    """The data: the input field, else the last quoted span of the instruction."""
    if r["input"]:
        return r["input"]
    quoted = re.findall(r'"([^"]*)"', r["instruction"])
    assert quoted, r
    return quoted[-1]


def _arith(r: dict) -> int:
    text = _text(r)
    x, y = (int(n) for n in re.findall(r"\d+", text))
    low = text.lower()
    if re.search(r"multiply|product|times|×|\*", low):
        return x * y
    if re.search(r"minus|subtract|difference|away|\d - \d", low):
        # "Subtract 5 from 17", "5 is taken away from 17": subtrahend first.
        if re.search(r"\d[^\d\n]*\bfrom \d", text):
            return y - x
        return x - y
    assert re.search(r"plus|add|sum|total|\+", low), r
    return x + y


def test_arith_answers(records):
    rs = _of_task(records, "arith")
    kinds = Counter()
    for r in rs:
        assert r["output"] == str(_arith(r)), r
        low = _text(r).lower()
        kinds["mul" if re.search(r"multiply|product|times|×|\*", low) else
              "sub" if re.search(r"minus|subtract|difference|away| - ", low) else
              "add"] += 1
    assert min(kinds[k] for k in ("add", "sub", "mul")) >= 20, kinds


UNIT_WORDS = {
    "km": "km", "kilometre": "km", "kilometres": "km",
    "m": "m", "metre": "m", "metres": "m",
    "kg": "kg", "kilogram": "kg", "kilograms": "kg",
    "g": "g", "gram": "g", "grams": "g",
    "h": "h", "hour": "h", "hours": "h",
    "min": "min", "minute": "min", "minutes": "min",
}
# from unit -> (to unit, factor to multiply by, name of the target unit)
CONVERT = {
    "km": ("m", Fraction(1000), "metres"),
    "m": ("km", Fraction(1, 1000), "kilometres"),
    "kg": ("g", Fraction(1000), "grams"),
    "g": ("kg", Fraction(1, 1000), "kilograms"),
    "h": ("min", Fraction(60), "minutes"),
    "min": ("h", Fraction(1, 60), "hours"),
}


def _fmt(value: Fraction) -> str:
    if value.denominator == 1:
        return str(value.numerator)
    tenths = value * 10
    assert tenths.denominator == 1, f"{value} is not exact to one decimal"
    return f"{tenths.numerator // 10}.{tenths.numerator % 10}"


def test_units_answers(records):
    rs = _of_task(records, "units")
    directions = Counter()
    for r in rs:
        m = re.search(r"(\d+(?:\.\d+)?) ([a-z]+)\b", _text(r))
        assert m, r
        src = UNIT_WORDS[m.group(2)]
        dst, factor, dst_name = CONVERT[src]
        assert dst_name in r["instruction"], r
        value = Fraction(m.group(1)) * factor
        assert r["output"] == f"{_fmt(value)} {dst}", r
        directions[(src, dst)] += 1
    assert len(directions) == 6 and min(directions.values()) >= 10, directions


def test_reverse_answers(records):
    for r in _of_task(records, "reverse"):
        words = _data(r).split(" ")
        assert len(words) >= 3, r
        assert r["output"] == " ".join(words[::-1]), r


def test_sort_answers(records):
    for r in _of_task(records, "sort"):
        listed = r["input"] or r["instruction"].split(": ", 1)[1]
        words = [w.strip() for w in listed.split(",")]
        assert len(words) >= 3 and all(w.isalpha() for w in words), r
        assert r["output"] == ", ".join(sorted(words)), r


def test_count_answers(records):
    rs = _of_task(records, "count")
    outputs = Counter()
    for r in rs:
        quoted = re.findall(r'"([^"]*)"', r["instruction"])
        letters = [q for q in quoted if len(q) == 1]
        assert len(letters) == 1, r
        word = r["input"] or [q for q in quoted if len(q) > 1][0]
        expected = sum(1 for ch in word if ch == letters[0])
        assert r["output"] == str(expected), r
        outputs[expected > 0] += 1
    assert outputs[True] > outputs[False] > 0


def test_case_answers(records):
    seen = Counter()
    for r in _of_task(records, "case"):
        phrase = _data(r)
        command = re.sub(r'"[^"]*"', "", r["instruction"]).lower()
        upper = bool(re.search(r"upper|capital|all caps", command))
        lower = bool(re.search(r"lower|small letters", command))
        assert upper != lower, r
        expected = phrase.upper() if upper else phrase.lower()
        assert r["output"] == expected, r
        assert r["output"] != phrase, r  # the conversion changes something
        seen["upper" if upper else "lower"] += 1
    assert seen["upper"] >= 20 and seen["lower"] >= 20, seen


def test_seq_answers(records):
    for r in _of_task(records, "seq"):
        terms = [int(n) for n in re.findall(r"-?\d+", _text(r))]
        assert len(terms) >= 3, r
        steps = {b - a for a, b in zip(terms, terms[1:])}
        assert len(steps) == 1, r
        assert r["output"] == str(terms[-1] + steps.pop()), r


@pytest.mark.parametrize(
    ("task", "table_name", "known"),
    [
        ("plural", "PLURALS", [("child", "children"), ("mouse", "mice"), ("sheep", "sheep")]),
        ("past", "PAST_TENSES", [("go", "went"), ("bring", "brought"), ("walk", "walked")]),
        ("antonym", "ANTONYMS", [("hot", "cold"), ("big", "small"), ("early", "late")]),
    ],
)
def test_table_tasks(gen, records, task, table_name, known):
    table = getattr(gen, table_name)
    keys = [k for k, _ in table]
    assert len(keys) == len(set(keys)) and len(keys) >= 35
    lookup = dict(table)
    for k, v in known:
        assert lookup[k] == v
    for r in _of_task(records, task):
        word = _data(r)
        assert r["output"] == lookup[word], r


def test_generator_check_answer_agrees(gen, records):
    for r in records:
        assert gen.check_answer(r), r
    wrong = dict(records[0], output=records[0]["output"] + "x")
    assert not gen.check_answer(wrong)


# ---------------------------------------------------------------------------
# Chat records
# ---------------------------------------------------------------------------


def test_chat_records_well_formed(chat):
    assert 40 <= len(chat) <= 100
    ids = [c["id"] for c in chat]
    assert len(ids) == len(set(ids))
    shapes = Counter()
    for c in chat:
        assert list(c) == ["id", "messages"], c
        messages = c["messages"]
        assert isinstance(messages, list) and messages, c
        for m in messages:
            assert list(m) == ["role", "content"], c
            assert m["role"] in {"system", "user", "assistant"}, c
            assert isinstance(m["content"], str) and m["content"].strip(), c
        roles = [m["role"] for m in messages]
        assert "system" not in roles[1:], c
        turns = roles[1:] if roles[0] == "system" else roles
        assert turns and turns == ["user", "assistant"] * (len(turns) // 2), c
        assert roles[-1] == "assistant" and "assistant" in roles
        shapes[(roles[0] == "system", len(turns) // 2)] += 1
    assert shapes[(False, 1)] > 0  # single turn
    assert shapes[(True, 1)] > 0  # with a system message
    assert shapes[(False, 2)] + shapes[(True, 2)] > 0  # two turns
