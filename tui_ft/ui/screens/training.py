"""Training screen: start a run (a detached worker), stop it, re-attach to any run,
and watch it live from its folder: progress, ETA, speed, train and validation loss,
the overfitting alert, checkpoints and the log. Nothing here imports torch; closing
the app or losing the SSH link leaves the run going."""

from __future__ import annotations

import os
from pathlib import Path

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import OptionList, ProgressBar, RichLog, Static
from textual.widgets.option_list import Option

from ...config import TrainConfig, read_yaml
from ...errors import TuiFtError
from ...paths import runs_dir
from ...runfolder import CHECKPOINT_RE, Run, RunError
from ...runs.progress import ProgressState, describe_event, metric_label
from ...runs.registry import list_runs
from ...tail import JsonlTail, LineTail
from ...text import visible
from ..widgets.key_legend import KeyLegend
from ..widgets.loss_chart import LossChart
from .training_lines import SEPARATOR, fit_progress, overfit_banner, problem_line

LOG_LINES = 400
# The progress bar's width (bar and percentage) where there is room for it.
BAR_WIDTH = 20


def config_for_new_run(config: TrainConfig) -> tuple[TrainConfig, Path | None]:
    """The configuration a new run starts with, and the folder it replaced: a new run
    always gets a folder of its own. An output_dir that already holds a run (the app
    opened on a run takes over that run's parameters, output_dir included) gives way
    to a new folder: in the runs directory for one of its runs, else beside it.
    Continuing that run is `u` (resume), never `s`."""
    if not config.output_dir:
        return config, None
    taken = Path(config.output_dir).expanduser()
    try:
        Run.open(taken)
    except RunError:
        return config, None  # no run there yet: the folder the user asked for
    if taken.resolve().parent == runs_dir().resolve():
        new_dir = None  # prepare_run names a new one there
    else:
        new_dir = str(Run.create(taken.parent, label=taken.name).path)
    return TrainConfig.from_dict({**config.to_dict(), "output_dir": new_dir}), taken


