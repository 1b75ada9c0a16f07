"""Answers imported with `tui-ft grades import` in the Grading screen: opened through
Textual's Pilot (graded, and the marks exported by the CLI), and through the real
`tui-ft NAME` on a pty, which opens an imported run on the Grading screen."""

from __future__ import annotations

import json
import sys
import time

from tui_ft.grade.imported import import_answers
from tui_ft.paths import runs_dir
from tui_ft.runfolder import Run
from tui_ft.ui.app import create_app

from helpers import PtyApp, pilot_wait_for as wait_for

LABEL = "other-tool v2"
ANSWERS = [
    {"instruction": "Name the capital of Italy.", "input": "", "output": "Rome",
     "model_response": "Rome"},
    {"instruction": "Give the opposite of \"hot\".", "input": "", "output": "cold",
     "model_response": "warm"},
    {"instruction": "[bold]Not markup[/bold] \x1b]0;PWNED\x07", "input": "x",
     "output": "y", "model_response": "[red]z[/red]"},
]


def imported_run(tmp_path) -> Run:
    source = tmp_path / "answers.json"
    source.write_text(json.dumps(ANSWERS), encoding="utf-8")
    import_answers(str(source), "imported-demo", response_key="model_response", label=LABEL)
    return Run.open(runs_dir() / "imported-demo")


def text_of(screen, selector: str) -> str:
    return str(screen.query_one(selector).content)


async def test_grading_screen_grades_imported_answers(tmp_path, run_cli):
    run = imported_run(tmp_path)
    app = create_app(run=run.path)  # imported answers open where they are graded
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        assert app.current_mode == "grading"
        await wait_for(pilot, lambda: len(screen.responses) == 3)
        header = text_of(screen, "#grading-header")
        assert "imported-demo" in header and LABEL in header and "3 responses" in header
        assert screen.current["instruction"] == ANSWERS[0]["instruction"]
        await pilot.press("c")
        assert screen.current["instruction"] == ANSWERS[1]["instruction"]  # auto-advance
        await pilot.press("w")
        assert text_of(screen, "#grading-progress").startswith("2/3 graded")
        # Generating needs a checkpoint: an imported run has none, and the screen says so
        # instead of failing.
        await pilot.press("r")
        await wait_for(pilot, lambda: app.screen is not screen)
        assert "imported answers and no model" in str(
            app.screen.query_one(".picker-warning").content)
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is screen)
    journal = [json.loads(line) for line in run.grades_path.read_text().splitlines()]
    assert [(e["grade"], e["checkpoint"]) for e in journal] == [("correct", LABEL),
                                                               ("wrong", LABEL)]
    out = tmp_path / "graded.jsonl"
    proc = run_cli("grades", "export", "imported-demo", str(out))
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [(r["response"], r["grade"], r["checkpoint"]) for r in rows] == [
        ("Rome", "correct", LABEL), ("warm", "wrong", LABEL), ("[red]z[/red]", "ungraded", LABEL)]


def test_tui_ft_name_opens_an_imported_run_on_the_grading_screen(tmp_path):
    """`tui-ft NAME` (no --screen) on a real pty: the Grading screen, not Training."""
    imported_run(tmp_path)
    with PtyApp([sys.executable, "-m", "tui_ft.cli", "imported-demo"]) as app:
        app.read_until(lambda: b"capital of Italy" in app.output, 30)
        app.write(b"c")
        deadline = time.monotonic() + 10
        grades = Run(runs_dir() / "imported-demo").grades_path
        while not grades.exists() and time.monotonic() < deadline:
            app.read_until(lambda: False, 0.1)
        app.write(b"q")
        app.wait(timeout=15)
    output = app.output
    assert b"capital of Italy" in output, output[-2000:]
    assert b"\x1b]0;PWNED" not in output
    (entry,) = [json.loads(line) for line in grades.read_text().splitlines()]
    assert (entry["grade"], entry["checkpoint"]) == ("correct", LABEL)
