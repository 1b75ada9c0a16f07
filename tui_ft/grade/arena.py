"""A blind A/B comparison (arena) of two models on the same test prompts: two runs,
or two checkpoints of one run, each answer every prompt; a person (or the LLM judge)
reads the two answers of a prompt side by side, in an order drawn at random for that
prompt, labelled only A and B, and says A better, B better, tie or both bad.

A comparison is a folder, RUNS/comparisons/NAME/:
- manifest.json: the two sides (run folder and checkpoint) and the seed of the
  presentation order, written once;
- answers-1.jsonl, answers-2.jsonl: each side's answers, frozen when the comparison
  is made (copied from the run's responses.jsonl when they are that checkpoint's,
  else generated for it into this folder, so the run's own answers and their grades
  are never replaced);
- verdicts.jsonl: one line per verdict, appended and fsynced before the next
  (fsio.append_line), keyed to the exact pair of answers, with the order shown; the
  last line of each pair and rater wins, so a stopped comparison goes on where it was;
- judge.jsonl: the judge's replies, one per pair and order.

The order shown for a prompt is random.Random(f"{seed}:{id}"): random, reproducible
from the manifest's seed, and recorded in each verdict line.

Results, per rater: the win rate of each side is its share of the decisive verdicts
(ties and both-bad are reported separately, not counted as half a win), with a 95%
Wilson score interval. They name the sides only when revealed: every pair has a
verdict from that rater, or reveal is asked for.

The judge fills the same comparison with the pairwise prompt, asking each pair in
both orders (the first side shown as A, then the second): it has a verdict only when
both orders agree on the outcome (the same side better, tie, or both bad); when they
disagree the pair is a tie. A pair with an unreadable reply in either order gets no
verdict and is counted as unparseable."""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import re
import secrets
import shutil
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..errors import TuiFtError
from ..fsio import append_line, disk_full, disk_full_error, try_lock, write_atomic
from ..paths import runs_dir
from ..runfolder import ReadOnlyRun, Run, RunError, now_iso
from ..tail import JsonlTail
from .responses import answer_key, generate_responses, read_responses

MANIFEST = "manifest.json"
VERDICTS_FILE = "verdicts.jsonl"
JUDGE_FILE = "judge.jsonl"
JUDGE_LOCK = ".judge.lock"
VERDICTS = ("A", "B", "tie", "both_bad")
HUMAN = "human"
ORDERS = ("AB", "BA")  # AB: the first side shown as A; BA: the second
Z95 = 1.959963984540054
NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,119}")


class ComparisonError(TuiFtError):
    """A comparison that cannot be made, opened, filled or exported."""


def comparisons_dir() -> Path:
    return runs_dir() / "comparisons"


def wilson(successes: float, n: int, z: float = Z95) -> tuple[float, float] | None:
    """The Wilson score interval of a proportion `successes`/`n` (95% by default);
    None when n is 0. Unlike p +- z*se it stays inside [0, 1] and is not zero-width
    at 0 or n successes, which small comparisons hit often."""
    if n <= 0:
        return None
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


# -- the sides ----------------------------------------------------------------------


@dataclass(frozen=True)
class Side:
    run: Path  # the run folder, resolved
    checkpoint: str  # the checkpoint's name (or an imported run's label)

    @property
    def spec(self) -> str:
        return f"{self.run.name}:{self.checkpoint}"

    def as_json(self) -> dict:
        return {"run": str(self.run), "checkpoint": self.checkpoint, "spec": self.spec}


_CKPT = re.compile(r"best|last|\d+|checkpoint-\d+")


def split_spec(spec: str) -> tuple[str, str | None]:
    """RUN[:CKPT] -> (RUN, CKPT or None). A colon followed by anything but a
    checkpoint (best, last, N, checkpoint-N) is part of the run's path."""
    head, sep, tail = spec.rpartition(":")
    if sep and head and _CKPT.fullmatch(tail):
        return head, tail
    return spec, None


def _responses_checkpoint(run: Run) -> str | None:
    """The checkpoint the run's answers are from, when they answer the test split (or
    were imported); None otherwise: answers to the validation split are not what a
    comparison compares."""
    for line in read_responses(run.responses_path)[:1]:
        value = line.get("checkpoint")
        if line.get("split") not in ("test", "imported"):
            return None
        return value if isinstance(value, str) else None
    return None


