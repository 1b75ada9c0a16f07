"""The blind comparison screen (ui/screens/arena.py) driven by Textual's Pilot: the two
answers side by side in the comparison's order, no model named on screen until every
pair has a verdict, a, b, t and x recorded on disk and moving on, answers shown
literally (escapes and markup), and the results named at the end."""

from __future__ import annotations

import json

from rich.text import Text
from textual.widgets import Static

from tui_ft.grade import arena
from tui_ft.grade.imported import import_answers
from tui_ft.runfolder import Run
from tui_ft.ui.screens.arena import ArenaApp

NAMES = ("alphamodel", "betamodel")


def make_comparison(tmp_path, n: int = 4) -> arena.Comparison:
    runs = []
    for name, tag in zip(NAMES, ("one", "two")):
        rows = [{"instruction": f"Count to {i}.", "input": "", "output": f"{i}",
                 "response": f"{tag} {i} \x1b[31m[bold]loud[/bold]"} for i in range(n)]
        source = tmp_path / f"{name}.jsonl"
        source.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
        runs.append(Run(import_answers(str(source), name)["run_path"]))
    # The default name, made from the sides' names: the screen must not show it.
    return arena.prepare((runs[0], None), (runs[1], None), seed=3)


def screen_text(app) -> str:
    out = []
    for widget in app.screen.query(Static):
        content = widget.content
        out.append(content.plain if isinstance(content, Text) else str(content))
    return "\n".join(out)


async def test_the_screen_is_blind_records_verdicts_and_reveals_at_the_end(tmp_path):
    comparison = make_comparison(tmp_path)
    app = ArenaApp(comparison.path)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        first = comparison.pairs[0]
        a = app.screen.query_one("#arena-a-text", Static).content
        b = app.screen.query_one("#arena-b-text", Static).content
        # In the drawn order, the escape shown as a symbol and the markup as typed.
        assert a.plain.startswith(first.answers[first.shown_a].split(" \x1b")[0])
        assert b.plain.startswith(first.answers[1 - first.shown_a].split(" \x1b")[0])
        assert "\u241b[31m[bold]loud[/bold]" in a.plain
        for name in NAMES:
            assert name not in screen_text(app)

        for key in ("a", "b", "t"):
            await pilot.press(key)
            await pilot.pause()
            for name in NAMES:
                assert name not in screen_text(app)
        on_disk = arena.open_comparison(str(comparison.path))
        said = [on_disk.verdict(p) for p in on_disk.pairs]
        assert said == ["A", "B", "tie", None]
        assert "3 judged" in app.screen.query_one("#arena-header", Static).content.plain

        await pilot.press("x")
        await pilot.pause()
        text = screen_text(app)
        assert "4 of 4 pairs judged" in text
        assert all(name in text for name in NAMES)  # the end: names shown
        results = arena.open_comparison(str(comparison.path)).results()
        assert results["complete"] and results["both_bad"] == 1 and results["ties"] == 1
        assert sum(s["wins"] for s in results["sides"]) == 2


async def test_reveal_before_the_end_takes_a_second_r(tmp_path):
    comparison = make_comparison(tmp_path, n=3)
    app = ArenaApp(comparison.path)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("a")
        await pilot.press("r")
        await pilot.pause()
        text = screen_text(app)
        assert "1 of 3 pairs judged" in text and "stays hidden" in text
        assert not any(name in text for name in NAMES)
        await pilot.press("r")
        await pilot.pause()
        assert all(name in screen_text(app) for name in NAMES)
        # Moving about does not record anything.
        await pilot.press("n", "n", "p")
        await pilot.pause()
        assert arena.open_comparison(str(comparison.path)).results()["verdicts"] == 1