class TrainingScreen(Screen):
    # Nothing focused at first: keys go to the screen's bindings (the run picker,
    # hidden, would otherwise take the focus and with it Enter and the arrows).
    AUTO_FOCUS = ""
    BINDINGS = [
        Binding("s", "start_run", "Start", tooltip="Start a new run (in a new folder) with "
                "the current parameters"),
        Binding("x", "stop_run", "Stop", tooltip="Stop the run: a checkpoint, then it ends"),
        Binding("u", "resume_run", "Resume", tooltip="Resume this run from its last checkpoint"),
        Binding("r", "pick_run", "Pick run", tooltip="Show another run"),
        Binding("l", "cycle_scale", "Scale", tooltip="Loss chart: linear, log y, or zoomed "
                "past the first steps"),
        Binding("a", "cycle_metric", "Metric", tooltip="Chart: the loss, or another "
                "validation metric (accuracy, exact match, compute_metrics')"),
        Binding("escape", "close_picker", "Close", show=False),
    ]
    CSS_PATH = "training.tcss"

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.run: Run | None = None
        self.tail: JsonlTail | None = None
        self.log_tail: LineTail | None = None
        self.status: dict = {}
        self.progress = ProgressState()
        # What the header says runs: the model named in the run's parameters (the
        # progress knows where a resume continued from and the device).
        self.model_name: str | None = None
        self._banner_key: tuple | None = None

    def compose(self) -> ComposeResult:
        yield Static(id="run-header", markup=False)
        yield Static(id="run-problem", markup=False)
        with Horizontal(id="run-progress"):
            yield ProgressBar(total=None, show_eta=False, show_percentage=True, id="progress-bar")
            yield Static(id="run-progress-text", markup=False)
        yield Static(id="overfit-banner", markup=False)
        yield OptionList(id="run-picker")
        with Horizontal(id="training-main"):
            yield LossChart(id="loss-chart")
            yield Static(id="checkpoint-list", markup=False)
        yield RichLog(id="run-log", max_lines=LOG_LINES, markup=False, highlight=False,
                      wrap=False)
        yield KeyLegend(id="key-legend")

    def on_mount(self) -> None:
        self.query_one("#loss-chart").border_title = "loss"
        checkpoints = self.query_one("#checkpoint-list")
        checkpoints.border_title = "checkpoints"
        # The mark's meaning below the list: a name and its mark fit in 22 columns.
        checkpoints.border_subtitle = "\u2605 best"
        self.query_one("#run-log").border_title = "log"
        chart = self.query_one(LossChart)
        if getattr(self.app, "low_bandwidth", False):
            chart.min_interval = 5.0
        chart.scale = getattr(self.app, "loss_scale", chart.scale)
        self.set_interval(1.0, self.poll)
        self.on_screen_resume()

    def on_screen_resume(self) -> None:
        run = self.app.state.run
        if run is not None and (self.run is None or run.path != self.run.path):
            self.attach(run)
        elif run is None and self.run is None:
            self._header(Text("no run yet: press s to start one with the current parameters, "
                              "or r to pick an earlier run"))
        self.poll()

    def on_resize(self) -> None:
        # The progress line is fitted to the width: fit it again.
        self._refresh_texts()

    # -- attaching -----------------------------------------------------------------------

    def attach(self, run: Run) -> None:
        """Show `run` with its whole history and follow it from now on."""
        self.run = run
        self.tail = run.metrics_tail()
        self.log_tail = LineTail(run.log_path, max_bytes=256 * 1024)
        self.progress = ProgressState()
        try:
            model = read_yaml(run.config_path).get("model")
        except (TuiFtError, OSError):
            model = None
        self.model_name = str(model) if model else None
        chart = self.query_one(LossChart)
        chart.clear()
        self.query_one("#run-log", RichLog).clear()
        self._show_banner()
        self.poll(force_chart=True)

    def poll(self, force_chart: bool = False) -> None:
        """Read what the worker wrote since the last poll (cheap when nothing did)."""
        if self.run is None or self.tail is None:
            return
        new = self.tail.read()
        if self.tail.restarted:
            # A resume rewrote the history: draw it again from the start.
            self.tail.restarted = False
            self.query_one(LossChart).clear()
            progress = self.progress
            progress.total_steps, progress.step, progress.first_time = None, 0, None
            force_chart = True
        for record in new:
            self._apply(record)
        self.status = self.run.read_status()
        chart = self.query_one(LossChart)
        best = self.status.get("best_checkpoint")
        match = CHECKPOINT_RE.match(best) if isinstance(best, str) else None
        step = int(match.group(1)) if match else None
        metric = self.status.get("best_checkpoint_metric")
        if metric_label(self.status.get("metric_for_best_model")) != "val loss":
            metric = None  # an accuracy: not a point on the loss chart
        chart.set_best(step, metric if isinstance(metric, (int, float))
                       and not isinstance(metric, bool) else None)
        chart.maybe_redraw(force=force_chart)
        self._read_log()
        self._refresh_texts()
        if any(r.get("event") in ("checkpoint", "end", "start", "resumed") for r in new) \
                or force_chart:
            self._refresh_checkpoints()

    def _apply(self, m: dict) -> None:
        step = int(m.get("step", self.progress.step) or 0)
        self.progress.feed(m)
        chart = self.query_one(LossChart)
        if m.get("train_loss") is not None:
            chart.add_train(step, float(m["train_loss"]))
        if m.get("val_loss") is not None:
            chart.add_val(step, float(m["val_loss"]))
        for key, value in m.items():
            # val_accuracy, val_exact_match, a compute_metrics file's val_NAME.
            if key.startswith("val_") and key != "val_loss" and "event" not in m \
                    and isinstance(value, (int, float)) and not isinstance(value, bool):
                chart.add_metric(key[4:], step, float(value))
        if m.get("event"):
            self._log_line(f"step {step}: {describe_event(m)}")

    def _log_line(self, text: str) -> None:
        self.query_one("#run-log", RichLog).write(Text(visible(text, keep_newlines=False)))

    def _read_log(self) -> None:
        """New lines of worker.log (tracebacks, messages), shown literally."""
        if self.log_tail is None:
            return
        for line in self.log_tail.read_lines()[-LOG_LINES:]:
            self._log_line(line.decode("utf-8", "replace"))

    # -- texts -------------------------------------------------------------------------------

    def _header(self, text: Text) -> None:
        self.query_one("#run-header", Static).update(text)

    def state(self) -> str:
        return self.run.state() if self.run is not None else "none"

    def what_runs(self) -> str:
        """The model, where it continued from, and the device, in a few words."""
        model = self.model_name or "model ?"
        if self.progress.resumed_from:
            model += f", resumed from {self.progress.resumed_from}"
        device = self.progress.device
        return model + (f" on {device}" if device else "")

    def _refresh_texts(self) -> None:
        if self.run is None:
            return
        state = self.state()
        world = self.status.get("world_size")
        beats = (self.run.read_heartbeats() if isinstance(world, int) and world > 1
                 and state == "running" else None)
        header = Text()
        header.append(visible(self.run.name, keep_newlines=False), style="bold")
        header.append(f"  {state}")
        header.append(SEPARATOR + visible(self.what_runs(), keep_newlines=False))
        self._header(header)
        # The whole description of the model where there is room for it: on hover.
        described = self.status.get("model")
        if beats:
            described = f"{described or ''}\n" + "\n".join(
                f"rank {b['rank']}: step {b['step']}, heard {b['age']:.0f} s ago"
                for b in beats)
        self.query_one("#run-header").tooltip = (visible(str(described)) if described
                                                 else None)
        problem = problem_line(state, self.status, beats)
        widget = self.query_one("#run-problem", Static)
        widget.set_class(bool(problem), "shown")
        widget.update(Text(visible(problem, keep_newlines=False)))
        self._refresh_progress(state)
        self._show_banner()

    def _refresh_progress(self, state: str) -> None:
        bar = self.query_one("#progress-bar", ProgressBar)
        parts = self.progress.parts(show_eta=state in ("running", "starting"))
        total = self.progress.total_steps
        row = self.query_one("#run-progress")
        width = (row.content_region.width or self.app.size.width - 2) - 2
        kept, show_bar = fit_progress(parts, width, BAR_WIDTH if total else None)
        # An indeterminate bar animates forever: show one only with a known total.
        bar.set_class(show_bar, "known")
        if total:
            bar.update(total=total, progress=self.progress.step)
        self.query_one("#run-progress-text", Static).update(Text(SEPARATOR.join(kept)))

    def _show_banner(self) -> None:
        banner = self.query_one("#overfit-banner", Static)
        m = self.progress.overfitting
        running = self.run is not None and self.state() in ("running", "starting")
        width = (banner.content_region.width or self.app.size.width - 2)
        key = (repr(sorted(m.items())) if m is not None else None, running, width)
        if key == self._banner_key:
            return
        self._banner_key = key
        banner.set_class(m is not None, "shown")
        if m is None:
            return
        text, long = overfit_banner(m, running, width)
        banner.update(Text(visible(text, keep_newlines=False)))
        banner.tooltip = visible(long) + (" Press x to stop." if running else "")

    def _refresh_checkpoints(self) -> None:
        widget = self.query_one("#checkpoint-list", Static)
        if self.run is None:
            widget.update("")
            return
        best = self.run.read_status().get("best_checkpoint")
        lines = []
        for c in reversed(self.run.checkpoints()):
            mark = " \u2605" if c.name == best else ""
            lines.append(f"{c.name}{mark}")
        widget.update(Text("\n".join(lines) if lines else "none yet"))

    # -- actions -------------------------------------------------------------------------

    def action_start_run(self) -> None:
        from ...runs.jobs import prepare_run, start_detached

        if self.run is not None and self.state() in ("running", "starting"):
            self.notify("a run is already going here; stop it first (x) or pick another (r)",
                        severity="warning", markup=False)
            return
        made = None
        try:
            config, taken = config_for_new_run(self.app.state.config)
            if taken is not None and config.output_dir:
                made = Path(config.output_dir)
            run, _ = prepare_run(config)
            start_detached(run)
        except (TuiFtError, OSError) as exc:
            if made is not None:
                try:
                    made.rmdir()  # the empty folder made for it, if nothing went in
                except OSError:
                    pass
            self.notify(visible(str(exc)), title="cannot start", severity="error", markup=False)
            return
        self.app.state.started.append(run)
        self.app.select_run(run)
        self.attach(run)
        if taken is not None:
            self._log_line(f"{taken} holds a run already (u resumes it): this one gets a "
                           "folder of its own")
        self._log_line(f"started worker for {run.path}")

    def action_stop_run(self) -> None:
        from ...runs.jobs import stop_run

        if self.run is None or self.state() not in ("running", "starting"):
            self.notify("no running run to stop", markup=False)
            return
        stop_run(self.run, wait=0)
        self._log_line("stop requested: the worker saves a checkpoint, then ends")

    def action_resume_run(self) -> None:
        from ...runs.jobs import lock_run, start_detached

        if self.run is None or self.state() in ("running", "starting"):
            self.notify("pick a stopped or failed run to resume (r)", markup=False)
            return
        try:
            checkpoint = self.run.checkpoint("last")
            lock = lock_run(self.run)  # another session may be resuming it right now
            try:
                self.run.write_status(state="starting", error=None)
            except BaseException:
                os.close(lock)  # the app must not keep the run locked
                raise
            start_detached(self.run, resume=checkpoint.path, lock=lock)
        except (TuiFtError, OSError) as exc:
            self.notify(visible(str(exc)), title="cannot resume", severity="error",
                        markup=False)
            return
        if all(r.path != self.run.path for r in self.app.state.started):
            self.app.state.started.append(self.run)
        self._log_line(f"resuming from {checkpoint.name}")

    def action_cycle_metric(self) -> None:
        chart = self.query_one(LossChart)
        shown = chart.cycle_metric()
        chart.border_title = "loss" if shown == "loss" else f"val {shown}"

    def action_cycle_scale(self) -> None:
        chart = self.query_one(LossChart)
        chart.cycle_scale()
        self.app.loss_scale = chart.scale

    def action_pick_run(self) -> None:
        picker = self.query_one("#run-picker", OptionList)
        picker.clear_options()
        runs = list_runs(runs_dir())
        if self.run is not None and all(r.path != self.run.path for r in runs):
            runs.insert(0, self.run)
        for run in runs:
            status = run.read_status()
            label = (f"{visible(run.name, keep_newlines=False)}  {run.state()}  step "
                     f"{status.get('step', 0)}/{status.get('total_steps', '?')}")
            picker.add_option(Option(Text(label), id=str(run.path)))
        if not runs:
            picker.add_option(Option(Text(f"no runs under {runs_dir()}"), disabled=True))
        picker.border_title = "runs (enter: attach, escape: close)"
        if runs:
            picker.highlighted = 0
        picker.add_class("shown")
        picker.focus()

    def action_close_picker(self) -> None:
        self.query_one("#run-picker").remove_class("shown")
        # Back to the screen's keys (a hidden picker keeps Enter and the arrows).
        self.set_focus(None)

    @on(OptionList.OptionSelected, "#run-picker")
    def _run_picked(self, event: OptionList.OptionSelected) -> None:
        self.action_close_picker()
        if event.option.id:
            run = Run(event.option.id)
            self.app.select_run(run)
            self.attach(run)