def resolve_side(run: Run, checkpoint: str | None) -> Side:
    """The side `run` with `checkpoint`: without one, the checkpoint of the answers
    the run already has (else its best); best and last are named as they are now."""
    held = _responses_checkpoint(run) if run.responses_path.is_file() else None
    if run.is_imported():
        if held is None:
            raise ComparisonError(f"{run.path}: holds no imported answers")
        if checkpoint is not None and checkpoint != held:
            raise ComparisonError(f"{run.path}: holds imported answers ({held}) and no "
                                  f"model, so it has no {checkpoint} to answer with")
        return Side(run.path.resolve(), held)
    if checkpoint is None and held is not None:
        return Side(run.path.resolve(), held)
    try:
        chosen = run.checkpoint(checkpoint or "best")
    except RunError as exc:
        raise ComparisonError(str(exc)) from None
    return Side(run.path.resolve(), chosen.name)


class _AnswersInto(ReadOnlyRun):
    """The run as generate_responses sees it when answering for a comparison: its
    config and checkpoints, but the answers go into the comparison's folder and its
    status is not touched, so the run's own responses.jsonl (and what was graded on
    it) stays as it is."""

    def __init__(self, path: Path, into: Path) -> None:
        super().__init__(path)
        self._into = into

    @property
    def responses_path(self) -> Path:
        return self._into


# -- pairs --------------------------------------------------------------------------


@dataclass(frozen=True)
class Pair:
    key: str  # of the exact two answers
    id: str
    instruction: str
    input: str
    expected: str
    answers: tuple[str, str]  # the first side's answer, the second's
    keys: tuple[str, str]  # their answer_keys
    shown_a: int  # which side is shown as A (0 or 1)

    def shown(self) -> dict:
        """What a rater sees: the prompt and the two answers as A and B, no names."""
        return {"pair": self.key, "id": self.id, "instruction": self.instruction,
                "input": self.input, "expected": self.expected,
                "answer_a": self.answers[self.shown_a],
                "answer_b": self.answers[1 - self.shown_a]}

    def winner(self, verdict: str) -> int | None:
        """The side a shown verdict favours (0, 1), None for tie and both bad."""
        if verdict == "A":
            return self.shown_a
        if verdict == "B":
            return 1 - self.shown_a
        return None

    def as_shown(self, side: int | None, outcome: str) -> str:
        """The verdict in this pair's shown terms for an outcome in side terms."""
        if side is None:
            return outcome
        return "A" if side == self.shown_a else "B"


def pair_key(key_1: str, key_2: str) -> str:
    return hashlib.sha256(json.dumps([key_1, key_2]).encode()).hexdigest()[:16]


def shown_first(seed: int, record_id: str) -> int:
    """The side shown as A for the prompt `record_id`: random per prompt, the same
    every time for the same seed."""
    return random.Random(f"{seed}:{record_id}").randrange(2)


def _text(value) -> str:
    return value if isinstance(value, str) else ("" if value is None else str(value))


def make_pairs(first: list[dict], second: list[dict], seed: int) -> tuple[list[Pair], int]:
    """Pairs of the answers to the same prompt (same id, instruction and input), in
    the first side's order, and how many prompts of either side found no partner."""
    by_id = {str(r.get("id")): r for r in second}
    pairs = []
    for a in first:
        b = by_id.get(str(a.get("id")))
        if b is None or (_text(a.get("instruction")), _text(a.get("input"))) != (
                _text(b.get("instruction")), _text(b.get("input"))):
            continue
        ka, kb = answer_key(a), answer_key(b)
        rid = str(a.get("id"))
        pairs.append(Pair(pair_key(ka, kb), rid, _text(a.get("instruction")),
                          _text(a.get("input")), _text(a.get("expected")),
                          (_text(a.get("response")), _text(b.get("response"))), (ka, kb),
                          shown_first(seed, rid)))
    unpaired = len(first) + len(second) - 2 * len(pairs)
    return pairs, unpaired


# -- the comparison -------------------------------------------------------------------


