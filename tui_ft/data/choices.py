"""Multiple-choice questions (benchmarks such as MMLU): read from the MMLU CSV layout
or JSONL, each with its located error, and put in the prompt lm-evaluation-harness
uses for MMLU, so that an accuracy here is the accuracy a user reads there.

CSV (MMLU's own files, no header): `question,A,B,C,D,answer` with the answer a letter;
the subject is the file's name without `_test`, `_dev` or `_val` (lm-eval's
`abstract_algebra_test.csv` is "abstract_algebra"). JSONL: one object a line,
`{"question": str, "choices": [str, ...], "answer": index or letter, "subject"?: str}`
(the subject defaults to the file's, as for CSV). A folder is read as every .csv and
.jsonl file in it, by name."""

from __future__ import annotations

import csv
import io
import json
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from ..errors import DatasetError
from ..fsio import special_kind
from .records import describe_value, string_field

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
CSV_SUFFIXES = (".csv",)
JSONL_SUFFIXES = (".jsonl", ".ndjson")
# MMLU's split names, at the end of its file names.
_SPLIT_SUFFIXES = ("_test", "_dev", "_val", "_validation", "_train")
_CSV_HEADER = ["question", "a", "b", "c", "d", "answer"]


class ChoiceFileError(DatasetError):
    """A multiple-choice file that cannot be read; the message names the file and line."""


@dataclass(frozen=True, slots=True)
class Question:
    question: str
    choices: tuple[str, ...]
    answer: int  # index into choices
    subject: str
    where: str  # "FILE:LINE", for messages

    @property
    def answer_letter(self) -> str:
        return LETTERS[self.answer]


def subject_of(path: Path) -> str:
    """The subject a file's name gives: `abstract_algebra_test.csv` -> abstract_algebra."""
    stem = path.stem
    for suffix in _SPLIT_SUFFIXES:
        if stem.endswith(suffix) and len(stem) > len(suffix):
            return stem[:-len(suffix)]
    return stem


def read_questions(path: str | os.PathLike) -> list[Question]:
    """Every question of a .csv or .jsonl file, or of every such file in a folder
    (by file name). ChoiceFileError, naming the file and line, for the first bad one."""
    path = Path(path)
    try:
        info = path.stat()
    except FileNotFoundError:
        raise ChoiceFileError(f"{path}: no such file or folder") from None
    except OSError as exc:
        raise ChoiceFileError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if path.is_dir():
        files = sorted(p for p in path.iterdir()
                       if p.suffix.lower() in CSV_SUFFIXES + JSONL_SUFFIXES
                       and not p.name.startswith("."))
        if not files:
            raise ChoiceFileError(f"{path}: a folder without .csv or .jsonl files")
        out: list[Question] = []
        for file in files:
            out.extend(read_questions(file))
        return out
    kind = special_kind(info.st_mode)
    if kind is not None:  # a FIFO would wait for a writer for ever
        raise ChoiceFileError(f"{path}: is {kind}, not a question file")
    suffix = path.suffix.lower()
    if suffix not in CSV_SUFFIXES + JSONL_SUFFIXES:
        raise ChoiceFileError(f"{path}: expected a .csv (MMLU layout) or .jsonl file")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ChoiceFileError(f"{path}: cannot read ({exc.strerror or exc})") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ChoiceFileError(f"{path}:{line}: not UTF-8 text (byte "
                              f"0x{data[exc.start]:02x})") from None
    read = _read_csv if suffix in CSV_SUFFIXES else _read_jsonl
    questions = read(text, path, subject_of(path))
    if not questions:
        raise ChoiceFileError(f"{path}: holds no questions")
    return questions


def _fail(path: Path, line: int, message: str):
    raise ChoiceFileError(f"{path}:{line}: {message}")


def _read_csv(text: str, path: Path, subject: str) -> list[Question]:
    reader = csv.reader(io.StringIO(text, newline=""))
    out = []
    start = 1
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            _fail(path, reader.line_num, f"not CSV ({exc})")
        line, start = start, reader.line_num + 1  # a quoted field may span lines
        if not row or all(not cell.strip() for cell in row):
            continue
        if not out and [c.strip().lower() for c in row] == _CSV_HEADER:
            continue  # a header, as in copies exported from the Hugging Face dataset
        if len(row) != 6:
            _fail(path, line, f"{len(row)} fields, expected 6 (question, A, B, C, D, "
                              f"answer letter)")
        answer = row[5].strip().upper()
        if len(answer) != 1 or answer not in LETTERS[:4]:
            _fail(path, line, f"answer {row[5]!r} is not one of A, B, C, D")
        out.append(Question(row[0], tuple(row[1:5]), LETTERS.index(answer), subject,
                            f"{path}:{line}"))
    return out


