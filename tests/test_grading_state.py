"""The Grading screen's state without Textual: a GradingSession over a real run folder
and its grade journal. Filters, the next ungraded response, auto-advance, a reread
response file, counts and the progress line."""

from __future__ import annotations

import sys

import pytest

from test_grade_store import make_responses as responses, run  # noqa: F401 (a fixture)
from tui_ft.grade.session import FILTERS, GradingSession
from tui_ft.grade.store import GradeStore
from tui_ft.runfolder import Run

CHECKPOINT = "checkpoint-10"


def session_of(run: Run, n: int = 5) -> GradingSession:
    session = GradingSession(GradeStore(run))
    session.take_responses(responses(n))
    return session


def ids(session: GradingSession) -> str:
    return session.current["id"]


def test_auto_advance_goes_to_the_next_ungraded_and_wraps(run):
    s = session_of(run)
    assert ids(s) == "r0"
    assert s.mark("correct") and ids(s) == "r1"
    s.index = 3
    assert s.mark("wrong") and ids(s) == "r4"
    assert s.mark("correct") and ids(s) == "r1"  # wrapped past the graded r0
    assert s.mark("wrong") and ids(s) == "r2"
    assert s.mark("correct") is False and ids(s) == "r2"  # nothing left to grade
    # Every mark is in the journal a second store reads.
    again = GradeStore(run)
    assert [again.get(f"r{i}", CHECKPOINT).grade for i in range(5)] == \
        ["correct", "wrong", "correct", "wrong", "correct"]


def test_clearing_and_auto_advance_off_stay_put(run):
    s = session_of(run)
    s.toggle_auto()
    assert s.mark("correct") and ids(s) == "r0"
    assert s.mark(None) and ids(s) == "r0"
    assert s.grade_of(s.current).grade is None
    s.toggle_auto()
    assert s.mark(None) and ids(s) == "r0"  # a clear never moves on


def test_filters_step_only_through_what_they_show(run):
    s = session_of(run, 6)
    s.toggle_auto()
    for i, mark in ((0, "correct"), (2, "wrong"), (3, "correct")):
        s.index = i
        s.mark(mark)
    s.index = 0
    assert s.filter == "all" and FILTERS[0] == "all"
    assert s.cycle_filter() and s.filter == "ungraded" and ids(s) == "r1"
    assert s.step(1) and ids(s) == "r4"
    assert s.step(1) and ids(s) == "r5"
    assert not s.step(1) and ids(s) == "r5"  # the last ungraded: the index stays
    assert s.filter_position() == (3, 3)
    assert s.cycle_filter() and s.filter == "correct" and ids(s) == "r0"  # wraps around
    assert s.step(1) and ids(s) == "r3"
    assert not s.step(1)
    assert s.step(-1) and ids(s) == "r0" and not s.step(-1)
    assert s.cycle_filter() and s.filter == "wrong" and ids(s) == "r2"
    assert s.filter_position() == (1, 1)
    s.index = 1  # not wrong
    assert s.filter_position() == (None, 1)
    assert s.cycle_filter() and s.filter == "all" and ids(s) == "r1"


def test_a_filter_that_shows_nothing_says_so(run):
    s = session_of(run, 3)
    assert s.cycle_filter()  # ungraded: all are
    assert s.cycle_filter() is False and s.filter == "correct"


def test_with_filter_correct_a_mark_steps_to_the_next_shown(run):
    s = session_of(run, 4)
    s.toggle_auto()
    for i in (1, 3):
        s.index = i
        s.mark("correct")
    s.toggle_auto()
    s.index = 0
    s.cycle_filter(), s.cycle_filter()
    assert s.filter == "correct" and ids(s) == "r1"
    assert s.mark("correct") and ids(s) == "r3"


def test_next_ungraded_and_all_graded(run):
    s = session_of(run, 3)
    s.toggle_auto()
    assert s.go_next_ungraded() and ids(s) == "r1"
    for i in range(3):
        s.index = i
        s.mark("wrong")
    assert s.go_next_ungraded() is False and ids(s) == "r2"


def test_a_reread_keeps_the_response_in_front(run):
    s = GradingSession(GradeStore(run))
    s.take_responses(responses(2))  # the first answers of a generation
    assert ids(s) == "r0"
    s.mark("correct")
    assert ids(s) == "r1"
    s.take_responses(responses(5))  # more were written
    assert ids(s) == "r1"
    # Another set (another checkpoint): the first ungraded of it.
    s.take_responses(responses(3, "checkpoint-20"))
    assert ids(s) == "r0" and s.current["checkpoint"] == "checkpoint-20"
    s.take_responses([])
    assert s.current is None and s.index == 0


def test_a_new_session_starts_at_the_first_ungraded(run):
    store = GradeStore(run)
    store.mark("r0", CHECKPOINT, "correct")
    store.mark("r1", CHECKPOINT, "wrong")
    s = session_of(run, 4)
    assert ids(s) == "r2"
    s.start(None)
    assert s.current is None and s.mark("correct") is True  # nothing to mark: no error


def test_counts_and_progress_line(run):
    s = session_of(run, 4)
    assert s.progress_text() == "0/4 graded \u00b7 filter all \u00b7 auto-advance on"
    s.mark("correct"), s.mark("correct"), s.mark("wrong")
    assert s.counts()["accuracy"] == pytest.approx(2 / 3)
    assert s.progress_text() == ("3/4 graded \u00b7 67% correct (2 \u2713 1 \u2717) "
                                 "\u00b7 filter all \u00b7 auto-advance on")
    s.toggle_auto()
    s.cycle_filter()
    assert s.progress_text().endswith("filter ungraded \u00b7 auto-advance off")
    empty = GradingSession()
    assert empty.progress_text() == "0/0 graded \u00b7 filter all \u00b7 auto-advance on"


def test_the_session_imports_no_textual():
    import subprocess

    code = ("import sys, tui_ft.grade.session\n"
            "print('textual' in sys.modules, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert out.stdout.split() == ["False", "False"], out.stderr


def test_a_regenerated_answer_is_ungraded_and_says_what_the_old_one_got(run):
    from rich.style import Style

    from tui_ft.ui.screens.grading_lines import grade_line

    s = session_of(run, 2)
    s.mark("correct")  # r0, then auto-advance
    again = [{**r, "response": r["response"] + " (again)"} for r in responses(2)]
    s2 = GradingSession(GradeStore(run))
    s2.take_responses(again)
    assert s2.mark_of(0) is None and s2.grade_of(again[0]).stale == "correct"
    line = grade_line(s2, lambda name: Style()).plain
    assert "ungraded" in line and "an earlier answer was marked correct" in line