class Comparison:
    """A comparison folder opened: its sides, pairs and verdicts."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        manifest = _read_manifest(self.path)
        try:
            self.sides = tuple(Side(Path(s["run"]), str(s["checkpoint"]))
                               for s in manifest["sides"])
            self.seed = int(manifest["seed"])
            if len(self.sides) != 2:
                raise ValueError("two sides")
        except (KeyError, TypeError, ValueError) as exc:
            raise ComparisonError(f"{self.path / MANIFEST}: not a comparison manifest "
                                  f"({exc})") from None
        self.created_at = manifest.get("created_at")
        lists = []
        for n in (1, 2):
            path = self.answers_path(n)
            if not path.is_file():
                raise ComparisonError(f"{path}: missing; the comparison's answers are "
                                      "made when it is created (run the same 'tui-ft "
                                      "compare' again to make them)")
            lists.append(read_responses(path))
        self.pairs, self.unpaired = make_pairs(lists[0], lists[1], self.seed)
        self._by_key = {p.key: p for p in self.pairs}
        self.session = uuid.uuid4().hex[:12]
        self._tail = JsonlTail(self.verdicts_path)
        self._verdicts: dict[tuple[str, str], dict] = {}
        self.refresh()

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def verdicts_path(self) -> Path:
        return self.path / VERDICTS_FILE

    def answers_path(self, n: int) -> Path:
        return self.path / f"answers-{n}.jsonl"

    # -- verdicts ---------------------------------------------------------------------

    def refresh(self) -> None:
        """Replay verdict lines written since the last read (by any process)."""
        for entry in self._tail.read():
            try:
                key, by, verdict = str(entry["pair"]), str(entry["by"]), entry["verdict"]
            except (KeyError, TypeError):
                continue  # a foreign line: skipped, never fatal
            if verdict is not None and verdict not in VERDICTS:
                continue
            # A verdict on other answers (the pair's key changed) is not this pair's.
            if key in self._by_key:
                self._verdicts[(key, by)] = entry

    def verdict(self, pair: Pair, by: str = HUMAN) -> str | None:
        entry = self._verdicts.get((pair.key, by))
        return None if entry is None else entry.get("verdict")

    def pending(self, by: str = HUMAN) -> list[Pair]:
        """The pairs `by` has not judged yet, in order."""
        return [p for p in self.pairs if self.verdict(p, by) is None]

    def raters(self) -> list[str]:
        return sorted({by for (_, by), e in self._verdicts.items()
                       if e.get("verdict") is not None})

    def record(self, pair: Pair, verdict: str | None, by: str = HUMAN, **extra) -> None:
        """Append `by`'s verdict on `pair` (in shown terms: A, B, tie, both_bad; None
        takes it back), on disk before this returns."""
        if verdict is not None and verdict not in VERDICTS:
            raise ComparisonError(f"unknown verdict {verdict!r} (expected "
                                  f"{', '.join(VERDICTS)})")
        entry = {"pair": pair.key, "id": pair.id, "answers": list(pair.keys),
                 "shown_a": pair.shown_a, "verdict": verdict, "by": by, **extra,
                 "at": now_iso(), "session": self.session}
        line = (json.dumps(entry, ensure_ascii=False) + "\n").encode("utf-8")
        try:
            append_line(self.verdicts_path, line)
        except OSError as exc:
            if full := disk_full(exc):
                raise disk_full_error(self.verdicts_path, "save the verdict", full,
                                      after="the verdicts before it are on disk") from None
            raise ComparisonError(f"{self.verdicts_path}: cannot write "
                                  f"({exc.strerror or exc})") from None
        self.refresh()

    # -- results ----------------------------------------------------------------------

    def results(self, by: str = HUMAN, *, reveal: bool = False) -> dict:
        """`by`'s verdicts counted. Win rates are over decisive verdicts (ties and
        both-bad apart), each with a 95% Wilson interval. `sides` (names, wins, rates)
        is None until revealed: asked for, or every pair judged by `by`."""
        wins = [0, 0]
        ties = both_bad = 0
        for pair in self.pairs:
            verdict = self.verdict(pair, by)
            if verdict is None:
                continue
            side = pair.winner(verdict)
            if side is not None:
                wins[side] += 1
            elif verdict == "tie":
                ties += 1
            else:
                both_bad += 1
        decisive = wins[0] + wins[1]
        judged = decisive + ties + both_bad
        complete = judged == len(self.pairs) and judged > 0
        revealed = reveal or complete
        sides = None
        if revealed:
            sides = []
            for i, side in enumerate(self.sides):
                ci = wilson(wins[i], decisive)
                sides.append({**side.as_json(), "wins": wins[i],
                              "win_rate": wins[i] / decisive if decisive else None,
                              "ci_low": ci[0] if ci else None,
                              "ci_high": ci[1] if ci else None})
        return {"comparison": str(self.path), "by": by, "pairs": len(self.pairs),
                "verdicts": judged, "remaining": len(self.pairs) - judged,
                "decisive": decisive, "ties": ties, "both_bad": both_bad,
                "complete": complete, "revealed": revealed, "sides": sides,
                "unpaired": self.unpaired, "seed": self.seed}

    # -- export -----------------------------------------------------------------------

    def export_rows(self, *, reveal: bool = False) -> list[dict]:
        """Every current verdict (each pair and rater), the answers as shown. Which
        model wrote which answer (model_a, model_b, winner) only when revealed."""
        by_pair: dict[str, list[tuple[str, dict]]] = {}
        for (key, by), entry in self._verdicts.items():
            if entry.get("verdict") is not None:
                by_pair.setdefault(key, []).append((by, entry))
        rows = []
        for pair in self.pairs:
            for by, entry in by_pair.get(pair.key, []):
                row = {**pair.shown(), "verdict": entry["verdict"], "by": by,
                       "at": entry.get("at")}
                if reveal:
                    side = pair.winner(entry["verdict"])
                    row.update(model_a=self.sides[pair.shown_a].spec,
                               model_b=self.sides[1 - pair.shown_a].spec,
                               winner=(self.sides[side].spec if side is not None
                                       else entry["verdict"]))
                rows.append(row)
        return rows

    def export(self, out: Path, *, reveal: bool = False) -> dict:
        rows = self.export_rows(reveal=reveal)
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
        try:
            write_atomic(Path(out), text)
        except OSError as exc:
            if full := disk_full(exc):
                raise disk_full_error(Path(out), "write the export", full,
                                      after="the previous file is untouched, the "
                                            "verdicts stay in the comparison") from None
            raise ComparisonError(f"{out}: cannot write the export "
                                  f"({exc.strerror or exc}); nothing was changed") from None
        return {"path": str(out), "rows": len(rows), "revealed": reveal}


def _read_manifest(folder: Path) -> dict:
    path = folder / MANIFEST
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ComparisonError(f"{folder}: not a comparison (no {MANIFEST})") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ComparisonError(f"{path}: cannot read ({exc})") from None
    if not isinstance(value, dict):
        raise ComparisonError(f"{path}: not a comparison manifest")
    return value


def default_name(first: Side, second: Side) -> str:
    raw = f"{first.run.name}-{first.checkpoint}-vs-{second.run.name}-{second.checkpoint}"
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", raw).strip("-.")[:120] or "comparison"


def prepare(first: tuple[Run, str | None], second: tuple[Run, str | None], *,
            name: str | None = None, seed: int | None = None, parent: Path | None = None,
            device: str = "auto", batch_size: int = 16,
            on_progress: Callable[[int, int], None] | None = None,
            on_note: Callable[[str], None] | None = None) -> Comparison:
    """Make (or reopen) the comparison of two sides, each a run and an optional
    checkpoint, under `parent` (default: RUNS/comparisons) as NAME (default: from the
    sides). Answers a side lacks are generated for its checkpoint (generate_responses,
    into the comparison's folder); an existing comparison of the same sides is reopened
    with its verdicts, one of other sides is refused."""
    sides = (resolve_side(*first), resolve_side(*second))
    if sides[0] == sides[1]:
        raise ComparisonError(f"{sides[0].spec}: both sides are the same answers; compare "
                              "two runs, or two checkpoints (RUN:CHECKPOINT)")
    name = name or default_name(*sides)
    if not NAME_RE.fullmatch(name):
        raise ComparisonError(f"--name {name!r}: a comparison name is 1 to 120 letters, "
                              "digits, '-', '_' or '.', not starting with '.' or '-'")
    folder = (comparisons_dir() if parent is None else Path(parent)) / name
    if (folder / MANIFEST).exists():
        manifest = _read_manifest(folder)
        held = [(str(s.get("run")), s.get("checkpoint")) for s in manifest.get("sides", [])
                if isinstance(s, dict)]
        if held != [(str(s.run), s.checkpoint) for s in sides]:
            shown = " and ".join(f"{Path(r).name}:{c}" for r, c in held) or "other sides"
            raise ComparisonError(f"{folder}: this comparison compares {shown}; give "
                                  "another --name for these sides")
        if seed is not None and seed != manifest.get("seed"):
            raise ComparisonError(f"--seed {seed}: {folder} was made with seed "
                                  f"{manifest.get('seed')} (its verdicts follow that order)")
    else:
        folder.mkdir(parents=True, exist_ok=True)
        # The seed is fixed before any answer exists: every later session shows the
        # same order.
        write_atomic(folder / MANIFEST, json.dumps({
            "version": 1, "sides": [s.as_json() for s in sides],
            "seed": secrets.randbelow(2**31) if seed is None else seed,
            "created_at": now_iso()}, indent=2) + "\n")
    for n, side in enumerate(sides, start=1):
        dest = folder / f"answers-{n}.jsonl"
        if not dest.is_file():
            _answers_for(side, dest, device=device, batch_size=batch_size,
                         on_progress=on_progress, on_note=on_note)
    return Comparison(folder)


def _answers_for(side: Side, dest: Path, *, device: str, batch_size: int,
                 on_progress, on_note) -> None:
    """The side's answers into `dest`: the run's own when they are that checkpoint's,
    else generated for it."""
    run = Run(side.run)
    if run.responses_path.is_file() and _responses_checkpoint(run) == side.checkpoint:
        tmp = dest.with_name(dest.name + ".copy")
        shutil.copyfile(run.responses_path, tmp)
        os.replace(tmp, dest)
        return
    if on_note is not None:
        on_note(f"generating the answers of {side.spec} (test split)")
    generate_responses(_AnswersInto(side.run, dest), checkpoint=side.checkpoint,
                       split="test", device=device, batch_size=batch_size,
                       on_progress=on_progress, on_note=on_note)


def open_comparison(name: str) -> Comparison:
    """A comparison by folder path or by name under RUNS/comparisons."""
    path = Path(name).expanduser()
    if not path.exists() and "/" not in name:
        path = comparisons_dir() / name
    return Comparison(path)


# -- the judge ------------------------------------------------------------------------


def judge_rater(model: str) -> str:
    return f"judge:{model}"


def combine(first: str | None, second: str | None) -> tuple[int | None, str] | None:
    """The judge's outcome of a pair from its replies in order AB (the first side shown
    as A) and BA: (side, "better") when both name the same side, (None, "tie") or
    (None, "both_bad") when both say so, (None, "tie") when they disagree; None when
    either reply has no verdict."""
    if first not in VERDICTS or second not in VERDICTS:
        return None

    def outcome(verdict: str, shown_a: int):
        if verdict == "A":
            return shown_a
        if verdict == "B":
            return 1 - shown_a
        return verdict

    one, two = outcome(first, 0), outcome(second, 1)
    if one != two:
        return None, "tie"
    return (one, "better") if isinstance(one, int) else (None, one)


class _Replies:
    """judge.jsonl: the judge's reply for each (pair, order, judge); the store the
    judge's batch (grade/judge._batch) appends to. When a pair's second order is in,
    its verdict goes to the comparison's journal."""

    def __init__(self, comparison: Comparison, judge: str, rater: str, model: str) -> None:
        self.comparison = comparison
        self.path = comparison.path / JUDGE_FILE
        self.judge, self.rater, self.model = judge, rater, model
        self._tail = JsonlTail(self.path)
        self.replies: dict[tuple[str, str], dict] = {}  # (pair, order) -> line
        self.refresh()

    def refresh(self) -> None:
        for entry in self._tail.read():
            try:
                if entry["judge"] == self.judge:
                    self.replies[(str(entry["pair"]), str(entry["order"]))] = entry
            except (KeyError, TypeError):
                continue

    def replied(self, pair: Pair, order: str) -> bool:
        entry = self.replies.get((pair.key, order))
        return entry is not None and not entry.get("error")

    def append(self, entry: dict) -> None:
        # The batch's entry names the request by id (the pair) and checkpoint (the
        # order); the line says so in the comparison's own words.
        line = {"pair": entry.pop("id"), "order": entry.pop("checkpoint"), **entry}
        line.pop("answer", None)
        data = (json.dumps(line, ensure_ascii=False) + "\n").encode("utf-8")
        try:
            append_line(self.path, data)
        except OSError as exc:
            if full := disk_full(exc):
                raise disk_full_error(self.path, "save the judge's reply", full,
                                      after="the replies before it are on disk") from None
            raise ComparisonError(f"{self.path}: cannot write ({exc.strerror or exc})") from None
        self.refresh()
        pair = self.comparison._by_key.get(line["pair"])
        if pair is not None:
            self.settle(pair)

    def settle(self, pair: Pair) -> None:
        """Record the pair's verdict once both orders have replied (and it has none)."""
        if self.comparison.verdict(pair, self.rater) is not None:
            return
        if not all(self.replied(pair, o) for o in ORDERS):
            return
        ab, ba = (self.replies[(pair.key, o)] for o in ORDERS)
        outcome = combine(ab.get("verdict"), ba.get("verdict"))
        if outcome is None:
            return  # an unreadable reply: counted as unparseable, not sent again
        side, what = outcome
        self.comparison.record(pair, pair.as_shown(side, what), by=self.rater,
                               judge=self.judge, model=self.model,
                               orders={"AB": ab.get("verdict"), "BA": ba.get("verdict")})