def _read_jsonl(text: str, path: Path, subject: str) -> list[Question]:
    out = []
    for line, raw in enumerate(text.split("\n"), start=1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except (ValueError, RecursionError) as exc:
            _fail(path, line, f"not valid JSON ({exc})")
        try:
            out.append(_question(obj, subject, f"{path}:{line}"))
        except ValueError as exc:
            _fail(path, line, str(exc))
    return out


def _question(obj: object, subject: str, where: str) -> Question:
    if not isinstance(obj, dict):
        raise ValueError(f"expected an object with question, choices and answer, not "
                         f"{describe_value(obj)}")
    # The record checks of instruction data: a lone surrogate is refused here, where
    # it is located, not passed on to the tokenizer.
    question = string_field(obj, "question", required=True)
    choices = obj.get("choices")
    if not isinstance(choices, list):
        raise ValueError("missing field 'choices'" if choices is None else
                         f"field 'choices' must be a list of strings, not "
                         f"{describe_value(choices)}")
    choices = [string_field({f"choices[{i}]": c}, f"choices[{i}]", required=True)
               for i, c in enumerate(choices)]
    if not 2 <= len(choices) <= len(LETTERS):
        raise ValueError(f"field 'choices' has {len(choices)} choices: give 2 to "
                         f"{len(LETTERS)}")
    answer = obj.get("answer")
    letters = LETTERS[:len(choices)]
    if isinstance(answer, str) and answer.strip().upper() in letters and answer.strip():
        index = letters.index(answer.strip().upper())
    elif isinstance(answer, int) and not isinstance(answer, bool) and \
            0 <= answer < len(choices):
        index = answer
    elif answer is None:
        raise ValueError("missing field 'answer'")
    else:
        raise ValueError(f"answer {json.dumps(answer)} is not a choice: give an index "
                         f"0 to {len(choices) - 1} or a letter {letters[0]} to "
                         f"{letters[-1]}")
    own = subject
    if obj.get("subject") is not None:
        own = string_field(obj, "subject", required=True)
        if not own.strip():
            raise ValueError("field 'subject' is empty")
    return Question(question, tuple(choices), index, own.strip(), where)


# --------------------------------------------------------------------------- prompts


def description(subject: str) -> str:
    """lm-eval's MMLU task description (its subject names have spaces for underscores)."""
    return (f"The following are multiple choice questions (with answers) about "
            f"{subject.replace('_', ' ')}.\n\n")


def question_text(q: Question) -> str:
    """lm-eval's MMLU doc_to_text: the question, its lettered choices, "Answer:"."""
    lines = [q.question.strip()]
    lines += [f"{LETTERS[i]}. {choice}" for i, choice in enumerate(q.choices)]
    return "\n".join(lines) + "\nAnswer:"


def continuations(q: Question) -> list[str]:
    """What each choice's likelihood is measured on: " A", " B", ..."""
    return [f" {LETTERS[i]}" for i in range(len(q.choices))]


def prompt(q: Question, shots: Sequence[Question] = ()) -> str:
    """The whole context for `q`: the description, the worked shots (each answered,
    two newlines apart, as lm-eval's fewshot_delimiter) and the question."""
    parts = [question_text(s) + " " + s.answer_letter + "\n\n" for s in shots]
    return description(q.subject) + "".join(parts) + question_text(q)


def pick_shots(questions: Sequence[Question], k: int, seed: int,
               pool: Sequence[Question] | None = None) -> list[list[Question]]:
    """`k` worked examples for each question: drawn from `pool` (default: the same
    questions), of the same subject, never the question itself; the same seed draws
    the same shots. A subject with fewer than k others gets them all."""
    if k <= 0:
        return [[] for _ in questions]
    source = questions if pool is None else pool
    by_subject: dict[str, list[Question]] = {}
    for q in source:
        by_subject.setdefault(q.subject, []).append(q)
    rng = random.Random(seed)
    out = []
    for q in questions:
        others = [s for s in by_subject.get(q.subject, ()) if s is not q]
        out.append(rng.sample(others, min(k, len(others))))
    return out
