"""Where a person is while grading a run's responses: the list, the response in front,
the filter, auto-advance, where the next ungraded one is, and the counts. Plain Python
(no Textual): the Grading screen draws it and turns keys into its methods, and tests
drive it directly. Every mark goes through the GradeStore (journal first).

Where the run has an LLM judge's judgments (judgments.jsonl), the latest one of the
exact answer in front is a suggestion beside it (`suggestion`), a key takes its
verdict as the mark, and one more filter shows where judge and person disagree."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

from .judge import JudgeError, JudgmentStore, builtin_prompts, load_prompt, passes
from .responses import answer_key

if TYPE_CHECKING:
    from ..runfolder import Run
    from .store import Grade, GradeStore

FILTERS = ("all", "ungraded", "correct", "wrong")
# Only where the run has judgments: without a judge it would always show nothing.
DISAGREE = "disagree"


@dataclass(frozen=True)
class Suggestion:
    """The judge's word on one answer, as the Grading screen shows it. `verdict` is
    correct/wrong (a score read against `threshold`), None when the judgment gives
    none: then `why_not` says why, and no key can take it as the mark."""

    verdict: str | None
    kind: str  # "score" or "verdict"
    score: int | None = None
    threshold: int | None = None
    reason: str = ""  # the judge's reason, else its whole reply (untrusted text)
    prompt: str = ""
    model: str = ""
    why_not: str = ""


def score_threshold(entry: dict) -> int | None:
    """The pass mark a 0-100 judgment was made for: its own (a judgment that records
    one), else that of the built-in prompt it came from, known for certain only when
    that prompt's text and the model give the judgment's judge identity. None when
    the prompt was a file of the user's (its name alone does not say its mark)."""
    own = entry.get("pass_threshold")
    if isinstance(own, int) and not isinstance(own, bool) and 0 <= own <= 100:
        return own
    name, model = entry.get("prompt"), entry.get("model")
    if not isinstance(name, str) or not isinstance(model, str):
        return None
    known = _builtin_mark(name, model)
    return known[1] if known is not None and known[0] == entry.get("judge") else None


@lru_cache(maxsize=64)
def _builtin_mark(name: str, model: str) -> tuple[str, int] | None:
    """(judge identity, pass mark) of built-in prompt `name` with `model`; read once:
    the disagree filter asks for every answer at each step."""
    if name not in builtin_prompts():
        return None
    try:
        prompt = load_prompt(name)
    except JudgeError:
        return None
    return prompt.identity(model), prompt.pass_threshold


def suggestion_of(entry: dict) -> Suggestion:
    kind = "score" if entry.get("kind") == "score" else "verdict"
    reason = entry.get("reason") if isinstance(entry.get("reason"), str) else ""
    if not reason.strip():
        reply = entry.get("reply")
        reason = reply if isinstance(reply, str) else ""
    base = {"kind": kind, "reason": reason.strip(), "prompt": str(entry.get("prompt") or ""),
            "model": str(entry.get("model") or "")}
    if entry.get("unparseable"):
        return Suggestion(None, why_not="unparseable reply, no verdict in it",
                          **base)
    if kind == "score":
        score = entry.get("score")
        if not isinstance(score, int) or isinstance(score, bool):
            return Suggestion(None, why_not="the judgment has no score", **base)
        threshold = score_threshold(entry)
        if threshold is None:
            return Suggestion(None, score=score, why_not=(
                f"no pass mark is known for prompt {base['prompt']!r} (a prompt file); "
                "mark it yourself"), **base)
        verdict = "correct" if passes("score", entry, threshold) else "wrong"
        return Suggestion(verdict, score=score, threshold=threshold, **base)
    said = passes("verdict", entry, 0)
    if said is None:
        return Suggestion(None, why_not="the judgment has no verdict", **base)
    return Suggestion("correct" if said else "wrong", **base)


