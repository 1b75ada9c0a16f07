"""The Runs screen (key 5, issue 17): every run with its figures; two marked runs show
their validation curves together and the parameters that differ; enter opens one."""

from __future__ import annotations

import json

from textual.widgets import DataTable

from tui_ft.config import TrainConfig
from tui_ft.runfolder import Run
from tui_ft.runs.summary import config_diff
from tui_ft.ui.app import create_app
from tui_ft.ui.screens.runs import RunsChart

from helpers import fake_checkpoint, pilot_wait_for as wait_for


def made_run(parent, name: str, lr: float, losses: list[float]) -> Run:
    run = Run(parent / name)
    run.path.mkdir()
    TrainConfig(learning_rate=lr, output_dir=str(run.path)).save(run.config_path)
    metrics = [{"step": 0, "event": "start", "total_steps": 30}]
    metrics += [{"step": 10 * (i + 1), "val_loss": v} for i, v in enumerate(losses)]
    run.metrics_path.write_text("".join(json.dumps(m) + "\n" for m in metrics))
    run.status_path.write_text(json.dumps({"state": "finished", "step": 30,
                                           "total_steps": 30,
                                           "best_checkpoint": "checkpoint-30",
                                           "best_checkpoint_metric": min(losses)}))
    fake_checkpoint(run, 30)
    return run


def test_config_diff_names_only_what_differs(tmp_path):
    a = made_run(tmp_path, "a", 1e-3, [3.0])
    b = made_run(tmp_path, "b", 5e-4, [2.0])
    assert config_diff([a, b]) == [("learning_rate", [1e-3, 5e-4])]
    assert config_diff([a, a]) == []


async def test_runs_screen_compares_two_runs_and_opens_one(isolated_dirs):
    runs = isolated_dirs["runs"]
    made_run(runs, "fast-[bold]lr", 1e-3, [3.0, 2.5, 2.4])
    made_run(runs, "slow-lr", 1e-4, [3.5, 3.2, 3.0])
    app = create_app(start_mode="runs")
    async with app.run_test(size=(100, 30)) as pilot:
        screen = app.screen
        table = screen.query_one(DataTable)
        await wait_for(pilot, lambda: table.row_count == 2)
        cells = [[str(c) for c in table.get_row_at(i)] for i in range(2)]
        names = {row[1] for row in cells}
        assert names == {"fast-[bold]lr", "slow-lr"}  # markup shown literally
        assert {row[6] for row in cells} == {"2.400 loss", "3.000 loss"}
        assert {row[3] for row in cells} == {"instructi\u2026"}  # cut to fit 80 columns
        compare = screen.query_one("#runs-compare")
        assert not compare.has_class("shown")
        await pilot.press("space", "down", "space")
        await wait_for(pilot, lambda: compare.has_class("shown"))
        chart = screen.query_one(RunsChart)
        assert sorted(label for label, _ in chart.series) == ["fast-[bold]lr", "slow-lr"]
        assert all(len(points) == 3 for _, points in chart.series)
        diff = str(screen.query_one("#runs-diff").content)
        assert "learning_rate" in diff and "0.001" in diff and "0.0001" in diff
        assert "output_dir" not in diff
        # Unmarking one leaves nothing to compare.
        await pilot.press("space")
        await wait_for(pilot, lambda: not compare.has_class("shown"))
        opened = table.get_row_at(table.cursor_row)[1]
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.current_mode == "training")
        assert app.state.run is not None and app.state.run.name == str(opened)


def answered(run: Run, answers: list[str]) -> Run:
    """Test answers of the run's best checkpoint (checkpoint-30), as responses leaves."""
    lines = [{"id": f"q{i}", "instruction": f"Say {i}.", "input": "", "expected": str(i),
              "response": a, "checkpoint": "checkpoint-30", "run": run.name, "split": "test"}
             for i, a in enumerate(answers)]
    run.responses_path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return run


async def test_c_compares_two_marked_runs_blind(isolated_dirs):
    from tui_ft.grade.arena import HUMAN, Comparison
    from tui_ft.ui.screens.arena import ArenaScreen
    from tui_ft.ui.screens.runs import RunsScreen

    runs = isolated_dirs["runs"]
    answered(made_run(runs, "alpha", 1e-3, [3.0]), ["0", "1", "two"])
    answered(made_run(runs, "beta", 1e-4, [3.5]), ["zero", "1", "2"])
    app = create_app(start_mode="runs")
    async with app.run_test(size=(100, 30)) as pilot:
        table = app.screen.query_one(DataTable)
        await wait_for(pilot, lambda: table.row_count == 2)
        await pilot.press("c")  # nothing marked: said, nothing started
        assert not isinstance(app.screen, ArenaScreen)
        await pilot.press("space", "down", "space", "c")
        await wait_for(pilot, lambda: isinstance(app.screen, ArenaScreen), timeout=120)
        arena = app.screen
        shown = str(arena.query_one("#arena-header").content)
        assert "alpha" not in shown and "beta" not in shown  # blind
        await pilot.press("a")
        comparison = Comparison(arena.comparison.path)
        assert sum(comparison.verdict(p, HUMAN) is not None for p in comparison.pairs) == 1
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, RunsScreen))
