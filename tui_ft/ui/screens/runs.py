"""Runs screen (key 5): every run with its model, dataset, state, best metric, exact
match and how much of its answers was graded and marked correct; mark two or more to
overlay their validation curves and see the parameters that differ; open one on the
Training screen. The summaries are read in a thread (each reads a run folder)."""

from __future__ import annotations

from pathlib import Path

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import DataTable, Static
from textual.worker import get_current_worker
from textual_plotext import PlotextPlot

from ...paths import runs_dir
from ...runfolder import Run
from ...runs.progress import metric_label
from ...runs.registry import list_runs
from ...runs.summary import config_diff, run_summary, val_curve
from ...text import visible
from ..widgets.key_legend import KeyLegend

COLUMNS = ("", "run", "model", "data", "state", "step", "best", "exact", "graded",
           "correct")
MARK = "\u25cf"


def _share(value) -> str:
    return f"{100 * value:.0f}%" if isinstance(value, (int, float)) else "-"


def summary_cells(row: dict, marked: bool) -> tuple:
    """One table row (untrusted names made visible)."""
    metric = row["best_metric"]
    label = metric_label(row["metric_for_best_model"]).removeprefix("val ")
    best = f"{metric:.3f} {label}" if isinstance(metric, (int, float)) else "-"
    dataset = (row["dataset"] or "?").rstrip("/").rsplit("/", 1)[-1]
    if len(dataset) > 10:  # every column fits 80 columns with a short run name
        dataset = dataset[:9] + "\u2026"
    return (MARK if marked else "", visible(row["run"], keep_newlines=False),
            visible(row["model"] or "?", keep_newlines=False),
            visible(dataset, keep_newlines=False), row["state"],
            f"{row['step'] or 0}/{row['total_steps'] or '?'}", best,
            _share(row["exact_match"]), _share(row["graded_share"]),
            _share(row["correct_share"]))


