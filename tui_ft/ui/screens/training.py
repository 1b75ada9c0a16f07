"""Training screen: start a run (a detached worker), stop it, re-attach to any run,
and watch it live from its folder: progress, ETA, speed, train and validation loss,
the overfitting alert, checkpoints and the log. Nothing here imports torch; closing
the app or losing the SSH link leaves the run going."""

from __future__ import annotations

import time

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import OptionList, ProgressBar, RichLog, Static
from textual.widgets.option_list import Option

from ...commands.progress import describe_event, progress_parts
from ...errors import TuiFtError
from ...paths import runs_dir
from ...text import visible
from ...train.run import MetricsTail, Run, list_runs
from ..widgets.key_legend import KeyLegend
from ..widgets.loss_chart import LossChart

LOG_LINES = 400


class TrainingScreen(Screen):
    BINDINGS = [
        Binding("s", "start_run", "Start"),
        Binding("x", "stop_run", "Stop"),
        Binding("u", "resume_run", "Resume"),
        Binding("r", "pick_run", "Runs"),
        Binding("escape", "close_picker", "Close", show=False),
    ]
    DEFAULT_CSS = """
    TrainingScreen #run-header {
        height: 1;
        padding: 0 1;
        background: $panel;
    }
    TrainingScreen #run-progress {
        height: 1;
        padding: 0 1;
    }
    TrainingScreen #run-progress ProgressBar {
        width: 30;
        display: none;
    }
    TrainingScreen #run-progress ProgressBar.known {
        display: block;
    }
    TrainingScreen #run-progress-text {
        width: 1fr;
        padding: 0 1;
    }
    TrainingScreen #overfit-banner {
        display: none;
        height: auto;
        padding: 0 1;
        background: $warning 30%;
        color: $text;
        text-style: bold;
    }
    TrainingScreen #overfit-banner.shown {
        display: block;
    }
    TrainingScreen #training-main {
        height: 1fr;
    }
    TrainingScreen #loss-chart {
        width: 3fr;
        border: round $panel-lighten-2;
    }
    TrainingScreen #checkpoint-list {
        width: 1fr;
        height: 100%;
        min-width: 22;
        border: round $panel-lighten-2;
        padding: 0 1;
    }
    TrainingScreen #run-log {
        height: 7;
        border: round $panel-lighten-2;
    }
    TrainingScreen #run-picker {
        display: none;
        height: 1fr;
        border: round $primary;
    }
    TrainingScreen #run-picker.shown {
        display: block;
    }
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.run: Run | None = None
        self.tail: MetricsTail | None = None
        self.log_offset = 0
        self.status: dict = {}
        self.total_steps: int | None = None
        self.step = 0
        self.epoch = 0.0
        self.speed: float | None = None
        self.train_loss: float | None = None
        self.val_loss: float | None = None
        self.overfitting: dict | None = None
        self.first_time: tuple[float, int] | None = None
        self.last_time: tuple[float, int] | None = None

    def compose(self) -> ComposeResult:
        yield Static(id="run-header", markup=False)
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
        self.query_one("#checkpoint-list").border_title = "checkpoints"
        self.query_one("#run-log").border_title = "log"
        if getattr(self.app, "low_bandwidth", False):
            self.query_one(LossChart).min_interval = 5.0
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

    # -- attaching -----------------------------------------------------------------------

    def attach(self, run: Run) -> None:
        """Show `run` with its whole history and follow it from now on."""
        self.run = run
        self.tail = MetricsTail(run.metrics_path)
        self.log_offset = 0
        self.total_steps, self.step, self.epoch = None, 0, 0.0
        self.speed = self.train_loss = self.val_loss = None
        self.overfitting = None
        self.first_time = self.last_time = None
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
            self.total_steps, self.step, self.first_time = None, 0, None
            force_chart = True
        for record in new:
            self._apply(record)
        self.status = self.run.read_status()
        chart = self.query_one(LossChart)
        best = self.status.get("best_checkpoint")
        if best and best.startswith("checkpoint-"):
            try:
                chart.set_best(int(best.split("-", 1)[1]))
            except ValueError:
                pass
        chart.maybe_redraw(force=force_chart)
        self._read_log()
        self._refresh_texts()
        if any(r.get("event") in ("checkpoint", "end", "start", "resumed") for r in new) \
                or force_chart:
            self._refresh_checkpoints()

    def _apply(self, m: dict) -> None:
        step = int(m.get("step", self.step) or 0)
        event = m.get("event")
        if event in ("start", "resumed"):
            self.total_steps = m.get("total_steps", self.total_steps)
        if "time" in m:
            if self.first_time is None or event in ("start", "resumed"):
                self.first_time = (float(m["time"]), step)
            self.last_time = (float(m["time"]), step)
        self.step = max(self.step, step) if event != "resumed" else step
        self.epoch = float(m.get("epoch", self.epoch) or 0.0)
        chart = self.query_one(LossChart)
        if "train_loss" in m:
            self.train_loss = m["train_loss"]
            chart.add_train(step, float(m["train_loss"]))
        if "val_loss" in m:
            self.val_loss = m["val_loss"]
            chart.add_val(step, float(m["val_loss"]))
        if "tokens_per_s" in m:
            self.speed = m["tokens_per_s"]
        if event == "overfitting":
            self.overfitting = m
            self._show_banner()
        elif event == "overfitting_cleared":
            self.overfitting = None
            self._show_banner()
        if event:
            self._log_line(f"step {step}: {describe_event(m)}")

    def _log_line(self, text: str) -> None:
        self.query_one("#run-log", RichLog).write(Text(visible(text, keep_newlines=False)))

    def _read_log(self) -> None:
        """New lines of worker.log (tracebacks, messages), shown literally."""
        try:
            with open(self.run.log_path, "rb") as f:
                f.seek(self.log_offset)
                data = f.read(256 * 1024)
        except FileNotFoundError:
            return
        end = data.rfind(b"\n")
        if end < 0:
            return
        self.log_offset += end + 1
        for line in data[:end].decode("utf-8", "replace").split("\n")[-LOG_LINES:]:
            if line.strip():
                self._log_line(line)

    # -- texts -------------------------------------------------------------------------------

    def _header(self, text: Text) -> None:
        self.query_one("#run-header", Static).update(text)

    def state(self) -> str:
        return self.run.state() if self.run is not None else "none"

    def eta(self) -> float | None:
        if not (self.total_steps and self.first_time and self.last_time):
            return None
        (t0, s0), (t1, s1) = self.first_time, self.last_time
        if s1 <= s0 or self.state() not in ("running", "starting"):
            return None
        return (t1 - t0) / (s1 - s0) * (self.total_steps - s1) - (time.time() - t1)

    def _refresh_texts(self) -> None:
        if self.run is None:
            return
        state = self.state()
        header = Text()
        header.append(visible(self.run.name, keep_newlines=False), style="bold")
        header.append(f"  {state}")
        if self.status.get("model"):
            header.append(f"  \u00b7 {visible(str(self.status['model']), keep_newlines=False)}")
        if state == "died":
            header.append("  \u00b7 the worker ended without a word (killed, or the machine "
                          "restarted); u resumes from the last checkpoint", style="bold red")
        if state == "failed" and self.status.get("error"):
            header.append(f"  \u00b7 {visible(str(self.status['error']), keep_newlines=False)}",
                          style="bold red")
        self._header(header)
        bar = self.query_one("#progress-bar", ProgressBar)
        # An indeterminate bar animates forever: show one only with a known total.
        bar.set_class(bool(self.total_steps), "known")
        if self.total_steps:
            bar.update(total=self.total_steps, progress=self.step)
        parts = progress_parts(self.step, self.total_steps, self.epoch, self.train_loss,
                               self.val_loss, self.speed, self.eta(),
                               show_eta=state in ("running", "starting"))
        self.query_one("#run-progress-text", Static).update(Text(" \u00b7 ".join(parts)))

    def _show_banner(self) -> None:
        banner = self.query_one("#overfit-banner", Static)
        m = self.overfitting
        running = self.run is not None and self.state() in ("running", "starting")
        banner.set_class(m is not None, "shown")
        if m is None:
            return
        best = m.get("best_checkpoint") or f"step {m.get('best_step')} (not saved)"
        text = (f"\u26a0 Overfitting: validation loss has not improved since step "
                f"{m.get('best_step')} (best {float(m.get('best_val_loss', 0)):.4f}) while "
                f"training loss kept falling; it began at step {m.get('began_at_step')}. "
                f"Best checkpoint: {best}.")
        if running:
            text += " Press x to stop."
        banner.update(Text(visible(text, keep_newlines=False)))

    def _refresh_checkpoints(self) -> None:
        widget = self.query_one("#checkpoint-list", Static)
        if self.run is None:
            widget.update("")
            return
        best = self.run.read_status().get("best_checkpoint")
        lines = []
        for c in reversed(self.run.checkpoints()):
            mark = " \u2605 best" if c.name == best else ""
            lines.append(f"{c.name}{mark}")
        widget.update(Text("\n".join(lines) if lines else "none yet"))

    # -- actions -------------------------------------------------------------------------

    def action_start_run(self) -> None:
        from ...train.worker import prepare_run, start_detached

        if self.run is not None and self.state() in ("running", "starting"):
            self.notify("a run is already going here; stop it first (x) or pick another (r)",
                        severity="warning", markup=False)
            return
        try:
            run, _ = prepare_run(self.app.state.config)
            start_detached(run)
        except (TuiFtError, OSError) as exc:
            self.notify(visible(str(exc)), title="cannot start", severity="error", markup=False)
            return
        self.app.select_run(run)
        self.attach(run)
        self._log_line(f"started worker for {run.path}")

    def action_stop_run(self) -> None:
        from ...train.worker import stop_run

        if self.run is None or self.state() not in ("running", "starting"):
            self.notify("no running run to stop", markup=False)
            return
        stop_run(self.run, wait=0)
        self._log_line("stop requested: the worker saves a checkpoint, then ends")

    def action_resume_run(self) -> None:
        from ...train.worker import start_detached

        if self.run is None or self.state() in ("running", "starting"):
            self.notify("pick a stopped or failed run to resume (r)", markup=False)
            return
        try:
            checkpoint = self.run.checkpoint("last")
            self.run.write_status(state="starting", error=None)
            start_detached(self.run, resume=checkpoint.path)
        except (TuiFtError, OSError) as exc:
            self.notify(visible(str(exc)), title="cannot resume", severity="error",
                        markup=False)
            return
        self._log_line(f"resuming from {checkpoint.name}")

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

    @on(OptionList.OptionSelected, "#run-picker")
    def _run_picked(self, event: OptionList.OptionSelected) -> None:
        self.action_close_picker()
        if event.option.id:
            run = Run(event.option.id)
            self.app.select_run(run)
            self.attach(run)
