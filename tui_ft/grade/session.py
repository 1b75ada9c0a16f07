"""Where a person is while grading a run's responses: the list, the response in front,
the filter, auto-advance, where the next ungraded one is, and the counts. Plain Python
(no Textual): the Grading screen draws it and turns keys into its methods, and tests
drive it directly. Every mark goes through the GradeStore (journal first)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .responses import answer_key

if TYPE_CHECKING:
    from .store import Grade, GradeStore

FILTERS = ("all", "ungraded", "correct", "wrong")


def response_key(record: dict) -> tuple[str, str]:
    """A response's identity across re-reads: its id and the checkpoint that answered."""
    return (str(record.get("id")), str(record.get("checkpoint") or ""))


class GradingSession:
    def __init__(self, store: "GradeStore | None" = None) -> None:
        self.store = store
        self.responses: list[dict] = []
        self.index = 0
        self.filter = "all"
        self.auto_advance = True

    def start(self, store: "GradeStore | None") -> None:
        """Another run: its grades, no responses yet (filter and auto-advance stay)."""
        self.store = store
        self.responses = []
        self.index = 0

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
        self.filter = FILTERS[(FILTERS.index(self.filter) + 1) % len(FILTERS)]
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

    def mark(self, value: str | None) -> bool:
        """Mark the response in front correct, wrong or (None) ungraded, other sessions'
        grades read first; with auto-advance on, a mark moves on. Returns what
        advance_after_mark said (True when it did not move). GradeError when the
        journal cannot be written: nothing moves then."""
        record = self.current
        if record is None or self.store is None:
            return True
        self.store.refresh()
        self.store.mark(str(record.get("id")), record.get("checkpoint"), value,
                        answer=answer_key(record))
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
