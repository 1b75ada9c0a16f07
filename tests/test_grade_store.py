"""The grade journal (no UI): replay, torn lines, durability across SIGKILL, two
sessions and two processes on one run, atomic export, grades tied to checkpoints."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tui_ft import fsio
from tui_ft.grade.store import GradeError, GradeStore
from tui_ft.runfolder import Run

EXPORT_FIELDS = {"id", "instruction", "input", "expected", "response", "grade", "note", "run",
                 "checkpoint", "graded_at", "exact_match",
                 # The LLM judge's word (issue 16; null where no judge read the answer).
                 "judge_verdict", "judge_score", "judge_reply", "judge_reason",
                 "judge_unparseable", "judge_prompt", "judge_model"}


def make_responses(n: int = 4, checkpoint: str = "checkpoint-10") -> list[dict]:
    return [{"id": f"r{i}", "instruction": f"Say {i}.", "input": "in" if i % 2 else "",
             "expected": str(i), "response": f"answer {i}", "run": "demo",
             "checkpoint": checkpoint, "split": "test"} for i in range(n)]


@pytest.fixture
def run(tmp_path) -> Run:
    run = Run(tmp_path / "demo")
    run.path.mkdir()
    run.write_status(state="finished")
    return run


def journal_lines(run: Run) -> list[dict]:
    return [json.loads(line) for line in run.grades_path.read_text(encoding="utf-8").splitlines()]


def test_replay_last_word_wins_clear_and_notes(run):
    store = GradeStore(run)
    store.mark("r0", "checkpoint-10", "correct")
    store.mark("r0", "checkpoint-10", "wrong")
    store.mark("r1", "checkpoint-10", "correct")
    store.mark("r1", "checkpoint-10", None)
    store.set_note("r2", "checkpoint-10", "close [bold]but[/bold] no")
    store.mark("r2", "checkpoint-10", "wrong")
    store.set_note("r2", "checkpoint-10", "second thought")

    replayed = GradeStore(run)
    assert replayed.get("r0", "checkpoint-10").grade == "wrong"
    cleared = replayed.get("r1", "checkpoint-10")
    assert cleared.grade is None and cleared.graded_at is None
    assert replayed.get("r2", "checkpoint-10").grade == "wrong"
    assert replayed.get("r2", "checkpoint-10").note == "second thought"
    assert replayed.get("r3", "checkpoint-10").grade is None
    counts = replayed.counts(make_responses())
    assert counts == {"total": 4, "correct": 0, "wrong": 2, "ungraded": 2, "accuracy": 0.0}
    assert len(journal_lines(run)) == 7
    with pytest.raises(GradeError, match="unknown grade"):
        replayed.mark("r0", "checkpoint-10", "maybe")


def test_torn_last_line_is_skipped_and_the_next_mark_lands_on_its_own_line(run):
    GradeStore(run).mark("r0", "checkpoint-10", "correct")
    with open(run.grades_path, "ab") as f:  # a crash in the middle of a write
        f.write(b'{"id": "r1", "checkpoint": "checkpoint-10", "gra')
    store = GradeStore(run)
    assert store.get("r0", "checkpoint-10").grade == "correct"
    assert store.get("r1", "checkpoint-10").grade is None

    store.mark("r2", "checkpoint-10", "wrong")
    lines = run.grades_path.read_bytes().split(b"\n")
    assert lines[1] == b'{"id": "r1", "checkpoint": "checkpoint-10", "gra'
    assert json.loads(lines[2])["id"] == "r2" and lines[3] == b""
    again = GradeStore(run)
    assert again.skipped_lines == 1
    assert again.get("r2", "checkpoint-10").grade == "wrong"
    assert again.get("r0", "checkpoint-10").grade == "correct"


def _python(code: str, *args: str, wait: bool = True):
    cmd = [sys.executable, "-c", textwrap.dedent(code), *args]
    if wait:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    return subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_marks_survive_sigkill(run):
    proc = _python("""
        import os, sys
        from tui_ft.grade.store import GradeStore
        from tui_ft.runfolder import Run
        store = GradeStore(Run(sys.argv[1]))
        store.mark("r0", "checkpoint-10", "correct")
        store.mark("r1", "checkpoint-10", "wrong")
        store.mark("r2", "checkpoint-10", "correct")
        os.kill(os.getpid(), 9)
        """, str(run.path))
    assert proc.returncode == -9, proc.stderr
    store = GradeStore(run)
    assert [store.get(f"r{i}", "checkpoint-10").grade for i in range(3)] == [
        "correct", "wrong", "correct"]


def test_two_stores_on_one_run_see_each_other_and_count_once(run):
    a, b = GradeStore(run), GradeStore(run)
    a.mark("r0", "checkpoint-10", "correct")
    b.mark("r1", "checkpoint-10", "wrong")  # b reads a's line back with its own
    assert b.get("r0", "checkpoint-10").grade == "correct"
    assert a.refresh() == 1
    assert a.get("r1", "checkpoint-10").grade == "wrong"
    a.mark("r1", "checkpoint-10", "correct")  # a overrides b
    b.refresh()
    responses = make_responses()
    assert a.counts(responses) == b.counts(responses) == {
        "total": 4, "correct": 2, "wrong": 0, "ungraded": 2, "accuracy": 1.0}
    assert a.refresh() == 0 and b.refresh() == 0


def test_two_processes_appending_at_once_lose_and_duplicate_nothing(run):
    code = """
        import sys
        from tui_ft.grade.store import GradeStore
        from tui_ft.runfolder import Run
        store = GradeStore(Run(sys.argv[1]))
        print("ready", flush=True)
        sys.stdin.readline()  # both start together
        for i in range(200):
            store.mark(f"{sys.argv[2]}-{i}", "checkpoint-10", "correct" if i % 2 else "wrong")
        """
    procs = [_python(code, str(run.path), tag, wait=False) for tag in ("a", "b")]
    for proc in procs:
        assert proc.stdout.readline() == "ready\n", proc.stderr.read()
    for proc in procs:
        proc.stdin.write("go\n")
        proc.stdin.flush()
    for proc in procs:
        _out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
    lines = journal_lines(run)  # every line is whole JSON
    assert len(lines) == 400
    tags = [e["id"][0] for e in lines]
    switches = sum(x != y for x, y in zip(tags, tags[1:]))
    assert switches >= 2, "the two processes never wrote at the same time"
    assert len({(e["id"], e["grade"]) for e in lines}) == 400
    store = GradeStore(run)
    assert store.skipped_lines == 0
    for tag in ("a", "b"):
        for i in range(200):
            assert store.get(f"{tag}-{i}", "checkpoint-10").grade == (
                "correct" if i % 2 else "wrong")


def test_export_writes_every_response_with_exactly_the_documented_fields(run, tmp_path):
    responses = make_responses()
    store = GradeStore(run)
    store.mark("r0", "checkpoint-10", "correct")
    store.mark("r1", "checkpoint-10", "wrong")
    store.set_note("r1", "checkpoint-10", "off by one")
    store.set_note("r2", "checkpoint-10", "note only")
    out = tmp_path / "exports" / "graded.jsonl"
    summary = store.export(responses, out)
    assert summary["path"] == str(out) and summary["total"] == 4
    assert (summary["correct"], summary["wrong"], summary["ungraded"]) == (1, 1, 2)
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["id"] for r in rows] == ["r0", "r1", "r2", "r3"]
    for row, response in zip(rows, responses):
        assert set(row) == EXPORT_FIELDS
        assert row["instruction"] == response["instruction"]
        assert row["input"] == response["input"]
        assert row["expected"] == response["expected"]
        assert row["response"] == response["response"]
        assert row["run"] == "demo" and row["checkpoint"] == "checkpoint-10"
    assert [r["grade"] for r in rows] == ["correct", "wrong", "ungraded", "ungraded"]
    assert [r["note"] for r in rows] == ["", "off by one", "note only", ""]
    # No recorded check: worked out from the texts ("answer 0" against "0").
    assert [r["exact_match"] for r in rows] == [False] * 4
    assert rows[0]["graded_at"] and rows[1]["graded_at"]
    assert rows[2]["graded_at"] is None and rows[3]["graded_at"] is None
    assert not list(out.parent.glob(".*.tmp"))


def test_export_is_atomic_when_the_write_fails(run, tmp_path, monkeypatch):
    out = tmp_path / "graded.jsonl"
    out.write_text("the previous export\n", encoding="utf-8")
    store = GradeStore(run)
    store.mark("r0", "checkpoint-10", "correct")

    def no_space(*_args):
        raise OSError(28, "No space left on device")

    # The temporary file is written, then the disk fills before the rename.
    monkeypatch.setattr(os, "replace", no_space)
    with pytest.raises(GradeError, match="nothing half-written was kept; the previous "
                                         "file is untouched"):
        store.export(make_responses(), out)
    monkeypatch.undo()
    assert out.read_text(encoding="utf-8") == "the previous export\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo", "graded.jsonl"]


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0,
                    reason="root writes into read-only folders")
def test_export_to_a_read_only_folder_fails_cleanly(run, tmp_path):
    folder = tmp_path / "locked"
    folder.mkdir()
    out = folder / "graded.jsonl"
    out.write_text("keep me\n", encoding="utf-8")
    folder.chmod(0o555)
    try:
        with pytest.raises(GradeError, match=str(out)):
            GradeStore(run).export(make_responses(), out)
        assert out.read_text(encoding="utf-8") == "keep me\n"
        assert [p.name for p in folder.iterdir()] == ["graded.jsonl"]
    finally:
        folder.chmod(0o755)


def test_grades_are_tied_to_the_checkpoint(run, tmp_path):
    store = GradeStore(run)
    old = make_responses(checkpoint="checkpoint-10")
    for r in old[:3]:
        store.mark(r["id"], r["checkpoint"], "correct")
    new = make_responses(checkpoint="checkpoint-20")  # regenerated: same ids
    assert store.counts(new)["ungraded"] == 4
    assert store.get("r0", "checkpoint-20").grade is None
    store.mark("r0", "checkpoint-20", "wrong")
    assert store.get("r0", "checkpoint-10").grade == "correct"
    rows = [json.loads(line) for line in
            Path(store.export(new, tmp_path / "new.jsonl")["path"]).read_text().splitlines()]
    assert [(r["checkpoint"], r["grade"]) for r in rows] == [
        ("checkpoint-20", "wrong")] + [("checkpoint-20", "ungraded")] * 3
    assert store.counts(old)["correct"] == 3


def test_unwritable_journal_raises_grade_error(run, monkeypatch):
    store = GradeStore(run)

    def refuse(*_args, **_kwargs):
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(fsio.os, "open", refuse)
    with pytest.raises(GradeError, match="cannot write the grade"):
        store.mark("r0", "checkpoint-10", "correct")
    monkeypatch.undo()
    assert store.get("r0", "checkpoint-10").grade is None


def test_a_mark_belongs_to_the_answer_it_judged(run):
    """Answers generated again (other settings, same checkpoint) are new answers: the
    marks of the old ones stay in the journal but count for nothing and show as stale
    (issue 13: they were silently carried over to answers nobody read)."""
    from tui_ft.grade.responses import answer_key

    first = [{**r, "generation": {"temperature": 0.0}} for r in make_responses(3)]
    store = GradeStore(run)
    for r, value in zip(first, ("correct", "wrong", None)):
        if value:
            store.mark(r["id"], r["checkpoint"], value, answer=answer_key(r))
    store.set_note("r2", "checkpoint-10", "looked at", answer=answer_key(first[2]))
    assert [store.of(r).grade for r in first] == ["correct", "wrong", None]

    again = [{**r, "response": r["response"] + "!", "generation": {"temperature": 0.7}}
             for r in first[:2]] + [first[2]]
    assert [answer_key(a) != answer_key(b) for a, b in zip(first, again)] == [True, True,
                                                                               False]
    fresh = GradeStore(run)  # read back from the journal, as another session would
    assert [fresh.of(r).grade for r in again] == [None, None, None]
    assert [fresh.of(r).stale for r in again] == ["correct", "wrong", None]
    assert fresh.of(again[2]).note == "looked at"  # the unchanged answer keeps its note
    assert fresh.counts(again)["ungraded"] == 3
    out = run.path / "again.jsonl"
    fresh.export(again, out)
    assert [json.loads(line)["grade"] for line in out.read_text().splitlines()] == [
        "ungraded"] * 3
    assert len(journal_lines(run)) == 3  # nothing was removed from the journal
    # Marks from before answer keys (no "answer" in the line) still apply.
    run.grades_path.write_text(json.dumps({"id": "r0", "checkpoint": "checkpoint-10",
                                           "grade": "correct", "at": "x"}) + "\n")
    assert GradeStore(run).of(again[0]).grade == "correct"