class RunsChart(PlotextPlot):
    """Validation curves of several runs on one chart."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.series: list[tuple[str, list[tuple[int, float]]]] = []

    def show(self, series: list[tuple[str, list[tuple[int, float]]]]) -> None:
        self.series = series
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        for label, points in series:
            if points:
                xs, ys = zip(*points)
                plt.plot(list(xs), list(ys), label=label[:24], marker="braille")
        plt.title("validation loss")
        plt.xlabel("step")
        self.refresh()


class RunsScreen(Screen):
    AUTO_FOCUS = "#runs-table"
    BINDINGS = [
        Binding("space", "mark", "Mark", tooltip="Mark the run under the cursor to compare"),
        Binding("enter", "open_run", "Open", tooltip="Open the run on the Training screen"),
        Binding("r", "reload", "Reload", tooltip="Read every run again"),
        Binding("c", "compare", "Blind A/B", tooltip="Two marked runs: answer the same test "
                "prompts, then judge them side by side without their names"),
    ]
    CSS_PATH = "runs.tcss"

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.rows: list[dict] = []
        self.marked: set[str] = set()
        self.loaded = False

    def compose(self) -> ComposeResult:
        yield Static(id="runs-header", markup=False)
        yield DataTable(id="runs-table", cursor_type="row", zebra_stripes=True)
        with Horizontal(id="runs-compare"):
            yield RunsChart(id="runs-chart")
            yield Static(id="runs-diff", markup=False)
        yield KeyLegend(id="key-legend")

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_column(" ", width=1, key="mark")
        for name in COLUMNS[1:]:
            table.add_column(name, key=name)
        self.query_one("#runs-chart").border_title = "validation loss"
        self.query_one("#runs-diff").border_title = "parameters that differ"

    def on_screen_resume(self) -> None:
        self.action_reload()

    def action_reload(self) -> None:
        self.query_one("#runs-header", Static).update(Text(f"reading runs in {runs_dir()} ..."))
        self._load()

    @work(thread=True, exclusive=True, group="runs", description="read the runs")
    def _load(self) -> None:
        rows = []
        for run in list_runs(runs_dir()):
            rows.append(run_summary(run))
            if get_current_worker().is_cancelled:
                return
        self.app.call_from_thread(self._show, rows)

    def _show(self, rows: list[dict]) -> None:
        self.rows, self.loaded = rows, True
        self.marked &= {r["path"] for r in rows}
        table = self.query_one(DataTable)
        cursor = table.cursor_row
        table.clear()
        for row in rows:
            table.add_row(*summary_cells(row, row["path"] in self.marked), key=row["path"])
        if rows:
            table.move_cursor(row=min(cursor, len(rows) - 1))
        self.query_one("#runs-header", Static).update(Text(
            f"{len(rows)} run(s) in {visible(str(runs_dir()), keep_newlines=False)}; "
            "space marks runs to compare, enter opens one" if rows else
            f"no runs in {visible(str(runs_dir()), keep_newlines=False)} yet: "
            "start one on the Training screen (3)"))
        self._compare()

    def _current(self) -> dict | None:
        table = self.query_one(DataTable)
        if not self.rows or table.cursor_row is None or table.cursor_row >= len(self.rows):
            return None
        return self.rows[table.cursor_row]

    def action_mark(self) -> None:
        row = self._current()
        if row is None:
            return
        self.marked ^= {row["path"]}
        table = self.query_one(DataTable)
        table.update_cell(row["path"], "mark", MARK if row["path"] in self.marked else "")
        self._compare()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.action_open_run()

    def action_open_run(self) -> None:
        row = self._current()
        if row is None:
            return
        self.app.select_run(Run(row["path"]))
        self.app.switch_mode("training")

    def action_compare(self) -> None:
        chosen = [r for r in self.rows if r["path"] in self.marked]
        if len(chosen) != 2:
            self.notify("mark exactly two runs (space) to compare them blind",
                        severity="warning")
            return
        self.query_one("#runs-header", Static).update(Text(
            "preparing the blind comparison (answers a run lacks are generated first) ..."))
        self._prepare_comparison([r["path"] for r in chosen])

    @work(thread=True, exclusive=True, group="compare", description="prepare a comparison")
    def _prepare_comparison(self, paths: list[str]) -> None:
        # In its own process, as every generation job: torch stays out of the app.
        import json
        import subprocess
        import sys

        proc = subprocess.run([sys.executable, "-m", "tui_ft.cli", "compare", *paths,
                               "--json"], capture_output=True, text=True,
                              stdin=subprocess.DEVNULL)
        if proc.returncode != 0:
            reason = (proc.stderr.strip().splitlines() or ["it failed"])[-1]
            self.app.call_from_thread(self._comparison_failed, reason)
            return
        self.app.call_from_thread(self._open_comparison, json.loads(proc.stdout)["comparison"])

    def _comparison_failed(self, reason: str) -> None:
        self.notify(visible(reason, keep_newlines=False), severity="error", markup=False,
                    timeout=10)
        self._show(self.rows)

    def _open_comparison(self, path: str) -> None:
        from ...grade.arena import Comparison
        from .arena import ArenaScreen

        self._show(self.rows)
        self.app.push_screen(ArenaScreen(Comparison(Path(path))))

    def _compare(self) -> None:
        """The marked runs' curves and differing parameters (two or more marked)."""
        compare = self.query_one("#runs-compare")
        chosen = [r for r in self.rows if r["path"] in self.marked]
        compare.set_class(len(chosen) >= 2, "shown")
        if len(chosen) < 2:
            return
        runs = [Run(r["path"]) for r in chosen]
        names = [visible(r["run"], keep_newlines=False) for r in chosen]
        self.query_one(RunsChart).show([(n, val_curve(run)) for n, run in zip(names, runs)])
        diff = config_diff(runs)
        text = Text()
        if not diff:
            text.append("the same parameters")
        for key, values in diff:
            text.append(f"{key}\n", style="bold")
            for name, value in zip(names, values):
                text.append(f"  {name[:20]}: {visible(str(value), keep_newlines=False)}\n")
        self.query_one("#runs-diff", Static).update(text)