def judge_comparison(comparison: Comparison, settings, *,
                     on_progress: Callable[[int, int], None] | None = None,
                     stop: threading.Event | None = None) -> dict:
    """Have the LLM judge (grade/judge.py's client, a pairwise prompt) fill the
    comparison: each pair asked in both orders, each reply fsynced to judge.jsonl, and
    the pair's verdict recorded by combine()'s rule. A reply already on disk is not
    asked again. Returns results(by the judge) with judged/unparseable/errors/sent."""
    import asyncio

    from .judge import JudgeError, JudgeStopped, _batch, _httpx

    settings.check()
    if settings.prompt.kind != "pairwise":
        raise JudgeError(f"--prompt {settings.prompt.name}: a {settings.prompt.kind} "
                         "prompt reads one answer; a comparison needs a pairwise prompt "
                         "(the built-in 'pairwise', or a file with kind: pairwise)")
    httpx = _httpx()
    fd = try_lock(comparison.path / JUDGE_LOCK)
    if fd is None:
        raise JudgeError(f"{comparison.path}: another judge is filling this comparison; "
                         "wait for it to end, or stop it, and try again")
    try:
        judge = settings.prompt.identity(settings.model)
        rater = judge_rater(settings.model)
        store = _Replies(comparison, judge, rater, settings.model)
        for pair in comparison.pairs:
            store.settle(pair)  # both replies in, the verdict not (a crash between)
        requests = []
        for pair in comparison.pairs:
            if comparison.verdict(pair, rater) is not None:
                continue
            for order in ORDERS:
                if store.replied(pair, order):
                    continue
                a, b = (0, 1) if order == "AB" else (1, 0)
                requests.append({"id": pair.key, "checkpoint": order,
                                 "instruction": pair.instruction, "input": pair.input,
                                 "expected": pair.expected, "response_a": pair.answers[a],
                                 "response_b": pair.answers[b],
                                 "generation": list(pair.keys)})
        state = {"done": 0, "errors": 0, "sent": 0, "stopped": False,
                 "pending": len(requests)}

        def summary() -> dict:
            store.refresh()
            comparison.refresh()
            unparseable = errors = 0
            for pair in comparison.pairs:
                if comparison.verdict(pair, rater) is not None:
                    continue
                entries = [store.replies.get((pair.key, o)) for o in ORDERS]
                if any(e is not None and e.get("error") for e in entries):
                    errors += 1
                elif all(e is not None for e in entries):
                    unparseable += 1
            results = comparison.results(rater)
            return {**results, "judged": results["verdicts"], "unparseable": unparseable,
                    "errors": errors, "sent": state["sent"], "stopped": state["stopped"],
                    "prompt": settings.prompt.name, "model": settings.model,
                    "journal": str(store.path)}

        try:
            asyncio.run(_batch(None, settings, httpx, store, judge, requests, state,
                               on_progress, stop))
        except KeyboardInterrupt:
            state["stopped"] = True
            raise JudgeStopped(summary()) from None
        return summary()
    finally:
        os.close(fd)