def response_key(record: dict) -> tuple[str, str]:
    """A response's identity across re-reads: its id and the checkpoint that answered."""
    return (str(record.get("id")), str(record.get("checkpoint") or ""))


class GradingSession:
    def __init__(self, store: "GradeStore | None" = None,
                 judgments: JudgmentStore | None = None) -> None:
        self.store = store
        self.judgments = judgments
        self._judgments_seen: tuple | None = None
        self.responses: list[dict] = []
        self.index = 0
        self.filter = "all"
        self.auto_advance = True

    def start(self, store: "GradeStore | None", judgments: JudgmentStore | None = None) -> None:
        """Another run: its grades and judgments, no responses yet (filter and
        auto-advance stay; a disagreement filter only where there is a judge)."""
        self.store = store
        self.judgments = judgments
        self._judgments_seen = None
        self.responses = []
        self.index = 0
        if self.filter not in self.filters():
            self.filter = "all"

    # -- the judge ---------------------------------------------------------------------

    @staticmethod
    def open_judgments(run: "Run") -> JudgmentStore:
        """The run's judgments (an empty store while judgments.jsonl does not exist:
        a judge started later is picked up by refresh_judgments)."""
        return JudgmentStore(run)

    @property
    def has_judge(self) -> bool:
        return self.judgments is not None and bool(self.judgments.judges)

    def refresh_judgments(self) -> bool:
        """Read judgments a running 'tui-ft judge' appended; True when there were any."""
        if self.judgments is None:
            return False
        try:
            info = self.judgments.path.stat()
            seen = (info.st_ino, info.st_size, info.st_mtime_ns)
        except OSError:
            seen = None
        if seen == self._judgments_seen:
            return False
        self._judgments_seen = seen
        self.judgments.refresh()
        return True

    def suggestion(self, record: dict | None) -> Suggestion | None:
        """The latest judgment of this exact answer (a judgment of an answer since
        replaced is not this answer's), as a suggestion; None when none."""
        if record is None or self.judgments is None:
            return None
        entry = self.judgments.latest(record)
        if entry is None or entry.get("kind", "verdict") not in ("score", "verdict"):
            return None  # not a judgment of this one answer (a pairwise one, say)
        return suggestion_of(entry)

    def disagrees(self, i: int) -> bool:
        """Whether the person's mark and the judge's verdict on response i differ."""
        mark = self.mark_of(i)
        if mark is None:
            return False
        said = self.suggestion(self.responses[i])
        return said is not None and said.verdict is not None and said.verdict != mark

    def filters(self) -> tuple[str, ...]:
        return FILTERS + (DISAGREE,) if self.has_judge else FILTERS

    # -- what is in front ----------------------------------------------------------

    @property
    def current(self) -> dict | None:
        if 0 <= self.index < len(self.responses):
            return self.responses[self.index]
        return None

    def grade_of(self, record: dict) -> "Grade | None":
        if self.store is None:
            return None
        return self.store.of(record)

    def mark_of(self, i: int) -> str | None:
        grade = self.grade_of(self.responses[i])
        return grade.grade if grade is not None else None

    def matches(self, i: int) -> bool:
        if self.filter == "all":
            return True
        if self.filter == DISAGREE:
            return self.disagrees(i)
        mark = self.mark_of(i)
        return mark is None if self.filter == "ungraded" else mark == self.filter

    def first_ungraded(self) -> int:
        for i in range(len(self.responses)):
            if self.mark_of(i) is None:
                return i
        return 0

    def next_ungraded_from(self, start: int) -> int | None:
        """The next ungraded response after `start`, wrapping around; None when all are."""
        n = len(self.responses)
        for step in range(1, n + 1):
            i = (start + step) % n
            if self.mark_of(i) is None:
                return i
        return None

    def filter_position(self) -> tuple[int | None, int]:
        """(the current response's place among those the filter shows, 1-based, or None
        when it is not one of them; how many the filter shows)."""
        matching = [i for i in range(len(self.responses)) if self.matches(i)]
        place = matching.index(self.index) + 1 if self.index in matching else None
        return place, len(matching)

    # -- the list changing under it ----------------------------------------------------

    def take_responses(self, responses: list[dict]) -> None:
        """A new reading of the response file (more answers, or another set): the
        response in front stays in front; the first reading starts at the first
        ungraded one."""
        current = response_key(self.current) if self.current is not None else None
        had_any = bool(self.responses)
        self.responses = responses
        keys = [response_key(r) for r in responses]
        if current is not None and current in keys:
            self.index = keys.index(current)
        elif not had_any or current is not None:
            self.index = self.first_ungraded() if responses else 0
        self.index = min(self.index, max(0, len(responses) - 1))

    # -- moving ----------------------------------------------------------------------

    def step(self, direction: int) -> bool:
        """To the next (+1) or previous (-1) response the filter shows; False when
        there is none that way (the index stays)."""
        i = self.index + direction
        while 0 <= i < len(self.responses):
            if self.matches(i):
                self.index = i
                return True
            i += direction
        return False

    def go_next_ungraded(self) -> bool:
        """To the next ungraded response; False when every response is graded."""
        target = self.next_ungraded_from(self.index) if self.responses else None
        if target is None:
            return False
        self.index = target
        return True

    def advance_after_mark(self) -> bool:
        """Where auto-advance goes after a mark: the next ungraded response (filters
        all and ungraded), else the next one the filter shows. False when the filter
        is all or ungraded and nothing is left to grade."""
        if self.filter in ("all", "ungraded"):
            return self.go_next_ungraded()
        self.step(1)
        return True

    def cycle_filter(self) -> bool:
        """The next filter; when the response in front is not one it shows, the first
        that is from here on. False when the filter shows no response at all."""
        filters = self.filters()
        place = filters.index(self.filter) if self.filter in filters else -1
        self.filter = filters[(place + 1) % len(filters)]
        if not self.responses or self.matches(self.index):
            return True
        n = len(self.responses)
        for step in range(n):
            i = (self.index + step) % n
            if self.matches(i):
                self.index = i
                return True
        return False

    def toggle_auto(self) -> None:
        self.auto_advance = not self.auto_advance

    # -- marking -----------------------------------------------------------------------

    def mark(self, value: str | None, by: str | None = None) -> bool:
        """Mark the response in front correct, wrong or (None) ungraded, other sessions'
        grades read first; with auto-advance on, a mark moves on. Returns what
        advance_after_mark said (True when it did not move). GradeError when the
        journal cannot be written: nothing moves then."""
        record = self.current
        if record is None or self.store is None:
            return True
        self.store.refresh()
        self.store.mark(str(record.get("id")), record.get("checkpoint"), value,
                        answer=answer_key(record), by=by)
        if value is not None and self.auto_advance:
            return self.advance_after_mark()
        return True

    # -- counts ------------------------------------------------------------------------

    def counts(self) -> dict:
        """total, correct, wrong (and accuracy, None when nothing is graded)."""
        if self.store is None or not self.responses:
            return {"total": len(self.responses), "correct": 0, "wrong": 0,
                    "ungraded": len(self.responses), "accuracy": None}
        return self.store.counts(self.responses)

    def progress_text(self) -> str:
        """'37/155 graded · 81% correct (30 ✓ 7 ✗) · filter all · auto-advance on'."""
        counts = self.counts()
        graded = counts["correct"] + counts["wrong"]
        parts = [f"{graded}/{counts['total']} graded"]
        if counts["accuracy"] is not None:
            parts.append(f"{round(100 * counts['accuracy'])}% correct ({counts['correct']} "
                         f"\u2713 {counts['wrong']} \u2717)")
        parts.append(f"filter {self.filter}")
        parts.append(f"auto-advance {'on' if self.auto_advance else 'off'}")
        return " \u00b7 ".join(parts)
