"""What the Grading screen says, built from its state: the header, the grade line, the
placeholder when there is nothing to grade, and the end of a generation. Rich Text and
strings only (no widget), so the screen module holds the keys and the layout."""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from rich.style import Style
from rich.text import Text

from ...grade.session import GradingSession
from ..widgets.response_view import shown

if TYPE_CHECKING:
    from ...runfolder import Run

MARKS = {"correct": "\u2713 correct", "wrong": "\u2717 wrong"}


def header(run: "Run | None", session: GradingSession, job, partial: bool,
           expected_total: int | None) -> Text:
    """'RUN · checkpoint · N responses', or how generation stands (`job` running,
    `partial`: an unfinished response file)."""
    if run is None:
        return Text("Grading \u00b7 no run chosen (o picks one)")
    text = Text(shown(run.name), style="bold")
    n = len(session.responses)
    checkpoint = session.current.get("checkpoint") if session.current else None
    if job is not None:
        total = f"/{expected_total}" if expected_total is not None else ""
        done = n if partial else 0
        text.append(f" \u00b7 generating with {job.checkpoint}: {done}{total} written")
    elif partial:
        text.append(f" \u00b7 {shown(checkpoint or '?')} \u00b7 incomplete: {n} responses"
                    " (generation stopped; r starts it again)")
    elif n:
        text.append(f" \u00b7 {shown(checkpoint or '?')} \u00b7 {n} responses")
    else:
        text.append(" \u00b7 no responses")
    return text


def grade_line(session: GradingSession, style_of: Callable[[str], Style]) -> Text:
    """'3 of 20 (2 of 5 wrong) · id ID · ✗ wrong · note: ...'; `style_of(mark)` is the
    screen's style of correct, wrong and ungraded."""
    record = session.current
    if record is None:
        return Text("")
    text = Text(f"{session.index + 1} of {len(session.responses)}")
    if session.filter != "all":
        place, matching = session.filter_position()
        text.append(f" ({place} of {matching} {session.filter})" if place is not None
                    else f" (not {session.filter}; {matching} are)")
    text.append(f" \u00b7 id {shown(record.get('id'))} \u00b7 ")
    grade = session.grade_of(record)
    mark = grade.grade if grade else None
    if mark in MARKS:
        text.append(MARKS[mark], style_of(mark))
    else:
        text.append("ungraded", style_of("ungraded"))
    if grade is not None and grade.stale:
        # The journal keeps the earlier mark; this answer was never judged.
        text.append(f" (an earlier answer was marked {grade.stale})", style="italic")
    if grade is not None and grade.note:
        text.append(" \u00b7 note: ")
        text.append(shown(grade.note).replace("\n", " \u21b5 "), style="italic")
    return text


def empty_message(run: "Run | None", job) -> str:
    """What the answer panels say when there is no response to show."""
    if run is None:
        return "No run chosen. Press o to pick one."
    if job is not None:
        return (f"Generating responses with {job.checkpoint} (the model is loading). "
                "The first answers appear here as soon as they are written.")
    if not run.checkpoints():
        return (f"{run.name} has no checkpoint yet, so there is nothing to grade. "
                "Train it first (Training screen, 3).")
    return (f"No responses yet for {run.name}. Press r to generate them with a "
            "checkpoint (best, last or any).")


def generation_ended(job, code: int, complete: bool, count: int) -> tuple[str, bool]:
    """The message when a generation process ended with `code` (-1: gone, not ours),
    `complete` when its response file is whole; and whether it is an error."""
    if code == 0 or (code == -1 and complete):
        summary = job.run.read_status().get("responses")
        note = summary.get("note") if isinstance(summary, dict) else None
        return (f"{count} responses from {job.checkpoint} are complete"
                + (f" ({note})" if isinstance(note, str) else "")), False
    if code == -1:
        return (f"generation with {job.checkpoint} stopped before the end; r starts it "
                "again"), True
    return f"generation with {job.checkpoint} failed: {job.error_text()}", True


def replace_warning(session: GradingSession) -> str:
    """What new responses would put aside: the answers graded in responses.jsonl."""
    counts = session.counts()
    done = counts["correct"] + counts["wrong"]
    if not done:
        return ""
    checkpoint = shown(session.current.get("checkpoint") if session.current else "?")
    answers = "answer" if done == 1 else "answers"
    return (f"responses.jsonl holds {done} graded {answers} from {checkpoint}. New "
            "responses replace it when they are complete; the grades stay in "
            f"grades.jsonl, tied to {checkpoint}. Export first (e) to keep those answers "
            "with their grades.")


def export_message(summary: dict, generating: bool) -> str:
    graded = summary["correct"] + summary["wrong"]
    message = (f"exported {summary['total']} responses to {summary['path']} ({graded} "
               f"graded: {summary['correct']} correct, {summary['wrong']} wrong; "
               f"{summary['ungraded']} ungraded)")
    if generating:
        message += "; generation is still running, export again when it ends"
    return message
