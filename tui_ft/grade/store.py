"""The grade journal: every mark and note is one line appended to RUN/grades.jsonl,
flushed and fsynced before the mark is shown, so killing the app loses nothing
already on screen. The current grades are the journal replayed (the last word on
each response wins); two sessions on one run append under a lock and each re-reads
the other's lines, so nothing is lost or counted twice. Export writes JSONL
atomically, each line tied to the run and checkpoint that produced the answer."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from pathlib import Path

from ..errors import TuiFtError
from ..fsio import append_line, disk_full, disk_full_error, write_atomic
from ..runfolder import Run, now_iso
from ..tail import JsonlTail
from .responses import answer_key, automatic_match

GRADES = ("correct", "wrong")


class GradeError(TuiFtError):
    """A grade that cannot be recorded or exported."""


@dataclass
class Grade:
    grade: str | None = None  # "correct", "wrong" or None (ungraded)
    note: str = ""
    graded_at: str | None = None
    answer: str | None = None  # the answer_key of the answer judged (None: not recorded)
    # A mark (or note) of an earlier answer to this record, kept in the journal but
    # not applied to the answer shown now: what it was, e.g. "correct".
    stale: str | None = None
    # "judge": the person took the LLM judge's verdict as the mark (the Grading
    # screen's v); not an independent mark, so agreement leaves it out.
    by: str | None = None


def _key(response_id: str, checkpoint: str | None) -> tuple[str, str]:
    return (response_id, checkpoint or "")


class GradeStore:
    """Grades of one run's responses. `refresh()` picks up lines other sessions wrote."""

    def __init__(self, run: Run) -> None:
        self.run = run
        self.path = run.grades_path
        self.session = uuid.uuid4().hex[:12]
        self._grades: dict[tuple[str, str], Grade] = {}
        self._tail = JsonlTail(self.path)
        self._bad_entries = 0
        self.refresh()

    # -- reading --------------------------------------------------------------------

    def refresh(self) -> int:
        """Replay journal lines written since the last read; returns how many."""
        count = 0
        for entry in self._tail.read():
            try:
                self._apply(entry)
                count += 1
            except (ValueError, KeyError, TypeError):
                # A foreign line: skipped, never fatal.
                self._bad_entries += 1
        return count

    @property
    def skipped_lines(self) -> int:
        """Journal lines that are torn, not JSON, or not a grade."""
        return self._tail.skipped + self._bad_entries

    def _apply(self, entry: dict) -> None:
        key = _key(str(entry["id"]), entry.get("checkpoint"))
        grade = self._grades.setdefault(key, Grade())
        if "grade" in entry:
            value = entry["grade"]
            if value not in GRADES and value is not None:
                raise ValueError(value)
            grade.grade = value
            grade.by = entry["by"] if isinstance(entry.get("by"), str) else None
            # A cleared grade has no time of grading (an export says "ungraded", null).
            grade.graded_at = entry.get("at") if value is not None else None
        if "note" in entry:
            grade.note = str(entry["note"])
        if "grade" in entry or "note" in entry:
            grade.answer = entry.get("answer")

    def get(self, response_id: str, checkpoint: str | None,
            answer: str | None = None) -> Grade:
        """The grade of a response. With `answer` (its answer_key), a mark given to
        another answer of the same id and checkpoint does not count: the result is
        ungraded, with `stale` saying what the earlier answer got. Journal lines from
        before answer keys match any answer."""
        grade = self._grades.get(_key(response_id, checkpoint), Grade())
        if answer is not None and grade.answer is not None and grade.answer != answer and (
                grade.grade is not None or grade.note):
            return Grade(stale=grade.grade or "a note")
        return grade

    def graded_checkpoints(self) -> dict[str, int]:
        """Checkpoint name -> how many of its responses hold a grade or a note (the
        trainer's rotation keeps these checkpoints)."""
        out: dict[str, int] = {}
        for (_, checkpoint), grade in self._grades.items():
            if checkpoint and (grade.grade is not None or grade.note):
                out[checkpoint] = out.get(checkpoint, 0) + 1
        return out

    # -- writing --------------------------------------------------------------------

    def _append(self, entry: dict) -> None:
        line = (json.dumps(entry, ensure_ascii=False) + "\n").encode("utf-8")
        try:
            append_line(self.path, line)
        except OSError as exc:
            if full := disk_full(exc):
                # A short write too: append_line repairs the torn line next time.
                raise GradeError(str(disk_full_error(
                    self.path, "save the mark", full,
                    after="the marks before it are on disk"))) from None
            raise GradeError(f"{self.path}: cannot write the grade ({exc.strerror})") from None
        # Our own line (and anything another session wrote before it) is read back.
        self.refresh()

    def mark(self, response_id: str, checkpoint: str | None, grade: str | None,
             answer: str | None = None, by: str | None = None) -> Grade:
        """Record `grade` (correct, wrong, or None to clear) on disk, then return it.
        `answer`: the answer_key of the answer judged; `by`: "judge" when the mark is
        the LLM judge's verdict taken as it is."""
        if grade is not None and grade not in GRADES:
            raise GradeError(f"unknown grade {grade!r} (expected correct or wrong)")
        self._append({"id": response_id, "checkpoint": checkpoint, "grade": grade,
                      **({"answer": answer} if answer else {}),
                      **({"by": by} if by else {}),
                      "at": now_iso(), "session": self.session})
        return self.get(response_id, checkpoint, answer)

    def set_note(self, response_id: str, checkpoint: str | None, note: str,
                 answer: str | None = None) -> Grade:
        self._append({"id": response_id, "checkpoint": checkpoint, "note": note,
                      **({"answer": answer} if answer else {}),
                      "at": now_iso(), "session": self.session})
        return self.get(response_id, checkpoint, answer)

    def of(self, record: dict) -> Grade:
        """The grade of a response line, judged against its own answer."""
        return self.get(str(record.get("id")), record.get("checkpoint"), answer_key(record))

    # -- summaries and export -----------------------------------------------------------

    def counts(self, responses: list[dict]) -> dict:
        correct = wrong = 0
        for r in responses:
            g = self.of(r).grade
            correct += g == "correct"
            wrong += g == "wrong"
        graded = correct + wrong
        return {"total": len(responses), "correct": correct, "wrong": wrong,
                "ungraded": len(responses) - graded,
                "accuracy": correct / graded if graded else None}

    def export_rows(self, responses: list[dict]) -> list[dict]:
        from .judge import JudgmentStore

        judgments = JudgmentStore(self.run)
        rows = []
        for r in responses:
            g = self.of(r)
            j = judgments.latest(r) or {}
            rows.append({"id": r["id"], "instruction": r.get("instruction", ""),
                         "input": r.get("input", ""), "expected": r.get("expected", ""),
                         "response": r.get("response", ""), "grade": g.grade or "ungraded",
                         "note": g.note, "run": r.get("run") or self.run.name,
                         "checkpoint": r.get("checkpoint"), "graded_at": g.graded_at,
                         # The automatic check beside the person's mark, never in place
                         # of it: where they disagree is what a reviewer looks at.
                         "exact_match": automatic_match(r),
                         # The LLM judge's newest word on this exact answer, also
                         # beside the mark (null where no judge has read it).
                         "judge_verdict": j.get("verdict"), "judge_score": j.get("score"),
                         "judge_reply": j.get("reply"), "judge_reason": j.get("reason"),
                         "judge_unparseable": j.get("unparseable"),
                         "judge_prompt": j.get("prompt"), "judge_model": j.get("model")})
        return rows

    def export(self, responses: list[dict], out: Path) -> dict:
        """Write the graded responses to `out` as JSONL, atomically."""
        rows = self.export_rows(responses)
        text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
        try:
            write_atomic(Path(out), text)
        except OSError as exc:
            if full := disk_full(exc):
                raise GradeError(str(disk_full_error(
                    Path(out), "write the export", full,
                    after="the previous file is untouched, the grades stay in the "
                          "journal"))) from None
            raise GradeError(f"{out}: cannot write the export ({exc.strerror or exc}); "
                             "nothing was changed") from None
        return {"path": str(out), **self.counts(responses)}
